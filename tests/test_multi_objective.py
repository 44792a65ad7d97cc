"""search.objectives: a multi-objective search. The config is validated (two or more distinct objectives,
only the {metric} placeholder, a forgetting objective needs the probe, search.metric/mode agree with the first
objective); each method's study gets one direction per objective and is told every objective's value at the
trial's end (FAIL, never a made-up value, when one is missing); a stored study with other directions is
refused; end to end, the quickstart runs with ASHA off and multi-objective studies."""
from __future__ import annotations

import math
import re

import optuna
import pytest
from optuna.trial import TrialState

from lfmlf.config import ConfigError, load_sweep
from lfmlf.search import (
    DefineByRun,
    ParamSpec,
    SpaceError,
    check_stored_study,
    make_sampler,
    pareto_trials,
    search_metric,
    search_objectives,
    study_storage,
)
from tests.conftest import REPO

QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
TWO = "search.objectives=[{metric: 'best/source/{metric}/avg', mode: max}, " \
      "{metric: best/forgetting/retrieval_drop/avg, mode: min}]"
F1, DROP = "best/source/f1/avg", "best/forgetting/retrieval_drop/avg"


# ----------------------------------------------------------------------------------------------- config
def test_objectives_resolve_the_task_metric_and_the_first_one_is_the_selection_metric():
    cfg = load_sweep(QUICKSTART, [TWO])
    assert search_objectives(cfg) == [(F1, "max"), (DROP, "min")]
    assert (search_metric(cfg), cfg.search.mode) == (F1, "max")   # Tune's table and `lfmlf best`
    assert search_objectives(load_sweep(QUICKSTART)) == []          # single objective by default
    # a dump of the config (sweep.yaml, `lfmlf best` output) loads again: metric/mode equal the first objective
    again = type(cfg).model_validate(cfg.model_dump(mode="json"))
    assert again.search == cfg.search


def test_objectives_first_one_may_minimise():
    cfg = load_sweep(QUICKSTART, ["search.objectives=[{metric: best/forgetting/retrieval_drop/avg, mode: min}, "
                                  "{metric: 'best/source/{metric}/avg', mode: max}]"])
    assert (search_metric(cfg), cfg.search.mode) == (DROP, "min")


@pytest.mark.parametrize("overrides, message", [
    (["search.objectives=[{metric: a, mode: max}]"], "two or more entries"),
    (["search.objectives=[{metric: a, mode: max}, {metric: a, mode: min}]"], "more than once"),
    (["search.objectives=[{metric: '{task}/a', mode: max}, {metric: b, mode: min}]"], "placeholder other than"),
    (["search.objectives=[{metric: a, mode: max}, {metric: b, mode: up}]"], "search.objectives.1.mode"),
    ([TWO, "search.mode=min"], "search.mode ('min') differs from the first objective's"),
    ([TWO, "search.metric=best/zero_shot/f1/avg"], "search.metric ('best/zero_shot/f1/avg') differs"),
    ([TWO, "probe=null"], "has no 'probe:' section"),
])
def test_bad_objectives_are_config_errors_naming_the_problem(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_sweep(QUICKSTART, overrides)


def test_objectives_equal_once_the_task_metric_is_filled_in_are_refused():
    cfg = load_sweep(QUICKSTART, [f"search.objectives=[{{metric: '{F1}', mode: max}}, "
                                  "{metric: 'best/source/{metric}/avg', mode: max}]"])
    with pytest.raises(SpaceError, match="more than once when"):
        search_objectives(cfg)


# ----------------------------------------------------------------------------------------------- searcher
def _searcher(url: str, metric, mode, name: str = "s"):
    from lfmlf.sweep.routing import ResumableOptunaSearch

    space = DefineByRun("mlf", {"lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True)}, ["en"])
    return ResumableOptunaSearch(space=space, metric=metric, mode=mode, storage=study_storage(url), study_name=name,
                                 sampler=make_sampler(0, 2), max_steps=60)


def test_multi_objective_study_has_a_direction_per_objective_and_is_told_both_values_at_the_end(tmp_path):
    pytest.importorskip("ray.tune")
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _searcher(url, [F1, DROP], ["max", "min"])
    assert searcher.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    for t in ("a", "b", "c", "diverged", "missing"):
        assert isinstance(searcher.suggest(t), dict)
    # intermediate results are not passed on (Optuna's multi-objective trials take none; no error either)
    searcher.on_trial_result("a", {F1: 0.5, "step": 30, "eval_step": 1})
    searcher.on_trial_complete("a", {F1: 0.8, DROP: 0.10, "step": 60})
    searcher.on_trial_complete("b", {F1: 0.6, DROP: 0.02, "step": 60})
    searcher.on_trial_complete("c", {F1: 0.5, DROP: 0.05, "step": 60})      # dominated by b
    searcher.on_trial_complete("diverged", {F1: 0.1, "step": 20, "diverged": 1.0})
    searcher.on_trial_complete("missing", {F1: 0.9, DROP: math.nan, "step": 60})
    study = optuna.load_study(study_name="s", storage=study_storage(url))
    by_number = {t.number: t for t in study.get_trials()}
    ids = {t: searcher._ot_trials[t].number for t in ("a", "b", "c", "diverged", "missing")}
    assert by_number[ids["a"]].values == [0.8, 0.10] and by_number[ids["b"]].values == [0.6, 0.02]
    assert by_number[ids["a"]].intermediate_values == {}
    assert by_number[ids["diverged"]].state == TrialState.PRUNED
    missing = by_number[ids["missing"]]
    assert missing.state == TrialState.FAIL and missing.user_attrs["lfmlf.missing_objectives"] == [DROP]
    assert [t.number for t in pareto_trials(url, "s")] == sorted([ids["a"], ids["b"]])
    # a late report of a finished trial is ignored, not an error
    searcher.on_trial_complete("a", {F1: 0.8, DROP: 0.10, "step": 60})


def test_a_stored_study_with_other_directions_is_refused(tmp_path):
    pytest.importorskip("ray.tune")
    url = f"sqlite:///{tmp_path}/optuna.db"
    _searcher(url, F1, "max", name="single")
    with pytest.raises(SpaceError, match=r"created with 1 objective\(s\) \(maximize\).*asks for 2"):
        _searcher(url, [F1, DROP], ["max", "min"], name="single")
    _searcher(url, [F1, DROP], ["max", "min"], name="multi")
    with pytest.raises(SpaceError, match=r"created with 2 objective\(s\) \(maximize, minimize\).*asks for 1"):
        _searcher(url, F1, "max", name="multi")
    space = DefineByRun("mlf", {"lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True)}, ["en"])
    # the check a resumed sweep runs against the sweep file's objectives before Tune restores its searchers
    check_stored_study(url, "multi", space, ["max", "min"])
    with pytest.raises(SpaceError, match="Fix: write back the search.objectives"):
        check_stored_study(url, "multi", space, ["max"])
    check_stored_study(url, "absent", space, ["max"])   # no study yet: nothing to check


# ----------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_quickstart_runs_end_to_end_with_two_objectives(tmp_path):
    from tests.test_sweep_e2e import _lfmlf, _log, _runs

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = _lfmlf(["sweep", "sweeps/quickstart.yaml", "--set", f"output_dir={tmp_path}/run", "--set", TWO,
                   "--set", "search.num_samples=2", "--set", "train.max_steps=30", "--set", "train.eval_every=15",
                   "--tracking-uri", uri], tmp_path)
    assert proc.wait(timeout=900) == 0, _log(tmp_path)[-5000:]
    out = _log(tmp_path)
    assert "search.objectives: ASHA is off: a multi-objective study has no single score to compare trials at a " \
           "rung; every trial runs to max_steps" in out
    assert "Pareto-optimal trials per method" in out
    parent = _runs(uri, "tags.`lfmlf.role` = 'sweep'")[0]
    children = _runs(uri, f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 4 and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["lfmlf.stopped_early"] for r in children} == {"false"}   # FIFO: nothing stopped early
    storage = study_storage(parent.data.tags["lfmlf.optuna_storage"])
    for method in ("mlf", "lfmlf"):
        study = optuna.load_study(study_name=parent.data.tags[f"lfmlf.optuna_study.{method}"], storage=storage)
        assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        assert len(complete) == 2 and all(len(t.values) == 2 for t in complete), method
        first = min(t.number for t in study.best_trials)   # the summary lists the front by trial number
        assert f"  {method:8s} trial {first:3d}   {F1} = " in out


def test_check_refuses_objectives_that_become_one_metric_before_anything_is_written(tmp_path):
    """``lfmlf sweep --check``: '{metric}' and the task's own metric spelled out are the same objective; refused
    at load time (exit 2, the key named), before any run exists."""
    import subprocess

    import yaml

    from tests.conftest import REPO
    d = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    d["search"]["objectives"] = [{"metric": "best/source/{metric}/avg", "mode": "max"},
                                 {"metric": "best/source/f1/avg", "mode": "min"}]
    d["search"].pop("metric", None)
    f = tmp_path / "q.yaml"
    f.write_text(yaml.safe_dump(d).replace("../", f"{REPO}/"))
    r = subprocess.run(["lfmlf", "sweep", str(f), "--check"], capture_output=True, text=True, timeout=300,
                       cwd=REPO / "sweeps")
    assert r.returncode == 2, r.stderr
    assert "search.objectives" in r.stderr and "more than once" in r.stderr
