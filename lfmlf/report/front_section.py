"""The report's "Fronts" section: per method, the front of (zero-shot average, forgetting drop) over its
configurations, the hypervolume table with bootstrap intervals, the dominance statements, the best zero-shot
within a few forgetting budgets and the front members with absolute retrieval and theta0. Built by
:func:`build_fronts` (called by ``lfmlf report`` on the sweep's trials plus the rerun's runs) and rendered by
:func:`fronts_markdown` (and, every configuration at full precision, by :func:`fronts_csv`); every
definition is in :mod:`lfmlf.report.fronts`.
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from lfmlf.report.fronts import (
    FORGETTING_KEY,
    Comparison,
    Config,
    Interval,
    Reference,
    best_within,
    bootstrap_hv,
    compare,
    configurations,
    default_budgets,
    default_reference,
    front_of,
    hypervolume,
    statement,
    user_reference,
)
from lfmlf.report.render import md_escape
from lfmlf.report.runs import RunRecord


@dataclass
class Fronts:
    """Everything the section shows (raw metric values; ``scale``/``digits`` only for display)."""

    methods: list[str]                         # every method the report shows, in its order
    zkey: str
    configs: dict[str, list[Config]]           # method -> its configurations
    fronts: dict[str, list[Config]]            # method -> its front, by drop
    reference: Reference | None
    why_no_hv: str                             # when reference is None
    hv: dict[str, float]
    intervals: dict[str, Interval]
    comparisons: list[Comparison]
    budgets: list[float]
    budgets_given: bool
    left_out: list[str] = field(default_factory=list)
    scale: float = 100.0
    digits: int = 1
    n_boot: int = 1000


def build_fronts(runs: Sequence[RunRecord], task_metric: str, methods: Sequence[str], prefix: str = "best/",
                 hv_ref: tuple[float, float] | None = None, budgets: Sequence[float] | None = None,
                 scale: float = 100.0, digits: int = 1, n_boot: int = 1000) -> Fronts:
    """The fronts of ``runs`` (a method with none is still listed). ``hv_ref`` (zero-shot, drop) and
    ``budgets`` are in the table's units (value × ``scale``), as ``--hv-ref`` and ``--forgetting-at`` give
    them; without them the defaults of :func:`~lfmlf.report.fronts.default_reference` and
    :func:`~lfmlf.report.fronts.default_budgets` apply."""
    zkey = f"{prefix}zero_shot/{task_metric}/avg"
    configs, left_out = configurations(runs, zkey, FORGETTING_KEY)
    order = list(dict.fromkeys([*methods, *configs]))
    fronts = {m: front_of(configs[m]) for m in order if m in configs}
    ref_or_why = user_reference(*hv_ref, scale=scale) if hv_ref else default_reference(configs, scale, digits)
    reference = ref_or_why if isinstance(ref_or_why, Reference) else None
    hv: dict[str, float] = {}
    intervals: dict[str, Interval] = {}
    if reference is not None:
        for m, cs in configs.items():
            hv[m] = hypervolume([(c.z, c.f) for c in cs], (reference.z, reference.f))
            intervals[m] = bootstrap_hv(cs, reference, zkey, FORGETTING_KEY, n_boot=n_boot)
    names = [m for m in order if m in fronts]
    comparisons = [compare(a, [(c.z, c.f) for c in fronts[a]], b, [(c.z, c.f) for c in fronts[b]])
                   for i, a in enumerate(names) for b in names[i + 1:]]
    xs = [x / scale for x in budgets] if budgets else default_budgets(fronts, scale, digits)
    return Fronts(order, zkey, configs, fronts, reference, "" if reference else str(ref_or_why), hv, intervals,
                  comparisons, xs, bool(budgets), left_out, scale, digits, n_boot)


def _f(fr: Fronts, x: float) -> str:
    return "" if not math.isfinite(x) else f"{x * fr.scale:.{fr.digits}f}"


def _outside(fr: Fronts, ref: Reference) -> str:
    """`` 2 configuration(s) (mlf 2) lie outside the reference box and add nothing.`` ("" when none do)."""
    out = {m: sum(1 for c in cs if not (c.z > ref.z and c.f < ref.f)) for m, cs in fr.configs.items()}
    out = {m: n for m, n in out.items() if n}
    if not out:
        return ""
    return (f" {sum(out.values())} configuration(s) ({', '.join(f'{m} {n}' for m, n in out.items())}) lie outside "
            "the reference box (zero-shot not above its Z or drop not below its F) and add nothing to the HV.")


def _hv_table(fr: Fronts) -> list[str]:
    ref = fr.reference
    if ref is None:
        return [f"Hypervolume: {md_escape(fr.why_no_hv)}.", ""]
    area = fr.scale      # both axes are fractions in [0, 1]: HV × 100 is a percentage of the unit square
    out = [f"Hypervolume reference point: {md_escape(ref.how)}. HV is shown × {area:g} (with the default "
           "scale: a percentage of the unit square of zero-shot by drop). With zero-shot reference 0, HV is the area "
           "under the front's step function: the mean best zero-shot over the budgets from the method's lowest "
           "drop to the drop reference, times the width of that range." + _outside(fr, ref), "",
           "| method | configurations | front | seeds | HV | 95% interval (bootstrap over seeds) |",
           "|---|--:|--:|--:|--:|---|"]
    for m in fr.methods:
        if m not in fr.configs:
            out.append(f"| {md_escape(m)} | 0 | 0 | 0 | | no counted run with both metrics |")
            continue
        iv = fr.intervals[m]
        ci = (iv.why_none if iv.why_none else
              f"[{iv.low * area:.{fr.digits}f}, {iv.high * area:.{fr.digits}f}] ({fr.n_boot} resamples; varies the "
              f"{iv.n_resampled} configuration(s) with 2+ seeds)")
        out.append(f"| {md_escape(m)} | {len(fr.configs[m])} | {len(fr.fronts[m])} | {iv.n_seeds} | "
                   f"{fr.hv[m] * area:.{fr.digits}f} | {ci} |")
    return out + [""]


def _budget_table(fr: Fronts) -> list[str]:
    if not fr.budgets:
        return []
    how = "given with --forgetting-at" if fr.budgets_given else (
        "a quarter, half, three quarters and all of the way from the lowest to the highest drop on any front; "
        "choose others with --forgetting-at")
    head = " | ".join(f"drop <= {_f(fr, x)}" for x in fr.budgets)
    out = [f"Best zero-shot average within a forgetting budget (budgets {how}; empty: no configuration "
           "forgets that little):", "", f"| method | {head} |", "|---|" + "--:|" * len(fr.budgets)]
    for m in fr.methods:
        cells = []
        for x in fr.budgets:
            c = best_within(fr.fronts.get(m, []), x)
            cells.append("" if c is None else _f(fr, c.z))
        out.append(f"| {md_escape(m)} | " + " | ".join(cells) + " |")
    return out + [""]


def _members_table(fr: Fronts) -> list[str]:
    out = ["Front members (means over each configuration's seeds; retrieval = the probe's accuracy now, "
           "theta0 = the pre-trained encoder's, drop = theta0 - now):", "",
           "| method | configuration | seeds | zero-shot avg | retrieval | theta0 | drop ↓ |",
           "|---|---|--:|--:|--:|--:|--:|"]
    for m in fr.methods:
        for c in fr.fronts.get(m, []):
            seeds = ", ".join("?" if s is None else str(s) for s in c.seeds)
            out.append(f"| {md_escape(m)} | {md_escape(c.label or '(one configuration)')} | {seeds} | "
                       f"{_f(fr, c.z)} | {_f(fr, c.retrieval)} | {_f(fr, c.theta0)} | {_f(fr, c.f)} |")
    return out + [""]


def fronts_markdown(fr: Fronts) -> str:
    """The section's body (no heading): definitions, the hypervolume table, the dominance statements, the
    budget table, the front members and the runs left out."""
    if not fr.configs:
        return (f"No front: no counted run has both {fr.zkey} and {FORGETTING_KEY} (is the forgetting probe "
                "on?).\n")
    out = [f"Per method, the Pareto front of ({fr.zkey} ↑, {FORGETTING_KEY} ↓) over its configurations: runs "
           "with the same parameters but the seed are one configuration, at their mean. Counted: FINISHED runs "
           "not stopped early by ASHA, sweep trials and rerun runs alike. A front's step function gives the "
           "best zero-shot at drop <= x; one front dominates another when its step function is never lower and "
           "somewhere higher.", ""]
    out += _hv_table(fr)
    if fr.comparisons:
        out += ["Where the fronts lie (budgets where at least one method has a configuration):", ""]
        out += [f"- {md_escape(statement(c, fr.scale, fr.digits))}" for c in fr.comparisons] + [""]
    out += _budget_table(fr)
    out += _members_table(fr)
    if fr.left_out:
        out += [f"Not on any front ({len(fr.left_out)} runs):", ""] + [f"- {md_escape(x)}" for x in fr.left_out]
    return "\n".join(out).rstrip() + "\n"


FRONTS_CSV_FIELDS = ["method", "configuration", "seeds", "runs", "zero_shot", "drop", "retrieval", "theta0",
                     "on_front", "hv", "hv_low", "hv_high", "run_ids"]


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def fronts_csv(fr: Fronts) -> str:
    """``fronts.csv``: one line per configuration, raw values at full precision (``repr``), ``on_front`` 1 or 0,
    and the method's hypervolume and interval repeated on each of its lines (empty where there is none)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FRONTS_CSV_FIELDS)
    for m in fr.methods:
        front = {id(c) for c in fr.fronts.get(m, [])}
        iv = fr.intervals.get(m)
        for c in fr.configs.get(m, []):
            seeds = " ".join("?" if s is None else str(s) for s in c.seeds)
            w.writerow([m, c.label, seeds, len(c.runs), _num(c.z), _num(c.f), _num(c.retrieval), _num(c.theta0),
                        int(id(c) in front), _num(fr.hv.get(m)), _num(iv.low if iv else None),
                        _num(iv.high if iv else None), " ".join(r.run_id for r in c.runs)])
    return buf.getvalue()
