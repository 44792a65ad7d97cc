"""Per-language retrieval of the forgetting probe, for the report's rows: the pre-trained encoder's accuracy
(theta0), each row's accuracy now and its drop, so that the numbers can sit next to published Tatoeba
figures. Called by ``lfmlf report`` with the results table's rows; optionally grouped by script or family.

Keys (logged by :func:`lfmlf.probes.retrieval.metrics`, at the selected checkpoint): ``best/forgetting/
retrieval_acc/<lang>`` (now) and ``best/forgetting/retrieval_drop/<lang>`` (theta0 - now); theta0 per language
is their sum. Cells are means over the row's runs that logged the language.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

from lfmlf.report.groups import language_groups
from lfmlf.report.render import md_escape
from lfmlf.report.runs import RunRecord, finite

ACC = "forgetting/retrieval_acc/"
DROP = "forgetting/retrieval_drop/"


def probe_languages(runs: Sequence[RunRecord], prefix: str = "best/") -> list[str]:
    """The probe's languages that any run logged a drop for, sorted."""
    head = prefix + DROP
    return sorted({k[len(head):] for r in runs for k in r.metrics if k.startswith(head) and k != head + "avg"})


def _mean(vals: list[float]) -> float:
    return sum(vals) / len(vals) if vals else math.nan


def _cells(runs: Sequence[RunRecord], lang: str, prefix: str) -> tuple[float, float, float]:
    """(theta0, now, drop) means over the runs that logged both keys of ``lang``."""
    pairs = [(float(r.metrics[prefix + ACC + lang]), float(r.metrics[prefix + DROP + lang])) for r in runs
             if finite(r.metrics.get(prefix + ACC + lang)) and finite(r.metrics.get(prefix + DROP + lang))]
    return _mean([a + d for a, d in pairs]), _mean([a for a, _ in pairs]), _mean([d for _, d in pairs])


def retrieval_by_language(rows: dict[str, list[RunRecord]], group_by: str | None = None, prefix: str = "best/",
                          scale: float = 100.0, digits: int = 1) -> str:
    """A Markdown table: one line per probe language (grouped, with a group-average line after each group,
    when ``group_by`` is "script" or "family"), theta0's retrieval, then each row's retrieval now and drop.
    A group average is the mean of its languages' lines. "" when no run logged per-language retrieval."""
    runs = [r for rs in rows.values() for r in rs]
    langs = probe_languages(runs, prefix)
    if not langs:
        return ""

    def fmt(x: float) -> str:
        return "" if not math.isfinite(x) else f"{x * scale:.{digits}f}"

    names = list(rows)
    head = ["language", "theta0"] + [md_escape(f"{n} {what}") for n in names for what in ("now", "drop ↓")]
    out = [f"Retrieval accuracy of the forgetting probe per language (× {scale:g}): theta0 = the pre-trained "
           "encoder, now = at each row's selected checkpoint, drop = theta0 - now; means over the row's runs.",
           "", "| " + " | ".join(head) + " |", "|---|" + "--:|" * (len(head) - 1)]
    groups = language_groups(langs, group_by) if group_by else {"": langs}
    for group, members in groups.items():
        lines = []
        for lang in members:
            theta0 = _mean([_cells(rs, lang, prefix)[0] for rs in rows.values()
                            if math.isfinite(_cells(rs, lang, prefix)[0])])
            cells = [_cells(rows[n], lang, prefix) for n in names]
            lines.append((theta0, cells))
            out.append(f"| {md_escape(lang)} | {fmt(theta0)} | "
                       + " | ".join(f"{fmt(now)} | {fmt(drop)}" for _, now, drop in cells) + " |")
        if group_by:
            theta0 = _mean([t for t, _ in lines if math.isfinite(t)])
            avg = [(_mean([c[i][1] for _, c in lines if math.isfinite(c[i][1])]),
                    _mean([c[i][2] for _, c in lines if math.isfinite(c[i][2])])) for i in range(len(names))]
            out.append(f"| **{md_escape(group)} avg** | {fmt(theta0)} | "
                       + " | ".join(f"{fmt(now)} | {fmt(drop)}" for now, drop in avg) + " |")
    keys = [prefix + "forgetting/retrieval_acc0/avg", prefix + ACC + "avg", prefix + DROP + "avg"]
    logged = [[_mean([float(r.metrics[k]) for r in rows[n] if finite(r.metrics.get(k))]) for k in keys]
              for n in names]
    theta0 = _mean([row[0] for row in logged if math.isfinite(row[0])])
    out.append(f"| avg (logged) | {fmt(theta0)} | " + " | ".join(f"{fmt(row[1])} | {fmt(row[2])}" for row in logged)
               + " |")
    if group_by:
        out += ["", f"Grouped by {group_by}; a group's line is the mean of its languages' lines."]
    return "\n".join(out) + "\n"
