"""Tune callback -> MLflow: one child run per trial under the sweep's parent run, written from the driver
process only (through :class:`lfmlf.tracking.SweepTracker`)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ray import tune

from lfmlf.sweep.trainable import RerunSpecs, SweepSpecs
from lfmlf.tracking import SweepTracker
from lfmlf.trial_record import record_end, record_evaluation, record_start, run_tags


class TrackingCallback(tune.Callback):
    """Forwards Tune's trial events to MLflow: one child run per trial under the sweep's parent run, reused
    when the trial resumes. Tune pickles callbacks into the experiment state and restores them with
    ``Tuner.restore``, so this holds only picklable settings and opens its MLflow client lazily."""

    def __init__(self, uri: str, experiment: str, parent_id: str, specs: SweepSpecs | RerunSpecs,
                 searcher: Any = None, lineage_tags: dict[str, str] | None = None) -> None:
        self.uri, self.experiment, self.parent_id = uri, experiment, parent_id
        self.specs, self.searcher = specs, searcher
        self.lineage_tags = lineage_tags or {}   # git commit, model id and revision: the same for every trial
        self._tracker: SweepTracker | None = None
        self._logged: dict[str, int] = {}   # trial id -> last step written (results repeat after a restore)
        self._started: dict[str, float] = {}   # trial id -> when Tune (re)started it, until its first result
        self._nodes: dict[str, list[str]] = {}   # trial id -> Ray node ids it reported from, in order
        self._diverged: dict[str, str] = {}      # trial id -> why its loss diverged

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tracker": None}

    @property
    def tracker(self) -> SweepTracker:
        if self._tracker is None:
            self._tracker = SweepTracker(self.uri, self.experiment)
            self._tracker.attach(self.parent_id)
        return self._tracker

    def _link_optuna(self, trial_id: str, run_id: str) -> None:
        """The Optuna trial carries its MLflow run id (user attribute ``mlflow_run_id``): linked both ways."""
        if self.searcher is not None:
            self.searcher.link_run(trial_id, run_id)

    def _optuna_number(self, trial_id: str) -> dict[str, str]:
        if self.searcher is None:
            return {}
        number = self.searcher.optuna_trial(trial_id)
        return {"lfmlf.optuna_trial": str(number) if number is not None else "unknown"}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        spec = self.specs(trial.config)
        tags = {**run_tags(spec), **self._optuna_number(trial.trial_id), **self.specs.tags(trial.config),
                "lfmlf.trial_dir": self.specs.trial_location(trial)}
        fresh = self.tracker.run_id(trial.trial_id) is None
        run_id = self.tracker.trial_run(trial.trial_id, self.specs.run_name(trial.config, trial.trial_id),
                                        spec.flat_params(), {**tags, **self.lineage_tags})
        if fresh:
            record_start(self.tracker, run_id, spec)
            self._link_optuna(trial.trial_id, run_id)
        if trial.trial_id not in self._logged:
            self._logged[trial.trial_id] = self.tracker.last_step(run_id)
        self._started[trial.trial_id] = time.time()   # Tune calls this once the trial's actor is up
        if trial.trial_id not in self._nodes:   # a resumed driver keeps the nodes the trial already ran on
            self._nodes[trial.trial_id] = [n for n in self.tracker.tag(run_id, "lfmlf.nodes").split(",") if n]

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self.tracker.run_id(trial.trial_id)
        step = int(result.get("step", 0))
        if run_id is not None and result.get("diverged"):
            self._diverged[trial.trial_id] = str(result.get("diverged_reason", "the loss diverged"))
            self.tracker.set_tags(run_id, {"lfmlf.diverged": "true",
                                           "lfmlf.error": self._diverged[trial.trial_id][-4000:]})
            return
        if run_id is None or step <= self._logged.get(trial.trial_id, -1):
            return
        started = self._started.pop(trial.trial_id, None)
        if started is not None and isinstance(result.get("perf/wall_s"), float):
            # the trial's first result since Tune started it: what the loop did not see of its start-up (the
            # trainable's set-up and imports, the checkpoint read on a resume) is the rest of the time since then.
            # The actor process's own creation comes before Tune's on_trial_start and is not in it
            result = {**result, "perf/actor_start_s": max(0.0, time.time() - started - result["perf/wall_s"])}
        record_evaluation(self.tracker, run_id, result, step)
        self._logged[trial.trial_id] = step
        node = result.get("node_id")
        if isinstance(node, str) and node not in self._nodes.setdefault(trial.trial_id, []):
            self._nodes[trial.trial_id].append(node)   # a trial retried on another node lists both, in order
            self.tracker.set_tags(run_id, {"lfmlf.node_id": node,
                                           "lfmlf.nodes": ",".join(self._nodes[trial.trial_id])})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.tracker.run_id(trial.trial_id)
        if run_id is None:
            return
        last = trial.last_result or {}
        if trial.trial_id in self._diverged or last.get("diverged"):   # a result, but not a finished trial
            self.tracker.finish_trial(trial.trial_id, "FAILED")
            return
        record_end(self.tracker, run_id, last, max_steps=self.specs(trial.config).train.max_steps)
        self.tracker.finish_trial(trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.tracker.run_id(trial.trial_id)
        if run_id is not None:
            self.tracker.set_tags(run_id, {"lfmlf.error": _trial_error(trial)[-4000:]})
        self.tracker.finish_trial(trial.trial_id, "FAILED")


def _trial_error(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        return Path(path).read_text(errors="replace")
    return "the trial failed; see its error.txt in the Ray results folder"
