"""When the target languages are scored (train.target_eval), and the perf/* split of a trial's time.

Selection, ASHA and the search read source scores only; best/* needs target scores only at evaluations where
the source dev score improves. So with "improved" (the default above 3 targets) the targets are scored there
and at the last step, and every other evaluation skips them."""
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
    evals = _evaluations("auto", "[fr,it,pt,ro]", 1e-7)   # 4 targets: auto = improved; lr ~0: no improvement
    best = float("-inf")
    skipped = 0
    for i, m in enumerate(evals):
        improved = m["source/f1/avg"] > best
        best = max(best, m["source/f1/avg"])
        scored = "zero_shot/f1/avg" in m
        assert scored == (improved or i == len(evals) - 1), (i, improved, scored)
        skipped += not scored
        assert "best/zero_shot/f1/avg" in m and "best/source/f1/avg" in m   # selection never misses them
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


def test_auto_is_every_for_a_few_targets():
    assert all("zero_shot/f1/avg" in m for m in _evaluations("auto", "[fr,it]", 1e-7))
