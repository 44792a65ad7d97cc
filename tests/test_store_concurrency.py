"""Opening a fresh SQLite store from several processes at once never breaks it (MLflow's and Optuna's
schema migrations run under a file lock beside the database), and the store is usable afterwards. Also:
runs are found by a key, so a run folder whose path holds quotes and spaces works."""
from __future__ import annotations

import multiprocessing as mp
import time

import pytest

ROUNDS, PROCESSES = 20, 4


def _open(uri: str, optuna_url: str, start: float, out) -> None:
    try:
        while time.time() < start:
            time.sleep(0.001)
        from lfmlf.search import study_storage
        from lfmlf.tracking import SweepTracker

        tracker = SweepTracker(uri, "race")
        tracker.create_parent("p", "sweep", {}, {})
        study_storage(optuna_url)
        out.put("ok")
    except Exception as e:
        out.put(f"{type(e).__name__}: {e}")


@pytest.mark.slow
def test_four_processes_open_a_fresh_store_at_once_twenty_times(tmp_path):
    import mlflow.tracking  # noqa: F401 - imported once here; the forked processes open their own stores
    import optuna  # noqa: F401

    import lfmlf.search
    import lfmlf.tracking  # noqa: F401

    ctx = mp.get_context("fork")
    for i in range(ROUNDS):
        folder = tmp_path / f"r{i}"
        folder.mkdir()
        uri, optuna_url = f"sqlite:///{folder}/mlflow.db", f"sqlite:///{folder}/optuna.db"
        out = ctx.Queue()
        start = time.time() + 0.5
        procs = [ctx.Process(target=_open, args=(uri, optuna_url, start, out)) for _ in range(PROCESSES)]
        for p in procs:
            p.start()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert results == ["ok"] * PROCESSES, (i, results)
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name("race")
        assert len(client.search_runs([exp.experiment_id])) == PROCESSES   # one experiment, every run in it
        assert exp.artifact_location == (folder / "mlartifacts").as_uri()   # beside the store


def test_a_run_folder_with_quotes_and_spaces_is_found_again(tmp_path):
    from lfmlf.tracking import RunStore, SweepTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    folder = str(tmp_path / "it's a \"sweep\" folder")
    tracker = SweepTracker(uri, "quotes")
    parent = tracker.start_sweep("s", folder, {}, {}, resume=False)
    again = SweepTracker(uri, "quotes").start_sweep("s", folder, {}, {}, resume=True)
    assert again == parent
    assert RunStore(uri, "quotes").sweep_run(folder) == parent
    assert RunStore(uri, "quotes").sweep_run(folder + "x") is None
