"""MLflow: one parent run per sweep, one child run per trial. The only module that imports MLflow.

Everything is written from one process (the sweep driver), so a SQLite store is never written
concurrently. Runs are found again by tags, which makes a resumed sweep reuse its parent run and every
trial's run instead of creating duplicates:

- parent: ``lfmlf.sweep_dir`` = the sweep's run folder, ``lfmlf.role`` = ``sweep``
- child:  ``mlflow.parentRunId``, ``lfmlf.tune_trial_id``, ``lfmlf.optuna_trial``, ``lfmlf.method``,
  ``lfmlf.source_set``, and ``lfmlf.source.<lang>`` = ``true`` for every source language.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock

from lfmlf.errors import UserError
from lfmlf.report import RunRecord
from lfmlf.storage import redact

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_uri(cli: str | None, yaml: str | None) -> str:
    """``--tracking-uri``, else the YAML's ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a SQLite file
    ``mlflow.db`` in the working directory (made absolute, so Ray workers and later commands agree)."""
    uri = cli or yaml or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri[len("sqlite:///"):]).resolve())
    return uri


class TrackingError(UserError):
    """The tracking store cannot be used (unwritable folder, unreachable server, not a database)."""


def check_store(uri: str, timeout_s: float = 10.0) -> None:
    """Called before a sweep, rerun or training run writes anything: raise :class:`TrackingError` naming
    the store and the fix if it cannot be opened. A SQLite store's folder must be a writable directory, and
    an existing database file must open (a new one is not created here); a server must answer ``/health``
    within ``timeout_s`` (MLflow's own client would retry for minutes); any other store is opened once."""
    shown = redact(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise TrackingError(f"the MLflow store {shown} cannot be created: its folder {db.parent} cannot be "
                                f"made ({e.strerror or e}). Fix: pass --tracking-uri sqlite:///<a writable "
                                "folder>/mlflow.db, or an http(s):// MLflow server.") from None
        if not os.access(db.parent, os.W_OK) or (db.exists() and not db.is_file()):
            raise TrackingError(f"the MLflow store {shown} is not writable. Fix: pass --tracking-uri "
                                "sqlite:///<a writable folder>/mlflow.db, or an http(s):// MLflow server.")
        if not db.exists():
            return   # a new store: its folder will do, and nothing is written yet
    elif uri.startswith(("http://", "https://")):

        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s).close()
        except urllib.error.HTTPError:
            pass   # it answered: authentication and paths are MLflow's business
        except (OSError, ValueError) as e:
            raise TrackingError(f"the MLflow server {shown} does not answer ({getattr(e, 'reason', e)}). Fix: start "
                                "it (mlflow server --host ... --port ...), check the address, or pass "
                                "--tracking-uri sqlite:///$PWD/mlflow.db for a local store.") from None
        return
    try:
        open_store(uri, None, create=False)[0].search_experiments(max_results=1)
    except Exception as e:
        line = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise TrackingError(f"the MLflow store {shown} cannot be opened: {line}. Fix: point --tracking-uri (or "
                            "tracking.uri, MLFLOW_TRACKING_URI) at a working store, e.g. "
                            "sqlite:///$PWD/mlflow.db.") from None


def location_key(location: str) -> str:
    """A hex key for a sweep's storage location (tag ``lfmlf.sweep_key``). MLflow's filter strings cannot
    quote every value (a path holding both ``'`` and ``"`` has no spelling that matches), so runs are found
    by this key, never by the path itself."""
    return hashlib.sha256(location.encode("utf-8")).hexdigest()[:24]


def _literal(value: str) -> str:
    """``value`` quoted for an MLflow filter string; only ids and keys (letters, digits, ``_.-:``) go
    into filters, so anything else is a bug, not a user error."""
    if not value or not all(c.isalnum() or c in "_.-:" for c in value):
        raise ValueError(f"not a safe MLflow filter value: {value!r}")
    return f"'{value}'"


def _quiet() -> None:
    """MLflow's first use of a new SQLite store prints database-migration logs; keep the console readable."""
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for any other store)."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def open_store(uri: str, experiment: str | None, create: bool) -> tuple[MlflowClient, str | None]:
    """(MlflowClient, experiment id) for ``uri``. The first use of a SQLite store runs MLflow's schema
    migrations, and two processes doing that at once can leave the file broken for good, so every open of
    a SQLite store happens under a file lock beside it (``<db>.lock``). On a server, creating an experiment
    another sweep has just created is not an error: the existing one is used. A new experiment of a SQLite
    store keeps its artifacts beside the database (``<db folder>/mlartifacts``), wherever the command runs."""
    from mlflow.exceptions import MlflowException  # lazy: MLflow loads only when a store is opened
    from mlflow.tracking import MlflowClient

    _quiet()
    db = sqlite_path(uri)
    lock = FileLock(str(db) + ".lock", timeout=300) if db is not None else contextlib.nullcontext()
    with lock:
        client = MlflowClient(tracking_uri=uri)
        if experiment is None:
            return client, None
        for attempt in range(5):
            exp = client.get_experiment_by_name(experiment)
            if exp is not None:
                return client, exp.experiment_id
            if not create:
                return client, None
            try:
                location = (db.resolve().parent / "mlartifacts").as_uri() if db is not None else None
                return client, client.create_experiment(experiment, artifact_location=location,
                                                        tags={"mlflow.experimentKind": "custom_model_development"})
            except MlflowException as e:
                if "RESOURCE_ALREADY_EXISTS" not in str(e.error_code) and "already exists" not in str(e):
                    raise
                time.sleep(0.2 * (attempt + 1))   # another sweep created it: read it back
        raise RuntimeError(f"MLflow experiment {experiment!r} could neither be found nor created in {uri}")


class SweepTracker:
    """Writes a sweep and its trials to MLflow through ``MlflowClient`` (no global active-run state)."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.client, experiment_id = open_store(uri, experiment, create=True)
        self.experiment_id: str = experiment_id or ""
        self.parent_id: str | None = None
        self._trial_runs: dict[str, str] = {}

    # ------------------------------------------------------------------ sweep
    def start_sweep(self, name: str, sweep_dir: str, params: Mapping[str, str], tags: Mapping[str, str],
                    resume: bool, role: str = "sweep") -> str:
        """Create the sweep's (or rerun's) parent run, or on resume find it again (by its run folder) and
        reopen it."""
        if resume:
            found = self._search(f"tags.`lfmlf.sweep_key` = {_literal(location_key(sweep_dir))} "
                                 f"and tags.`lfmlf.role` = {_literal(role)}")
            if found:
                self.attach(found[0].info.run_id)
                self.client.update_run(found[0].info.run_id, status="RUNNING")
                return found[0].info.run_id
        return self.create_parent(name, role, params, {"lfmlf.sweep_dir": sweep_dir,
                                                       "lfmlf.sweep_key": location_key(sweep_dir), **tags})

    def create_parent(self, name: str, role: str, params: Mapping[str, str], tags: Mapping[str, str]) -> str:
        """A new top-level run (``lfmlf.role`` = sweep, rerun or train) that trial runs nest under."""
        from mlflow.entities import Param, RunTag  # lazy: MLflow

        all_tags = {"lfmlf.role": role, **tags}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        self.parent_id = run.info.run_id
        self.client.log_batch(self.parent_id, params=[Param(k, _clip(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in all_tags.items()])
        return self.parent_id

    def finish_sweep(self, status: str, metrics: Mapping[str, float] | None = None) -> int:
        """Close the sweep run. Trial runs still open then belong to trials that Tune lost when an
        interrupted driver had not yet saved them (Tune re-runs those under new ids): they are marked
        KILLED and counted, so the UI shows no run as forever RUNNING. Returns that count."""
        if self.parent_id is None:
            return 0
        lost = 0
        if status == "FINISHED":
            for run in self._search(f"tags.`mlflow.parentRunId` = {_literal(self.parent_id)} "
                                    "and attributes.status = 'RUNNING'"):
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
        for run in self._search(f"tags.`mlflow.parentRunId` = {_literal(parent_id)}"):
            trial_id = run.data.tags.get("lfmlf.tune_trial_id")
            if trial_id:
                self._trial_runs[trial_id] = run.info.run_id

    def last_step(self, run_id: str, key: str = "perf/steps_per_s") -> int:
        """The last step at which ``key`` was logged to a run (-1 if never)."""
        history = self.client.get_metric_history(run_id, key)
        return max((m.step for m in history), default=-1)

    # ------------------------------------------------------------------ trials
    def trial_run(self, trial_id: str, run_name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> str:
        """The trial's run: reused if this Tune trial already has one (resume, restart), else created. A reused
        run that had errored loses its ``lfmlf.error`` tag (the trial is running again; what it ends as is
        what it says) and keeps ``lfmlf.resumed_after_error`` so the earlier failure stays visible."""
        from mlflow.entities import Param, RunTag  # lazy: MLflow

        if trial_id in self._trial_runs:
            run_id = self._trial_runs[trial_id]
            self.client.update_run(run_id, status="RUNNING")
            if self.tag(run_id, "lfmlf.error"):
                self.client.delete_tag(run_id, "lfmlf.error")
                self.set_tags(run_id, {"lfmlf.resumed_after_error": "true"})
            return run_id
        all_tags = {"mlflow.parentRunId": self.parent_id or "", "lfmlf.tune_trial_id": trial_id, **tags}
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
        run_id = run.info.run_id
        self.client.log_batch(run_id, params=[Param(k, _clip(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in all_tags.items()])
        self._trial_runs[trial_id] = run_id
        return run_id

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag  # lazy: MLflow

        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_data_files(self, run_id: str, files: list) -> None:
        """Record the data files a run read as MLflow dataset inputs (``lfmlf.lineage.DataFile``: name,
        context, path, size, sha256), so the run page shows what its numbers came from."""
        from mlflow.entities import Dataset, DatasetInput, InputTag  # lazy: MLflow

        inputs = [DatasetInput(Dataset(name=f.name, digest=f.sha256[:16], source_type="local",
                                       source=json.dumps({"uri": f.path}),
                                       profile=json.dumps({"size_bytes": f.size, "sha256": f.sha256})),
                               tags=[InputTag("mlflow.data.context", f.context)]) for f in files]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def tag(self, run_id: str, key: str) -> str:
        """A tag of a run ("" when it has none)."""
        return self.client.get_run(run_id).data.tags.get(key, "")

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric  # lazy: MLflow

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

    # ------------------------------------------------------------------ derived runs (lfmlf interpolate)
    # Runs computed from a finished trial without training (no Tune trial id): found again by their tags.
    def derived_runs(self, parent_id: str, tags: Mapping[str, str]) -> list[tuple[str, str, dict[str, str]]]:
        """(run id, status, tags) of each child run of ``parent_id`` carrying all of ``tags`` (keys and values
        are ids and numbers: letters, digits, ``_.-:``); called before a derived run is created, to skip or
        reuse the ones an earlier, interrupted command already made."""
        where = " and ".join([f"tags.`mlflow.parentRunId` = {_literal(parent_id)}"]
                             + [f"tags.`{k}` = {_literal(v)}" for k, v in tags.items()])
        return [(r.info.run_id, r.info.status, dict(r.data.tags)) for r in self._search(where)]

    def derived_run(self, parent_id: str, run_name: str, params: Mapping[str, str], tags: Mapping[str, str]) -> str:
        """A new child run of ``parent_id`` (an existing sweep or rerun run, whose status is left alone)
        with ``params`` and ``tags``; returns its id. End it with :meth:`end_run`."""
        from mlflow.entities import Param, RunTag  # lazy: MLflow

        all_tags = {"mlflow.parentRunId": parent_id, **tags}
        run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.client.log_batch(run_id, params=[Param(k, _clip(v)) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in all_tags.items()])
        return run_id

    def end_run(self, run_id: str, status: str) -> None:
        """Close a run by its id (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(run_id, status=status)
    # ------------------------------------------------------------------ end of derived runs

    def _search(self, filter_string: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=5000)


def _tag(key: str, value: str):
    from mlflow.entities import RunTag  # lazy: MLflow

    return RunTag(key, value)


def _clip(value: object) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


# ------------------------------------------------------------------------------------------ reading back
class RunStore:
    """Reads sweeps, reruns and their runs back from MLflow as plain records (for best, report)."""

    def __init__(self, uri: str, experiment: str) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        self.uri = uri
        self.client, self.experiment_id = open_store(uri, experiment, create=False)

    def _search(self, filter_string: str, order_by: list[str] | None = None) -> list:
        if self.experiment_id is None:
            return []
        return self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=5000,
                                       order_by=order_by or ["attributes.start_time DESC"])

    def sweep_run(self, sweep_dir: str) -> str | None:
        """The newest sweep run of a run folder."""
        found = self._search(f"tags.`lfmlf.sweep_key` = {_literal(location_key(sweep_dir))} "
                             "and tags.`lfmlf.role` = 'sweep'")
        return found[0].info.run_id if found else None

    def reruns_of(self, sweep_run_id: str) -> list[str]:
        """Rerun parents made from this sweep's best configurations, newest first."""
        return [r.info.run_id for r in self._search(
            f"tags.`lfmlf.role` = 'rerun' and tags.`lfmlf.sweep_run_id` = {_literal(sweep_run_id)}")]

    def tags(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.tags)

    def params(self, run_id: str) -> dict[str, str]:
        return dict(self.client.get_run(run_id).data.params)

    def children(self, parent_id: str, histories: tuple[str, ...] = ()):  # -> list[RunRecord]
        """Every child run as a RunRecord; ``histories``: metric-name prefixes whose step histories to fetch."""
        out = []
        for run in self._search(f"tags.`mlflow.parentRunId` = {_literal(parent_id)}", ["attributes.start_time ASC"]):
            d = run.data
            hist = {k: sorted((m.step, m.value) for m in self.client.get_metric_history(run.info.run_id, k))
                    for k in d.metrics if histories and k.startswith(histories)}
            seed = d.tags.get("lfmlf.seed")
            out.append(RunRecord(run_id=run.info.run_id, status=run.info.status, method=d.params.get("method", "?"),
                                 source_set=d.params.get("source_set", ""), seed=int(seed) if seed else None,
                                 metrics=dict(d.metrics), params=dict(d.params), tags=dict(d.tags), history=hist,
                                 url=self.run_url(run.info.run_id)))
        return out

    # ------------------------------------------------------------------ one run (lfmlf interpolate)
    def record(self, run_id: str) -> RunRecord:
        """One run as a RunRecord (no histories), as :meth:`children` makes them."""
        run = self.client.get_run(run_id)
        d = run.data
        seed = d.tags.get("lfmlf.seed")
        return RunRecord(run_id=run_id, status=run.info.status, method=d.params.get("method", "?"),
                         source_set=d.params.get("source_set", ""), seed=int(seed) if seed else None,
                         metrics=dict(d.metrics), params=dict(d.params), tags=dict(d.tags), url=self.run_url(run_id))
    # ------------------------------------------------------------------ end of one run

    def text(self, run_id: str, name: str) -> str:
        """A text artifact of a run (e.g. trial_config.yaml)."""
        with tempfile.TemporaryDirectory() as d:
            return Path(self.client.download_artifacts(run_id, name, d)).read_text(encoding="utf-8")

    def log_files(self, run_id: str, paths: list[Path], folder: str) -> None:
        for p in paths:
            self.client.log_artifact(run_id, str(p), folder)

    def run_url(self, run_id: str) -> str:
        """The run's page in an MLflow UI at its default address (runs are linked from report tables)."""
        return f"http://127.0.0.1:5000/#/experiments/{self.experiment_id}/runs/{run_id}"


def start_run(uri: str, experiment: str, name: str, role: str, params: Mapping[str, str],
              tags: Mapping[str, str]) -> SweepTracker:
    """A top-level run of another kind than a sweep (``train``, ``rerun``); returns a tracker whose parent
    is that run, so trial runs can nest under it."""
    tracker = SweepTracker(uri, experiment)
    tracker.create_parent(name, role, params, tags)
    return tracker
