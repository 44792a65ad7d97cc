"""Report figures: every plot writes a non-blank PNG; Pareto front; nothing written without data."""
from __future__ import annotations

from pathlib import Path

import pytest

from lfmlf.plots import (
    forgetting_vs_zero_shot,
    is_blank,
    language_bars,
    multipliers_over_steps,
    pareto_front,
    pareto_runs,
    source_set_heatmap,
    source_set_panels,
)
from lfmlf.report import RunRecord, build_table

FKEY = "best/forgetting/retrieval_drop/avg"


def trial(rid: str, method: str, source_set: str, fr: float, it: float, drop: float | None = None,
          status: str = "FINISHED", early: bool = False, seed: int | None = None, history=None) -> RunRecord:
    m = {"best/zero_shot/f1/fr": fr, "best/zero_shot/f1/it": it, "best/zero_shot/f1/avg": (fr + it) / 2,
         "best/source/f1/avg": 0.8}
    if drop is not None:
        m[FKEY] = drop
    return RunRecord(rid, status, method, source_set, seed, m, tags={"lfmlf.stopped_early": str(early).lower()},
                     history=history or {})


def sweep() -> list[RunRecord]:
    return [
        trial("a", "mlf", "de+en", 0.60, 0.50, 0.10),
        trial("b", "mlf", "en+es", 0.62, 0.54, 0.15),
        trial("c", "lfmlf", "de+en", 0.66, 0.56, 0.05),
        trial("d", "lfmlf", "de+en+es", 0.70, 0.60, 0.08),
        trial("e", "lfmlf", "en+es", 0.58, 0.48, 0.09),     # dominated by c
        trial("f", "lfmlf", "en", 0.80, 0.80, 0.01, early=True),   # would dominate everything, but cut by ASHA
        trial("g", "mlf", "en", 0.99, 0.99, 0.0, status="FAILED"),
    ]


def test_pareto_front_keeps_only_non_dominated_points():
    pts = [(0.60, 0.10), (0.70, 0.20), (0.50, 0.30), (0.65, 0.15), (0.55, 0.10), (0.70, 0.25)]
    # (0.50,0.30), (0.55,0.10), (0.70,0.25) are dominated by (0.60,0.10), (0.60,0.10), (0.70,0.20)
    assert pareto_front(pts) == [0, 3, 1]
    assert pareto_front([(0.5, 0.1), (0.5, 0.1)]) == [0, 1]     # duplicates: neither dominates
    assert pareto_front([]) == []


def test_pareto_runs_ignore_early_stopped_and_failed():
    front = pareto_runs(sweep(), "f1")
    assert [r.run_id for r in front] == ["c", "d"]


def test_every_plot_writes_a_non_blank_png(tmp_path: Path):
    runs = sweep()
    reruns = [trial(f"{m}{s}", m, "de+en", 0.6 + 0.05 * (m == "lfmlf") + 0.01 * s, 0.5 + 0.01 * s, 0.1, seed=s)
              for m in ("mlf", "lfmlf") for s in range(2)]
    t = build_table(reruns, task_metric="f1", targets=["fr", "it"])
    lam = {"lfmlf/lambda/de": [(s, 0.1 * s) for s in range(0, 50, 5)],
           "lfmlf/lambda/en": [(s, 1.0 - 0.01 * s) for s in range(0, 50, 5)]}
    hist_runs = [trial("h1", "lfmlf", "de+en", 0.6, 0.5, history=lam),
                 trial("h2", "lfmlf", "de+en", 0.6, 0.5,
                       history={k: [(s, v + 0.05) for s, v in pts] for k, pts in lam.items()}),
                 trial("h3", "lfmlf", "en+es", 0.6, 0.5, history={"lfmlf/lambda/es": [(0, 0.2), (10, 0.4)]}),
                 trial("h4", "mlf", "de+en", 0.6, 0.5)]
    made = [
        language_bars(t, tmp_path / "bars.png"),
        forgetting_vs_zero_shot(runs, tmp_path / "pareto.png", "f1"),
        source_set_heatmap(runs, tmp_path / "heat.png", "f1", ["fr", "it", "pt"]),   # pt: no data -> grey
        source_set_heatmap(runs, tmp_path / "heat_lfmlf.png", "f1", ["fr", "it"], method="lfmlf"),
        multipliers_over_steps(hist_runs, tmp_path / "sub" / "lambda.png"),
    ]
    for path in made:
        assert path is not None and path.is_file() and path.suffix == ".png"
        assert not is_blank(path), path


def test_nothing_to_plot_returns_none_and_writes_nothing(tmp_path: Path):
    no_probe = [trial("a", "mlf", "en", 0.6, 0.5), trial("b", "lfmlf", "en", 0.7, 0.6)]
    assert forgetting_vs_zero_shot(no_probe, tmp_path / "p.png", "f1") is None
    assert multipliers_over_steps(no_probe, tmp_path / "l.png") is None
    assert source_set_heatmap([trial("x", "mlf", "en", 0.6, 0.5, status="FAILED")], tmp_path / "h.png", "f1",
                              ["fr"]) is None
    assert list(tmp_path.iterdir()) == []


def test_is_blank_detects_a_blank_png(tmp_path: Path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2), dpi=50)
    FigureCanvasAgg(fig)
    fig.savefig(tmp_path / "blank.png")
    assert is_blank(tmp_path / "blank.png")
    fig.add_subplot(1, 1, 1).plot([0, 1], [0, 1])
    fig.savefig(tmp_path / "line.png")
    assert not is_blank(tmp_path / "line.png")


@pytest.mark.parametrize("fn", [language_bars, forgetting_vs_zero_shot])
def test_no_pyplot_figures_left_open(fn, tmp_path: Path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    if fn is language_bars:
        fn(build_table(sweep(), task_metric="f1", targets=["fr", "it"]), tmp_path / "x.png")
    else:
        fn(sweep(), tmp_path / "x.png", "f1")
    assert plt.get_fignums() == before


def test_heatmap_has_one_panel_per_method_in_the_tables_units(tmp_path: Path):
    runs = sweep() + [trial("h", "lfmlf", "de+en", 0.70, 0.60, 0.05)]
    panels = source_set_panels(runs, "f1", ["fr", "it"])
    assert [p.method for p in panels] == ["lfmlf", "mlf"]           # never pooled across methods
    lf, ml = panels
    assert lf.sets == ["de+en", "en+es", "de+en+es"] and lf.counts == [2, 1, 1]   # f stopped early, not here
    assert ml.sets == ["de+en", "en+es"]                            # g FAILED, not here
    assert lf.columns == ["fr", "it", "avg"]
    assert lf.values[0][0] == pytest.approx(68.0) and lf.values[0][2] == pytest.approx(63.0)   # x 100, mean of c, h
    assert ml.values[1][2] == pytest.approx(58.0)
    assert source_set_panels(runs, "f1", ["fr"], method="mlf")[0].method == "mlf"
    assert len(source_set_panels(runs, "f1", ["fr"], method="mlf")) == 1
    assert source_set_panels(runs, "f1", ["fr"], scale=1.0)[1].values[0][0] == pytest.approx(0.60)
    path = source_set_heatmap(runs, tmp_path / "heat.png", "f1", ["fr", "it"])
    assert path is not None and not is_blank(path)
