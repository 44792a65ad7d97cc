"""What the studies learn: a trial the scheduler stopped is PRUNED (with its intermediate values, at the
loop's eval steps), never COMPLETE; a failed one is FAIL; one that ran to max_steps is COMPLETE.

The persistent Optuna study can be ahead of Tune's experiment snapshot after a killed driver: a trial that
Optuna already holds as finished must not be updated again when Tune resumes it (Optuna raises
UpdateFinishedTrialError, which used to abort the resumed sweep)."""
from __future__ import annotations

import optuna

from lfmlf.search import DefineByRun, ParamSpec, fail_orphaned_trials, study_storage
from lfmlf.sweep import ResumableOptunaSearch


def _searcher(url: str) -> ResumableOptunaSearch:
    space = DefineByRun("mlf", {"lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True)}, ["en"])
    return ResumableOptunaSearch(space=space, metric="score", mode="max", storage=study_storage(url),
                                 study_name="s", max_steps=60)


def test_stopped_trials_are_pruned_failed_are_fail_and_finished_are_complete(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _searcher(url)
    for t in ("done", "stopped", "failed"):
        searcher.suggest(t)
    for t in ("done", "stopped"):
        searcher.on_trial_result(t, {"score": 0.2, "eval_step": 1, "step": 20, "training_iteration": 1})
    searcher.on_trial_result("done", {"score": 0.6, "eval_step": 3, "step": 60, "training_iteration": 1})
    searcher.on_trial_complete("done", {"score": 0.6, "eval_step": 3, "step": 60})
    # ASHA stopped it at its second evaluation: Tune passes that result to on_trial_complete only
    searcher.on_trial_complete("stopped", {"score": 0.3, "eval_step": 2, "step": 40})
    searcher.on_trial_complete("failed", None, error=True)
    fail_orphaned_trials(url, "s")   # the sweep's end: an errored trial nobody resumed is FAIL
    trials = {t.number: t for t in optuna.load_study(study_name="s", storage=url).trials}
    done, stopped, failed = trials[0], trials[1], trials[2]
    assert done.state.name == "COMPLETE" and done.value == 0.6 and done.intermediate_values == {1: 0.2, 3: 0.6}
    assert stopped.state.name == "PRUNED" and stopped.intermediate_values == {1: 0.2, 2: 0.3}
    assert stopped.value == 0.3   # the score it was stopped at
    assert failed.state.name == "FAIL"


def test_a_resumed_trial_that_optuna_already_finished_is_not_updated(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    searcher = _searcher(url)
    config = searcher.suggest("t1")
    assert 1e-4 <= config["lr"] <= 1e-2
    searcher.on_trial_result("t1", {"score": 0.1, "eval_step": 1, "step": 20})
    # the driver told Optuna the trial ended (persisted) ...
    searcher.on_trial_complete("t1", {"score": 0.5, "eval_step": 3, "step": 60})
    # ... and was killed before Tune's snapshot: the restored searcher is the older pickled state
    searcher._completed_trials.discard("t1")
    searcher.on_trial_result("t1", {"score": 0.5, "eval_step": 3, "step": 60})   # no UpdateFinishedTrialError
    searcher.on_trial_complete("t1", {"score": 0.5, "eval_step": 3, "step": 60})
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    assert trial.state.name == "COMPLETE" and trial.value == 0.5
    assert trial.intermediate_values == {1: 0.1}
