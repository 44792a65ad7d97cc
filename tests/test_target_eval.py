"""When the target languages are scored (train.target_eval), and the perf/* split of a trial's time.

Selection, ASHA and the search read source scores only; best/* needs target scores only at evaluations where
the source dev score improves. So with "improved" the targets are scored there and at the last step, and every
other evaluation skips them; with "selected" (the default above 3 targets) the targets and the probe are scored
once, at the end, on the selected weights, and best/* is exactly what "every" gives."""
from __future__ import annotations

from pathlib import Path

from lfmlf.checks import load_checked
from lfmlf.config import trial_spec
from lfmlf.loop import fit

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"


def _evaluations(mode: str, targets: str, lr: float) -> list[dict[str, float]]:
    cfg = load_checked(QUICKSTART, ["train.max_steps=40", "train.eval_every=10", f"train.target_eval={mode}",
                                    f"languages.targets={targets}", "task.synthetic.train=120",
                                    "task.synthetic.dev=40", "task.synthetic.test=40"])
    spec = trial_spec(cfg, {"method": "mlf", "lr": lr, "source_set": "de+en"})
    return [e.metrics for e in fit(spec)]


def test_improved_scores_targets_only_where_best_can_select_and_at_the_end():
    evals = _evaluations("improved", "[fr,it,pt,ro]", 1e-7)   # lr ~0: the source score hardly improves
    best = float("-inf")
    skipped = 0
    for i, m in enumerate(evals):
        improved = m["source/f1/avg"] > best
        best = max(best, m["source/f1/avg"])
        scored = "zero_shot/f1/avg" in m
        assert scored == (improved or i == len(evals) - 1), (i, improved, scored)
        skipped += not scored
        assert "best/zero_shot/f1/avg" in m and "best/source/f1/avg" in m   # selection never misses them
        assert "forgetting/retrieval_drop/avg" in m                         # the probe: every evaluation
    assert skipped >= 1
    assert evals[-1]["best/zero_shot/f1/avg"] == evals[int(evals[-1]["best/step"]) // 10 - 1]["zero_shot/f1/avg"]


def test_every_scores_targets_at_every_evaluation_and_the_time_split_is_logged():
    evals = _evaluations("every", "[fr,it,pt,ro]", 1e-7)
    assert all("zero_shot/f1/avg" in m for m in evals)
    for m in evals:
        assert m["perf/startup_s"] > 0 and 0 < m["perf/eval_fraction"] < 1 and m["perf/eval_s"] > 0
        parts = m["perf/eval_source_s"] + m["perf/eval_target_s"] + m["perf/probe_s"]
        assert 0 < parts <= m["perf/eval_s"] and m["perf/eval_target_s"] > 0
    assert evals[-1]["perf/eval_s"] > evals[0]["perf/eval_s"]   # cumulative


def test_selected_scores_targets_and_probe_once_on_the_selected_weights_as_every_would():
    """4 targets: auto = selected. Only the last evaluation carries target and probe scores, and its best/* are
    those that scoring at every evaluation gives for the same (selected, earlier) step."""
    selected = _evaluations("auto", "[fr,it,pt,ro]", 1e-7)
    every = _evaluations("every", "[fr,it,pt,ro]", 1e-7)
    for m in selected[:-1]:
        assert not any(k.startswith(("zero_shot/", "best/zero_shot/", "forgetting/", "best/forgetting/")) for k in m)
    last = selected[-1]
    step = int(last["best/step"])
    assert step < last["step"], "the test needs a selected step before the last one (the swap path)"
    at_best = next(m for m in every if m["step"] == step)
    for key in ("zero_shot/f1/avg", "zero_shot/f1/ro", "forgetting/retrieval_drop/avg", "source/f1/avg"):
        assert abs(last[f"best/{key}"] - at_best[key]) < 1e-6, key
    assert last["best/zero_shot/f1/avg"] == every[-1]["best/zero_shot/f1/avg"]
    assert "zero_shot/f1/avg" not in last                # the last weights are not the selected ones: not scored
    assert last["perf/eval_target_s"] > 0 and last["perf/probe_s"] > 0
    assert sum(m["perf/eval_target_s"] for m in selected) < sum(m["perf/eval_target_s"] for m in every)


def test_auto_is_every_for_a_few_targets():
    assert all("zero_shot/f1/avg" in m for m in _evaluations("auto", "[fr,it]", 1e-7))
