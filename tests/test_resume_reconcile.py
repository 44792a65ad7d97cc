"""A resumed sweep leaves MLflow and the Optuna study agreeing with each other and with the budget:

- a trial that errored and then finished on ``--resume`` is COMPLETE in Optuna (not stuck at FAIL) and
  FINISHED in MLflow without its stale ``lfmlf.error`` tag;
- a point Optuna sampled whose Tune trial was lost with a killed driver is reused by the next suggestion,
  so the study never holds more trials than the budget;
- an errored trial nobody resumes is FAIL once the sweep has ended;
- Tune's trial list and the searcher's snapshot, restored from files written at different moments, are made
  to agree before the next suggestion, so the budget counts exactly the trials Tune holds."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

pytest.importorskip("ray")

from lfmlf.search import DefineByRun, ParamSpec, fail_orphaned_trials, study_storage
from lfmlf.sweep import MethodSearch, ResumableOptunaSearch
from lfmlf.sweep.routing import TUNE_TRIAL_ATTR
from lfmlf.tracking import SweepTracker


def _searcher(url: str) -> ResumableOptunaSearch:
    space = DefineByRun("mlf", {"lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True)}, ["en", "de"])
    return ResumableOptunaSearch(space=space, metric="score", mode="max", storage=study_storage(url),
                                 study_name="s", max_steps=60)


def _states(url: str) -> list[str]:
    return [t.state.name for t in optuna.load_study(study_name="s", storage=url).trials]


def _finish(searcher: ResumableOptunaSearch, trial_id: str, score: float) -> None:
    searcher.on_trial_result(trial_id, {"score": score, "eval_step": 2, "step": 60})
    searcher.on_trial_complete(trial_id, {"score": score, "eval_step": 2, "step": 60})


def test_an_errored_trial_that_finishes_on_resume_is_complete_in_optuna(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _searcher(url)
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))   # Tune's experiment snapshot
    searcher.on_trial_complete("t1", None, error=True)
    assert _states(url) == ["RUNNING"]   # kept open: a --resume may still finish it

    resumed = _searcher(url)   # the driver was stopped; --resume restores the snapshot and re-runs t1
    resumed.restore(str(tmp_path / "searcher.pkl"))
    _finish(resumed, "t1", 0.7)
    fail_orphaned_trials(url, "s")   # the end of the sweep: nothing of this study is left to run
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    assert trial.state.name == "COMPLETE" and trial.value == 0.7


def test_an_errored_trial_nobody_resumes_is_fail_when_the_sweep_ends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _searcher(url)
    searcher.suggest("t1")
    searcher.suggest("t2")
    _finish(searcher, "t1", 0.5)
    searcher.on_trial_complete("t2", None, error=True)
    assert fail_orphaned_trials(url, "s") == 1
    assert _states(url) == ["COMPLETE", "FAIL"]


def test_a_sampled_point_whose_tune_trial_was_lost_is_reused_not_resampled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _searcher(url)
    searcher.suggest("t1")
    searcher.save(str(tmp_path / "searcher.pkl"))   # the last snapshot Tune wrote before the kill
    lost = searcher.suggest("t2")                    # sampled and stored by Optuna, never saved by Tune
    assert _states(url) == ["RUNNING", "RUNNING"]

    resumed = _searcher(url)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    again = resumed.suggest("t3")   # Tune's next trial after the resume: the lost point, not a new one
    assert again == lost
    assert len(_states(url)) == 2
    _finish(resumed, "t1", 0.4)
    _finish(resumed, "t3", 0.6)
    resumed.suggest("t4")   # nothing orphaned any more: a fresh sample
    assert _states(url) == ["COMPLETE", "COMPLETE", "RUNNING"]


def test_a_resumed_run_loses_its_stale_error_tag(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = SweepTracker(uri, "reconcile")
    tracker.start_sweep("s", str(tmp_path / "run"), params={}, tags={}, resume=False)
    run_id = tracker.trial_run("t1", "mlf-t1", params={"method": "mlf"}, tags={})
    tracker.set_tags(run_id, {"lfmlf.error": "RuntimeError: node lost"})
    tracker.finish_trial("t1", "FAILED")

    again = SweepTracker(uri, "reconcile")   # the resumed driver
    again.start_sweep("s", str(tmp_path / "run"), params={}, tags={}, resume=True)
    assert again.trial_run("t1", "mlf-t1", params={"method": "mlf"}, tags={}) == run_id
    again.finish_trial("t1", "FINISHED")
    run = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "lfmlf.error" not in run.data.tags
    assert run.data.tags["lfmlf.resumed_after_error"] == "true"


def _budgeted(url: str, budget: int = 2) -> MethodSearch:
    return MethodSearch({"mlf": _searcher(url)}, budget, "score", "max")


def test_a_trial_tune_restored_but_the_searcher_snapshot_lacks_uses_its_budget(tmp_path: Path) -> None:
    """The driver was killed after Tune's trial list had t2 but before the searcher's file did: on resume
    t2 runs from Tune's list, so it must count against the budget (else a 7th trial runs in a budget of 6)
    and its reports must reach its own Optuna trial."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    search = _budgeted(url)
    search.suggest("t1")
    search.save(str(tmp_path / "searcher.pkl"))
    point = search.suggest("t2")
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert [t.user_attrs[TUNE_TRIAL_ATTR] for t in trials] == ["t1", "t2"]

    resumed = _budgeted(url)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    assert resumed.started() == {"mlf": 1}
    resumed.reconcile({"t1": "mlf", "t2": "mlf"})   # what Tune restored
    assert resumed.started() == {"mlf": 2}
    assert resumed.suggest("t3") == "FINISHED"      # the budget of 2 is used: no third trial
    _finish(resumed.searchers["mlf"], "t2", 0.8)    # t2 resumes from its stored config and reports
    _finish(resumed.searchers["mlf"], "t1", 0.3)
    assert resumed.suggest("t2") == point           # Tune asking again for t2 gets t2's own point
    assert [(t.state.name, t.value) for t in optuna.load_study(study_name="s", storage=url).trials] == [
        ("COMPLETE", 0.3), ("COMPLETE", 0.8)]


def test_a_trial_the_searcher_suggested_but_tune_lost_runs_again_as_a_new_trial(tmp_path: Path) -> None:
    """The other order: the searcher's file has t2, Tune's trial list does not (t2 never runs). The budget
    must not count t2, and its point (RUNNING in the study) is the next suggestion's."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    search = _budgeted(url)
    search.suggest("t1")
    lost = search.suggest("t2")
    search.save(str(tmp_path / "searcher.pkl"))

    resumed = _budgeted(url)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.reconcile({"t1": "mlf"})
    assert resumed.started() == {"mlf": 1}
    assert resumed.suggest("t3") == lost                # the lost point, not a new sample
    assert resumed.suggest("t4") == "FINISHED"
    assert len(_states(url)) == 2
    resumed.reconcile({"t1": "mlf", "t3": "mlf"})       # agreeing now: nothing changes
    assert resumed.method_of == {"t1": "mlf", "t3": "mlf"}


def test_a_lost_trial_optuna_already_finished_keeps_its_budget(tmp_path: Path) -> None:
    """A trial that ran to its end (COMPLETE in the study) is not run again even if Tune's list lost it."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    search = _budgeted(url)
    search.suggest("t1")
    search.suggest("t2")
    _finish(search.searchers["mlf"], "t2", 0.5)
    search.reconcile({"t1": "mlf"})
    assert search.started() == {"mlf": 2} and search.suggest("t3") == "FINISHED"


def test_a_trial_that_ran_between_two_snapshots_uses_its_budget(tmp_path: Path) -> None:
    """Tune snapshots its experiment every 10 s or more: a short trial can start and end in between. Neither
    Tune's list nor the searcher's snapshot knows it after a kill, but the study does, and so does the
    budget (the CI failure: 4 mlf trials ran in a budget of 3)."""
    url = f"sqlite:///{tmp_path}/optuna.db"
    search = _budgeted(url)
    search.suggest("t1")
    search.save(str(tmp_path / "searcher.pkl"))
    search.suggest("t2")
    _finish(search.searchers["mlf"], "t2", 0.5)

    resumed = _budgeted(url)
    resumed.restore(str(tmp_path / "searcher.pkl"))
    resumed.reconcile({"t1": "mlf"})
    assert resumed.started() == {"mlf": 2}
    assert resumed.suggest("t3") == "FINISHED"
    assert _states(url) == ["RUNNING", "COMPLETE"]
    assert resumed.searchers["mlf"].ran_unseen({"t1"}) == ["t2"]   # named in the resumed driver's log
