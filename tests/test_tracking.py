"""lfmlf.tracking: sweep parent run, trial child runs, resume without duplicates, metrics, URI precedence.

One SQLite store for the whole module (MLflow's first use of a new store runs its migrations, ~3 s);
every test uses its own sweep folder (and where it matters its own experiment) to stay independent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from lfmlf.tracking import DEFAULT_URI, SweepTracker, resolve_uri


@pytest.fixture(scope="module")
def uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return f"sqlite:///{db}"


@pytest.fixture(scope="module")
def client(uri: str):
    from mlflow.tracking import MlflowClient

    SweepTracker(uri, "warmup")  # creates the store once
    return MlflowClient(tracking_uri=uri)


def _sweep(tracker: SweepTracker, sweep_dir: Path, resume: bool = False) -> str:
    return tracker.start_sweep("my-sweep", str(sweep_dir), params={"num_samples": "4", "space": "lr,slack"},
                               tags={"lfmlf.git_sha": "abc123"}, resume=resume)


def _trial(tracker: SweepTracker, trial_id: str = "trial_0001") -> str:
    return tracker.trial_run(trial_id, f"lfmlf-{trial_id}",
                             params={"method": "lfmlf", "lr": "0.001", "source_set": "de+en"},
                             tags={"lfmlf.method": "lfmlf", "lfmlf.source_set": "de+en",
                                   "lfmlf.source.de": "true", "lfmlf.source.en": "true"})


def _runs_with_trial_id(client, experiment_id: str, trial_id: str) -> list:
    return client.search_runs([experiment_id], filter_string=f"tags.`lfmlf.tune_trial_id` = '{trial_id}'")


# ---------------------------------------------------------------- parent and child runs


def test_experiment_is_created_once(uri: str, client) -> None:
    a = SweepTracker(uri, "exp-once")
    b = SweepTracker(uri, "exp-once")
    assert a.experiment_id == b.experiment_id
    assert client.get_experiment_by_name("exp-once").experiment_id == a.experiment_id


def test_start_sweep_creates_tagged_parent(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-parent")
    parent = _sweep(tracker, tmp_path / "runs" / "qs")
    assert tracker.parent_id == parent
    run = client.get_run(parent)
    assert run.info.experiment_id == tracker.experiment_id
    assert run.info.run_name == "my-sweep"
    assert run.info.status == "RUNNING"
    assert run.data.tags["lfmlf.role"] == "sweep"
    assert run.data.tags["lfmlf.sweep_dir"] == str(tmp_path / "runs" / "qs")
    assert run.data.tags["lfmlf.git_sha"] == "abc123"
    assert run.data.params == {"num_samples": "4", "space": "lr,slack"}
    assert "mlflow.parentRunId" not in run.data.tags


def test_trial_run_is_a_tagged_child(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-child")
    parent = _sweep(tracker, tmp_path / "sweep")
    child = _trial(tracker, "trial_0001")
    assert child != parent
    run = client.get_run(child)
    assert run.info.run_name == "lfmlf-trial_0001"
    assert run.info.experiment_id == tracker.experiment_id
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent
    assert tags["lfmlf.tune_trial_id"] == "trial_0001"
    assert tags["lfmlf.source_set"] == "de+en"
    assert tags["lfmlf.source.de"] == "true"
    assert run.data.params == {"method": "lfmlf", "lr": "0.001", "source_set": "de+en"}
    assert tracker.run_id("trial_0001") == child
    assert tracker.run_id("never-started") is None
    # a second trial gets its own run; asking again for the first returns the first
    other = _trial(tracker, "trial_0002")
    assert other not in (child, parent)
    assert _trial(tracker, "trial_0001") == child
    assert len(_runs_with_trial_id(client, tracker.experiment_id, "trial_0001")) == 1


def test_resume_reuses_parent_and_trial_runs(uri: str, client, tmp_path: Path) -> None:
    sweep_dir = tmp_path / "runs" / "resumable"
    first = SweepTracker(uri, "exp-resume")
    parent = _sweep(first, sweep_dir)
    child = _trial(first, "trial_a")
    first.log_metrics(child, {"perf/steps_per_s": 3.0}, step=2)
    first.finish_trial("trial_a", "KILLED")
    first.finish_sweep("KILLED")
    assert client.get_run(parent).info.status == "KILLED"

    # a new process (new tracker) resumes the same sweep folder
    second = SweepTracker(uri, "exp-resume")
    assert _sweep(second, sweep_dir, resume=True) == parent
    assert second.parent_id == parent
    assert client.get_run(parent).info.status == "RUNNING"
    assert second.run_id("trial_a") == child        # learned from the existing children
    assert _trial(second, "trial_a") == child
    assert client.get_run(child).info.status == "RUNNING"
    assert second.last_step(child) == 2
    assert len(_runs_with_trial_id(client, second.experiment_id, "trial_a")) == 1
    parents = client.search_runs([second.experiment_id], filter_string="tags.`lfmlf.role` = 'sweep'")
    assert [r.info.run_id for r in parents] == [parent]
    # a new trial in the resumed sweep is a child of the same parent
    new_child = _trial(second, "trial_b")
    assert client.get_run(new_child).data.tags["mlflow.parentRunId"] == parent


def test_resume_of_an_unknown_sweep_dir_creates_a_new_parent(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-resume-other")
    old = _sweep(tracker, tmp_path / "a")
    fresh = SweepTracker(uri, "exp-resume-other")
    new = _sweep(fresh, tmp_path / "b", resume=True)
    assert new != old
    assert client.get_run(new).data.tags["lfmlf.sweep_dir"] == str(tmp_path / "b")
    assert fresh.run_id("trial_0001") is None


# ---------------------------------------------------------------- metrics and status


def test_metrics_with_slashed_keys_read_back(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-metrics")
    _sweep(tracker, tmp_path / "m")
    run_id = _trial(tracker)
    tracker.log_metrics(run_id, {"zero_shot/f1/de": 0.5, "zero_shot/f1/avg": 0.25, "lfmlf/lambda/en": 1},
                        step=10)
    tracker.log_metrics(run_id, {"zero_shot/f1/de": 0.75}, step=20)
    history = client.get_metric_history(run_id, "zero_shot/f1/de")
    assert sorted((m.step, m.value) for m in history) == [(10, 0.5), (20, 0.75)]
    metrics = client.get_run(run_id).data.metrics
    assert metrics["zero_shot/f1/de"] == 0.75            # latest value
    assert metrics["zero_shot/f1/avg"] == 0.25
    assert metrics["lfmlf/lambda/en"] == 1.0
    assert tracker.last_step(run_id, "zero_shot/f1/de") == 20
    assert tracker.last_step(run_id) == -1               # perf/steps_per_s never logged


def test_log_metrics_beyond_one_batch(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-metrics")
    _sweep(tracker, tmp_path / "big")
    run_id = _trial(tracker)
    tracker.log_metrics(run_id, {f"zero_shot/f1/l{i}": i / 1000 for i in range(1005)}, step=1)
    metrics = client.get_run(run_id).data.metrics
    assert len(metrics) == 1005
    assert metrics["zero_shot/f1/l1004"] == pytest.approx(1.004)


def test_finish_trial_and_sweep_set_status(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-status")
    parent = _sweep(tracker, tmp_path / "s")
    ok = _trial(tracker, "ok")
    bad = _trial(tracker, "bad")
    tracker.finish_trial("ok", "FINISHED")
    tracker.finish_trial("bad", "FAILED")
    tracker.finish_trial("unknown-trial", "FINISHED")    # no run: ignored, no error
    assert client.get_run(ok).info.status == "FINISHED"
    assert client.get_run(ok).info.end_time is not None
    assert client.get_run(bad).info.status == "FAILED"
    assert client.get_run(parent).info.status == "RUNNING"
    assert tracker.finish_sweep("FINISHED", {"best/source/f1/avg": 0.9}) == 0   # no trial left open
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FINISHED"
    assert parent_run.data.metrics["best/source/f1/avg"] == 0.9


def test_finish_sweep_without_a_sweep_is_a_no_op(uri: str) -> None:
    assert not SweepTracker(uri, "exp-status").finish_sweep("FINISHED")


def test_finished_sweep_closes_trial_runs_left_open(uri: str, client, tmp_path: Path) -> None:
    """Runs of trials that Tune lost in an interrupt stay RUNNING; a FINISHED sweep marks them KILLED."""
    tracker = SweepTracker(uri, "exp-lost")
    _sweep(tracker, tmp_path / "lost")
    done = _trial(tracker, "done")
    lost = _trial(tracker, "lost")
    tracker.finish_trial("done", "FINISHED")
    assert tracker.finish_sweep("FINISHED") == 1
    assert client.get_run(done).info.status == "FINISHED"
    assert "lfmlf.lost_in_interrupt" not in client.get_run(done).data.tags
    assert client.get_run(lost).info.status == "KILLED"
    assert client.get_run(lost).data.tags["lfmlf.lost_in_interrupt"] == "true"


def test_killed_sweep_leaves_open_trial_runs_alone(uri: str, client, tmp_path: Path) -> None:
    """An interrupted sweep is resumed later and reuses its open trial runs: they must stay as they are."""
    tracker = SweepTracker(uri, "exp-lost")
    parent = _sweep(tracker, tmp_path / "interrupted")
    running = _trial(tracker, "running")
    assert not tracker.finish_sweep("KILLED")
    assert client.get_run(parent).info.status == "KILLED"
    assert client.get_run(running).info.status == "RUNNING"


def test_set_tags_and_log_text(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-tags")
    _sweep(tracker, tmp_path / "t")
    run_id = _trial(tracker)
    tracker.set_tags(run_id, {"lfmlf.optuna_trial": 3, "lfmlf.selection": "source_dev"})
    tags = client.get_run(run_id).data.tags
    assert tags["lfmlf.optuna_trial"] == "3"
    assert tags["lfmlf.selection"] == "source_dev"


def test_long_param_values_are_clipped(uri: str, client, tmp_path: Path) -> None:
    tracker = SweepTracker(uri, "exp-clip")
    parent = tracker.start_sweep("clip", str(tmp_path / "c"), params={"space": "x" * 10000}, tags={},
                                 resume=False)
    value = client.get_run(parent).data.params["space"]
    assert len(value) == 6000 and value.endswith("...")


# ---------------------------------------------------------------- resolve_uri


def test_resolve_uri_cli_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri("http://cli:5000", "http://yaml:5000") == "http://cli:5000"


def test_resolve_uri_yaml_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri(None, "http://yaml:5000") == "http://yaml:5000"


def test_resolve_uri_env_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri(None, None) == "http://env:5000"


def test_resolve_uri_default_is_absolute_sqlite_in_cwd(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_URI == "sqlite:///mlflow.db"
    uri = resolve_uri(None, None)
    assert uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert uri.startswith("sqlite:////")


def test_resolve_uri_relative_sqlite_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_uri("sqlite:///sub/x.db", None) == f"sqlite:///{tmp_path.resolve() / 'sub' / 'x.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert resolve_uri(None, None) == f"sqlite:///{tmp_path.resolve() / 'env.db'}"


def test_resolve_uri_absolute_sqlite_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_uri(None, "sqlite:////data/mlflow.db") == "sqlite:////data/mlflow.db"


def test_resolve_uri_empty_strings_fall_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert resolve_uri("", "") == "http://env:5000"
