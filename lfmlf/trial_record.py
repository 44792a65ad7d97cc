"""What every trial's MLflow run records, whoever runs the trial: a swept trial and a rerun seed (through the
Tune callback in :mod:`lfmlf.sweep.callbacks`) and ``lfmlf train`` (in this process, no Ray). One copy, so
the three kinds of run cannot drift apart; the caller owns the run's life (create or reuse, end status).

Called in this order: :func:`run_tags` and :func:`TrialSpec.flat_params` when the run is created,
:func:`record_start` once per run (never again when a trial resumes), :func:`record_evaluation` after every
evaluation, :func:`record_end` when the trial ends with a result (finished, or stopped early)."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import yaml

from lfmlf.lineage import trial_files
from lfmlf.redaction import redact_data

if TYPE_CHECKING:
    from lfmlf.config import TrialSpec
    from lfmlf.tracking import SweepTracker

#: The metric families of a run's ``final_metrics.json``: the selected evaluation, the last one's scores,
#: the forgetting probe and the averaged checkpoint's.
FINAL_PREFIXES = ("best/", "zero_shot/", "source/", "forgetting/", "avg/")


def run_tags(spec: TrialSpec) -> dict[str, str]:
    """The tags every trial run carries: its method, its source set, and ``lfmlf.source.<lang>`` = true for
    each source language (so the UI can filter runs by a language)."""
    return {"lfmlf.method": spec.method, "lfmlf.source_set": "+".join(spec.sources),
            **{f"lfmlf.source.{s}": "true" for s in spec.sources}}


def record_start(tracker: SweepTracker, run_id: str, spec: TrialSpec) -> None:
    """What the numbers came from: the trial's full configuration (``trial_config.yaml``, secrets redacted)
    and its data files as MLflow dataset inputs (name, path, size, sha256)."""
    tracker.log_text(run_id, yaml.safe_dump(redact_data(spec.model_dump(mode="json")), sort_keys=False),
                     "trial_config.yaml")
    tracker.log_data_files(run_id, trial_files(spec))


def record_evaluation(tracker: SweepTracker, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
    """One evaluation's metrics (the slashed keys: ``zero_shot/f1/fr``, ``lfmlf/lambda/en``, ...) at ``step``."""
    tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if "/" in k and isinstance(v, (int, float))},
                        step=step)


def record_end(tracker: SweepTracker, run_id: str, metrics: Mapping[str, Any], *, max_steps: int) -> None:
    """The last result: ``final_metrics.json`` and ``lfmlf.stopped_early`` (whether it ended before
    ``max_steps``, e.g. stopped by ASHA: such a score is not a finished trial's)."""
    done = int(metrics.get("step", 0)) >= max_steps
    tracker.set_tags(run_id, {"lfmlf.stopped_early": str(not done).lower()})
    final = {k: v for k, v in metrics.items() if k.startswith(FINAL_PREFIXES)}
    tracker.log_text(run_id, json.dumps(final, indent=2, sort_keys=True), "final_metrics.json")
