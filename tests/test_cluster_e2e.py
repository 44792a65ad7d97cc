"""A sweep on a real two-node Ray cluster that behaves like one (tests/cluster_harness.py): every server in
a loopback-only network namespace, the worker node in a mount namespace of its own that cannot see the
head's run folder, an ``mlflow server`` and an S3 server (moto) on 127.0.0.1.

1. A node-local ``--output-dir`` is refused by the node check before any trial starts.
2. Shared folder: a two-method sweep runs on both nodes with both methods' trials overlapping; the worker's
   raylet is SIGKILLed during a trial, which resumes from its checkpoint on the head; the driver is
   SIGKILLed and ``--resume`` finishes the sweep with every budgeted trial FINISHED in MLflow exactly once,
   nothing RUNNING in MLflow or Optuna.
3. S3: the same sweep with ``--output-dir s3://...`` runs on both nodes with its checkpoints in the bucket,
   and ``lfmlf best`` works against that storage.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from cluster_harness import NamespaceCluster, namespaces_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

METHODS = ("mlf", "lfmlf")
TRIALS = 2   # per method
MAX_STEPS, EVAL_EVERY = 120, 10


def _sweep(tmp_path: Path) -> Path:
    cfg = {
        "name": "cluster",
        "task": {"name": "ner", "format": "synthetic", "synthetic": {"train": 200, "dev": 40, "test": 40},
                 "max_length": 32},
        "model": {"name_or_path": "tiny", "tiny": {"hidden_size": 32, "layers": 2, "heads": 2, "vocab_size": 600}},
        "languages": {"sources": ["de", "en", "es"], "min_sources": 2, "must_include": ["en"], "targets": ["fr"]},
        "train": {"max_steps": MAX_STEPS, "eval_every": EVAL_EVERY, "batch_size": 12, "eval_batch_size": 64},
        "methods": {"mlf": {"space": {"lr": {"type": "float", "low": 5e-4, "high": 3e-3, "log": True}}},
                    "lfmlf": {"space": {"lr": {"type": "float", "low": 5e-4, "high": 3e-3, "log": True},
                                        "slack": {"type": "float", "low": 0.5, "high": 2.0}},
                              "params": {"forgetting": "l2"}}},
        "search": {"num_samples": TRIALS, "max_concurrent": 4, "n_startup_trials": 2, "scheduler": {"name": "none"}},
        "resources": {"cpu": 1, "gpu": 0},
        "ray": {"max_failures": 3},
        "tracking": {"experiment": "cluster"},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _lfmlf(*args: str) -> list[str]:
    return [sys.executable, "-m", "lfmlf.cli", *args]


def _trial_runs(db: Path) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("cluster")
    if exp is None:
        return []
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("lfmlf.tune_trial_id")]


def _run_in(cluster, argv: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run ``argv`` in the cluster's namespace with working directory ``cwd`` (the driver's folder);
    (exit code, its output)."""
    proc = cluster.popen(argv, log_name="cmd", cwd=str(cwd))
    try:
        proc.wait(timeout=timeout)
    except Exception:
        cluster.kill(proc)
        raise
    return proc.returncode, cluster.log_paths[proc.pid].read_text(errors="replace")


def _wait(what: str, cond, timeout: float, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver exited ({proc.returncode}) while waiting for {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _step(client, run) -> int:
    hist = client.get_metric_history(run.info.run_id, "perf/steps_per_s")
    return max((m.step for m in hist), default=-1)


def _overlap(runs) -> bool:
    """Whether a trial of one method ran while a trial of the other did (MLflow start/end times)."""
    by = {m: [(r.info.start_time, r.info.end_time or 2**62) for r in runs if r.data.params.get("method") == m]
          for m in METHODS}
    return any(a0 < b1 and b0 < a1 for a0, a1 in by["mlf"] for b0, b1 in by["lfmlf"])


def _check_finished(db: Path, name_prefix: str) -> list:
    runs = [r for r in _trial_runs(db) if r.data.tags.get("lfmlf.sweep", "") == name_prefix]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    ids = [r.data.tags["lfmlf.tune_trial_id"] for r in finished]
    assert len(finished) == TRIALS * len(METHODS) and len(set(ids)) == len(ids), \
        [(r.data.tags["lfmlf.tune_trial_id"], r.info.status, r.data.tags.get("lfmlf.error", "")[-1500:]) for r in runs]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert sorted(r.data.params["method"] for r in finished) == sorted(METHODS * TRIALS)
    return finished


def test_sweep_on_a_two_node_cluster(tmp_path):
    reason = namespaces_available()
    if reason:
        pytest.skip(reason)
    from mlflow.tracking import MlflowClient

    driver_dir, shared = tmp_path / "driver", tmp_path / "shared"
    driver_dir.mkdir()
    shared.mkdir()
    sweep = _sweep(tmp_path)
    db = tmp_path / "mlflow" / "mlflow.db"
    db.parent.mkdir()
    with NamespaceCluster(tmp_path, private_paths=[driver_dir], head_cpus=2, worker_cpus=2) as cluster:
        cluster.start_s3(buckets=("lfmlf",))
        tracking = cluster.start_mlflow_server(f"sqlite:///{db}", str(tmp_path / "mlflow" / "artifacts"))
        cluster.start_head()
        cluster.start_worker()
        nodes = cluster.wait_for_alive_nodes(2)
        assert cluster.interfaces() == ["lo"]
        assert all(listener.loopback for listener in cluster.listening())
        common = ["--address", cluster.address, "--tracking-uri", tracking]

        # 1. a folder on the driver's own disk is no cluster storage: refused before any trial
        local = driver_dir / "local-out"
        rc, text = _run_in(cluster, _lfmlf("sweep", str(sweep), "--output-dir", str(local), *common), driver_dir, 300)
        assert rc == 2, text[-4000:]
        assert "lfmlf: error:" in text and str(local) in text and "Fix:" in text
        assert "node" in text and "Traceback" not in text
        assert not (local / "ray").exists() and not _trial_runs(db)

        # 2. shared folder: both nodes, both methods at once; a worker-node loss; a driver kill and --resume
        out = shared / "run"
        argv = _lfmlf("sweep", str(sweep), "--output-dir", str(out), *common)
        driver = cluster.popen(argv, log_name="driver", cwd=str(driver_dir))
        worker_id = next(n.node_id for n in nodes if n.alive and not n.is_head)
        client = MlflowClient(tracking_uri=f"sqlite:///{db}")

        def on_worker():
            for r in _trial_runs(db):
                if r.info.status == "RUNNING" and r.data.tags.get("lfmlf.node_id") == worker_id \
                        and EVAL_EVERY * 2 <= _step(client, r) < MAX_STEPS - 2 * EVAL_EVERY:
                    return r
            return None

        victim = _wait("a trial with a checkpoint on the worker node", on_worker, 300, driver)
        cluster.kill_worker_raylet()
        victim_id = victim.info.run_id

        def moved():
            run = client.get_run(victim_id)
            nodes_seen = run.data.tags.get("lfmlf.nodes", "").split(",")
            return len(nodes_seen) >= 2 and nodes_seen[0] == worker_id and run

        _wait("the worker's trial to resume on the head", moved, 300, driver)
        resumed = client.get_metric_history(victim_id, "perf/resumed_from_step")
        assert max(m.value for m in resumed) >= EVAL_EVERY   # from its checkpoint, not from step 0
        cluster.kill(driver)   # SIGKILL the driver's process group mid-sweep
        rc, text = _run_in(cluster, _lfmlf("sweep", str(sweep), "--output-dir", str(out), "--resume", *common),
                           driver_dir, 900)
        assert rc == 0, text[-6000:]
        finished = _check_finished(db, "cluster")
        ran_on = {n for r in _trial_runs(db) for n in r.data.tags.get("lfmlf.nodes", "").split(",") if n}
        assert worker_id in ran_on and len(ran_on) >= 2, ran_on      # trials ran on both nodes
        assert _overlap(finished)                                    # both methods' trials at once
        _check_optuna(out / "optuna.db")

        # 3. S3 storage: a fresh worker node, the same sweep under another name, then `lfmlf best`
        cluster.start_worker()
        cluster.wait_for_alive_nodes(2)
        s3 = "s3://lfmlf/sweeps/cluster-s3"
        rc, text = _run_in(cluster, _lfmlf("sweep", str(sweep), "--set", "name=cluster-s3", "--output-dir", s3,
                                           *common), driver_dir, 900)
        assert rc == 0, text[-6000:]
        finished = _check_finished(db, "cluster-s3")
        assert len({r.data.tags.get("lfmlf.node_id") for r in finished}) == 2   # both nodes
        listing = cluster.run_python(
            "import json, sys\nfrom pyarrow import fs\nf, p = fs.FileSystem.from_uri(sys.argv[1])\n"
            "infos = f.get_file_info(fs.FileSelector(p, recursive=True))\n"
            "print('@@harness-json@@' + json.dumps([i.path for i in infos]))",
            f"{s3}/ray/sweep")
        assert sum(path.endswith("state.pt") for path in listing) >= TRIALS * len(METHODS)
        rc, text = _run_in(cluster, _lfmlf("best", str(sweep), "--set", "name=cluster-s3", "--output-dir", s3,
                                           "--tracking-uri", tracking), driver_dir, 300)
        assert rc == 0, text[-4000:]
        written = yaml.safe_load((driver_dir / "runs" / "cluster-s3" / "best" / "lfmlf.yaml").read_text())
        assert written["output_dir"] == s3 and written["selection"]["sweep_run_id"]


def _check_optuna(path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        assert not study.get_trials(states=(TrialState.RUNNING,)), summary.study_name
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == TRIALS, summary.study_name
