"""lfmlf.sweep.routing: one Tune searcher and scheduler over every method's study. The searcher gives each
method exactly its budget and advances the methods together; reports go to the study that suggested the
trial; its state survives save/restore; the scheduler hands each trial's events to its own method's."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("ray.tune")

from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from lfmlf.sweep.routing import MethodScheduler, MethodSearch, SearchLedger


class FakeStudy(Searcher):
    """Stands in for one method's OptunaSearch: records what it is told."""

    def __init__(self, method: str) -> None:
        super().__init__(metric="m", mode="max")
        self.method, self.suggested, self.results, self.completed = method, [], [], []

    def suggest(self, trial_id):
        self.suggested.append(trial_id)
        return {"method": self.method, "lr": 0.1}

    def on_trial_result(self, trial_id, result):
        self.results.append((trial_id, result["m"]))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.completed.append((trial_id, error))


def _search(budget=3, methods=("mlf", "lfmlf", "l2sp")):
    return MethodSearch({m: FakeStudy(m) for m in methods}, budget, "m", "max")


def test_every_method_gets_exactly_its_budget_and_the_methods_advance_together():
    search = _search(budget=3)
    order = [search.suggest(f"t{i}") for i in range(10)]
    assert order[-1] == Searcher.FINISHED
    methods = [c["method"] for c in order[:-1]]
    assert methods == ["mlf", "lfmlf", "l2sp"] * 3            # round robin: no method waits for another
    assert search.started() == {"mlf": 3, "lfmlf": 3, "l2sp": 3}
    assert search.suggest("t99") == Searcher.FINISHED


def test_reports_reach_only_the_study_that_suggested_the_trial():
    search = _search(budget=2, methods=("mlf", "lfmlf"))
    search.suggest("a")   # mlf
    search.suggest("b")   # lfmlf
    search.on_trial_result("b", {"m": 0.5})
    search.on_trial_complete("a", {"m": 0.7}, error=True)
    mlf, lfmlf = search.searchers["mlf"], search.searchers["lfmlf"]
    assert lfmlf.results == [("b", 0.5)] and mlf.results == []
    assert mlf.completed == [("a", True)] and lfmlf.completed == []
    search.on_trial_result("unknown", {"m": 1.0})   # a trial it never suggested is ignored, not misrouted
    assert lfmlf.results == [("b", 0.5)]


def test_a_repeated_suggest_for_a_known_trial_stays_with_its_method_and_uses_no_budget():
    search = _search(budget=1, methods=("mlf", "lfmlf"))
    assert search.suggest("a")["method"] == "mlf"
    assert search.suggest("a")["method"] == "mlf"
    assert search.started() == {"mlf": 1, "lfmlf": 0}


def test_a_study_that_has_nothing_now_does_not_use_up_budget():
    search = _search(budget=2, methods=("mlf",))
    search.searchers["mlf"].suggest = lambda trial_id: None   # e.g. waiting on a concurrency limit
    assert search.suggest("a") is None
    assert search.started() == {"mlf": 0}


def test_state_survives_save_and_restore(tmp_path):
    search = _search(budget=2, methods=("mlf", "lfmlf"))
    for t in ("a", "b", "c"):
        search.suggest(t)
    search.save(str(tmp_path / "s.pkl"))
    restored = _search(budget=99, methods=("mlf", "lfmlf"))
    restored.restore(str(tmp_path / "s.pkl"))
    assert restored.method_of == {"a": "mlf", "b": "lfmlf", "c": "mlf"} and restored.budget == 2
    assert restored.suggest("d")["method"] == "lfmlf"
    assert restored.suggest("e") == Searcher.FINISHED


def test_the_ledger_makes_the_budget_count_the_trials_tune_holds():
    """Tune's restored trial list has a trial the searcher's snapshot lacks (d) and lacks one it has (c)."""
    search = _search(budget=2, methods=("mlf", "lfmlf"))
    for t in ("a", "b", "c"):
        search.suggest(t)
    tune_trials = [SimpleNamespace(trial_id=t, config={"method": m}) for t, m in
                   (("a", "mlf"), ("b", "lfmlf"), ("d", "lfmlf"))]
    SearchLedger(search).on_step_begin(0, tune_trials)
    assert search.method_of == {"a": "mlf", "b": "lfmlf", "d": "lfmlf"}
    assert search.suggest("e")["method"] == "mlf"   # c's place: mlf had one trial, lfmlf already two
    assert search.suggest("f") == Searcher.FINISHED
    search.on_trial_result("d", {"m": 0.9})          # d's reports reach its method's study
    assert search.searchers["lfmlf"].results == [("d", 0.9)]


def test_the_ledger_mends_the_concurrency_limit_a_resume_restored():
    """The limiter's file says 'lost' is running (Tune lost it) and does not know 'b' (Tune will run it): left
    so, 'lost' would hold one of the 2 slots for good and b's end would never reach its study."""
    search = _search(budget=3, methods=("mlf", "lfmlf"))
    limiter = ConcurrencyLimiter(search, max_concurrent=2)
    for t in ("a", "b"):
        search.suggest(t)
    limiter.live_trials, limiter.num_unfinished_live_trials = {"lost"}, 1
    trials = [SimpleNamespace(trial_id="a", status="TERMINATED", config={"method": "mlf"}),
              SimpleNamespace(trial_id="b", status="PENDING", config={"method": "lfmlf"})]
    ledger = SearchLedger(search, limiter)
    ledger.on_step_begin(0, trials)
    assert limiter.live_trials == {"b"}
    assert limiter.suggest("c")["method"] == "mlf"     # the second slot is free again
    assert limiter.suggest("d") is None                # and then both are taken
    limiter.on_trial_complete("b", {"m": 0.4})
    assert search.searchers["lfmlf"].completed == [("b", False)]   # b's end reached its study
    limiter.live_trials = {"x"}
    ledger.on_step_begin(1, trials)                    # only the first step after a (re)start mends
    assert limiter.live_trials == {"x"}


class FakeScheduler(TrialScheduler):
    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer, self.events = answer, []

    def on_trial_add(self, controller, trial):
        self.events.append(("add", trial.trial_id))

    def on_trial_result(self, controller, trial, result):
        self.events.append(("result", trial.trial_id))
        return self.answer

    def on_trial_complete(self, controller, trial, result):
        self.events.append(("complete", trial.trial_id))

    def on_trial_error(self, controller, trial):
        self.events.append(("error", trial.trial_id))

    def on_trial_remove(self, controller, trial):
        self.events.append(("remove", trial.trial_id))

    def debug_string(self):
        return self.answer


def test_the_scheduler_hands_each_trial_to_its_own_methods_scheduler():
    stop, go = FakeScheduler(TrialScheduler.STOP), FakeScheduler(TrialScheduler.CONTINUE)
    sched = MethodScheduler({"mlf": stop, "lfmlf": go})
    a = SimpleNamespace(trial_id="a", config={"method": "mlf"})
    b = SimpleNamespace(trial_id="b", config={"method": "lfmlf"})
    for t in (a, b):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, a, {}) == TrialScheduler.STOP
    assert sched.on_trial_result(None, b, {}) == TrialScheduler.CONTINUE
    sched.on_trial_complete(None, b, {})
    sched.on_trial_error(None, a)
    assert stop.events == [("add", "a"), ("result", "a"), ("error", "a")]
    assert go.events == [("add", "b"), ("result", "b"), ("complete", "b")]
    assert sched.debug_string() == f"mlf: {TrialScheduler.STOP}\nlfmlf: {TrialScheduler.CONTINUE}"


def test_asha_brackets_are_per_method():
    """A real ASHA per method: a weak lfmlf trial is compared with lfmlf trials only, so a much stronger
    mlf trial at the same rung does not stop it."""
    from ray.tune.schedulers import ASHAScheduler

    def asha():
        return ASHAScheduler(time_attr="eval_step", metric="m", mode="max", max_t=8, grace_period=1,
                             reduction_factor=2)

    sched = MethodScheduler({"mlf": asha(), "lfmlf": asha()})
    strong = SimpleNamespace(trial_id="s", config={"method": "mlf"})
    weak = SimpleNamespace(trial_id="w", config={"method": "lfmlf"})
    for t in (strong, weak):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, strong, {"eval_step": 1, "m": 0.9}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, weak, {"eval_step": 1, "m": 0.1}) == TrialScheduler.CONTINUE
    # a single shared ASHA would have stopped the weak trial against the strong one's rung score
    shared = asha()
    for t in (strong, weak):
        shared.on_trial_add(None, t)
    shared.on_trial_result(None, strong, {"eval_step": 1, "m": 0.9})
    assert shared.on_trial_result(None, weak, {"eval_step": 1, "m": 0.1}) == TrialScheduler.STOP
