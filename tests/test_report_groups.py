"""Report targets grouped by script or family (group-average columns, grouped bars), the per-language
retrieval table of the forgetting probe, and extra report sections (the hook other sections use)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from lfmlf.plots import is_blank, language_bars
from lfmlf.report import RunRecord, Section, build_table, language_groups, retrieval_by_language, write_report

TARGETS = ["fr", "ru", "it", "hi"]


def run(rid: str, method: str, scores: dict[str, float], seed: int, extra: dict[str, float] | None = None
        ) -> RunRecord:
    m = {f"best/zero_shot/f1/{k}": v for k, v in scores.items()}
    m["best/zero_shot/f1/avg"] = sum(scores.values()) / len(scores)
    m["best/source/f1/avg"] = 0.9
    return RunRecord(rid, "FINISHED", method, "de+en", seed, {**m, **(extra or {})})


def test_groups_by_script_and_family():
    assert language_groups(TARGETS, "script") == {"Latn": ["fr", "it"], "Cyrl": ["ru"], "Deva": ["hi"]}
    assert language_groups(TARGETS, "family") == {"Indo-European": TARGETS}
    with pytest.raises(ValueError, match="script, family"):
        language_groups(TARGETS, "alphabet")


def test_group_average_columns_are_means_of_each_runs_languages():
    runs = [run("a", "mlf", {"fr": 0.6, "ru": 0.4, "it": 0.8, "hi": 0.3}, 0),
            run("b", "mlf", {"fr": 0.7, "ru": 0.5, "it": 0.9, "hi": 0.2}, 1),
            run("c", "lfmlf", {"fr": 0.5, "ru": 0.6}, 0)]                  # no it, no hi: no Latn or Deva score
    groups = language_groups(TARGETS, "script")
    t = build_table(runs, task_metric="f1", targets=TARGETS, groups=groups, group_by="script")
    assert t.columns[:7] == ["fr", "it", "Latn avg", "ru", "Cyrl avg", "hi", "Deva avg"]
    assert t.means["mlf"]["Latn avg"] == pytest.approx(0.75)              # (0.7 + 0.8) / 2 over runs a, b
    assert t.stds["mlf"]["Latn avg"] == pytest.approx(math.sqrt(0.005))   # run means 0.7 and 0.8
    assert t.n["lfmlf"]["Latn avg"] == 0 and t.means["lfmlf"]["Cyrl avg"] == pytest.approx(0.6)
    assert t.best["Cyrl avg"] == ("lfmlf",)
    assert any("Latn = fr, it; Cyrl = ru; Deva = hi" in n for n in t.notes)
    plain = build_table(runs, task_metric="f1", targets=TARGETS)
    assert plain.columns[:4] == TARGETS and not plain.groups            # no --group-by: unchanged


def test_grouped_language_bars_draw(tmp_path: Path):
    runs = [run("a", "mlf", {"fr": 0.6, "ru": 0.4, "it": 0.8, "hi": 0.3}, 0),
            run("b", "lfmlf", {"fr": 0.7, "ru": 0.5, "it": 0.9, "hi": 0.2}, 0)]
    t = build_table(runs, task_metric="f1", targets=TARGETS, groups=language_groups(TARGETS, "script"),
                    group_by="script")
    png = language_bars(t, tmp_path / "languages.png")
    assert png is not None and not is_blank(png)


def probe(now: dict[str, float], theta0: dict[str, float]) -> dict[str, float]:
    m = {}
    for lang in now:
        m[f"best/forgetting/retrieval_acc/{lang}"] = now[lang]
        m[f"best/forgetting/retrieval_drop/{lang}"] = theta0[lang] - now[lang]
    m["best/forgetting/retrieval_acc/avg"] = sum(now.values()) / len(now)
    m["best/forgetting/retrieval_drop/avg"] = sum(theta0[x] - now[x] for x in now) / len(now)
    m["best/forgetting/retrieval_acc0/avg"] = sum(theta0.values()) / len(theta0)
    return m


def test_retrieval_by_language_shows_theta0_now_and_drop():
    theta0 = {"fr": 0.80, "ru": 0.70, "it": 0.76}
    rows = {"mlf": [run("a", "mlf", {"fr": 0.6}, 0, probe({"fr": 0.20, "ru": 0.10, "it": 0.30}, theta0)),
                    run("b", "mlf", {"fr": 0.6}, 1, probe({"fr": 0.40, "ru": 0.30, "it": 0.50}, theta0))],
            "lfmlf": [run("c", "lfmlf", {"fr": 0.6}, 0, probe({"fr": 0.70, "ru": 0.60, "it": 0.66}, theta0))]}
    md = retrieval_by_language(rows)
    assert "| language | theta0 | mlf now | mlf drop ↓ | lfmlf now | lfmlf drop ↓ |" in md
    assert "| fr | 80.0 | 30.0 | 50.0 | 70.0 | 10.0 |" in md               # mlf: mean of 0.2 and 0.4
    grouped = retrieval_by_language(rows, group_by="script")
    assert "| **Latn avg** | 78.0 | 35.0 | 43.0 | 68.0 | 10.0 |" in grouped  # fr and it lines averaged
    assert "| **Cyrl avg** | 70.0 | 20.0 | 50.0 | 60.0 | 10.0 |" in grouped
    assert retrieval_by_language({"mlf": [run("x", "mlf", {"fr": 0.6}, 0)]}) == ""   # probe off: no table


def test_extra_sections_follow_the_table_with_their_figures(tmp_path: Path):
    t = build_table([run("a", "mlf", {"fr": 0.6, "ru": 0.4, "it": 0.8, "hi": 0.3}, 0)], task_metric="f1",
                    targets=TARGETS)
    fig = tmp_path / "out" / "fronts.png"
    sections = [Section("Fronts", "front text", (fig, None)), Section("Source-language effects", "effects text")]
    write_report(t, tmp_path / "out", sections=sections)
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.index("# Results") < md.index("## Fronts\n\nfront text") < md.index("## Source-language effects")
    assert "![fronts](fronts.png)" in md
    assert "front text" not in (tmp_path / "out" / "report.tex").read_text()
