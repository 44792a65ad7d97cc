"""The pieces of the cluster check that run without a cluster: which paths every node must see, which
variables go to the workers, the code fingerprint that decides whether lfmlf is shipped, and the node
probe's own findings (run here as a plain function, as a node would run it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("ray")

from lfmlf.config import load_sweep
from lfmlf.sweep import _probe
from lfmlf.sweep.cluster import node_paths, shipped_env

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONLL = FIXTURES / "config" / "conll" / "sweep.yaml"


def test_node_paths_name_every_data_file_probe_file_and_the_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    probe = FIXTURES / "probe" / "tatoeba"
    cfg = load_sweep(CONLL, [f"probe={{format: tatoeba, data_dir: {probe}, languages: [de]}}"])
    paths = node_paths(cfg.model_copy(update={"model": cfg.model.model_copy(update={"name_or_path": str(model)})}))
    data = Path(cfg.task.data_dir)
    expected = {str(data / getattr(f, s)) for f in cfg.task.files.values() for s in ("train", "dev", "test")
                if getattr(f, s)}
    assert expected and expected <= set(paths)
    assert str(probe / "tatoeba.deu-eng.deu") in paths and str(probe / "tatoeba.deu-eng.eng") in paths
    assert str(model) in paths
    assert all(Path(p).exists() for p in paths)


def test_only_lfmlf_and_non_secret_settings_are_shipped(monkeypatch):
    monkeypatch.setenv("LFMLF_DATA_DIR", "/data")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://s3:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("HF_TOKEN", "secret")
    env = shipped_env()
    assert env["LFMLF_DATA_DIR"] == "/data" and env["AWS_ENDPOINT_URL"] == "http://s3:9000"
    assert "AWS_SECRET_ACCESS_KEY" not in env and "HF_TOKEN" not in env


def test_reused_actors_wait_for_the_previous_trials_thread(monkeypatch):
    """Tune gives a reused actor 2 s for the previous trial's thread to end, else the next trial fails."""
    from lfmlf.sweep.cluster import ray_env

    monkeypatch.delenv("TUNE_FUNCTION_THREAD_TIMEOUT_S", raising=False)
    ray_env()
    assert int(os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"]) >= 30
    assert shipped_env()["TUNE_FUNCTION_THREAD_TIMEOUT_S"] == os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"]


def test_the_fingerprint_follows_the_code_not_the_version(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "a.py").write_text("x = 1\n")
    before = _probe.package_fingerprint(pkg)
    assert _probe.package_fingerprint(pkg) == before
    (pkg / "a.py").write_text("x = 2\n")
    assert _probe.package_fingerprint(pkg) != before


def test_the_probe_reports_missing_paths_an_unreadable_marker_and_the_code(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "get_runtime_context", lambda: type("C", (), {"get_node_id": lambda self: "n" * 56})())
    marker = tmp_path / "m"
    marker.write_text("token")
    seen = _probe.check_node([str(marker), str(tmp_path / "absent")], (str(marker), "token"), import_code=False)
    assert seen["missing"] == [str(tmp_path / "absent")] and seen["storage"] is None
    assert seen["lfmlf"]["fingerprint"] == _probe.package_fingerprint(Path(__import__("lfmlf").__file__).parent)
    unseen = _probe.check_node([], (str(tmp_path / "elsewhere" / "m"), "token"), import_code=False)
    assert "FileNotFoundError" in unseen["storage"]
    other = _probe.check_node([], (str(marker), "another sweep"), import_code=False)
    assert "something else" in other["storage"]


def test_a_trials_storage_folder_is_tagged_as_a_uri_when_the_storage_is_remote():
    from types import SimpleNamespace as N

    import pyarrow.fs as fs

    from lfmlf.sweep.trainable import trial_location

    local = N(path="/nfs/runs/x/ray/sweep/mlf_1", local_path=None, storage=N(storage_filesystem=fs.LocalFileSystem()))
    remote = N(path="bucket/x/ray/sweep/mlf_1", local_path=None, storage=N(storage_filesystem=N(type_name="s3")))
    assert trial_location(local) == "/nfs/runs/x/ray/sweep/mlf_1"
    assert trial_location(remote) == "s3://bucket/x/ray/sweep/mlf_1"   # Tune's trial.path drops the scheme
