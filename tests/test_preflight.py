"""A sweep that cannot start says why before it writes anything or starts Ray: an unusable tracking store,
an unreachable MLflow server, a hub model that is offline and not cached. The same command then runs
again unhindered (no run folder left behind to refuse it)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lfmlf.preflight import ModelUnavailable, check_model, hub_offline_reason
from lfmlf.tracking import TrackingError, check_store
from tests.conftest import REPO


def _sweep(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    out = tmp_path / "out"
    return subprocess.run([sys.executable, "-m", "lfmlf.cli", "sweep", "sweeps/quickstart.yaml",
                           "--set", f"output_dir={out}", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def _refused(proc: subprocess.CompletedProcess, tmp_path: Path, *words: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text[-3000:]
    assert "lfmlf: error:" in text and "Fix:" in text and "Traceback" not in text, text[-3000:]
    assert all(w in text for w in words), text[-3000:]
    assert not (tmp_path / "out").exists()   # nothing written: the same command is not refused next time


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_unusable_sqlite_store_stops_the_sweep_before_anything_is_written(tmp_path, where):
    (tmp_path / "file").write_text("")
    db = tmp_path / "file" / "mlflow.db" if where == "under-a-file" else Path("/proc/lfmlf/mlflow.db")
    _refused(_sweep(tmp_path, "--tracking-uri", f"sqlite:///{db}"), tmp_path, str(db.parent))


def test_an_unreachable_server_stops_the_sweep(tmp_path):
    _refused(_sweep(tmp_path, "--tracking-uri", "http://127.0.0.1:1"), tmp_path, "does not answer", "127.0.0.1:1")


def test_an_offline_model_that_is_not_cached_stops_the_sweep(tmp_path):
    proc = _sweep(tmp_path, "--set", "model.name_or_path=intfloat/multilingual-e5-small",
                  "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db",
                  env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    _refused(proc, tmp_path, "intfloat/multilingual-e5-small", "HF_HUB_OFFLINE=1", str(tmp_path / "hf"))


def test_a_corrupt_store_file_is_named(tmp_path):
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TrackingError, match="cannot be opened"):
        check_store(f"sqlite:///{db}")


def test_a_usable_store_passes_and_nothing_is_written(tmp_path):
    check_store(f"sqlite:///{tmp_path}/mlflow.db")
    assert not list(tmp_path.iterdir())


def test_no_network_counts_as_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    assert "no connection to 127.0.0.1:1" in hub_offline_reason()


def test_a_cached_model_is_available_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "models--org--enc" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--enc" / "refs").mkdir()
    (tmp_path / "models--org--enc" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    check_model("org/enc")   # cached: fine
    with pytest.raises(ModelUnavailable, match="org/other"):
        check_model("org/other")
    with pytest.raises(ModelUnavailable, match="neither a local directory nor a hub id"):
        check_model("not a//valid id")
    check_model("tiny")
    check_model(str(tmp_path))   # a local directory
