"""``lfmlf report`` end to end on hand-made runs (a stand-in for the MLflow store, no Ray): the "Fronts"
section with hypervolumes, intervals over the rerun's seeds and dominance statements, the fronts figure
linked from report.md, the per-language retrieval section, ``--group-by`` columns, and the option errors."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from lfmlf import commands
from lfmlf.cli import main
from lfmlf.config import load_sweep
from lfmlf.plots import is_blank
from lfmlf.report import RunRecord

SWEEP = """\
name: frontstest
task: {name: ner, format: synthetic, synthetic: {train: 60, dev: 20, test: 20}, max_length: 32}
model: {name_or_path: tiny}
languages: {sources: [de, en], targets: [fr, it, ru]}
train: {max_steps: 120, eval_every: 30}
methods:
  mlf: {space: {lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}}}
  lfmlf: {space: {lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}}}
  ewc: {}
search: {num_samples: 3}
"""
THETA0 = {"fr": 0.80, "it": 0.76, "ru": 0.72}


def record(rid: str, method: str, lr: str, z: float, drop: float, seed: int | None = None) -> RunRecord:
    m = {"best/zero_shot/f1/fr": z + 0.02, "best/zero_shot/f1/it": z, "best/zero_shot/f1/ru": z - 0.02,
         "best/zero_shot/f1/avg": z, "best/source/f1/avg": 0.85 + z / 10}
    for lang, t0 in THETA0.items():
        m[f"best/forgetting/retrieval_acc/{lang}"] = t0 - drop
        m[f"best/forgetting/retrieval_drop/{lang}"] = drop
    m.update({"best/forgetting/retrieval_acc/avg": 0.76 - drop, "best/forgetting/retrieval_drop/avg": drop,
              "best/forgetting/retrieval_acc0/avg": 0.76})
    return RunRecord(rid, "FINISHED", method, "de+en", seed, m, params={"method": method, "lr": lr,
                                                                          "train.seed": str(seed or 0)})


SWEEP_RUNS = [record("m1", "mlf", "1e-5", 0.50, 0.10), record("m2", "mlf", "1e-4", 0.62, 0.30),
              record("m3", "mlf", "1e-3", 0.66, 0.57),
              record("l1", "lfmlf", "1e-5", 0.55, 0.08), record("l2", "lfmlf", "1e-4", 0.64, 0.20),
              record("l3", "lfmlf", "1e-3", 0.67, 0.45)]
RERUN_RUNS = [record(f"mr{s}", "mlf", "1e-3", 0.66 + 0.01 * s, 0.57, seed=s) for s in (0, 1)] + \
             [record(f"lr{s}", "lfmlf", "1e-4", 0.64 + 0.01 * s, 0.20, seed=s) for s in (0, 1)]


class Store:
    """The RunStore calls `report` makes, answered from the lists above."""

    logged: list[Path] = []

    def __init__(self, uri: str, experiment: str) -> None:
        pass

    def sweep_run(self, location: str) -> str:
        return "sweep"

    def reruns_of(self, sweep_id: str) -> list[str]:
        return ["rerun"]

    def children(self, run_id: str, histories: tuple = ()) -> list[RunRecord]:
        return list(SWEEP_RUNS if run_id == "sweep" else RERUN_RUNS)

    def params(self, run_id: str) -> dict[str, str]:
        return {}

    def tags(self, run_id: str) -> dict[str, str]:
        return {}

    def log_files(self, run_id: str, paths: list[Path], folder: str) -> None:
        Store.logged = list(paths)


@pytest.fixture()
def cfg(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(commands, "RunStore", Store)
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    return load_sweep(tmp_path / "sweep.yaml", [f"output_dir={tmp_path}/run"])


def test_report_has_fronts_dominance_and_per_language_retrieval(cfg, tmp_path: Path, capsys):
    out = tmp_path / "report"
    written = commands.report(cfg, "sqlite:///unused.db", out_dir=out, group_by="script")
    md = (out / "report.md").read_text()
    # mlf: trials at drops 10, 30 and 57 (the last merged with its rerun's seeds 0 and 1); lfmlf's trials at
    # drops 8, 20 (merged with its rerun) and 45 are higher at every budget: its front dominates
    assert "## Fronts: forgetting versus zero-shot transfer" in md
    assert ("lfmlf's front dominates mlf's: at every forgetting budget its best zero-shot is at least mlf's, and "
            "higher for drop >= 8.0 (at drop <= 20.0, best zero-shot 64.3 vs 50.0). Only lfmlf has configurations "
            "with drop < 10.0 (mlf's lowest drop).") in md
    assert "drop 76.0 = theta0's retrieval accuracy" in md
    assert "| ewc | 0 | 0 | 0 |" in md
    assert "| lfmlf | 3 | 3 | 2 |" in md                                 # seeds 0 and 1: an interval
    assert "(1000 resamples; varies the 1 configuration(s) with 2+ seeds)" in md
    assert "![forgetting_vs_zero_shot](forgetting_vs_zero_shot.png)" in md
    assert not is_blank(out / "forgetting_vs_zero_shot.png")
    assert "## Forgetting probe per language" in md and "| **Cyrl avg** |" in md
    assert "| method | sources | n | fr | it | Latn avg | ru | Cyrl avg | target avg |" in md
    printed = capsys.readouterr().out
    assert "lfmlf's front dominates mlf's" in printed and "HV " in printed
    assert out / "forgetting_vs_zero_shot.png" in written and Store.logged == written
    rows = list(csv.DictReader((out / "fronts.csv").open()))
    merged = next(r for r in rows if r["method"] == "lfmlf" and r["configuration"] == "lr=1e-4")
    assert merged["seeds"] == "0 1" and merged["runs"] == "3" and merged["on_front"] == "1"
    assert float(merged["zero_shot"]) == pytest.approx((0.64 + 0.64 + 0.65) / 3, abs=1e-12)
    assert float(merged["hv_low"]) <= float(merged["hv"]) <= float(merged["hv_high"])
    assert out / "fronts.csv" in written


def test_report_hv_ref_and_budgets(cfg, tmp_path: Path):
    commands.report(cfg, "sqlite:///unused.db", out_dir=tmp_path / "r", hv_ref=(0.0, 60.0), forgetting_at=[25.0])
    md = (tmp_path / "r" / "report.md").read_text()
    assert "zero-shot 0 and drop 60, given with --hv-ref" in md
    # lfmlf's lr 1e-4 = sweep trial (seed 0, 0.64) and rerun seeds 0 and 1 (0.64, 0.65): z = 0.64333; its front
    # (0.55, 0.08), (0.64333, 0.20), (0.67, 0.45) to drop 0.60: 0.55*0.12 + 0.64333*0.25 + 0.67*0.15 = 0.32733
    assert "| lfmlf | 3 | 3 | 2 | 32.7 |" in md
    assert "| drop <= 25.0 |" in md and "| lfmlf | 64.3 |" in md and "| mlf | 50.0 |" in md


@pytest.mark.parametrize("args, message", [(["--hv-ref", "0"], "--hv-ref '0': expected 2 comma-separated"),
                                           (["--forgetting-at", "a,b"], "--forgetting-at 'a,b'")])
def test_report_option_errors_name_the_option_and_the_fix(tmp_path: Path, capsys, args, message):
    (tmp_path / "sweep.yaml").write_text(SWEEP)
    assert main(["report", str(tmp_path / "sweep.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Fix: e.g." in err


def test_interpolation_points_join_the_fronts_but_not_the_table(cfg, tmp_path: Path, monkeypatch):
    points = [record(f"i{a}", "interp:mlf", "1e-3", 0.55 + 0.1 * a, 0.05 + 0.5 * a, seed=0) for a in (0.0, 1.0)]
    for p, a in zip(points, ("0", "1")):
        p.params["alpha"] = a
    monkeypatch.setattr(sys.modules[__name__], "RERUN_RUNS", RERUN_RUNS + points)
    commands.report(cfg, "sqlite:///unused.db", out_dir=tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    results = md[:md.index("## Fronts")]
    assert "| mlf |" in results and "interp:mlf" not in results            # no row of mixed alphas
    assert "| interp:mlf | 2 | 2 | 1 |" in md and "| interp:mlf | alpha=0 | 0 |" in md
