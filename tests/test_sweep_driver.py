"""lfmlf.sweep.driver before any trial: `ray.address` in the YAML works like --address (the flag wins), and
a start that fails on the cluster check writes nothing that blocks running the same command again."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

import lfmlf.sweep.driver as driver  # noqa: E402
from lfmlf.config import load_sweep  # noqa: E402
from lfmlf.errors import SweepError  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"


class Refused(SweepError):
    pass


@pytest.fixture
def seen(monkeypatch):
    calls: list[str | None] = []

    def start_ray(cfg, address):
        calls.append(address)
        raise Refused("the cluster is not ready for this sweep")

    monkeypatch.setattr(driver, "start_ray", start_ray)
    return calls


def test_the_yaml_address_is_used_and_the_flag_wins(tmp_path, seen):
    cfg = load_sweep(QUICKSTART, [f"output_dir={tmp_path / 'out'}", "ray.address=10.0.0.1:6379"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(Refused):
        driver.run(cfg, tracking_uri=uri)
    with pytest.raises(Refused):
        driver.run(cfg, address="127.0.0.1:6379", tracking_uri=uri)
    assert seen == ["10.0.0.1:6379", "127.0.0.1:6379"]


def test_a_refused_start_leaves_nothing_that_blocks_the_same_command(tmp_path, seen):
    out = tmp_path / "out"
    cfg = load_sweep(QUICKSTART, [f"output_dir={out}", "ray.address=10.0.0.1:6379"])
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for _ in range(2):   # the second try is refused by the cluster again, not by "already holds"
        with pytest.raises(Refused):
            driver.run(cfg, tracking_uri=uri)
    assert not (out / "ray").exists() and not (tmp_path / "mlflow.db").exists()
