"""The persistent Optuna study can be ahead of Tune's experiment snapshot after a killed driver: a trial that
Optuna already holds as finished must not be updated again when Tune resumes it (Optuna raises
UpdateFinishedTrialError, which used to abort the resumed sweep)."""
from __future__ import annotations

import optuna

from lfmlf.search import DefineByRun, ParamSpec, study_storage
from lfmlf.sweep import ResumableOptunaSearch


def test_a_resumed_trial_that_optuna_already_finished_is_not_updated(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    space = DefineByRun("mlf", {"lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True)}, ["en"])
    searcher = ResumableOptunaSearch(space=space, metric="score", mode="max", storage=study_storage(url),
                                     study_name="s")
    config = searcher.suggest("t1")
    assert 1e-4 <= config["lr"] <= 1e-2
    searcher.on_trial_result("t1", {"score": 0.1, "training_iteration": 1})
    # the driver told Optuna the trial ended (persisted) ...
    searcher.on_trial_complete("t1", {"score": 0.5})
    # ... and was killed before Tune's snapshot: the restored searcher is the older pickled state
    searcher._completed_trials.discard("t1")
    searcher.on_trial_result("t1", {"score": 0.5, "training_iteration": 2})   # no UpdateFinishedTrialError
    searcher.on_trial_complete("t1", {"score": 0.5})
    (trial,) = optuna.load_study(study_name="s", storage=url).trials
    assert trial.state.name == "COMPLETE" and trial.value == 0.5
    assert trial.intermediate_values == {1: 0.1}
