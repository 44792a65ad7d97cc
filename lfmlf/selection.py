"""What a selection metric means: the label that every ``best`` file, sweep parameter and table caption uses.

Model selection picks a trial (and, inside a trial, a checkpoint) by one metric key. Which data that key
was computed on decides whether the results that follow are zero-shot:

* ``source-dev``: a ``source/...`` key (``best/source/f1/avg``, ``source/acc/de``): source-language dev data
  only. No target-language data is used, so the target scores stay zero-shot (the faithful protocol).
* ``oracle``: any key with a ``zero_shot`` component (``best/zero_shot/f1/avg``, ``zero_shot/f1/de``):
  computed on target-language data (``task.target_split``: dev, or test, which is worse still). Results
  selected this way are **not** zero-shot; they show what an oracle would pick.
* ``other``: anything else (``train/loss/task/en``, ``best/forgetting/retrieval_acc/avg``), named as is.

The key's leading ``best/`` (the value at a trial's selected checkpoint) does not change its kind. Pure
standard library: the sweep driver, ``lfmlf best`` and the report all call :func:`selection_label`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["KINDS", "Selection", "SelectionKind", "oracle_metric", "selection_label"]

SelectionKind = Literal["source-dev", "oracle", "other"]
KINDS: tuple[SelectionKind, ...] = ("source-dev", "oracle", "other")


@dataclass(frozen=True)
class Selection:
    """The meaning of one selection metric (see the module docstring)."""

    metric: str           # the key as given, e.g. "best/zero_shot/f1/avg"
    kind: SelectionKind   # "source-dev" | "oracle" | "other"
    label: str            # short, for rules and parameters: "source-language dev", "target-language dev (oracle)"
    sentence: str         # one clause for captions and rule texts: "selected on ... (...)"
    marker: str           # what a table row selected this way carries next to its method ("" when faithful)

    @property
    def is_oracle(self) -> bool:
        """Selected on target-language data: the results are not zero-shot."""
        return self.kind == "oracle"

    @property
    def zero_shot_faithful(self) -> bool:
        """Selected on source-language dev data only."""
        return self.kind == "source-dev"


def _parts(metric: str) -> list[str]:
    parts = [p for p in metric.strip().split("/") if p]
    return parts[1:] if parts[:1] == ["best"] else parts


def selection_label(metric: str, target_split: str | None = None) -> Selection:
    """The :class:`Selection` of a metric key. ``target_split`` (the sweep's ``task.target_split``: the split
    the ``zero_shot/...`` keys are computed on) only sharpens the wording of an oracle label; without it the
    label says "target-language data"."""
    parts = _parts(metric)
    if "zero_shot" in parts:
        split = {"dev": "dev", "test": "test"}.get((target_split or "").strip().lower(), "")
        where = f"target-language {split}" if split else "target-language data"
        extra = ("; the selection saw the very test data the table reports" if split == "test" else "")
        return Selection(metric=metric, kind="oracle", label=f"{where} (oracle)",
                         sentence=f"selected on {where} by {metric} (oracle: not zero-shot{extra})",
                         marker=f"oracle: target {split or 'data'}")
    if parts[:1] == ["source"]:
        return Selection(metric=metric, kind="source-dev", label="source-language dev",
                         sentence=(f"selected on source-language dev by {metric} (zero-shot-faithful: "
                                   "no target-language data used)"),
                         marker="")
    return Selection(metric=metric, kind="other", label=metric,
                     sentence=f"selected on {metric} (neither a source-language dev nor a target-language key)",
                     marker="")


def oracle_metric(task_metric: str, prefix: str = "best/") -> str:
    """The key an oracle selects on: the target-language average at each trial's selected checkpoint,
    e.g. ``best/zero_shot/f1/avg``."""
    return f"{prefix}zero_shot/{task_metric}/avg"
