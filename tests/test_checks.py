"""lfmlf.checks: the checks of a sweep against the registries, one floor above config. Parsing a sweep needs
no registry; the checks build each method's parameters at every edge of its search space; a method's
parameter class is its type argument."""
from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from lfmlf.checks import check_sweep, load_checked
from lfmlf.config import ConfigError, load_sweep
from lfmlf.methods import METHODS, Method
from lfmlf.methods.lfmlf import Lfmlf, LfmlfParams
from lfmlf.methods.mlf import Mlf, MlfParams

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"


def test_parsing_needs_no_registry_the_checks_do() -> None:
    cfg = load_sweep(QUICKSTART, ["methods={nope: {space: {x: {type: float, low: 0, high: 1}}}}"])
    assert list(cfg.methods) == ["nope"]          # the schema knows no methods
    with pytest.raises(ConfigError, match=r"key 'methods.nope': unknown method\. Fix: use one of"):
        check_sweep(cfg)


def test_the_checks_try_every_combination_of_the_edges() -> None:
    # neither the constraint choices alone nor the slack range alone is wrong: their combination is
    both = [("methods={lfmlf: {space: {constraint: {type: categorical, choices: [margin, mgda_relative]}, "
             "slack: {type: float, low: 0.1, high: 2.0}}}}")]
    with pytest.raises(ConfigError) as ei:
        load_checked(QUICKSTART, both)
    assert "the search can pick constraint='mgda_relative', slack=2.0, which method 'lfmlf' rejects" in str(ei.value)
    load_checked(QUICKSTART, [both[0].replace("high: 2.0", "high: 0.9")])


def test_a_method_is_generic_in_its_parameters() -> None:
    for name, cls in METHODS.items():
        assert cls.Params.__name__.lower() == name.replace("_", "") + "params"   # set from the type argument
        assert isinstance(cls().params, cls.Params)
    assert Lfmlf.Params is LfmlfParams and get_args(Lfmlf.__orig_bases__[0]) == (LfmlfParams,)  # type: ignore[attr-defined]
    assert Lfmlf(slack=0.3).params.slack == 0.3
    assert Mlf.Params is MlfParams and Method.Params.__name__ == "MethodParams"
