"""Shared fixtures: a tiny trial spec on synthetic data, the real data folder, the real encoder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LFMLF_SHARED") or REPO.parent / "shared")   # holds tools/build_encoder.py
DEFAULT_DATA = REPO.parent / "shared" / "data"   # also the sweeps' default: ${LFMLF_DATA_DIR:-../../shared/data}
DATA = Path(os.environ.get("LFMLF_DATA_DIR") or DEFAULT_DATA)   # the shared real data


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_cache(tmp_path_factory):
    """Tokenised-data caches of this test session live in a temp folder (Ray trials inherit the variable)."""
    previous = os.environ.get("LFMLF_CACHE_DIR")
    os.environ["LFMLF_CACHE_DIR"] = str(tmp_path_factory.mktemp("lfmlf-cache"))
    yield
    if previous is None:
        os.environ.pop("LFMLF_CACHE_DIR", None)
    else:
        os.environ["LFMLF_CACHE_DIR"] = previous


@pytest.fixture
def one_thread():
    """One torch thread for the test: the tiny model is many times slower on a shared 2-core machine with
    torch's default thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_spec(method: str = "mlf", **overrides):
    """A TrialSpec for a few fast steps of the tiny model on synthetic NER with sources de, en, es."""
    from lfmlf.config import ModelConfig, SyntheticData, TaskConfig, TrainConfig, TrialSpec

    train = {"lr": 1e-3, "max_steps": 6, "eval_every": 3, "batch_size": 12, "eval_batch_size": 64, "seed": 0,
             **overrides.pop("train", {})}
    task = TaskConfig(name="ner", format="synthetic", synthetic=SyntheticData(train=60, dev=20, test=20),
                      max_length=32)
    model = ModelConfig(**{"name_or_path": "tiny", **overrides.pop("model", {})})
    return TrialSpec(sweep="test", method=method, method_params=overrides.pop("params", {}),
                     sources=("de", "en", "es"), targets=("fr",), pool=("de", "en", "es", "fr"),
                     train=TrainConfig(**train), task=task, model=model)


def real_data(rel: str = "") -> Path:
    """``DATA / rel``, a file or folder of the shared real data (``$LFMLF_DATA_DIR``, by default
    ``<repo>/../shared/data``); skips the calling test when it is not there."""
    path = DATA / rel
    if not path.exists():
        pytest.skip(f"real data {path} is absent (the shared data folder is not on this machine; "
                    "LFMLF_DATA_DIR names it)")
    return path


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared real-data folder (:func:`real_data`); the test is skipped when it is not there."""
    return real_data()


def _build_encoder(out: Path, layers: int) -> Path:
    tool = SHARED / "tools" / "build_encoder.py"
    if not tool.is_file():
        pytest.skip(f"{tool} is not there")
    subprocess.run([sys.executable, str(tool), str(out), "--layers", str(layers)], check=True,
                   capture_output=True, timeout=600)
    return out


@pytest.fixture(scope="session")
def encoder_dir() -> Path:
    """The 6-layer multilingual-e5-small encoder, built once into .cache/ (a no-op when present)."""
    return _build_encoder(Path(os.environ.get("LFMLF_ENCODER_DIR", REPO / ".cache" / "e5-6l")), 6)


@pytest.fixture(scope="session")
def full_encoder_dir() -> Path:
    """All 12 layers of multilingual-e5-small (the untrained model's retrieval reference)."""
    return _build_encoder(REPO / ".cache" / "e5-12l", 12)
