"""Extra sections of ``report.md``: a :class:`Section` is a titled Markdown body with the figures it shows.
Commands build them (the forgetting-vs-transfer fronts, the per-language retrieval drops, the source-language
effects) and hand them to :func:`lfmlf.report.write_report`, which appends each, in order, after the results
table and before the parameter importances."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Section:
    """One section of the report: ``## title``, then ``markdown`` (no heading of its own), then each figure
    as an image link (relative to the report's folder when it lies inside it). A figure that is None (the plot
    had nothing to draw) is left out."""

    title: str
    markdown: str
    figures: tuple[Path | None, ...] = ()


def section_markdown(section: Section, out_dir: Path) -> str:
    """The section as Markdown, figures linked relative to ``out_dir`` (absolute when outside it)."""
    out = [f"## {section.title}", "", section.markdown.rstrip(), ""]
    for fig in section.figures:
        if fig is None:
            continue
        path = Path(fig)
        try:
            link = os.path.relpath(path.resolve(), Path(out_dir).resolve())
        except ValueError:        # another drive (Windows)
            link = str(path.resolve())
        if link.startswith(".."):
            link = str(path.resolve())
        out += [f"![{path.stem}]({link})", ""]
    return "\n".join(out)
