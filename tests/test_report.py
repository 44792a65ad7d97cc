"""Result tables: aggregation, left-out runs, row splitting, Wilcoxon significance, Markdown/LaTeX/CSV output."""
from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import pytest
from scipy.stats import wilcoxon

from lfmlf.report import (
    FORGETTING,
    SOURCE_AVG,
    TARGET_AVG,
    Importance,
    RunRecord,
    build_table,
    exclusion,
    merge_left_out,
    no_eligible_reason,
    selection_cost,
    sweep_left_out,
    to_csv,
    to_latex,
    to_markdown,
    write_report,
)
from lfmlf.selection import selection_label

FKEY = "best/forgetting/retrieval_drop/avg"


def metrics(scores: dict[str, float], source: float, forgetting: float | None = None) -> dict[str, float]:
    m = {f"best/zero_shot/f1/{lang}": v for lang, v in scores.items()}
    m["best/zero_shot/f1/avg"] = sum(scores.values()) / len(scores)
    m["best/source/f1/avg"] = source
    if forgetting is not None:
        m[FKEY] = forgetting
    return m


def run(rid: str, method: str, seed: int | None, scores: dict[str, float], source: float = 0.8,
        forgetting: float | None = None, status: str = "FINISHED", source_set: str = "de+en", **kw) -> RunRecord:
    return RunRecord(rid, status, method, source_set, seed, metrics(scores, source, forgetting), **kw)


def two_by_two() -> list[RunRecord]:
    """2 methods x 2 seeds x 2 targets; hand-computed expectations in the tests."""
    return [
        run("m0", "mlf", 0, {"fr": 0.60, "it": 0.50}, 0.80, 0.10, url="http://mlflow/m0"),
        run("m1", "mlf", 1, {"fr": 0.64, "it": 0.54}, 0.82, 0.12, url="http://mlflow/m1"),
        run("l0", "lfmlf", 0, {"fr": 0.70, "it": 0.52}, 0.79, 0.05),
        run("l1", "lfmlf", 1, {"fr": 0.66, "it": 0.56}, 0.81, 0.07),
    ]


def table(runs, **kw):
    return build_table(runs, task_metric="f1", targets=["fr", "it"], **kw)


def test_means_stds_and_n_by_hand():
    t = table(two_by_two())
    assert t.rows == ["mlf", "lfmlf"]                       # baseline first
    assert t.columns == ["fr", "it", TARGET_AVG, SOURCE_AVG, FORGETTING]
    assert t.keys["fr"] == "best/zero_shot/f1/fr" and t.keys[FORGETTING] == FKEY
    assert t.means["mlf"]["fr"] == pytest.approx(0.62)
    assert t.stds["mlf"]["fr"] == pytest.approx(math.sqrt(2 * 0.02 ** 2 / 1))   # ddof=1
    assert t.means["lfmlf"]["fr"] == pytest.approx(0.68)
    assert t.means["lfmlf"][FORGETTING] == pytest.approx(0.06)
    assert t.stds["lfmlf"][SOURCE_AVG] == pytest.approx(math.sqrt(2 * 0.01 ** 2))
    assert t.n["mlf"]["fr"] == 2 and t.row_n("lfmlf") == 2
    assert t.left_out == []


def test_best_is_max_except_forgetting_is_min():
    t = table(two_by_two())
    assert t.best["fr"] == ("lfmlf",)
    assert t.best[SOURCE_AVG] == ("mlf",)          # 0.81 > 0.80: max
    assert t.best[FORGETTING] == ("lfmlf",)        # 0.06 < 0.11: min, although the max is mlf's
    assert t.lower_is_better[FORGETTING] and not t.lower_is_better[SOURCE_AVG]


def test_single_run_std_is_nan_and_shown_as_dash():
    t = table([run("m0", "mlf", 0, {"fr": 0.6, "it": 0.5})])
    assert t.n["mlf"]["fr"] == 1 and math.isnan(t.stds["mlf"]["fr"])
    assert "60.0 ± –" in to_markdown(t)
    assert FORGETTING not in t.columns            # no run has the forgetting metric: no column


def test_left_out_runs_with_reasons():
    junk = {"fr": 0.99, "it": 0.99}
    runs = two_by_two() + [
        run("f2", "lfmlf", 2, junk, status="FAILED"),
        run("k3", "lfmlf", 3, junk, status="KILLED"),
        run("r4", "mlf", 4, junk, status="RUNNING"),
        run("e5", "lfmlf", 5, junk, tags={"lfmlf.stopped_early": "true"}),
        run("ok6", "lfmlf", None, {"fr": 0.68, "it": 0.54}, 0.80, 0.06, tags={"lfmlf.stopped_early": "false"}),
    ]
    t = table(runs)
    assert "run f2 (lfmlf, de+en, seed 2): FAILED" in t.left_out
    assert "run k3 (lfmlf, de+en, seed 3): KILLED" in t.left_out
    assert "run r4 (mlf, de+en, seed 4): RUNNING" in t.left_out
    assert "run e5 (lfmlf, de+en, seed 5): stopped early by ASHA" in t.left_out
    assert not any("ok6" in x for x in t.left_out)
    assert t.row_n("lfmlf") == 3 and t.row_n("mlf") == 2
    assert t.means["lfmlf"]["fr"] == pytest.approx((0.70 + 0.66 + 0.68) / 3)   # junk 0.99 never counted
    md = to_markdown(t)
    assert "stopped early by ASHA" in md and "FAILED" in md


def test_missing_metric_empty_cell_and_note():
    runs = two_by_two() + [run("x0", "ewc", 0, {"fr": 0.6, "it": 0.5}), run("x1", "ewc", 1, {"fr": 0.62, "it": 0.52})]
    del runs[1].metrics["best/zero_shot/f1/it"]      # one mlf run lacks "it"
    t = table(runs)
    assert t.n["mlf"]["it"] == 1 and t.means["mlf"]["it"] == pytest.approx(0.50)
    assert any(x.startswith("row mlf: best/zero_shot/f1/it missing") and "run m1" in x for x in t.left_out)
    assert t.n["ewc"][FORGETTING] == 0 and math.isnan(t.means["ewc"][FORGETTING])
    assert f"row ewc: no run has {FKEY} (cell left empty)" in t.left_out
    ewc_line = next(line for line in to_markdown(t).splitlines() if line.startswith("| ewc"))
    assert ewc_line.rstrip().endswith("|  |")              # empty forgetting cell
    assert "(n=1)" in next(line for line in to_markdown(t).splitlines() if line.startswith("| mlf"))


def test_method_with_two_source_sets_is_split_and_tested_per_source_set():
    runs = two_by_two() + [run("s0", "lfmlf", 0, {"fr": 0.5, "it": 0.4}, source_set="en+es"),
                           run("s1", "lfmlf", 1, {"fr": 0.52, "it": 0.41}, source_set="en+es")]
    t = table(runs)
    assert t.rows == ["mlf", "lfmlf (de+en)", "lfmlf (en+es)"]
    assert t.means["lfmlf (de+en)"]["fr"] == pytest.approx(0.68)
    assert t.means["lfmlf (en+es)"]["fr"] == pytest.approx(0.51)
    assert t.baseline_of["lfmlf (de+en)"] == "mlf"          # mlf's single row has de+en
    assert t.baseline_of["lfmlf (en+es)"] is None and t.pvalues["lfmlf (en+es)"] is None
    assert any("lfmlf (en+es): no test" in n for n in t.notes)
    assert t.row_source_sets["lfmlf (en+es)"] == ["en+es"]


def three_seeds_four_langs(delta: list[float]) -> tuple[list[RunRecord], list[float]]:
    langs = ["fr", "it", "pt", "ro"]
    runs, diffs, k = [], [], 0
    for seed in range(3):
        base = {lang: 0.5 + 0.01 * i + 0.003 * seed for i, lang in enumerate(langs)}
        better = {}
        for lang in langs:
            better[lang] = base[lang] + delta[k]
            diffs.append(better[lang] - base[lang])
            k += 1
        runs += [run(f"m{seed}", "mlf", seed, base), run(f"l{seed}", "lfmlf", seed, better)]
    return runs, diffs


def test_wilcoxon_matches_scipy_and_dagger_only_when_significant():
    delta = [0.01 * (i + 1) for i in range(12)]            # all better: exact p = 2 / 2**12
    runs, diffs = three_seeds_four_langs(delta)
    t = build_table(runs, task_metric="f1", targets=["fr", "it", "pt", "ro"])
    expected = wilcoxon(diffs, zero_method="wilcox", alternative="two-sided").pvalue
    assert t.pvalues["lfmlf"] == pytest.approx(expected, rel=1e-12)
    assert t.pvalues["lfmlf"] == pytest.approx(2 / 2 ** 12)
    assert t.n_pairs["lfmlf"] == 12 and t.significant["lfmlf"] and t.pvalues["mlf"] is None
    md = to_markdown(t)
    row = next(line for line in md.splitlines() if line.startswith("| lfmlf"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    avg_cell = cells[3 + t.columns.index(TARGET_AVG)]
    assert avg_cell.endswith("†") and sum(c.endswith("†") for c in cells) == 1
    assert "Wilcoxon signed-rank" in md and "n=12 pairs" in md

    # mixed signs: not significant, no dagger anywhere in the table; p still scipy's
    mixed = [0.01, -0.02, 0.03, -0.01, 0.02, -0.03, 0.015, -0.005, 0.0, 0.025, -0.02, 0.01]
    runs, diffs = three_seeds_four_langs(mixed)
    t = build_table(runs, task_metric="f1", targets=["fr", "it", "pt", "ro"])
    assert t.pvalues["lfmlf"] == pytest.approx(wilcoxon(diffs, zero_method="wilcox").pvalue, rel=1e-12)
    assert t.pvalues["lfmlf"] >= 0.05 and not t.significant["lfmlf"]
    table_lines = [line for line in to_markdown(t).splitlines() if line.startswith("| ")]
    assert not any("†" in line for line in table_lines)
    assert "$^\\dagger$" not in to_latex(t).split("\\bottomrule")[0]


def test_alpha_is_respected():
    runs, _diffs = three_seeds_four_langs([0.01 * (i + 1) for i in range(12)])
    t = build_table(runs, task_metric="f1", targets=["fr", "it", "pt", "ro"], alpha=1e-4)
    assert t.pvalues["lfmlf"] > 1e-4 and not t.significant["lfmlf"]


def test_no_test_for_zero_differences_or_too_few_pairs():
    same = [run("m0", "mlf", 0, {"fr": 0.6, "it": 0.5}), run("m1", "mlf", 1, {"fr": 0.6, "it": 0.5}),
            run("l0", "lfmlf", 0, {"fr": 0.6, "it": 0.5}), run("l1", "lfmlf", 1, {"fr": 0.6, "it": 0.5})]
    t = table(same)
    assert t.pvalues["lfmlf"] is None and not t.significant["lfmlf"]
    assert any("all 4 differences are zero" in n for n in t.notes)

    unpaired = [run("m0", "mlf", 0, {"fr": 0.6, "it": 0.5}), run("l5", "lfmlf", 5, {"fr": 0.7, "it": 0.6})]
    t = table(unpaired)
    assert t.pvalues["lfmlf"] is None and t.n_pairs["lfmlf"] == 0
    assert any("0 pair(s) with a common seed" in n for n in t.notes)

    t = table([run("l0", "lfmlf", 0, {"fr": 0.7, "it": 0.6})])      # no baseline at all
    assert any("baseline method 'mlf' has no counted run" in n for n in t.notes)


def test_markdown_bold_links_and_caption():
    t = table(two_by_two(), budget={"mlf": 8, "lfmlf": 8},
              selection_rule="best source-language dev score (best/source/f1/avg) of each study")
    md = to_markdown(t)
    lf = next(line for line in md.splitlines() if line.startswith("| lfmlf"))
    assert "**68.0 ± 2.8**" in lf and "**6.0 ± 1.4**" in lf    # best fr (max) and forgetting (min)
    ml = next(line for line in md.splitlines() if line.startswith("| mlf"))
    assert "**81.0 ± 1.4**" in ml and "**62.0" not in ml
    assert "forgetting ↓" in md
    assert "[seed 0](http://mlflow/m0)" in md and "[seed 1](http://mlflow/m1)" in md
    assert "Trial budget: mlf 8, lfmlf 8." in t.caption and "best source-language dev score" in t.caption
    assert f"*{t.caption}*" in md and md.index("| lfmlf") < md.index(t.caption)   # caption under the table

    single = table([run("m0", "mlf", 0, {"fr": 0.6, "it": 0.5}, url="http://mlflow/m0")])
    assert "| [mlf](http://mlflow/m0) |" in to_markdown(single)


def test_latex_booktabs_bold_dagger_and_escaping():
    runs, _ = three_seeds_four_langs([0.01 * (i + 1) for i in range(12)])
    runs += [run("x0", "mtl_mlm", 0, {"fr": 0.1, "it": 0.1, "pt": 0.1, "ro": 0.1})]
    t = build_table(runs, task_metric="f1", targets=["fr", "it", "pt", "ro"],
                    selection_rule="top 10% by best/source/f1/avg", budget={"mlf": 8, "lfmlf": 8})
    tex = to_latex(t)
    for piece in ("\\begin{tabular}", "\\toprule", "\\midrule", "\\bottomrule", "\\caption{", "\\textbf{",
                  "$^\\dagger$", "mtl\\_mlm", "10\\%", "best/source/f1/avg".replace("_", "\\_")):
        assert piece in tex, piece
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    for line in body:
        assert not re.search(r"(?<!\\)[_%]", line), line            # every _ and % escaped
    assert tex.index("\\end{tabular}") < tex.index("\\caption{")     # caption under the table


def test_csv_long_format_matches_table_exactly():
    t = table(two_by_two() + [run("x0", "ewc", 0, {"fr": 0.3, "it": 0.2})])
    rows = list(csv.DictReader(io.StringIO(to_csv(t))))
    assert list(rows[0]) == ["row", "column", "mean", "std", "n", "p_value", "best"]
    assert len(rows) == len(t.rows) * len(t.columns)
    for r in rows:
        mean = t.means[r["row"]][r["column"]]
        if math.isnan(mean):
            assert r["mean"] == ""
        else:
            assert float(r["mean"]) == mean                      # full precision round trip
        std = t.stds[r["row"]][r["column"]]
        assert (r["std"] == "") if math.isnan(std) else float(r["std"]) == std
        assert int(r["n"]) == t.n[r["row"]][r["column"]]
        assert int(r["best"]) == (r["row"] in t.best[r["column"]])
    p = next(r for r in rows if r["row"] == "lfmlf" and r["column"] == TARGET_AVG)["p_value"]
    assert float(p) == t.pvalues["lfmlf"]
    # recompute one mean from the records
    fr = next(r for r in rows if r["row"] == "mlf" and r["column"] == "fr")
    assert float(fr["mean"]) == pytest.approx((0.60 + 0.64) / 2, abs=1e-15)


FANOVA = "fANOVA (optuna.importance.FanovaImportanceEvaluator, 64 trees, seed 0)"


def test_write_report_files_and_importance(tmp_path: Path):
    t = table(two_by_two())
    importances = {
        "lfmlf": Importance({"lr": 0.7049, "slack": 0.2951}, FANOVA, 6,
                            excluded={"pruned (stopped early)": 3, "failed": 1},
                            caveat="indicative only: 6 COMPLETE trials for 2 parameter(s), fewer than 20"),
        "mlf": Importance({}, FANOVA, 1, why="needs at least 2 COMPLETE trials with different parameters"),
    }
    paths = write_report(t, tmp_path / "out", importances=importances)
    assert [p.name for p in paths] == ["report.md", "report.tex", "report.csv"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    md = paths[0].read_text()
    section = md[md.index("## Parameter importance"):]
    assert "fANOVA" in section and "FanovaImportanceEvaluator" in section     # the evaluator is named
    assert "n = 6 COMPLETE trial(s) (left out: 3 pruned (stopped early), 1 failed)" in section
    assert "**Caveat:** indicative only: 6 COMPLETE trials" in section
    assert "| lr | 0.70 |" in section and "| slack | 0.30 |" in section        # two decimals
    assert "n = 1 COMPLETE trial(s)" in section and "Not computed: needs at least 2" in section
    assert section.index("| lr |") < section.index("| slack |")
    assert paths[2].read_text() == to_csv(t)
    assert "Parameter importance" not in write_report(t, tmp_path / "plain")[0].read_text()


def test_importance_from_study_summary():
    imp = Importance.from_summary({"importances": {"lr": 0.25, "source_set": 0.75}, "evaluator": FANOVA,
                                   "n_used": 4, "excluded": {"failed": 1}, "why": "", "caveat": "few"})
    assert imp.values == {"lr": 0.25, "source_set": 0.75} and imp.n_trials == 4 and imp.evaluator == FANOVA
    assert imp.excluded == {"failed": 1} and imp.caveat == "few"


def stopped(rid: str, method: str, scores: dict[str, float], source: float, step: int | None = 60,
            status: str = "FINISHED") -> RunRecord:
    """A sweep trial that ASHA stopped at ``step`` of 120 (history of perf/steps_per_s up to it)."""
    history = {"perf/steps_per_s": [(s, 9.0) for s in range(30, step + 1, 30)]} if step else {}
    return run(rid, method, None, scores, source, status=status, tags={"lfmlf.stopped_early": "true"},
               params={"train.max_steps": "120"}, history=history)


def test_exclusion_reasons_and_the_step_a_trial_stopped_at():
    assert exclusion(run("ok", "mlf", None, {"fr": 0.6, "it": 0.5})) is None
    assert exclusion(stopped("s", "mlf", {"fr": 0.9, "it": 0.9}, 0.95)) == "stopped early by ASHA (at step 60 of 120)"
    assert exclusion(stopped("s", "mlf", {"fr": 0.9, "it": 0.9}, 0.95, step=None)) == \
        "stopped early by ASHA (before step 120)"
    assert exclusion(run("f", "mlf", None, {"fr": 0.6, "it": 0.5}, status="FAILED")) == "FAILED"
    assert exclusion(run("x", "mlf", None, {"fr": 0.6, "it": 0.5}), "best/source/f1/de") == \
        "no finite best/source/f1/de"
    runs = [stopped("s1", "ewc", {"fr": 0.9, "it": 0.9}, 0.9), stopped("s2", "ewc", {"fr": 0.9, "it": 0.9}, 0.9),
            run("f", "ewc", None, {"fr": 0.6, "it": 0.5}, status="FAILED")]
    assert no_eligible_reason(runs) == "no eligible trial (2 stopped early by ASHA, 1 FAILED)"
    assert no_eligible_reason([]) == "no trial run"
    assert sweep_left_out(runs + [run("ok", "ewc", None, {"fr": 0.6, "it": 0.5})]) == [
        "run s1 (ewc, de+en): stopped early by ASHA (at step 60 of 120)",
        "run s2 (ewc, de+en): stopped early by ASHA (at step 60 of 120)", "run f (ewc, de+en): FAILED"]


def test_every_method_is_shown_even_without_a_counted_run():
    runs = two_by_two() + [stopped("s1", "ewc", {"fr": 0.99, "it": 0.99}, 0.99),
                           run("f", "ewc", 0, {"fr": 0.99, "it": 0.99}, status="FAILED")]
    t = table(runs, methods=["mlf", "lfmlf", "ewc", "gem"], why_missing={"gem": "not in the rerun"})
    assert "ewc" not in t.rows and t.missing == {"ewc": "no eligible run (1 stopped early by ASHA, 1 FAILED)",
                                                  "gem": "not in the rerun"}
    md = to_markdown(t)
    assert "| ewc | no eligible run (1 stopped early by ASHA, 1 FAILED) | 0 |" in md
    assert "| gem | not in the rerun | 0 |" in md
    assert any(n.startswith("No row for ewc: no eligible run") for n in t.notes)
    tex = to_latex(t)
    assert "ewc & no eligible run (1 stopped early by ASHA, 1 FAILED) & 0" in tex
    rows = list(csv.DictReader(io.StringIO(to_csv(t))))
    assert {r["column"] for r in rows if r["row"] == "ewc"} == set(t.columns)
    assert all(r["n"] == "0" and r["mean"] == "" for r in rows if r["row"] in ("ewc", "gem"))


def test_oracle_selection_is_marked_in_markdown_and_latex():
    sel = selection_label("best/zero_shot/f1/avg", "dev")
    t = table(two_by_two(), selection=sel,
              selection_rule="each method's best trial by best/zero_shot/f1/avg (target-language dev (oracle))")
    assert t.caption.startswith("ORACLE SELECTION, NOT ZERO-SHOT")
    assert "target-language dev (oracle)" in t.caption and "not zero-shot" in t.caption
    md = to_markdown(t)
    assert md.startswith("> **Oracle selection, not zero-shot:**")
    assert "| mlf *(oracle: target dev)* |" in md and "| lfmlf *(oracle: target dev)* |" in md
    tex = to_latex(t)
    assert "mlf (oracle: target dev) &" in tex and "lfmlf (oracle: target dev) &" in tex
    caption = next(line for line in tex.splitlines() if line.startswith("\\caption{"))
    assert "ORACLE SELECTION" in caption and "target-language dev (oracle)" in caption

    faithful = table(two_by_two(), selection=selection_label("best/source/f1/avg", "dev"),
                     selection_rule="each method's best trial by best/source/f1/avg")
    assert "Selection: each method's best trial by best/source/f1/avg (source-language dev)." in faithful.caption
    assert "oracle" not in to_markdown(faithful).lower() and "oracle" not in to_latex(faithful).lower()


def test_oracle_reference_rows_take_no_bold_and_no_test():
    runs, _ = three_seeds_four_langs([0.01 * (i + 1) for i in range(12)])
    langs = {"fr": 0.9, "it": 0.9, "pt": 0.9, "ro": 0.9}
    oracle = [run("om", "mlf", None, langs, 0.7, source_set="en"), run("ol", "lfmlf", None, langs, 0.7)]
    t = build_table(runs, task_metric="f1", targets=["fr", "it", "pt", "ro"],
                    selection=selection_label("best/source/f1/avg", "dev"), oracle_runs=oracle,
                    oracle_selection=selection_label("best/zero_shot/f1/avg", "dev"))
    assert t.rows == ["mlf", "mlf (oracle: target dev)", "lfmlf", "lfmlf (oracle: target dev)"]
    assert t.reference_rows == ["mlf (oracle: target dev)", "lfmlf (oracle: target dev)"]
    assert t.best["fr"] == ("lfmlf",)                       # 0.9 of an oracle row never takes the bold
    assert t.pvalues["mlf (oracle: target dev)"] is None and t.baseline_of["lfmlf"] == "mlf"
    assert t.significant["lfmlf"]
    assert t.row_source_sets["mlf (oracle: target dev)"] == ["en"]
    md = to_markdown(t)
    assert "| mlf *(oracle: target dev)* | en | 1 |" in md and "**90.0" not in md
    assert "Rows marked (oracle: target dev)" in t.caption and "what selection costs" in t.caption
    tex = to_latex(t)
    assert "mlf (oracle: target dev) & en & 1" in tex

    cost = selection_cost([run("f1", "mlf", None, {"fr": 0.6, "it": 0.5})],
                          [run("o1", "mlf", None, {"fr": 0.7, "it": 0.6})], "best/zero_shot/f1/avg")
    assert cost == [("mlf: best/zero_shot/f1/avg 55.0 (zero-shot-faithful pick, run f1) vs 65.0 (oracle pick, "
                     "run o1): selection costs 10.0")]


def test_run_ids_are_comments_never_in_the_latex_caption():
    runs = two_by_two()
    t = table(runs, selection_rule="each method's best trial by best/source/f1/avg",
              selection=selection_label("best/source/f1/avg"), provenance=["rerun: MLflow run abcdef0123456789"])
    tex = to_latex(t)
    caption = next(line for line in tex.splitlines() if line.startswith("\\caption{"))
    assert "abcdef0123456789" not in caption and not any(r.run_id in caption for r in runs)
    assert "% provenance: rerun: MLflow run abcdef0123456789" in tex
    assert "% runs of mlf: m0, m1" in tex and "% runs of lfmlf: l0, l1" in tex
    assert "- rerun: MLflow run abcdef0123456789" in to_markdown(t)
    assert "abcdef0123456789" not in t.caption


def test_write_report_has_one_left_out_list(tmp_path: Path):
    runs = two_by_two() + [run("f2", "lfmlf", 2, {"fr": 0.9, "it": 0.9}, status="FAILED")]
    sweep = [stopped("s1", "mlf", {"fr": 0.9, "it": 0.9}, 0.95), run("f2", "lfmlf", 2, {"fr": 0.9, "it": 0.9},
                                                                     status="FAILED")]
    t = table(runs)
    md_path, tex_path, _ = write_report(t, tmp_path, sweep_excluded=sweep_left_out(sweep))
    md = md_path.read_text()
    assert md.count("Left out") == 1 and "Left out (2):" in md
    assert md.count("run f2 (lfmlf, de+en, seed 2): FAILED") == 1           # in both lists: once
    assert "run s1 (mlf, de+en): stopped early by ASHA (at step 60 of 120)" in md
    tex = tex_path.read_text()
    assert "% left out: run s1 (mlf, de+en): stopped early by ASHA (at step 60 of 120)" in tex
    assert merge_left_out(["a", "b"], ["b", "c"], ["a"]) == ["a", "b", "c"]


def averaged(r: RunRecord, scores: dict[str, float], source: float, forgetting: float | None = None,
             k: int = 3, first_step: int = 60) -> RunRecord:
    """``r`` with the avg/ family a run logs with ``train.average_last: k`` (checkpoint averaging)."""
    m = dict(r.metrics)
    m.update({f"avg/zero_shot/f1/{lang}": v for lang, v in scores.items()})
    m["avg/zero_shot/f1/avg"] = sum(scores.values()) / len(scores)
    m["avg/zero_shot/f1/min"] = min(scores.values())
    m["avg/source/f1/avg"] = source
    if forgetting is not None:
        m["avg/forgetting/retrieval_drop/avg"] = forgetting
    m["avg/checkpoints"], m["avg/first_step"] = float(k), float(first_step)
    return RunRecord(r.run_id, r.status, r.method, r.source_set, r.seed, m, r.params, r.tags, r.history, r.url)


def two_by_two_averaged() -> list[RunRecord]:
    """two_by_two with checkpoint averages: mlf's beat every selected row, lfmlf's are partial (seed 0 only)."""
    m0, m1, l0, l1 = two_by_two()
    return [averaged(m0, {"fr": 0.80, "it": 0.70}, 0.90, 0.02), averaged(m1, {"fr": 0.84, "it": 0.72}, 0.92, 0.04),
            averaged(l0, {"fr": 0.72, "it": 0.54}, 0.81, 0.03), l1]


def test_averaged_row_reads_the_avg_keys_with_means_over_seeds():
    t = table(two_by_two_averaged())
    assert t.rows == ["mlf", "mlf (averaged last 3)", "lfmlf", "lfmlf (averaged last 3)"]
    assert t.averaged_rows == ["mlf (averaged last 3)", "lfmlf (averaged last 3)"]
    row = "mlf (averaged last 3)"
    assert t.key(row, "fr") == "avg/zero_shot/f1/fr" and t.key(row, TARGET_AVG) == "avg/zero_shot/f1/avg"
    assert t.key(row, SOURCE_AVG) == "avg/source/f1/avg"
    assert t.key(row, FORGETTING) == "avg/forgetting/retrieval_drop/avg" and t.key("mlf", FORGETTING) == FKEY
    assert t.means[row]["fr"] == pytest.approx(0.82) and t.stds[row]["fr"] == pytest.approx(math.sqrt(2 * 0.02 ** 2))
    assert t.means[row]["it"] == pytest.approx(0.71)
    assert t.means[row][TARGET_AVG] == pytest.approx((0.75 + 0.78) / 2)
    assert t.means[row][SOURCE_AVG] == pytest.approx(0.91) and t.means[row][FORGETTING] == pytest.approx(0.03)
    assert t.row_n(row) == 2 and t.row_method[row] == "mlf" and t.row_source_sets[row] == ["de+en"]
    # the selected rows are unchanged (best/ keys)
    assert t.means["mlf"]["fr"] == pytest.approx(0.62) and t.means["lfmlf"]["fr"] == pytest.approx(0.68)
    # lfmlf: only seed 0 logged an average; the run without one is named, not counted
    lf = "lfmlf (averaged last 3)"
    assert [r.run_id for r in t.row_runs[lf]] == ["l0"] and t.means[lf]["fr"] == pytest.approx(0.72)
    assert math.isnan(t.stds[lf]["fr"])
    assert any(x.startswith(f"row {lf}: run l1 (lfmlf, de+en, seed 1) has no avg/zero_shot/f1/avg") for x in t.left_out)


def test_averaged_row_takes_no_bold_and_no_test():
    runs, _ = three_seeds_four_langs([0.01 * (i + 1) for i in range(12)])
    langs = ["fr", "it", "pt", "ro"]
    runs = [averaged(r, {lang: 0.95 for lang in langs}, 0.99, k=2) for r in runs]
    t = build_table(runs, task_metric="f1", targets=langs)
    assert t.averaged_rows == ["mlf (averaged last 2)", "lfmlf (averaged last 2)"]
    for col in t.columns:
        assert not set(t.best[col]) & set(t.averaged_rows)      # 0.95 everywhere, yet never bold
    assert t.best["fr"] == ("lfmlf",) and t.best[SOURCE_AVG] == ("mlf", "lfmlf")
    assert all(t.pvalues[row] is None and t.baseline_of[row] is None for row in t.averaged_rows)
    assert t.baseline_of["lfmlf"] == "mlf" and t.significant["lfmlf"]     # tested against the selected mlf row
    md = to_markdown(t)
    assert "**95.0" not in md
    daggers = [x for x in md.splitlines() if x.startswith("| ") and "†" in x]
    assert len(daggers) == 1 and daggers[0].startswith("| lfmlf |")     # the selected row's target avg only


def test_averaged_row_in_markdown_latex_and_csv_and_caption_says_selection_free():
    t = table(two_by_two_averaged(), selection=selection_label("best/source/f1/avg", "dev"),
              selection_rule="each method's best trial by best/source/f1/avg")
    assert "selection-free" in t.caption and "no dev data picks its checkpoint" in t.caption
    assert "(averaged last 3)" in t.caption and "no bold, no test" in t.caption
    assert any(n.startswith("Averaged rows (mlf (averaged last 3), lfmlf (averaged last 3)) read avg/zero_shot/f1/fr")
               and "only the checkpoint is selection-free" in n for n in t.notes)
    md = to_markdown(t)
    line = next(x for x in md.splitlines() if x.startswith("| mlf (averaged last 3) |"))
    assert "| de+en | 2 | 82.0 ± 2.8 | 71.0 ± 1.4 | 76.5 ± 2.1 | 91.0 ± 1.4 | 3.0 ± 1.4 |" in line
    assert "**" not in line
    assert "| [lfmlf](" not in md and "| lfmlf (averaged last 3) | de+en | 1 | 72.0 ± – |" in md
    assert "oracle" not in md.lower()
    tex = to_latex(t)
    assert "mlf (averaged last 3) & de+en & 2 & 82.0 $\\pm$ 2.8 & 71.0 $\\pm$ 1.4" in tex
    caption = next(x for x in tex.splitlines() if x.startswith("\\caption{"))
    assert "selection-free" in caption and "% runs of mlf (averaged last 3): m0, m1" in tex
    rows = {(r["row"], r["column"]): r for r in csv.DictReader(io.StringIO(to_csv(t)))}
    assert float(rows[("mlf (averaged last 3)", "fr")]["mean"]) == t.means["mlf (averaged last 3)"]["fr"]
    assert rows[("mlf (averaged last 3)", "fr")]["best"] == "0" and rows[("mlf", "fr")]["best"] == "0"
    assert rows[("mlf (averaged last 3)", TARGET_AVG)]["p_value"] == ""
    assert rows[("lfmlf (averaged last 3)", "fr")]["n"] == "1"


def test_no_averaged_row_without_avg_metrics():
    t = table(two_by_two())
    assert t.rows == ["mlf", "lfmlf"] and t.averaged_rows == [] and t.row_keys == {}
    assert "averaged" not in t.caption and "selection-free" not in t.caption
    assert not any("averaged" in n.lower() for n in t.notes)
    for text in (to_markdown(t), to_latex(t), to_csv(t)):
        assert "averaged" not in text
    # an avg/ family without the target average (e.g. only avg/checkpoints) adds nothing either
    m0, m1, l0, l1 = two_by_two()
    partial = RunRecord(m0.run_id, m0.status, m0.method, m0.source_set, m0.seed, {**m0.metrics, "avg/checkpoints": 3.0})
    assert table([partial, m1, l0, l1]).averaged_rows == []


def test_averaged_rows_follow_split_rows_and_keep_the_oracle_marker():
    m0, m1, l0, l1 = two_by_two_averaged()
    s0 = averaged(run("s0", "lfmlf", 0, {"fr": 0.5, "it": 0.4}, source_set="en+es"), {"fr": 0.55, "it": 0.45}, 0.8,
                  k=2)
    t = table([m0, m1, l0, l1, s0], selection=selection_label("best/zero_shot/f1/avg", "dev"))
    assert t.rows == ["mlf", "mlf (averaged last 3)", "lfmlf (de+en)", "lfmlf (de+en, averaged last 3)",
                      "lfmlf (en+es)", "lfmlf (en+es, averaged last 2)"]
    assert t.row_source_sets["lfmlf (en+es, averaged last 2)"] == ["en+es"]
    assert t.means["lfmlf (en+es, averaged last 2)"]["fr"] == pytest.approx(0.55)
    # the configuration behind an averaged row was selected on target data: it stays marked as an oracle
    assert t.row_marker["mlf (averaged last 3)"] == "oracle: target dev"
    assert "| mlf (averaged last 3) *(oracle: target dev)* |" in to_markdown(t)
    assert "mlf (averaged last 3) (oracle: target dev) &" in to_latex(t)
