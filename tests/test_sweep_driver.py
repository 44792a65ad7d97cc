"""lfmlf.sweep.driver before any trial: `ray.address` in the YAML works like --address (the flag wins), and
a start that fails on the cluster check writes nothing that blocks running the same command again."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("ray")

import lfmlf.sweep.driver as driver
from lfmlf.config import load_sweep
from lfmlf.errors import SweepError

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


def test_exit_status_zero_needs_a_finished_trial_per_method_and_few_failures(tmp_path, capsys):
    from lfmlf.sweep.driver import SweepOutcome, _error_line, _print_summary

    def outcome(best, errors, trials):
        return SweepOutcome(run_dir=tmp_path, tracking_uri="sqlite:///x.db", parent_run_id="p", storage=str(tmp_path),
                            best=best, errors=errors, trials=trials, max_failed_share=0.25,
                            first_errors={m: "RuntimeError: loss is nan" for m, n in errors.items() if n},
                            studies=("sqlite:///o.db", {"mlf": "s1", "lfmlf": "s2"}))

    good = {"config": {"lr": 1e-3}, "metric": 0.5, "zero_shot": 0.4}
    assert outcome({"mlf": good, "lfmlf": good}, {"mlf": 1, "lfmlf": 0}, {"mlf": 4, "lfmlf": 4}).ok
    assert not outcome({"mlf": good, "lfmlf": good}, {"mlf": 3, "lfmlf": 0}, {"mlf": 4, "lfmlf": 4}).ok  # 3/8 > 25 %
    only_failed = outcome({"mlf": good}, {"mlf": 0, "lfmlf": 1}, {"mlf": 1, "lfmlf": 1})
    assert not only_failed.ok                                                   # lfmlf has no finished trial
    cfg = load_sweep(QUICKSTART)
    _print_summary(cfg, only_failed, "best/source/f1/avg")
    out = capsys.readouterr().out
    assert "lfmlf    no finished trial (1 failed" in out and "exit status 3" in out
    assert "first error: RuntimeError: loss is nan" in out
    assert _error_line(RuntimeError("Traceback ...\n  File x\nValueError: bad value\n")) == "ValueError: bad value"


def test_the_sweep_runs_selection_param_follows_the_metric():
    from lfmlf.sweep.driver import sweep_params

    faithful = sweep_params(load_sweep(QUICKSTART), "/x")
    assert faithful["selection"] == "source-dev" and faithful["selection_label"] == "source-language dev"
    oracle = sweep_params(load_sweep(QUICKSTART, ["search.metric=best/zero_shot/{metric}/avg"]), "/x")
    assert oracle["selection"] == "oracle" and "oracle" in oracle["selection_label"]
    assert oracle["search_metric"] == "best/zero_shot/f1/avg"
