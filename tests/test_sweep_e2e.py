"""End to end through the CLI: the offline quickstart sweep tracked in MLflow, and a sweep whose driver is
killed and then resumed. Each starts its own local Ray instance on loopback and stops it."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _lfmlf(args: list[str], tmp: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp / f"driver-{time.time_ns()}.log", "w")
    return subprocess.Popen([sys.executable, "-m", "lfmlf.cli", *args], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _client(uri: str):
    """A client of the sweep's store, opened under the store's lock: the driver may be creating the SQLite
    schema right now, and an unlocked first read would race its migrations."""
    from lfmlf.tracking import open_store

    return open_store(uri, None, create=False)[0]


def _runs(uri: str, filter_string: str = ""):
    from lfmlf.tracking import open_store

    client, experiment_id = open_store(uri, "lfmlf", create=False)
    if experiment_id is None:
        return []
    return client.search_runs([experiment_id], filter_string=filter_string, max_results=1000)


def _log(tmp: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(tmp.glob("driver-*.log")))


def check_quickstart_tracking(uri: str, out: str) -> None:
    """What the README's quickstart sweep must leave in MLflow (called by tests/test_paper_e2e.py, which runs
    the quickstart once and then takes it from sweep to paper)."""
    assert "best trial per method" in out and "mlflow ui --backend-store-uri" in out
    assert "retrieval drop = " in out and "Next: lfmlf best" in out

    parents = _runs(uri, "tags.`lfmlf.role` = 'sweep'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["budget.mlf"] == parent.data.params["budget.lfmlf"] == "4"
    children = _runs(uri, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    finished = [r for r in children if r.info.status == "FINISHED"]
    assert len(finished) >= 6
    assert {r.data.params["method"] for r in finished} == {"mlf", "lfmlf"}
    for run in finished:
        metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
        for lang in ("fr", "it"):
            assert 0.0 <= metrics[f"zero_shot/f1/{lang}"] <= 1.0
        assert "zero_shot/f1/avg" in metrics and "source/f1/avg" in metrics
        # the forgetting probe (synthetic parallel sentences): retrieval at theta0 and now, per language
        assert 0.0 < metrics["forgetting/retrieval_acc0/avg"] <= 1.0
        assert {f"forgetting/retrieval_drop/{lang}" for lang in ("de", "es", "nl", "fr", "it")} <= set(metrics)
        assert {"method", "lr", "source_set"} <= set(params)
        assert float(params["lr"]) > 0
        sources = params["source_set"].split("+")
        assert "en" in sources and 2 <= len(sources) <= 3
        assert all(tags[f"lfmlf.source.{s}"] == "true" for s in sources)
        assert tags["lfmlf.optuna_trial"].isdigit()
        if params["method"] == "lfmlf":
            assert 0.1 <= float(params["slack"]) <= 10.0
            assert any(k.startswith("lfmlf/lambda/") for k in metrics)
    # the sweep learned something: the best trial beats an untrained tagger's F1 of ~0
    assert max(r.data.metrics["best/source/f1/avg"] for r in finished) > 0.2


def test_a_killed_sweep_resumes_without_duplicate_runs(tmp_path):
    """With ASHA on: the rung scores recorded before the kill are still there after the resume, so no
    trial is stopped, or let through, against an empty rung."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["sweep", "sweeps/quickstart.yaml", "--set", f"output_dir={tmp_path}/run", "--set", "name=killed",
            "--set", "search.num_samples=3", "--set", "search.scheduler.grace_period=1", "--tracking-uri", uri,
            "--set", "train.max_steps=60"]
    proc = _lfmlf(args, tmp_path)
    deadline = time.time() + 400
    while time.time() < deadline:   # wait until at least one trial has finished, then kill the driver hard
        if proc.poll() is not None:
            pytest.fail("the sweep ended before it could be killed:\n" + _log(tmp_path)[-3000:])
        if any("lfmlf.tune_trial_id" in r.data.tags for r in _runs(uri, "attributes.status = 'FINISHED'")):
            break
        time.sleep(2)
    else:
        pytest.fail("no trial finished in time:\n" + _log(tmp_path)[-3000:])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(3)

    again = _lfmlf(args + ["--resume"], tmp_path)
    assert again.wait(timeout=600) == 0, _log(tmp_path)[-5000:]

    parents = _runs(uri, "tags.`lfmlf.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = _runs(uri, f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    finished = [r for r in children if r.info.status == "FINISHED"]
    trial_ids = [r.data.tags["lfmlf.tune_trial_id"] for r in finished]
    assert len(trial_ids) == len(set(trial_ids)), "a finished trial has two MLflow runs"
    assert len(finished) == 6, [(r.data.tags.get("lfmlf.tune_trial_id"), r.info.status,
                                 r.data.tags.get("lfmlf.error", "")[-1500:]) for r in children]
    assert not [r for r in children if r.info.status == "RUNNING"]
    reached: dict[str, dict[int, set[str]]] = {"mlf": {}, "lfmlf": {}}   # method -> eval step -> trial ids
    for run in finished:   # every finished trial logged each evaluation step once
        history = _client(uri).get_metric_history(run.info.run_id, "zero_shot/f1/avg")
        steps = [m.step for m in history]
        stopped = run.data.tags.get("lfmlf.stopped_early") == "true"
        assert sorted(steps) == sorted(set(steps)) == ([30] if stopped else [30, 60])
        for step in steps:
            reached[run.data.params["method"]].setdefault(step // 30, set()).add(run.data.tags["lfmlf.tune_trial_id"])
    # a trial that started and ended between Tune's last snapshot and the kill is kept (and counted against
    # the budget), but the restored rungs cannot have its scores: the resumed driver names each one
    unseen = set(re.findall(r"trial (\w+) \(\w+\) ran after Tune's last experiment snapshot", _log(tmp_path)))
    _check_rungs(tmp_path / "run", reached, unseen)
    # the Optuna studies persist next to the MLflow store: one per method, nothing left RUNNING, and
    # every finished MLflow run's Optuna trial number is a COMPLETE trial of its method's study
    import optuna

    tags = parents[0].data.tags
    assert tags["lfmlf.optuna_storage"] == f"sqlite:///{tmp_path}/optuna.db"
    for method in ("mlf", "lfmlf"):
        study = optuna.load_study(study_name=tags[f"lfmlf.optuna_study.{method}"],
                                  storage=tags["lfmlf.optuna_storage"])
        states = [t.state.name for t in study.trials]
        assert "RUNNING" not in states, states
        done = {int(r.data.tags["lfmlf.optuna_trial"]) for r in finished if r.data.params["method"] == method
                and r.data.tags.get("lfmlf.stopped_early") != "true"}
        cut = {int(r.data.tags["lfmlf.optuna_trial"]) for r in finished if r.data.params["method"] == method
               and r.data.tags.get("lfmlf.stopped_early") == "true"}
        assert len(done | cut) == 3 and done, (done, cut, states)
        assert done <= {t.number for t in study.trials if t.state.name == "COMPLETE"}, states
        assert cut <= {t.number for t in study.trials if t.state.name == "PRUNED"}, states   # stopped != finished
        runs = {int(r.data.tags["lfmlf.optuna_trial"]): r.info.run_id for r in finished
                if r.data.params["method"] == method}
        for number, run_id in runs.items():   # linked both ways: the Optuna trial names its MLflow run
            assert study.trials[number].user_attrs.get("mlflow_run_id") == run_id
        assert all(r.data.tags.get("mlflow.source.git.commit") for r in finished)


def _check_rungs(run_dir, reached, unseen: set[str]) -> None:
    """Every trial that reported at an ASHA milestone is recorded in its method's rung, those from before
    the kill included: the resumed scheduler kept its state (Tune alone would restore empty rungs). The
    ``unseen`` trials ran after the last snapshot: the restored rungs cannot hold them."""
    import pickle

    states = sorted((run_dir / "ray" / "sweep").glob("callback-states-*.pkl"))   # by session time, as Tune picks
    assert states, "no callback state saved"
    with states[-1].open("rb") as f:
        saved = pickle.load(f)
    (entry,) = [v for v in saved.values() if isinstance(v, dict) and "schedulers" in v]
    schedulers = pickle.loads(entry["schedulers"])
    for method, asha in schedulers.items():
        for rung in asha._brackets[0]._rungs:
            milestone, recorded = rung[0], rung[1]
            expected = reached[method].get(milestone, set())
            assert set(recorded) - unseen == expected - unseen, (method, milestone, recorded, reached, unseen)


def test_starting_a_sweep_twice_without_resume_is_refused(tmp_path):
    (tmp_path / "run" / "ray").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "lfmlf.cli", "sweep", "sweeps/quickstart.yaml", "--set",
                           f"output_dir={tmp_path}/run", "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr


def test_method_sweep_runs_every_method_with_the_same_budget(tmp_path):
    from lfmlf.config import load_sweep

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = _lfmlf(["sweep", "sweeps/quickstart_methods.yaml", "--set", f"output_dir={tmp_path}/run",
                   "--set", "search.num_samples=1", "--set", "train.max_steps=30", "--set", "train.eval_every=15",
                   "--tracking-uri", uri], tmp_path)
    assert proc.wait(timeout=900) == 0, _log(tmp_path)[-5000:]
    methods = list(load_sweep(REPO / "sweeps" / "quickstart_methods.yaml").methods)
    from lfmlf.methods import METHODS

    assert set(methods) == set(METHODS), "quickstart_methods.yaml must run every registered method"
    parent = _runs(uri, "tags.`lfmlf.role` = 'sweep'")[0]
    assert {parent.data.params[f"budget.{m}"] for m in methods} == {"1"}
    children = _runs(uri, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.params["method"] for r in children if r.info.status == "FINISHED") == sorted(methods)
    signals = {"agem": "agem/projected", "gem": "gem/projected", "mgda": "mgda/weight/en",
               "pcgrad": "pcgrad/conflict_rate", "l2sp": "l2sp/penalty", "ewc": "ewc/penalty",
               "distill": "distill/penalty", "lfmlf": "lfmlf/lambda/en", "mtl_mlm": "mtl_mlm/penalty"}
    for run in children:
        method = run.data.params["method"]
        assert "zero_shot/f1/avg" in run.data.metrics
        # the start-up the loop cannot see (Ray's actor start), and the loop's own split of the trial's time
        assert 0 < run.data.metrics["perf/actor_start_s"] < 300, method
        assert 0 < run.data.metrics["perf/startup_fraction"] < 1 and 0 < run.data.metrics["perf/eval_fraction"] < 1
        if method in signals:
            assert signals[method] in run.data.metrics, (method, sorted(run.data.metrics))
