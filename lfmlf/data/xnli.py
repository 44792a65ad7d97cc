"""Reader for XNLI-style TSV files (``premise <TAB> hypothesis <TAB> label``) and the premise-grouped split.

XTREME's XNLI files (``dev-<lang>.tsv``) have no header and three columns; labels are ``entailment``,
``neutral``, ``contradiction`` (``contradictory``, used by XTREME's translated MultiNLI training files, is
read as ``contradiction``). A file whose first line is a header naming its columns (``premise`` or
``sentence1``, ``hypothesis``/``hypo``/``sentence2``, ``label``/``gold_label``) is read by those names, so
the original XNLI 1.0 files (15 columns) work too. Files are read as UTF-8 (a BOM is ignored, CRLF line
ends are fine); blank lines are skipped. Fields are not quoted: a premise may hold ``"``.

Every malformed line raises :class:`~lfmlf.data.base.DataError` naming ``file:line`` and the fix.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lfmlf.data.base import DataError, read_text_lines

__all__ = ["NLI_LABELS", "NliPair", "normalise_label", "read_xnli", "split_by_premise"]

#: The label order of the hub's XNLI (``facebook/xnli``: 0 entailment, 1 neutral, 2 contradiction).
NLI_LABELS: tuple[str, ...] = ("entailment", "neutral", "contradiction")

_ALIASES = {"entailment": "entailment", "neutral": "neutral", "contradiction": "contradiction",
            "contradictory": "contradiction"}
_HEADER = {"premise": "premise", "sentence1": "premise", "hypothesis": "hypothesis", "hypo": "hypothesis",
           "sentence2": "hypothesis", "label": "label", "gold_label": "label"}


@dataclass(frozen=True)
class NliPair:
    """One premise-hypothesis pair and its label (one of :data:`NLI_LABELS`)."""

    premise: str
    hypothesis: str
    label: str


def normalise_label(label: str) -> str | None:
    """The canonical label for a spelling used by an XNLI source, or None if it is not one."""
    return _ALIASES.get(label.strip().lower())


def read_xnli(path: str | Path) -> list[NliPair]:
    """Every pair of an XNLI TSV file (see the module docstring for the layouts)."""
    p = Path(path)
    lines = read_text_lines(p, "XNLI", ".tsv")

    cols = {"premise": 0, "hypothesis": 1, "label": 2}
    width = 3
    pairs: list[NliPair] = []
    first = True
    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if first:
            first = False
            names = [_HEADER.get(f.strip().lower()) for f in fields]
            if "label" in names and normalise_label(fields[names.index("label")]) is None:
                if not {"premise", "hypothesis"} <= set(names):
                    raise DataError(f"{p}:{lineno}: the header {line[:80]!r} does not name a premise and a "
                                    "hypothesis column. Fix: name them premise (or sentence1) and hypothesis "
                                    "(or sentence2), or drop the header")
                cols = {n: names.index(n) for n in ("premise", "hypothesis", "label")}
                width = len(fields)
                continue
        if len(fields) != width:
            hint = " (columns must be TAB-separated)" if len(fields) == 1 else ""
            raise DataError(f"{p}:{lineno}: expected {width} tab-separated columns (premise, hypothesis, "
                            f"label), got {len(fields)}{hint}: {line[:80]!r}. Fix: remove tabs inside the "
                            "sentences or repair the line")
        premise, hypothesis = fields[cols["premise"]].strip(), fields[cols["hypothesis"]].strip()
        label = normalise_label(fields[cols["label"]])
        if label is None:
            raise DataError(f"{p}:{lineno}: unknown label {fields[cols['label']]!r}. Fix: use one of "
                            f"{', '.join(NLI_LABELS)} (or contradictory)")
        if not premise or not hypothesis:
            raise DataError(f"{p}:{lineno}: empty premise or hypothesis: {line[:80]!r}. Fix: repair or "
                            "remove the line")
        pairs.append(NliPair(premise, hypothesis, label))
    return pairs


def split_by_premise(pairs: Sequence[NliPair], fraction: float, seed: int = 0
                     ) -> tuple[list[NliPair], list[NliPair]]:
    """(rest, held_out): ``round(fraction * P)`` of the P distinct premises (at least one, and at least one
    left, when P >= 2), drawn with ``seed``, and all their pairs are held out, so no premise is in both
    parts. Pair order within each part is kept.

    The draw is over premise *positions* (order of first appearance), not their text: in parallel files
    (XNLI's languages are translations of the same pairs, in the same order) the same premises are held
    out in every language, so a premise never trains in one language and selects models in another.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in (0, 1), got {fraction}")
    order: dict[str, int] = {}
    for pair in pairs:
        order.setdefault(pair.premise, len(order))
    n = len(order)
    k = round(fraction * n)
    if n and (k == 0 or k == n):
        k = min(max(k, 1), n - 1) if n > 1 else 0
    held = set(random.Random(seed).sample(range(n), n)[:k])
    rest = [pair for pair in pairs if order[pair.premise] not in held]
    out = [pair for pair in pairs if order[pair.premise] in held]
    return rest, out
