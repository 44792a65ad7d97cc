"""One sweep can run a registered method twice under its own names (``methods.<name>.method``), e.g. LF-MLF
with the l2 and with the distill forgetting objective side by side."""
from __future__ import annotations

import pytest
import yaml

from lfmlf.checks import load_checked
from lfmlf.config import ConfigError, trial_spec
from tests.conftest import REPO, tiny_spec

SLACK = {"type": "float", "low": 0.1, "high": 1.0}


def _sweep(tmp_path, methods) -> str:
    cfg = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    cfg["methods"] = methods
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_named_entries_run_their_registered_method(tmp_path):
    cfg = load_checked(_sweep(tmp_path, {
        "lfmlf_l2": {"method": "lfmlf", "params": {"forgetting": "l2"}, "space": {"slack": SLACK}},
        "plain": {"method": "mlf"}}))
    spec = trial_spec(cfg, {"method": "lfmlf_l2", "slack": 0.5})
    assert (spec.method, spec.registered) == ("lfmlf_l2", "lfmlf")
    assert spec.method_params == {"forgetting": "l2", "slack": 0.5}
    assert spec.flat_params()["algorithm"] == "lfmlf" and spec.flat_params()["method"] == "lfmlf_l2"
    assert trial_spec(cfg, {"method": "plain"}).registered == "mlf"


def test_unknown_registered_method_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"key 'methods.mine.method': unknown method 'lfmf'. Fix: use one of"):
        load_checked(_sweep(tmp_path, {"mine": {"method": "lfmf"}}))
    with pytest.raises(ConfigError, match=r"methods.mine': unknown method\. Fix: .*'methods.mine.method'"):
        load_checked(_sweep(tmp_path, {"mine": {}}))


def test_the_entry_params_are_checked_against_the_registered_method(tmp_path):
    with pytest.raises(ConfigError, match=r"methods.x.params': .*forgetting"):
        load_checked(_sweep(tmp_path, {"x": {"method": "lfmlf", "params": {"forgetting": "nonsense"}}}))
    with pytest.raises(ConfigError, match=r"methods.x.space"):   # mlf has no slack
        load_checked(_sweep(tmp_path, {"x": {"method": "mlf", "space": {"slack": SLACK}}}))


def test_a_named_entry_trains_as_its_method(one_thread):
    from lfmlf.loop import fit

    named = tiny_spec("lfmlf_l2", params={"forgetting": "l2", "slack": 1.0}).model_copy(update={"algorithm": "lfmlf"})
    plain = tiny_spec("lfmlf", params={"forgetting": "l2", "slack": 1.0})
    a = [e.metrics for e in fit(named)][-1]
    b = [e.metrics for e in fit(plain)][-1]
    assert any(k.startswith("lfmlf/") for k in a)   # LF-MLF's own signals, so LF-MLF ran
    assert a["source/f1/avg"] == pytest.approx(b["source/f1/avg"], abs=1e-9)


def test_best_configuration_keeps_the_registered_method(tmp_path):
    from lfmlf.commands import configuration

    cfg = load_checked(_sweep(tmp_path, {"lfmlf_l2": {"method": "lfmlf", "params": {"forgetting": "l2"}}}))
    spec = trial_spec(cfg, {"method": "lfmlf_l2"})
    out = configuration(cfg, spec, {})
    assert out["methods"] == {"lfmlf_l2": {"params": {"forgetting": "l2"}, "method": "lfmlf"}}
