"""lfmlf.search: the source set searched as one ``use_<lang>`` per language (the inclusion encoding).

Every trial the searcher hands on holds an allowed set (size bounds, must-include), spelt canonically, in the
``source_set`` key only; out-of-bounds draws are rejected (PRUNED, marked) rather than repaired; the same seed
gives the same sequence; a persistent study keeps the encoding it was created with; the define-by-run
function pickles (Ray ships it)."""
from __future__ import annotations

import collections
import pickle

import optuna
import pytest

from lfmlf.languages import enumerate_sets
from lfmlf.search import (
    DEFAULT_SOURCE_SET_ENCODING,
    ENCODING_ATTR,
    INFEASIBLE_ATTR,
    DefineByRun,
    ParamSpec,
    SpaceError,
    ask_feasible,
    load_space,
    make_sampler,
    study_summary,
)

SOURCES, MUST = ["de", "en", "es", "fr", "nl", "pt"], ["en"]
SETS = enumerate_sets(SOURCES, 2, 3, MUST)   # 5 + 10 = 15 sets


def _space(encoding: str | None = "inclusion") -> DefineByRun:
    return DefineByRun("mlf", {"lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True),
                               "source_set": ParamSpec(type="source_set", encoding=encoding)}, SETS)


def _run(study: optuna.Study, space: DefineByRun, n: int, score=lambda s: 0.0) -> list[dict]:
    configs = []
    for _ in range(n):
        trial = ask_feasible(study, space)
        constants = space(trial)
        config = {**{k: v for k, v in trial.params.items() if k not in space.study_only}, **constants}
        configs.append(config)
        study.tell(trial, score(config["source_set"]))
    return configs


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_every_trial_holds_an_allowed_canonical_set_and_only_the_source_set_key(sampler):
    space = _space()
    assert space.study_only == ("use_de", "use_es", "use_fr", "use_nl", "use_pt")   # en is always in
    s = optuna.samplers.RandomSampler(seed=1) if sampler == "random" else make_sampler(1, 4)
    study = optuna.create_study(direction="maximize", sampler=s)
    configs = _run(study, space, 150 if sampler == "random" else 40, score=lambda s: s.count("+") + ("fr" in s))
    for c in configs:
        assert set(c) == {"method", "lr", "source_set"}
        assert c["source_set"] in SETS   # canonical spelling, 2..3 languages, holds en
    run = 0
    for t in study.trials:
        on = sorted(["en"] + [k[4:] for k, v in t.params.items() if k.startswith("use_") and v])
        if INFEASIBLE_ATTR in t.user_attrs:   # rejected: never run, no value, outside the bounds
            assert t.value is None and not 2 <= len(on) <= 3 and t.user_attrs[INFEASIBLE_ATTR] == "+".join(on)
            # FAIL (not counted by TPE) during the 4 random start-up trials, then PRUNED (TPE learns from it)
            assert t.state.name == ("FAIL" if sampler == "tpe" and run < 4 else "PRUNED")
        else:   # run: its use_<lang> parameters are exactly its source set
            assert "+".join(on) in SETS and t.state.name == "COMPLETE"
            run += 1
    states = {t.state.name for t in study.trials if INFEASIBLE_ATTR in t.user_attrs}
    assert states == ({"FAIL", "PRUNED"} if sampler == "tpe" else {"PRUNED"})   # both phases had rejections


def test_rejection_does_not_bias_the_random_draw_towards_a_few_sets():
    """Uniform on/off draws restricted to the allowed sets: each of the 15 sets about 1/15 of 1500 = 100
    (a deterministic repair would put every "only en" draw onto one pair)."""
    space = _space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    counts = collections.Counter(c["source_set"] for c in _run(study, space, 1500))
    assert set(counts) == set(SETS)
    assert max(counts.values()) < 140 and min(counts.values()) > 65


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another():
    def sequence(seed):
        study = optuna.create_study(direction="maximize", sampler=make_sampler(seed, 3))
        return [c["source_set"] for c in _run(study, _space(), 12, score=lambda s: len(s))]

    assert sequence(5) == sequence(5)
    assert sequence(5) != sequence(6)


def test_a_study_created_with_one_encoding_is_refused_by_the_other(tmp_path):
    pytest.importorskip("ray.tune")
    from lfmlf.search import study_storage
    from lfmlf.sweep import ResumableOptunaSearch

    url = f"sqlite:///{tmp_path}/optuna.db"

    def searcher(encoding):
        return ResumableOptunaSearch(space=_space(encoding), metric="score", mode="max", storage=study_storage(url),
                                     study_name="s", max_steps=60)

    first = searcher("inclusion")
    config = first.suggest("t1")
    assert set(config) == {"method", "lr", "source_set"} and config["source_set"] in SETS   # no use_<lang> keys
    assert optuna.load_study(study_name="s", storage=url).user_attrs[ENCODING_ATTR] == "inclusion"
    searcher("inclusion")   # the same encoding resumes
    with pytest.raises(SpaceError, match="created with source_set encoding 'inclusion'.*encoding: inclusion"):
        searcher("categorical")


def test_a_resumed_sweep_checks_its_stored_study_against_the_space_it_gives_now(tmp_path):
    from lfmlf.search import check_stored_study, study_storage

    url = f"sqlite:///{tmp_path}/optuna.db"
    check_stored_study(url, "absent", _space("categorical"))   # no study yet: nothing to check
    study = optuna.create_study(study_name="s", storage=study_storage(url))
    _run(study, _space("inclusion"), 1)
    check_stored_study(url, "s", _space("inclusion"))
    with pytest.raises(SpaceError, match="encoding 'inclusion'"):
        check_stored_study(url, "s", _space("categorical"))


def test_a_study_from_before_the_encoding_was_recorded_is_read_as_categorical(tmp_path):
    pytest.importorskip("ray.tune")
    from lfmlf.search import study_storage
    from lfmlf.sweep import ResumableOptunaSearch

    url = f"sqlite:///{tmp_path}/optuna.db"
    old = optuna.create_study(study_name="s", storage=url)
    trial = old.ask()
    trial.suggest_categorical("source_set", SETS)
    old.tell(trial, 1.0)   # no ENCODING_ATTR: written by the previous lfmlf
    with pytest.raises(SpaceError, match="created with source_set encoding 'categorical'"):
        ResumableOptunaSearch(space=_space("inclusion"), metric="score", mode="max", storage=study_storage(url),
                              study_name="s", max_steps=60)


def test_study_summary_leaves_rejected_draws_out_of_the_counts(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(study_name="s", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    _run(study, _space(), 6)
    rejected = sum(INFEASIBLE_ATTR in t.user_attrs for t in study.trials)
    assert rejected > 0
    summary = study_summary(url, "s")
    assert summary["infeasible"] == rejected
    assert summary["n_trials"] == 6 and summary["counts"]["complete"] == 6 and summary["counts"]["pruned"] == 0


def test_the_define_by_run_function_pickles_and_refuses_an_unchecked_out_of_bounds_trial():
    space = pickle.loads(pickle.dumps(_space()))
    study = optuna.create_study()
    study.enqueue_trial({f"use_{lang}": False for lang in ("de", "es", "fr", "nl", "pt")})
    trial = study.ask()
    with pytest.raises(RuntimeError, match="ask_feasible"):
        space(trial)   # only en: below min_sources


def test_space_entries_and_defaults():
    assert DEFAULT_SOURCE_SET_ENCODING in ("inclusion", "categorical")
    assert _space(None).encoding == DEFAULT_SOURCE_SET_ENCODING
    assert _space("categorical").study_only == () and _space("categorical").inclusion is None
    space = load_space("mlf", {"source_set": {"type": "source_set", "encoding": "inclusion"}})
    assert space["source_set"].encoding == "inclusion"
    with pytest.raises(SpaceError, match="'encoding' belongs to type source_set"):
        load_space("mlf", {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "encoding": "inclusion"}})
    with pytest.raises(SpaceError, match="source_set"):
        load_space("mlf", {"source_set": {"type": "source_set", "encoding": "jaccard"}})


def test_a_single_allowed_set_needs_no_parameter_and_a_hand_made_list_is_refused():
    one = DefineByRun("mlf", {"source_set": ParamSpec(type="source_set", encoding="inclusion")}, ["de+en"])
    study = optuna.create_study()
    trial = ask_feasible(study, one)
    assert one(trial) == {"method": "mlf", "source_set": "de+en"} and trial.params == {}
    with pytest.raises(SpaceError, match="encoding: categorical"):
        DefineByRun("mlf", {"source_set": ParamSpec(type="source_set", encoding="inclusion")}, ["de+en", "en+es+nl"])
