"""Which runs a report counts: plain :class:`RunRecord` values and the reasons a run is left out.

A run counts when it is FINISHED and was not stopped early by ASHA (and, where a metric is asked for, has a
finite value of it); :func:`exclusion` says why another does not. ``lfmlf best`` applies the same rule.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

STOPPED_EARLY_TAG = "lfmlf.stopped_early"


@dataclass(frozen=True)
class RunRecord:
    """One MLflow run, as plain values."""

    run_id: str
    status: str                  # MLflow status: FINISHED | FAILED | KILLED | RUNNING
    method: str                  # e.g. "mlf", "lfmlf"
    source_set: str              # canonical "de+en+es"
    seed: int | None             # train seed (reruns); None for sweep trials
    metrics: dict[str, float]    # last logged values, e.g. "best/zero_shot/f1/fr"
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    url: str = ""

    @property
    def stopped_early(self) -> bool:
        return self.tags.get(STOPPED_EARLY_TAG, "").strip().lower() == "true"

    def describe(self) -> str:
        """``run abc123 (lfmlf, de+en, seed 2)``, the form used in left-out notes."""
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"run {self.run_id} ({self.method}, {self.source_set}{seed})"

    def last_step(self) -> int | None:
        """The last step any fetched metric history reached (None without histories)."""
        steps = [int(step) for points in self.history.values() for step, _ in points]
        return max(steps) if steps else None


def finite(x: object) -> bool:
    """Whether ``x`` is a finite number (not a bool, not None, not NaN or infinite)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _stopped_text(r: RunRecord) -> str:
    """``stopped early by ASHA (at step 20 of 80)``, as far as the record tells."""
    try:
        total: int | None = int(float(r.params.get("train.max_steps", "")))
    except ValueError:
        total = None
    step = r.last_step()
    if step is not None and total is not None:
        return f"stopped early by ASHA (at step {step} of {total})"
    if step is not None:
        return f"stopped early by ASHA (at step {step})"
    if total is not None:
        return f"stopped early by ASHA (before step {total})"
    return "stopped early by ASHA"


def exclusion(r: RunRecord, metric: str | None = None) -> str | None:
    """Why ``r`` may not be selected or counted (None: it may): not FINISHED (its status), stopped early by
    ASHA (a FINISHED run tagged ``lfmlf.stopped_early=true``), or, given ``metric``, without a finite
    value of it."""
    if r.status != "FINISHED":
        return r.status
    if r.stopped_early:
        return _stopped_text(r)
    if metric is not None and not finite(r.metrics.get(metric)):
        return f"no finite {metric}"
    return None


def no_eligible_reason(runs: list[RunRecord], metric: str | None = None, what: str = "trial") -> str:
    """``no eligible trial (3 stopped early by ASHA, 1 FAILED)`` for a method whose ``runs`` none count."""
    if not runs:
        return f"no {what} run"
    reasons: dict[str, int] = defaultdict(int)
    for r in runs:
        why = exclusion(r, metric) or "eligible"
        reasons["stopped early by ASHA" if why.startswith("stopped early") else why] += 1
    return f"no eligible {what} (" + ", ".join(f"{n} {why}" for why, n in reasons.items()) + ")"


def sweep_left_out(runs: list[RunRecord], metric: str | None = None) -> list[str]:
    """Sweep trials that may not be selected and are left out of the heatmaps and importances, each with its
    reason (:func:`exclusion`: not FINISHED, stopped early by ASHA, or no finite ``metric``)."""
    out = []
    for r in runs:
        why = exclusion(r, metric)
        if why is not None:
            out.append(f"{r.describe()}: {why}")
    return out


def merge_left_out(*lists: list[str]) -> list[str]:
    """One left-out list: the lines of every list in order, each once."""
    return list(dict.fromkeys(line for lines in lists for line in lines))
