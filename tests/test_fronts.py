"""Forgetting-versus-transfer fronts (lfmlf.report.fronts): hypervolumes, dominance statements and bootstrap
intervals against hand-computed fronts; configurations, the reference point and the report section."""
from __future__ import annotations

import math

import pytest

from lfmlf.report import RunRecord
from lfmlf.report.front_section import build_fronts, fronts_markdown
from lfmlf.report.fronts import (
    THETA0_KEY,
    Reference,
    best_at,
    bootstrap_hv,
    compare,
    configurations,
    default_budgets,
    default_reference,
    hypervolume,
    pareto_front,
    run_seed,
    statement,
)

ZKEY = "best/zero_shot/f1/avg"
FKEY = "best/forgetting/retrieval_drop/avg"
ACC = "best/forgetting/retrieval_acc/avg"

A = [(0.60, 0.10), (0.70, 0.20), (0.65, 0.25)]      # (0.65, 0.25) is dominated by (0.70, 0.20)
B = [(0.55, 0.05), (0.68, 0.30)]
C = [(0.50, 0.10), (0.65, 0.20)]                     # below A everywhere A's budgets reach
D = [(0.60, 0.10), (0.75, 0.30)]                     # ties A at 0.10, lower at 0.20, higher from 0.30


def run(rid: str, method: str, z: float, f: float, seed: int | None = None, params: dict | None = None,
        status: str = "FINISHED", early: bool = False, theta0: float = 0.76) -> RunRecord:
    m = {ZKEY: z, FKEY: f, ACC: theta0 - f, THETA0_KEY: theta0}
    return RunRecord(rid, status, method, "de+en", seed, m, params=params or {},
                     tags={"lfmlf.stopped_early": str(early).lower()})


def test_hypervolume_of_hand_computed_fronts():
    # A's front (0.60, 0.10), (0.70, 0.20): 0.60 * (0.20 - 0.10) + 0.70 * (0.50 - 0.20) = 0.06 + 0.21
    assert hypervolume(A, (0.0, 0.5)) == pytest.approx(0.27)
    # B: 0.55 * (0.30 - 0.05) + 0.68 * (0.50 - 0.30) = 0.1375 + 0.136
    assert hypervolume(B, (0.0, 0.5)) == pytest.approx(0.2735)
    # z_ref 0.62 leaves (0.60, 0.10) outside the box: only (0.70, 0.20) counts, 0.08 * 0.30
    assert hypervolume(A, (0.62, 0.5)) == pytest.approx(0.024)
    # f_ref 0.15: only (0.60, 0.10), 0.60 * 0.05; nothing inside the box: 0
    assert hypervolume(A, (0.0, 0.15)) == pytest.approx(0.03)
    assert hypervolume(A, (0.9, 0.5)) == 0.0 and hypervolume([], (0.0, 0.5)) == 0.0
    # a dominated point and a duplicate add nothing
    assert hypervolume(A + [(0.60, 0.10), (0.5, 0.4)], (0.0, 0.5)) == pytest.approx(0.27)


def test_step_function_and_front():
    assert [A[i] for i in pareto_front(A)] == [(0.60, 0.10), (0.70, 0.20)]
    assert best_at(A, 0.05) is None and best_at(A, 0.10) == 0.60 and best_at(A, 0.29) == 0.70


def test_crossing_fronts_are_stated_with_their_ranges_and_numbers():
    c = compare("a", A, "b", B)
    assert c.verdict == "cross"
    assert [(s.start, s.end, s.leader) for s in c.stretches] == [(0.05, 0.10, "b"), (0.10, math.inf, "a")]
    assert (c.stretches[1].at, c.stretches[1].a, c.stretches[1].b) == (0.20, 0.70, 0.55)   # largest gap, 0.15
    assert statement(c) == ("a's and b's fronts cross: a is higher for drop >= 10.0 (at drop <= 20.0, best "
                            "zero-shot 70.0 vs 55.0); b is higher for drop in [5.0, 10.0) (at drop <= 5.0, best "
                            "zero-shot 55.0 vs none). Only b has configurations with drop < 10.0 (a's lowest "
                            "drop).")


def test_a_dominating_front_is_stated_either_way_round():
    c = compare("a", A, "c", C)
    assert c.verdict == "dominates"
    expected = ("a's front dominates c's: at every forgetting budget its best zero-shot is at least c's, and "
                "higher for drop >= 10.0 (at drop <= 10.0, best zero-shot 60.0 vs 50.0).")
    assert statement(c) == expected
    flipped = compare("c", C, "a", A)
    assert flipped.verdict == "dominated" and statement(flipped) == expected


def test_ties_cross_and_coincide():
    c = compare("a", A, "d", D)
    assert c.verdict == "cross"
    assert [(s.start, s.end, s.leader) for s in c.stretches] == [(0.10, 0.20, None), (0.20, 0.30, "a"),
                                                                 (0.30, math.inf, "d")]
    assert "a is higher for drop in [20.0, 30.0) (at drop <= 20.0, best zero-shot 70.0 vs 60.0)" in statement(c)
    same = compare("a", A, "b", list(A))
    assert same.verdict == "coincide" and "coincide" in statement(same)


def test_bootstrap_over_seeds_of_one_configuration():
    runs = [run("s0", "m", 0.6, 0.1, seed=0, params={"lr": "1e-4"}), run("s1", "m", 0.8, 0.1, seed=1,
                                                                            params={"lr": "1e-4"})]
    configs, _ = configurations(runs, ZKEY)
    (cfg,) = configs["m"]
    assert cfg.z == pytest.approx(0.7) and len(cfg.runs) == 2          # one configuration, two seeds
    iv = bootstrap_hv(configs["m"], Reference(0.0, 0.5, ""), ZKEY)
    # resamples {0,0}, {0,1}, {1,1}: HV 0.24, 0.28, 0.32; each extreme has probability 1/4 > 2.5%
    assert (iv.low, iv.high, iv.n_seeds) == (pytest.approx(0.24), pytest.approx(0.32), 2)
    one = bootstrap_hv(configurations(runs[:1], ZKEY)[0]["m"], Reference(0.0, 0.5, ""), ZKEY)
    assert one.why_none == "no interval: 1 seed" and math.isnan(one.low)


def test_bootstrap_holds_configurations_of_one_seed_fixed():
    runs = [run("s0", "m", 0.6, 0.1, seed=0, params={"lr": "1e-4"}), run("s1", "m", 0.8, 0.1, seed=1,
                                                                            params={"lr": "1e-4"}),
            run("t", "m", 0.9, 0.3, seed=0, params={"lr": "1e-3"})]   # one seed: always in, never varied
    iv = bootstrap_hv(configurations(runs, ZKEY)[0]["m"], Reference(0.0, 0.5, ""), ZKEY)
    # front (z, 0.1), (0.9, 0.3) with z in {0.6, 0.7, 0.8}: HV = 0.2 z + 0.18
    assert (iv.low, iv.high, iv.n_resampled) == (pytest.approx(0.30), pytest.approx(0.34), 1)
    apart = [run("a", "m", 0.6, 0.1, seed=0, params={"lr": "1e-4"}), run("b", "m", 0.9, 0.3, seed=1,
                                                                           params={"lr": "1e-3"})]
    none = bootstrap_hv(configurations(apart, ZKEY)[0]["m"], Reference(0.0, 0.5, ""), ZKEY)
    assert none.why_none == "no interval: no configuration has 2 or more seeds"


def test_configurations_seed_from_params_left_out_and_labels():
    runs = [run("t1", "m", 0.6, 0.1, params={"lr": "1e-4", "train.seed": "0"}),
            run("t2", "m", 0.7, 0.2, params={"lr": "3e-4", "train.seed": "0"}),
            run("t3", "m", 0.9, 0.0, params={"lr": "1e-3", "train.seed": "0"}, early=True),
            run("t4", "m", 0.9, 0.0, params={"lr": "1e-3", "train.seed": "0"}, status="FAILED")]
    assert run_seed(runs[0]) == 0
    configs, left = configurations(runs, ZKEY)
    assert [c.label for c in configs["m"]] == ["lr=1e-4", "lr=3e-4"]
    assert len(left) == 2 and "stopped early" in left[0] and "FAILED" in left[1]


def test_reference_is_theta0_or_says_why_not():
    configs, _ = configurations([run("r", "m", 0.6, 0.1)], ZKEY)
    ref = default_reference(configs)
    assert isinstance(ref, Reference) and (ref.z, ref.f) == (0.0, 0.76) and "total forgetting" in ref.how
    bare = RunRecord("x", "FINISHED", "m", "en", None, {ZKEY: 0.6, FKEY: 0.1})
    why = default_reference(configurations([bare], ZKEY)[0])
    assert isinstance(why, str) and "--hv-ref" in why


def test_default_budgets_span_the_fronts():
    configs, _ = configurations([run("a", "m", 0.6, 0.10), run("b", "n", 0.7, 0.30)], ZKEY)
    assert default_budgets(configs) == pytest.approx([0.15, 0.20, 0.25, 0.30])


def test_section_states_hv_dominance_budgets_and_members():
    runs = ([run(f"a{s}", "lfmlf", z + 0.01 * s, f, seed=s, params={"slack": sl})
             for s in (0, 1) for z, f, sl in ((0.60, 0.10, "0.1"), (0.70, 0.20, "1.0"))]
            + [run("c0", "mlf", 0.50, 0.10, seed=0, params={"lr": "1e-4"}),
               run("c1", "mlf", 0.65, 0.20, seed=0, params={"lr": "3e-4"}),
               run("cut", "mlf", 0.99, 0.01, seed=0, params={"lr": "9e-4"}, early=True)])
    fr = build_fronts(runs, "f1", ["mlf", "lfmlf", "ewc"], hv_ref=(0.0, 50.0), budgets=[15.0])
    assert fr.hv["mlf"] == pytest.approx(0.50 * 0.10 + 0.65 * 0.30)
    assert fr.hv["lfmlf"] == pytest.approx(0.605 * 0.10 + 0.705 * 0.30)
    assert fr.intervals["mlf"].why_none == "no interval: 1 seed" and fr.intervals["lfmlf"].n_seeds == 2
    md = fronts_markdown(fr)
    assert "| ewc | 0 | 0 | 0 |" in md                                    # every method shown
    assert "| mlf | 2 | 2 | 1 | 24.5 | no interval: 1 seed |" in md      # HV 0.245 in (×100)²
    assert "lfmlf's front dominates mlf's" in md
    assert "| mlf | 50.0 |" in md and "| lfmlf | 60.5 |" in md            # best zero-shot at drop <= 15
    assert "| lfmlf | slack=0.1 | 0, 1 | 60.5 | 66.0 | 76.0 | 10.0 |" in md
    assert "stopped early" in md


def test_section_without_a_probe_says_so():
    fr = build_fronts([RunRecord("x", "FINISHED", "m", "en", None, {ZKEY: 0.6})], "f1", ["m"])
    assert "No front" in fronts_markdown(fr)


def test_configurations_outside_a_given_reference_box_are_counted():
    runs = [run("a", "m", 0.60, 0.10), run("b", "m", 0.70, 0.45), run("c", "n", 0.65, 0.20)]
    md = fronts_markdown(build_fronts(runs, "f1", ["m", "n"], hv_ref=(0.0, 40.0)))
    assert "1 configuration(s) (m 1) lie outside the reference box" in md
    assert "| m | 2 | 2 | 1 | 18.0 |" in md            # only (0.60, 0.10): 0.60 * 0.30
