"""Every method's study in one Tune run: a searcher and a scheduler that route each trial to its method.

:class:`MethodSearch` holds one :class:`ResumableOptunaSearch` (one Optuna study) per method and hands
Tune the next trial of the method that has started the fewest, until each method has used its budget.
:class:`MethodScheduler` holds one ASHA (or FIFO) scheduler per method and passes each trial's events to
its own method's, so a trial is only ever compared with trials of its own method: a method is never
stopped because another method scores higher. One ``Tuner`` serves them both, so all methods share the
cluster's slots at once under one ``max_concurrent_trials`` limit, and no slot idles while one method's
study drains before the next one starts.
"""
from __future__ import annotations

import logging
import math
import pickle
from collections import Counter
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState
from ray import tune
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from lfmlf.search import (
    INFEASIBLE_ATTR,
    DefineByRun,
    ask_feasible,
    check_study_directions,
    check_study_encoding,
    trial_finished,
)

logger = logging.getLogger(__name__)
#: The user attribute of a multi-objective study trial that ended without a finite value for these objectives.
MISSING_OBJECTIVES_ATTR = "lfmlf.missing_objectives"
#: The user attribute naming the Tune trial an Optuna trial was suggested for (written at ``suggest``), so a
#: resumed searcher whose snapshot is older than Tune's trial list can find the trial's point again.
TUNE_TRIAL_ATTR = "lfmlf.tune_trial_id"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch over a persistent study, telling Optuna what happened to each trial.

    - Intermediate values are reported at the loop's own ``eval_step`` (Tune's ``training_iteration``
      restarts when a trial resumes), so a pruned trial's curve is right.
    - A trial that ends before ``max_steps`` without an error was stopped by the scheduler (ASHA): it is
      told PRUNED (Optuna then keeps its last intermediate value), never COMPLETE, so neither TPE nor the
      importances treat a truncated score as a finished one. Ray's own OptunaSearch tells it COMPLETE.
    - The study can be ahead of Tune's experiment snapshot: a driver killed after Optuna recorded a trial's
      end, before Tune's next snapshot, resumes that trial, which reports again. A finished Optuna trial
      cannot be updated, so those reports are not passed on (the study already holds the trial's state).
    - A trial that errors stays RUNNING in the study until the sweep ends: ``--resume`` re-runs errored
      trials, and one that then finishes must become COMPLETE, which a FAIL trial can no longer become. The
      driver marks the ones still RUNNING FAIL once every Tune trial has ended (``fail_orphaned_trials``).
    - A point Optuna sampled whose Tune trial was never saved (the driver was killed between the two) is
      RUNNING in the study but owned by no Tune trial. The next suggestion reuses it instead of asking for
      a new one, so a resumed study never holds more trials than the budget.
    - Tune's trial list and this searcher's state are separate files in the experiment snapshot, uploaded one
      after the other; a driver killed between the two leaves them at different moments. Every suggested
      Optuna trial carries its Tune trial id (:data:`TUNE_TRIAL_ATTR`), so :meth:`adopt` finds the point of a
      Tune trial the snapshot does not know, and :meth:`disown` frees the point of one Tune never saved.
    - A study created with one source-set encoding is refused by a space with the other
      (:func:`lfmlf.search.check_study_encoding`), and the inclusion encoding's ``use_<lang>`` study
      parameters are dropped from the trial config (which holds the canonical ``source_set`` either way);
      its draws outside the source-set size bounds are told FAIL or PRUNED and drawn again
      (:func:`ask_feasible`).
    - Multi-objective (``metric`` and ``mode`` lists, ``search.objectives``): the study has one direction per
      objective (a stored study with other directions is refused, :func:`check_study_directions`), nothing is
      reported before the trial's end (Optuna's multi-objective studies take no intermediate values, and a
      forgetting metric may exist only at the last evaluation), and a trial that ran to ``max_steps`` is told
      the list of values from its last result. One that ends without a finite value for every objective is
      told FAIL with the user attribute :data:`MISSING_OBJECTIVES_ATTR` naming them, and a warning (never a
      silent COMPLETE with a made-up value); one that ends early (a divergence) is told PRUNED."""

    # Ray's OptunaSearch sets ``self._ot_study = None`` in __init__ and the study later (in __init__ with a
    # space, else in set_search_properties), so mypy infers the attribute's type as None: widen it here
    _ot_study: optuna.Study | None  # type: ignore[assignment]

    def __init__(self, *args: Any, max_steps: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_steps = max_steps
        if isinstance(self._space, DefineByRun):
            check_study_encoding(self.study, self._space)
        mode: Any = self._mode   # a str, or a list of them (multi-objective)
        check_study_directions(self.study, mode if isinstance(mode, list) else [mode])

    @property
    def multi_objective(self) -> bool:
        """Whether the study has more than one objective (``metric`` is a list)."""
        return isinstance(self._metric, list)

    @property
    def study(self) -> optuna.Study:
        """The Optuna study (every searcher lfmlf builds has its space, so Ray creates it in __init__)."""
        assert self._ot_study is not None, "ResumableOptunaSearch is always built with its space"
        return self._ot_study

    def suggest(self, trial_id: str) -> dict | None:
        new = trial_id not in self._ot_trials
        if new:
            orphan = self._orphan()
            if orphan is not None:
                self._ot_trials[trial_id] = orphan
            elif isinstance(self._space, DefineByRun):   # out-of-bounds source sets are drawn again
                self._ot_trials[trial_id] = ask_feasible(self.study, self._space)
        config = super().suggest(trial_id)
        if new and trial_id in self._ot_trials:
            self._ot_trials[trial_id].set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        study_only = getattr(self._space, "study_only", ())
        return {k: v for k, v in config.items() if k not in study_only} if isinstance(config, dict) else config

    def _orphan(self) -> Any:
        """The oldest trial the study holds RUNNING that no Tune trial of this searcher owns, or None."""
        owned = self._owned()
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            # a draw rejected for its source-set size whose end the killed driver did not write is no orphan
            if frozen._trial_id not in owned and INFEASIBLE_ATTR not in frozen.user_attrs:
                return optuna.Trial(self.study, frozen._trial_id)
        return None

    def adopt(self, trial_id: str) -> bool:
        """Called (through :meth:`MethodSearch.reconcile`) for a Tune trial of this method that Tune restored
        but this searcher's snapshot does not hold: take over the Optuna trial suggested for it, so its
        reports reach the study and no later suggestion reuses its point. False if the study has none."""
        if trial_id in self._ot_trials:
            return True
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.user_attrs.get(TUNE_TRIAL_ATTR) == trial_id:
                self._ot_trials[trial_id] = optuna.Trial(self.study, frozen._trial_id)
                return True
        return False

    def disown(self, trial_id: str) -> bool:
        """Called (through :meth:`MethodSearch.reconcile`) for a trial this searcher suggested that Tune's
        restored trial list does not hold: forget it, so its Optuna trial, still RUNNING, is the next
        suggestion's point (:meth:`_orphan`). A trial Optuna already finished is kept (it ran, and used its
        budget): returns False then."""
        if self._finished(trial_id):
            return False
        self._ot_trials.pop(trial_id, None)
        return True

    def used(self) -> int:
        """Called by :meth:`MethodSearch.started` before each new suggestion: the trials of the study that
        count against the method's budget. The study is written as trials start and end, so it is ahead of
        any snapshot Tune restores (a trial that started and ended between two experiment snapshots is
        known only here). Every trial counts except a draw rejected for its source-set size and an orphan
        (RUNNING, owned by no Tune trial: the next suggestion's point, :meth:`_orphan`)."""
        owned = self._owned()
        return sum(1 for frozen in self.study.get_trials(deepcopy=False)
                   if INFEASIBLE_ATTR not in frozen.user_attrs and frozen.state != TrialState.WAITING
                   and (frozen.state != TrialState.RUNNING or frozen._trial_id in owned))

    def ran_unseen(self, tune_trials: set[str]) -> list[str]:
        """Called once when a sweep resumes: the Tune trials this study saw end that Tune's restored trial list
        does not hold (they started and ended between Tune's last experiment snapshot and the kill). Their
        runs are whole in MLflow and the study, and count against the budget (:meth:`used`)."""
        return [str(frozen.user_attrs[TUNE_TRIAL_ATTR]) for frozen in self.study.get_trials(deepcopy=False)
                if frozen.state.is_finished() and frozen.user_attrs.get(TUNE_TRIAL_ATTR) not in (None, *tune_trials)]

    def _owned(self) -> set[int]:
        """The study's ids of the Optuna trials a Tune trial of this searcher holds."""
        return {t._trial_id for t in self._ot_trials.values()}

    def _finished(self, trial_id: str) -> bool:
        ot = self._ot_trials.get(trial_id)
        return ot is not None and trial_finished(self.study, ot)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self._finished(trial_id) or trial_id in self._completed_trials or self.multi_objective:
            return
        value = result.get(self.metric)
        if isinstance(value, (int, float)):
            self._ot_trials[trial_id].report(float(value), int(result.get("eval_step", result.get("step", 0))))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._finished(trial_id):
            self._completed_trials.add(trial_id)
            return
        if error:   # left RUNNING: a --resume may still finish it (see the class docstring)
            return
        if self.multi_objective:
            self._tell_objectives(trial_id, result or {})
            return
        if not error and result and int(result.get("step", self.max_steps)) < self.max_steps:
            # Tune does not pass the result that made the scheduler stop a trial to on_trial_result, so
            # report it here: the pruned trial's last intermediate value is the score it was stopped at
            self.on_trial_result(trial_id, result)
            self.study.tell(self._ot_trials[trial_id], state=TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)

    def _tell_objectives(self, trial_id: str, result: dict) -> None:
        """A multi-objective trial's end: PRUNED if it stopped before ``max_steps``, else the list of its
        objectives' values, or FAIL (with the missing ones named) when one is absent or not finite."""
        ot = self._ot_trials[trial_id]
        self._completed_trials.add(trial_id)
        if int(result.get("step", self.max_steps)) < self.max_steps:
            self.study.tell(ot, state=TrialState.PRUNED)
            return
        metrics: list[str] = list(self._metric or ())
        values = [result.get(m) for m in metrics]
        missing = [m for m, v in zip(metrics, values)
                   if not isinstance(v, (int, float)) or not math.isfinite(float(v))]
        if missing:
            ot.set_user_attr(MISSING_OBJECTIVES_ATTR, missing)
            self.study.tell(ot, state=TrialState.FAIL)
            logger.warning("trial %s (Optuna trial %d of %s) ended without a finite value for %s: told FAIL, so the "
                           "multi-objective study does not learn from it", trial_id, ot.number,
                           self.study.study_name, ", ".join(missing))
            return
        self.study.tell(ot, [float(v) for v in values])   # type: ignore[arg-type]   # checked finite above


class _PickledState:
    """``save`` / ``restore`` of the whole object, as Tune calls them with each experiment checkpoint."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class MethodSearch(_PickledState, Searcher):
    """One Optuna study per method behind one Tune searcher, ``budget`` trials each.

    Called by Tune: ``suggest`` when a slot is free (the method with the fewest trials so far gets it, so
    the methods advance together), ``on_trial_result`` / ``on_trial_complete`` for every trial's reports
    (forwarded to the study that suggested it), ``save`` / ``restore`` with the experiment state (every
    study's searcher and the trial -> method map travel together, so a resumed sweep keeps both)."""

    def __init__(self, searchers: Mapping[str, ResumableOptunaSearch], budget: int, metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.searchers = searchers
        self.budget = budget
        self.method_of: dict[str, str] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True   # every study was built with its metric, mode and space

    def started(self) -> dict[str, int]:
        """method -> trials started so far: what its study holds (``used``, which knows trials a restored
        snapshot missed), else the trials this searcher suggested."""
        suggested = Counter(self.method_of.values())
        return {method: searcher.used() if hasattr(searcher, "used") else suggested[method]
                for method, searcher in self.searchers.items()}

    # Searcher.suggest is annotated Optional[Dict], but its docstring and Tune's caller take Searcher.FINISHED
    # (a str) as well, which is how a search says it is done
    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]
        if trial_id in self.method_of:   # Tune asks again for a trial it already holds
            return self.searchers[self.method_of[trial_id]].suggest(trial_id)
        counts = self.started()
        open_ = [m for m in self.searchers if counts[m] < self.budget]
        if not open_:
            return Searcher.FINISHED
        method = min(open_, key=lambda m: counts[m])   # dicts keep the YAML's order for ties
        config = self.searchers[method].suggest(trial_id)
        if isinstance(config, dict):
            self.method_of[trial_id] = method
        return config

    def reconcile(self, tune_trials: Mapping[str, str]) -> None:
        """Called by :class:`SearchLedger` before Tune asks for new trials, with Tune's trials (id -> method).
        Outside a resume the two agree. A resumed snapshot can disagree: a trial Tune holds that this
        searcher does not is counted against its method's budget (and its Optuna trial adopted); one this
        searcher holds that Tune lost is dropped, so its point runs again as a new trial. Both are logged."""
        if tune_trials.keys() == self.method_of.keys():
            return
        for trial_id, method in tune_trials.items():
            if trial_id in self.method_of or method not in self.searchers:
                continue
            self.method_of[trial_id] = method
            adopt = getattr(self.searchers[method], "adopt", None)
            found = adopt(trial_id) if adopt is not None else True
            logger.warning("trial %s (%s) was in Tune's restored trial list but not in the searcher's snapshot: "
                           "counted against its budget%s", trial_id, method,
                           "" if found else "; its Optuna trial was not found, so the study does not learn from it")
        for trial_id in [t for t in self.method_of if t not in tune_trials]:
            disown = getattr(self.searchers[self.method_of[trial_id]], "disown", None)
            if disown is None or disown(trial_id):
                logger.warning("trial %s (%s) was in the searcher's snapshot but Tune lost it: its point will "
                               "run again as a new trial", trial_id, self.method_of.pop(trial_id))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.method_of:
            self.searchers[self.method_of[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.method_of:
            self.searchers[self.method_of[trial_id]].on_trial_complete(trial_id, result, error)

    def optuna_trial(self, trial_id: str) -> int | None:
        """The Optuna trial number of a Tune trial in its method's study (None before it is suggested)."""
        method = self.method_of.get(trial_id)
        ot = getattr(self.searchers.get(method or ""), "_ot_trials", {}).get(trial_id)
        return ot.number if ot is not None else None

    def link_run(self, trial_id: str, run_id: str) -> None:
        """Store the trial's MLflow run id on its Optuna trial (user attribute ``mlflow_run_id``)."""
        method = self.method_of.get(trial_id)
        ot = getattr(self.searchers.get(method or ""), "_ot_trials", {}).get(trial_id)
        if ot is not None and not self.searchers[method or ""]._finished(trial_id):
            ot.set_user_attr("mlflow_run_id", run_id)


class MethodScheduler(_PickledState, FIFOScheduler):
    """One trial scheduler per method (ASHA brackets, or FIFO); Tune's events for a trial go to the
    scheduler of ``trial.config["method"]``. Trials start in the order the searcher created them."""

    def __init__(self, schedulers: Mapping[str, TrialScheduler]) -> None:
        super().__init__()
        self.schedulers = schedulers

    def _of(self, trial: Any) -> TrialScheduler:
        return self.schedulers[trial.config["method"]]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True   # each method's scheduler was built with its metric and mode

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{m}: {s.debug_string()}" for m, s in self.schedulers.items())


class SearchLedger(tune.Callback):
    """Keeps :class:`MethodSearch`'s trials, and the concurrency limit's, equal to Tune's. Called by Tune:
    ``on_step_begin`` at every step of the driver's loop, just before Tune asks the searcher for new trials,
    so after a resume whose snapshot files were written at different moments the budget counts exactly the
    trials Tune holds (:meth:`MethodSearch.reconcile`), and the limit counts exactly the trials Tune will run
    (Ray's ``ConcurrencyLimiter`` restores its live trials from its own file: one that Tune lost would hold
    a slot for good, and one it does not know would never be passed on to the study when it ends)."""

    def __init__(self, searcher: MethodSearch, limiter: ConcurrencyLimiter | None = None) -> None:
        self.searcher, self.limiter = searcher, limiter
        self.first_step = True   # not in Tune's callback state: True again in the Tuner a resume restores

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        tune_trials = {t.trial_id: t.config.get("method") for t in trials}
        if self.first_step:
            self.first_step = False
            if self.limiter is not None:
                live = {t.trial_id for t in trials if t.status not in (Trial.TERMINATED, Trial.ERROR)}
                if live != self.limiter.live_trials:
                    logger.warning("the concurrency limit's restored live trials (%s) differ from the trials Tune "
                                   "will run (%s): set to Tune's", sorted(self.limiter.live_trials), sorted(live))
                    self.limiter.live_trials = live
                    self.limiter.num_unfinished_live_trials = len(live)
            for method, searcher in self.searcher.searchers.items():
                for trial_id in getattr(searcher, "ran_unseen", lambda _: [])(set(tune_trials)):
                    logger.warning("trial %s (%s) ran after Tune's last experiment snapshot: its MLflow run and "
                                   "Optuna trial are kept and count against the budget, but the restored ASHA "
                                   "rungs lack its scores", trial_id, method)
        self.searcher.reconcile(tune_trials)


class SchedulerState(tune.Callback):
    """Keeps the per-method schedulers' state (ASHA's rung scores) in Tune's experiment checkpoint.

    Tune 2.60 restores a scheduler from the pickle written when the experiment started, so a resumed sweep
    would compare its trials against empty rungs (nothing stopped, or everything let through). Tune does
    save and restore callbacks' ``get_state`` with every experiment checkpoint; this callback holds the
    sweep's :class:`MethodScheduler` (the same object: the Tuner's pickle keeps the identity) and carries
    its schedulers' state along. Called by Tune: ``get_state`` at each experiment checkpoint,
    ``set_state`` once when a Tuner is restored, before any trial resumes."""

    def __init__(self, scheduler: MethodScheduler) -> None:
        self.scheduler = scheduler

    def get_state(self) -> dict | None:
        return {"schedulers": pickle.dumps(self.scheduler.schedulers)}

    def set_state(self, state: dict) -> None:
        self.scheduler.schedulers = pickle.loads(state["schedulers"])
