#!/usr/bin/env python
"""Source-set search: the ``inclusion`` encoding (one ``use_<lang>`` per language) against the ``categorical``
one (one value per canonical set), at equal budget, on known synthetic objectives, without Ray.

    python benchmarks/source_set_search.py           # 2 objectives x 2 pools, 20 seeds, budget 32: ~40 s on 2 cores
    python benchmarks/source_set_search.py --seeds 3 --budget 16 --pools quickstart
    python benchmarks/source_set_search.py --objectives real --pools quickstart --seeds 50 --budget 16

Each search seed draws one objective and runs both encodings on it with a sampler of that seed. A search is
the production one: :class:`lfmlf.search.DefineByRun` over the space ``lr`` (log, as in
``search_spaces/quickstart_*.yaml``) + ``source_set``, :func:`lfmlf.search.make_sampler` (multivariate
grouped TPE, the sweep's ``n_startup_trials``), trials asked with :func:`lfmlf.search.ask_feasible` and told
the noisy score. Budget = trials run: draws the inclusion encoding rejects for their size are not counted.

The objective of a source set S and learning rate lr, seeded per search seed::

    f(S, lr) = sum_{l in S} a_l + sum_{l<k in S} b_lk - c (|S| - 2)^2 - w (log10 lr - log10 lr*)^2 (+ noise)

with a_l ~ N(0, 1) per language (some languages help, some hurt: additive, what the inclusion encoding can
share between sets), b_lk ~ N(0, 0.3) per pair (interactions it cannot express per language), c = 0.15 and a
noise of standard deviation 0.3 on every observation. The control objective ``unstructured`` gives every set
an independent N(0, 1) score instead of the set terms (nothing to share between sets: the case the
categorical is made for). Pools: ``quickstart`` (the quickstart's sources de, en, es, nl, en always in, 2 to
3 languages: 6 sets) and ``pool8`` (8 sources, en always in, 2 to 4: 63 sets).

Printed per objective, pool and encoding: the mean over seeds of the regret (the noise-free optimum minus
the noise-free value of the trial with the best *observed* score so far, the one a sweep would select) after
2, 4, 8, ... trials, its standard error, the share of seeds where the optimal set was found and the mean number of
draws rejected for their size; then the paired (same seed, same objective) difference of the regrets.

``--objectives real`` (quickstart pool only) replaces the formula by the real quickstart trial: the MLF
trial's ``best/source/f1/avg`` after ``lfmlf.loop.fit`` (120 steps, training seed 0, the probe off) for
each of the 6 sets at 4 learning rates (:data:`REAL_LRS`; a sampled lr is snapped to the nearest in log
scale), trained once (24 trials, about 2.5 min on 2 cores) and cached in ``.cache/``. It has no noise beyond
that one training seed's.

What this shows: how fast each encoding finds good sets when scores are mostly additive over languages plus
pairwise interactions, and (``unstructured``) what the inclusion encoding costs when they are not. It does
not show that real source-language effects are additive; the real quickstart is too small (6 sets, 4
trials) to separate the two encodings in the few minutes a sweep takes.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import optuna  # noqa: E402

from lfmlf.languages import enumerate_sets  # noqa: E402
from lfmlf.search import DefineByRun, ParamSpec, ask_feasible, make_sampler  # noqa: E402

POOLS: dict[str, dict] = {
    "quickstart": {"sources": ["de", "en", "es", "nl"], "min": 2, "max": 3, "must": ["en"], "startup": 2},
    "pool8": {"sources": ["de", "en", "es", "fr", "it", "nl", "pt", "ru"], "min": 2, "max": 4, "must": ["en"],
              "startup": 4},
}
LR_LOW, LR_HIGH = 3.0e-4, 5.0e-3
NOISE, PAIR_SD, SIZE_PENALTY, LR_WEIGHT = 0.3, 0.3, 0.15, 2.0


class Objective:
    """One draw of the synthetic objective over a pool (see the module docstring)."""

    def __init__(self, sources: list[str], seed: int, kind: str = "additive") -> None:
        rng = np.random.default_rng(seed)
        self.kind = kind
        self.a = {lang: float(rng.normal(0.0, 1.0)) for lang in sources}
        self.b = {pair: float(rng.normal(0.0, PAIR_SD)) for pair in itertools.combinations(sorted(sources), 2)}
        self.lr_star = float(10 ** rng.uniform(math.log10(LR_LOW) + 0.2, math.log10(LR_HIGH) - 0.2))
        self.noise = np.random.default_rng(seed + 10_000)
        self.seed = seed

    def true(self, source_set: str, lr: float) -> float:
        langs = sorted(source_set.split("+"))
        lr_term = LR_WEIGHT * (math.log10(lr) - math.log10(self.lr_star)) ** 2
        if self.kind == "unstructured":   # one independent draw per set, fixed by the seed and the set's name
            return float(np.random.default_rng([self.seed, *source_set.encode()]).normal(0.0, 1.0)) - lr_term
        return (sum(self.a[lang] for lang in langs) + sum(self.b[p] for p in itertools.combinations(langs, 2))
                - SIZE_PENALTY * (len(langs) - 2) ** 2 - lr_term)

    def observe(self, source_set: str, lr: float) -> float:
        return self.true(source_set, lr) + float(self.noise.normal(0.0, NOISE))

    def best(self, sets: list[str]) -> tuple[float, str]:
        """The noise-free optimum and its set."""
        return max((self.true(s, self.lr_star), s) for s in sets)


class QuickstartTable:
    """The real quickstart trial as an objective: ``best/source/f1/avg`` of one ``lfmlf.loop.fit`` run (MLF,
    training seed 0, the probe off: the search does not read it) per source set and learning rate of
    :data:`REAL_LRS`; a sampled lr is snapped to the nearest of those in log scale. Deterministic: no noise
    beyond what one training seed has."""

    def __init__(self, table: dict[str, dict[str, float]]) -> None:
        self.table = table

    def true(self, source_set: str, lr: float) -> float:
        nearest = min(REAL_LRS, key=lambda g: abs(math.log10(g) - math.log10(lr)))
        return self.table[source_set][repr(nearest)]

    observe = true

    def best(self, sets: list[str]) -> tuple[float, str]:
        return max((max(self.table[s].values()), s) for s in sets)


REAL_LRS = (3.0e-4, 7.5e-4, 2.0e-3, 5.0e-3)


def real_table(path: Path, steps: int) -> dict[str, dict[str, float]]:
    """``{set: {lr: score}}`` of the quickstart's MLF trial: read from ``path`` if there, else trained here
    (24 trials of ``steps`` steps, about 6 s each on 2 cores) and written there."""
    if path.is_file():
        return json.loads(path.read_text())
    from lfmlf.checks import load_checked
    from lfmlf.config import trial_spec
    from lfmlf.loop import fit

    cfg = load_checked(REPO / "sweeps" / "quickstart.yaml", [f"train.max_steps={steps}"])
    cfg = cfg.model_copy(update={"probe": None})
    table: dict[str, dict[str, float]] = {}
    for s in cfg.source_sets():
        for lr in REAL_LRS:
            metrics = [e.metrics for e in fit(trial_spec(cfg, {"method": "mlf", "source_set": s, "lr": lr}))][-1]
            table.setdefault(s, {})[repr(lr)] = float(metrics["best/source/f1/avg"])
            print(f"  {s:<10} lr {lr:.1e}: best/source/f1/avg {table[s][repr(lr)]:.4f}", flush=True)
    path.write_text(json.dumps(table, indent=1))
    return table


def search(pool: dict, encoding: str, seed: int, budget: int,
           objective: Objective | QuickstartTable) -> tuple[list[float], list[str], int]:
    """One search: the regret after each trial, the incumbent's set after each trial, and rejected draws."""
    sets = enumerate_sets(pool["sources"], pool["min"], pool["max"], pool["must"])
    space = {"lr": ParamSpec(type="float", low=LR_LOW, high=LR_HIGH, log=True),
             "source_set": ParamSpec(type="source_set", encoding=encoding)}
    fn = DefineByRun("mlf", space, sets)
    optimum = objective.best(sets)[0]
    study = optuna.create_study(direction="maximize", sampler=make_sampler(seed, pool["startup"]))
    best_seen, best_true, best_set, regrets, incumbents = -math.inf, -math.inf, "", [], []
    for _ in range(budget):
        trial = ask_feasible(study, fn)
        constants = fn(trial)   # what Ray's OptunaSearch puts in the Tune config: the suggested values and these
        config = {**{k: v for k, v in trial.params.items() if k not in fn.study_only}, **constants}
        lr = config["lr"]
        y = objective.observe(config["source_set"], lr)
        study.tell(trial, y)
        if y > best_seen:
            best_seen, best_true, best_set = y, objective.true(config["source_set"], lr), config["source_set"]
        regrets.append(optimum - best_true)
        incumbents.append(best_set)
    rejected = len(study.trials) - budget
    return regrets, incumbents, rejected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20, help="search seeds (each draws its own objective)")
    ap.add_argument("--budget", type=int, default=32, help="trials run per search")
    ap.add_argument("--pools", nargs="+", default=list(POOLS), choices=list(POOLS))
    ap.add_argument("--objectives", nargs="+", default=["additive", "unstructured"],
                    choices=["additive", "unstructured", "real"],
                    help="real: the quickstart's MLF trial (quickstart pool only; see --table)")
    ap.add_argument("--table", type=Path, default=REPO / ".cache" / "source_set_search_quickstart.json",
                    help="the real objective's scores: read if there, else trained and written")
    ap.add_argument("--steps", type=int, default=120, help="training steps of the real trials (the quickstart: 120)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    steps = [n for n in (2, 4, 8, 12, 16, 24, 32, 48, 64) if n <= args.budget]
    for kind, name in itertools.product(args.objectives, args.pools):
        if kind == "real" and name != "quickstart":
            continue
        table = real_table(args.table, args.steps) if kind == "real" else {}
        pool = POOLS[name]
        sets = enumerate_sets(pool["sources"], pool["min"], pool["max"], pool["must"])
        print(f"\n{kind} objective, {name}: sources {'/'.join(pool['sources'])}, {pool['min']}..{pool['max']} "
              f"languages, must include {'/'.join(pool['must'])} ({len(sets)} sets), n_startup_trials "
              f"{pool['startup']}, {args.seeds} seeds")
        print("mean regret (standard error) of the selected trial after n trials; lower is better")
        print(f"{'encoding':<13}" + "".join(f"{'n=' + str(n):>15}" for n in steps) + f"{'optimal set':>13}"
              f"{'rejected':>10}")
        regrets = {}
        for encoding in ("categorical", "inclusion"):
            runs = [search(pool, encoding, seed, args.budget, QuickstartTable(table) if kind == "real"
                           else Objective(pool["sources"], seed, kind)) for seed in range(args.seeds)]
            regrets[encoding] = [r[0] for r in runs]
            found = 0
            for seed, r in enumerate(runs):
                o = QuickstartTable(table) if kind == "real" else Objective(pool["sources"], seed, kind)
                found += r[1][-1] == o.best(sets)[1]
            rejected = sum(r[2] for r in runs) / len(runs)
            print(f"{encoding:<13}" + "".join(f"{_cell([r[n - 1] for r in regrets[encoding]]):>15}" for n in steps)
                  + f"{found:>9}/{len(runs):<3}{rejected:>10.1f}")
        diffs = [[i[n - 1] - c[n - 1] for i, c in zip(regrets["inclusion"], regrets["categorical"])] for n in steps]
        print(f"{'incl. - cat.':<13}" + "".join(f"{_cell(d, sign=True):>15}" for d in diffs)
              + "   (paired by seed; < 0: inclusion better)")


def _cell(values: list[float], sign: bool = False) -> str:
    """Mean (standard error) of ``values``."""
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{'+' if sign else ''}.3f} ({se:.3f})"

if __name__ == "__main__":
    main()
