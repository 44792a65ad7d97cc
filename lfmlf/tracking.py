"""MLflow: one parent run per sweep, one child run per trial. The only module that imports MLflow.

Everything is written from one process (the sweep driver), so a SQLite store is never written
concurrently. Runs are found again by tags, which makes a resumed sweep reuse its parent run and every
trial's run instead of creating duplicates:

- parent: ``lfmlf.sweep_dir`` = the sweep's run folder, ``lfmlf.role`` = ``sweep``
- child:  ``mlflow.parentRunId``, ``lfmlf.tune_trial_id``, ``lfmlf.optuna_trial``, ``lfmlf.method``,
  ``lfmlf.source_set``, and ``lfmlf.source.<lang>`` = ``true`` for every source language.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Mapping

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(cli: str | None, yaml: str | None) -> str:
    """``--tracking-uri``, else the YAML's ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file
    ``mlflow.db`` in the working directory (made absolute, so Ray workers and later commands agree)."""
    uri = cli or yaml or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


def _quiet() -> None:
    """MLflow's first use of a new SQLite store prints database-migration logs; keep the console readable."""
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


class SweepTracker:
    """Writes a sweep and its trials to MLflow through ``MlflowClient`` (no global active-run state)."""

    def __init__(self, uri: str, experiment: str) -> None:
        _quiet()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(experiment)
        self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        self.parent_id: str | None = None
        self._trial_runs: dict[str, str] = {}

    # ------------------------------------------------------------------ sweep
    def start_sweep(self, name: str, sweep_dir: str, params: Mapping[str, str], tags: Mapping[str, str],
                    resume: bool) -> str:
        """Create the sweep's parent run, or on resume find it again (by its run folder) and reopen it."""
        if resume:
            found = self._search(f"tags.`lfmlf.sweep_dir` = '{sweep_dir}' and tags.`lfmlf.role` = 'sweep'")
            if found:
                self.attach(found[0].info.run_id)
                self.client.update_run(found[0].info.run_id, status="RUNNING")
                return found[0].info.run_id
        from mlflow.entities import Param, RunTag

        run = self.client.create_run(self.experiment_id, run_name=name,
                                     tags={"lfmlf.role": "sweep", "lfmlf.sweep_dir": sweep_dir, **tags})
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, _clip(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        return self.parent_id

    def finish_sweep(self, status: str, metrics: Mapping[str, float] | None = None) -> int:
        """Close the sweep run. Trial runs still open then belong to trials that Tune lost when an
        interrupted driver had not yet saved them (Tune re-runs those under new ids): they are marked
        KILLED and counted, so the UI shows no run as forever RUNNING. Returns that count."""
        if self.parent_id is None:
            return 0
        lost = 0
        if status == "FINISHED":
            for run in self._search(f"tags.`mlflow.parentRunId` = '{self.parent_id}' and attributes.status = 'RUNNING'"):
                self.client.log_batch(run.info.run_id, tags=[_tag("lfmlf.lost_in_interrupt", "true")])
                self.client.set_terminated(run.info.run_id, status="KILLED")
                lost += 1
        if metrics:
            self.log_metrics(self.parent_id, metrics, step=0)
        self.client.set_terminated(self.parent_id, status=status)
        return lost

    def attach(self, parent_id: str) -> None:
        """Use an existing sweep run as parent and learn the trial runs it already has."""
        self.parent_id = parent_id
        for run in self._search(f"tags.`mlflow.parentRunId` = '{parent_id}'"):
            trial_id = run.data.tags.get("lfmlf.tune_trial_id")
            if trial_id:
                self._trial_runs[trial_id] = run.info.run_id

    def last_step(self, run_id: str, key: str = "perf/steps_per_s") -> int:
        """The last step at which ``key`` was logged to a run (-1 if never)."""
        history = self.client.get_metric_history(run_id, key)
        return max((m.step for m in history), default=-1)

    # ------------------------------------------------------------------ trials
    def trial_run(self, trial_id: str, run_name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> str:
        """The trial's run: reused if this Tune trial already has one (resume, restart), else created."""
        from mlflow.entities import Param, RunTag

        if trial_id in self._trial_runs:
            run_id = self._trial_runs[trial_id]
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        all_tags = {"mlflow.parentRunId": self.parent_id or "", "lfmlf.tune_trial_id": trial_id, **tags}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, _clip(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in all_tags.items()])
        self._trial_runs[trial_id] = run_id
        return run_id

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):   # MLflow's batch limit
            self.client.log_batch(run_id, metrics=batch[i:i + 1000])

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def finish_trial(self, trial_id: str, status: str) -> None:
        run_id = self._trial_runs.get(trial_id)
        if run_id is not None:
            self.client.set_terminated(run_id, status=status)

    def run_id(self, trial_id: str) -> str | None:
        return self._trial_runs.get(trial_id)

    def _search(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=5000)


def _tag(key: str, value: str):
    from mlflow.entities import RunTag

    return RunTag(key, value)


def _clip(value: object) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."
