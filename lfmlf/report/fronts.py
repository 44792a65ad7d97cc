"""Forgetting-versus-transfer fronts: per method, the Pareto front of (zero-shot average ↑, forgetting drop ↓)
over its configurations, the front's hypervolume with a bootstrap interval over seeds, and where one method's
front lies above another's. Called by ``lfmlf report`` (through :mod:`lfmlf.report.front_section`) on the
sweep's trials and the rerun's runs; pure Python, no plotting.

Definitions (the report's "Fronts" section repeats them):

* **Counted runs.** FINISHED, not stopped early by ASHA (less training also means less forgetting, which
  would put a cut trial on the front for the wrong reason), with a finite zero-shot average and forgetting
  drop. Every other run is listed with its reason.
* **Configuration.** Runs of one method with the same parameters except the seed (``train.seed``) are one
  configuration; its point is the mean over its runs (seeds) of each coordinate. A run without parameters
  is its own configuration. A run's seed is :attr:`RunRecord.seed` (reruns), else its ``train.seed``
  parameter (sweep trials).
* **Front.** The configurations no other configuration of the method dominates (at least as good on both
  axes, better on one). Its *step function* ``best(x)`` is the best zero-shot average among the method's
  configurations with drop <= x (none below the lowest drop).
* **Hypervolume.** The area between the step function and the reference point ``(z_ref, f_ref)`` (zero-shot,
  drop): ``HV = ∫_{-∞}^{f_ref} max(0, best(x) - z_ref) dx``. Default reference: ``z_ref = 0`` (a score of
  zero) and ``f_ref`` = the retrieval accuracy of the pre-trained encoder (theta0, logged as
  ``best/forgetting/retrieval_acc0/avg``): the drop of total forgetting. Both are the worst outcome each axis
  allows for this model and probe, fixed before any trial runs, so a method's HV does not change when another
  method's trials are added and HVs of reports with the same model and probe compare. With ``z_ref = 0``,
  ``HV / f_ref`` is the mean, over forgetting budgets x in [0, f_ref], of the best zero-shot score within the
  budget (when no drop is negative). ``--hv-ref Z,F`` replaces it; points outside the box add nothing.
* **Interval.** Percentile bootstrap over seeds: each of ``n_boot`` resamples draws, for every configuration,
  its own seeds with replacement (as many as it has), averages the configuration over its runs with the drawn
  seeds (a seed drawn twice counts twice), and recomputes the front and its HV. A configuration of one seed
  is held fixed: its seed noise is not measured, so the interval covers the seed variation of the
  configurations run with several seeds (a rerun's) only, and the section says how many those are. A method
  whose runs all have one seed gets no interval ("no interval: 1 seed"), nor one without a configuration of
  two or more seeds.
* **Comparison.** Between two methods A and B, over every budget x where at least one has a configuration:
  A is *higher* at x when ``best_A(x) > best_B(x)`` (or only A has one). A's front *dominates* B's when A is
  higher somewhere and B nowhere (then every point of B's front is weakly dominated by one of A's); the
  fronts *cross* when each is higher somewhere; they *coincide* otherwise. :func:`compare` returns the
  stretches of x where each is higher, with the largest gap in each.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from lfmlf.report.runs import RunRecord, exclusion, finite

FORGETTING_KEY = "best/forgetting/retrieval_drop/avg"
RETRIEVAL_KEY = "best/forgetting/retrieval_acc/avg"
THETA0_KEY = "best/forgetting/retrieval_acc0/avg"
SEED_PARAMS = ("train.seed",)
_EPS = 1e-12     # budgets are rounded to the display's digits: compare drops with this tolerance


# ---------------------------------------------------------------------------------------------- geometry

def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated points of ``(zero_shot, forgetting)`` pairs, maximising zero-shot and
    minimising forgetting, sorted by forgetting then zero-shot. A point is dominated when another is at
    least as good in both and strictly better in one; exact duplicates of a front point stay on the front."""
    order = sorted(range(len(points)), key=lambda i: (points[i][1], points[i][0], i))
    front: list[int] = []
    best_before = -math.inf          # best zero-shot among points of strictly lower forgetting
    k = 0
    while k < len(order):
        f = points[order[k]][1]
        group = [i for i in order[k:] if points[i][1] == f]
        top = max(points[i][0] for i in group)
        if top > best_before:
            front.extend(i for i in group if points[i][0] == top)
        best_before = max(best_before, top)
        k += len(group)
    return front


def best_at(front: Sequence[tuple[float, float]], x: float) -> float | None:
    """The step function: the best zero-shot among ``(zero_shot, forgetting)`` points with forgetting <= x
    (None when there is none)."""
    within = [z for z, f in front if f <= x + _EPS]
    return max(within) if within else None


def hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by ``(zero_shot, forgetting)`` points inside the box bounded by ``ref = (z_ref, f_ref)``
    (zero-shot above ``z_ref``, forgetting below ``f_ref``): ``∫_{-∞}^{f_ref} max(0, best(x) - z_ref) dx``.
    0 without a point inside the box."""
    z_ref, f_ref = ref
    inside = [(z, f) for z, f in points if z > z_ref and f < f_ref]
    front = [inside[i] for i in pareto_front(inside)]
    hv = 0.0
    for i, (z, f) in enumerate(front):
        upto = front[i + 1][1] if i + 1 < len(front) else f_ref
        hv += (upto - f) * (z - z_ref)
    return hv


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of already sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# ------------------------------------------------------------------------------------- configurations

def run_seed(r: RunRecord) -> int | None:
    """The run's seed: :attr:`RunRecord.seed` (reruns), else its ``train.seed`` parameter (sweep trials)."""
    if r.seed is not None:
        return r.seed
    try:
        return int(float(r.params["train.seed"]))
    except (KeyError, ValueError):
        return None


def _seed_order(s: int | None) -> tuple[bool, int]:
    return (s is None, s or 0)


def config_key(r: RunRecord) -> str:
    """Identity of a run's configuration: method and parameters except the seed (the run id without params)."""
    if not r.params:
        return f"{r.method}|run {r.run_id}"
    return r.method + "|" + ";".join(f"{k}={v}" for k, v in sorted(r.params.items()) if k not in SEED_PARAMS)


@dataclass(frozen=True)
class Config:
    """One configuration of a method: its runs and their means (raw metric values; NaN where none has it)."""

    method: str
    label: str                     # the parameters that vary across the method's configurations
    runs: tuple[RunRecord, ...]
    z: float                       # mean zero-shot average
    f: float                       # mean forgetting drop
    retrieval: float               # mean absolute retrieval accuracy (now)
    theta0: float                  # mean retrieval accuracy of the pre-trained encoder

    @property
    def seeds(self) -> list[int | None]:
        return sorted({run_seed(r) for r in self.runs}, key=_seed_order)


def _mean(runs: Sequence[RunRecord], key: str) -> float:
    vals = [float(r.metrics[key]) for r in runs if finite(r.metrics.get(key))]
    return sum(vals) / len(vals) if vals else math.nan


def _labels(groups: dict[str, list[RunRecord]]) -> dict[str, str]:
    """config key -> ``"lr=0.0001, slack=0.3"``: the parameters whose values differ across the configurations
    (the run id for a configuration without parameters; "" when there is only one)."""
    params = {k: rs[0].params for k, rs in groups.items()}
    names = sorted({p for ps in params.values() for p in ps if p not in SEED_PARAMS})
    varying = [p for p in names if len({ps.get(p) for ps in params.values()}) > 1]
    out = {}
    for k, rs in groups.items():
        if not rs[0].params:
            out[k] = f"run {rs[0].run_id}"
        else:
            out[k] = ", ".join(f"{p}={params[k].get(p, '–')}" for p in varying)
    return out


def configurations(runs: Sequence[RunRecord], zkey: str, fkey: str = FORGETTING_KEY
                   ) -> tuple[dict[str, list[Config]], list[str]]:
    """Counted runs grouped into configurations per method (method -> configurations in first-seen order),
    and the runs left out with their reasons."""
    left_out: list[str] = []
    grouped: dict[str, dict[str, list[RunRecord]]] = {}
    for r in runs:
        why = exclusion(r, zkey) or (None if finite(r.metrics.get(fkey)) else f"no finite {fkey}")
        if why is not None:
            left_out.append(f"{r.describe()}: {why}")
            continue
        grouped.setdefault(r.method, {}).setdefault(config_key(r), []).append(r)
    out: dict[str, list[Config]] = {}
    for method, groups in grouped.items():
        labels = _labels(groups)
        out[method] = [Config(method, labels[k], tuple(rs), _mean(rs, zkey), _mean(rs, fkey),
                              _mean(rs, RETRIEVAL_KEY), _mean(rs, THETA0_KEY)) for k, rs in groups.items()]
    return out, left_out


def front_of(configs: Sequence[Config]) -> list[Config]:
    """The configurations on the front, sorted by forgetting drop."""
    return [configs[i] for i in pareto_front([(c.z, c.f) for c in configs])]


# ------------------------------------------------------------------------------------------ reference

@dataclass(frozen=True)
class Reference:
    """The hypervolume's reference point (raw values) and how it was chosen, in words."""

    z: float
    f: float
    how: str


def default_reference(configs: dict[str, list[Config]], scale: float = 100.0, digits: int = 1
                      ) -> Reference | str:
    """``(0, theta0 retrieval)``: see the module docstring; a sentence saying why not when no counted run
    logged theta0's retrieval. Runs that disagree on theta0 (another model or probe) are named, and the
    largest is used, so that every point lies inside the box."""
    theta0 = [r.metrics[THETA0_KEY] for cs in configs.values() for c in cs for r in c.runs
              if finite(r.metrics.get(THETA0_KEY))]
    if not theta0:
        return (f"no hypervolume: no counted run logged theta0's retrieval ({THETA0_KEY}). Fix: pass "
                "--hv-ref Z,F (zero-shot, drop, in the table's units)")
    top = max(theta0)
    how = (f"zero-shot 0 and drop {top * scale:.{digits}f} = theta0's retrieval accuracy ({THETA0_KEY}), i.e. "
           "total forgetting")
    if max(theta0) - min(theta0) > 1e-9:
        how += (f"; theta0's retrieval differs across runs ({min(theta0) * scale:.{digits}f} to "
                f"{top * scale:.{digits}f}: another model or probe?), the largest is used")
    return Reference(0.0, top, how)


def user_reference(z: float, f: float, scale: float = 100.0) -> Reference:
    """``--hv-ref Z,F`` (in the table's units, i.e. raw value × ``scale``)."""
    return Reference(z / scale, f / scale, f"zero-shot {z:g} and drop {f:g}, given with --hv-ref")


# ------------------------------------------------------------------------------------------ bootstrap

@dataclass(frozen=True)
class Interval:
    """A bootstrap interval of a hypervolume, or why there is none; ``n_seeds`` distinct seeds of the method,
    ``n_resampled`` configurations with two or more seeds (the ones the resamples vary)."""

    low: float = math.nan
    high: float = math.nan
    n_seeds: int = 0
    n_resampled: int = 0
    why_none: str = ""


def bootstrap_hv(configs: Sequence[Config], ref: Reference, zkey: str, fkey: str = FORGETTING_KEY,
                 n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap of the method's front hypervolume over seeds (module docstring, "Interval")."""
    seeds = sorted({run_seed(r) for c in configs for r in c.runs}, key=_seed_order)
    per_config = [[(run_seed(r), float(r.metrics[zkey]), float(r.metrics[fkey])) for r in c.runs] for c in configs]
    own = [sorted({s for s, _, _ in runs}, key=_seed_order) for runs in per_config]
    varied = sum(len(x) > 1 for x in own)
    if len(seeds) < 2:
        return Interval(n_seeds=len(seeds), why_none=f"no interval: {len(seeds)} seed")
    if not varied:
        return Interval(n_seeds=len(seeds), why_none="no interval: no configuration has 2 or more seeds")
    rng = random.Random(seed)
    values = []
    for _ in range(n_boot):
        points = []
        for runs, mine in zip(per_config, own):
            drawn: dict[int | None, int] = {}
            for s in (rng.choices(mine, k=len(mine)) if len(mine) > 1 else mine):
                drawn[s] = drawn.get(s, 0) + 1
            weights = [(drawn.get(s, 0), z, f) for s, z, f in runs]
            total = sum(w for w, _, _ in weights)
            points.append((sum(w * z for w, z, _ in weights) / total, sum(w * f for w, _, f in weights) / total))
        values.append(hypervolume(points, (ref.z, ref.f)))
    values.sort()
    tail = (1.0 - level) / 2
    return Interval(quantile(values, tail), quantile(values, 1.0 - tail), len(seeds), varied)


# ---------------------------------------------------------------------------------------- comparison

@dataclass(frozen=True)
class Stretch:
    """Budgets ``[start, end)`` (``end`` inf: no upper end) where ``leader`` is higher (None: equal), and the
    budget ``at`` of the largest gap there with both step values (None: no configuration within it)."""

    start: float
    end: float
    leader: str | None
    at: float
    a: float | None
    b: float | None


@dataclass(frozen=True)
class Comparison:
    """Two methods' fronts: ``verdict`` is "dominates" (a's dominates b's), "dominated" (b's dominates a's),
    "cross" or "coincide"; ``stretches`` cover every budget where at least one has a configuration."""

    a: str
    b: str
    verdict: str
    stretches: list[Stretch] = field(default_factory=list)
    low_a: float = math.nan        # the lowest drop on each front
    low_b: float = math.nan


def _gap(a: float | None, b: float | None) -> tuple[int, float]:
    """Sort key of a gap: any gap between two values beats "only one has a configuration" (shown apart)."""
    if a is None or b is None:
        return (0, 0.0)
    return (1, abs(a - b))


def compare(a: str, front_a: Sequence[tuple[float, float]], b: str, front_b: Sequence[tuple[float, float]]
            ) -> Comparison:
    """Compare two methods' ``(zero_shot, forgetting)`` fronts as step functions (module docstring)."""
    cuts = sorted({f for _, f in front_a} | {f for _, f in front_b})
    pieces = []
    for i, x in enumerate(cuts):
        va, vb = best_at(front_a, x), best_at(front_b, x)
        if va is not None and (vb is None or va > vb):
            leader: str | None = a
        elif vb is not None and (va is None or vb > va):
            leader = b
        else:
            leader = None
        pieces.append((x, cuts[i + 1] if i + 1 < len(cuts) else math.inf, leader, va, vb))
    stretches: list[Stretch] = []
    for x, end, leader, va, vb in pieces:
        if stretches and stretches[-1].leader == leader:
            last = stretches[-1]
            wider = _gap(va, vb) > _gap(last.a, last.b)
            stretches[-1] = Stretch(last.start, end, leader, x if wider else last.at, va if wider else last.a,
                                    vb if wider else last.b)
        else:
            stretches.append(Stretch(x, end, leader, x, va, vb))
    leaders = {s.leader for s in stretches} - {None}
    verdict = ("coincide" if not leaders else "cross" if len(leaders) == 2
               else "dominates" if leaders == {a} else "dominated")
    return Comparison(a, b, verdict, stretches, min(f for _, f in front_a), min(f for _, f in front_b))


def _range(s: Stretch, scale: float, digits: int) -> str:
    if math.isinf(s.end):
        return f"drop >= {s.start * scale:.{digits}f}"
    return f"drop in [{s.start * scale:.{digits}f}, {s.end * scale:.{digits}f})"


def _values(s: Stretch, first: str, scale: float, digits: int) -> str:
    mine, other = (s.a, s.b) if first == "a" else (s.b, s.a)

    def fmt(v: float | None) -> str:
        return "none" if v is None else f"{v * scale:.{digits}f}"

    return f"at drop <= {s.at * scale:.{digits}f}, best zero-shot {fmt(mine)} vs {fmt(other)}"


def statement(c: Comparison, scale: float = 100.0, digits: int = 1) -> str:
    """The comparison in words, with the numbers (table units): e.g. "lfmlf's front dominates mlf's: ...
    higher for drop in [12.0, 40.0) (at drop <= 20.0, best zero-shot 71.2 vs 68.9)"."""
    if c.verdict == "coincide":
        return f"{c.a}'s and {c.b}'s fronts coincide (the same best zero-shot at every forgetting budget)."

    def where(leader: str) -> str:
        side = "a" if leader == c.a else "b"
        return "; ".join(f"{_range(s, scale, digits)} ({_values(s, side, scale, digits)})"
                         for s in c.stretches if s.leader == leader)

    alone = ""
    if c.low_a != c.low_b:
        first, other, low = (c.a, c.b, c.low_b) if c.low_a < c.low_b else (c.b, c.a, c.low_a)
        alone = (f" Only {first} has configurations with drop < {low * scale:.{digits}f} ({other}'s lowest "
                 "drop).")
    if c.verdict in ("dominates", "dominated"):
        win, lose = (c.a, c.b) if c.verdict == "dominates" else (c.b, c.a)
        return (f"{win}'s front dominates {lose}'s: at every forgetting budget its best zero-shot is at least "
                f"{lose}'s, and higher for {where(win)}.{alone}")
    return (f"{c.a}'s and {c.b}'s fronts cross: {c.a} is higher for {where(c.a)}; {c.b} is higher for "
            f"{where(c.b)}.{alone}")


# ---------------------------------------------------------------------------------------------- budgets

def default_budgets(fronts: dict[str, list[Config]], scale: float = 100.0, digits: int = 1) -> list[float]:
    """Forgetting budgets for the "best zero-shot at drop <= X" table: a quarter, half, three quarters and
    all of the way from the lowest to the highest drop on any front, rounded to the table's digits."""
    drops = [c.f for cs in fronts.values() for c in cs]
    if not drops:
        return []
    lo, hi = min(drops), max(drops)
    xs = [round((lo + (hi - lo) * q) * scale, digits) / scale for q in (0.25, 0.5, 0.75, 1.0)]
    return sorted(set(xs))


def best_within(front: Sequence[Config], x: float) -> Config | None:
    """The front configuration with the best zero-shot among those with drop <= x (None: none)."""
    within = [c for c in front if c.f <= x + _EPS]
    return max(within, key=lambda c: c.z) if within else None
