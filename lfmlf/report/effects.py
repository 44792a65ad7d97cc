"""Source-language effects: what including each source language did for each target, with an interval.

Called by ``lfmlf report`` (through :func:`effects_section`) on a sweep's trials when the sweep searched
source sets. For each target language (and the logged target average, column ``avg``) one ordinary least
squares fit of the trial's zero-shot score, in points (× ``scale``), on

    intercept + one 0/1 indicator per source language of the pool + log10(lr) + one-hot method

over the trials that count (FINISHED and not stopped early by ASHA: a stopped trial's ``best/*`` comes
from a shorter training; they are left out and counted, as everywhere in the report). The effect of source
``s`` on target ``t`` is the coefficient of ``s``'s indicator: the change in ``t``'s score when ``s`` is added
to the source set, the other source languages, the learning rate and the method held fixed. The model is
additive: one effect per (source, target), the same for every method.

Intervals are HC3 (heteroscedasticity-robust) with Student-t quantiles (:mod:`lfmlf.report.ols`). An effect
the trials cannot identify gets no number but a reason (:func:`_why_aliased`): a language in every trial (a
``must_include`` one) or in none, a sweep whose trials all have the same number of sources (adding one
language then always means dropping another, so only differences between languages are identified), two
languages that always come together, too few trials for the parameters, or a language whose effect rests
on a single trial. A covariate that does not vary (one learning rate, one method) is not fitted, and the
table says so.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lfmlf.errors import UserError
from lfmlf.languages import decode_set
from lfmlf.report.ols import MIN_DF, Coefficient, Fit, ols_hc3
from lfmlf.report.render import md_escape
from lfmlf.report.runs import RunRecord, exclusion, finite

AVG = "avg"
LR = "log10(lr)"
FIGURE = "source_effects.png"
TITLE = "Source-language effects"


@dataclass(frozen=True)
class Effect:
    """One coefficient in points (× the table's scale): estimate and ``level`` interval, the fit's ``n``
    trials and residual ``df``; NaN with ``reason`` when it is not estimable."""

    estimate: float
    low: float
    high: float
    n: int
    df: int
    reason: str | None = None

    @property
    def estimable(self) -> bool:
        return self.reason is None

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly above or below 0 (False when not estimable)."""
        return self.estimable and (self.low > 0 or self.high < 0)


@dataclass(frozen=True)
class TargetFit:
    """One column's regression: ``n`` trials, ``p`` parameters, the design's ``rank``, residual ``df``;
    ``notes`` say what was not fitted or left out (constant covariate, trials without the score)."""

    n: int
    p: int
    rank: int
    df: int
    notes: list[str] = field(default_factory=list)


@dataclass
class EffectsTable:
    """Source-language effects per (source, column); columns are the targets and ``avg``. ``covariates``
    holds the fitted lr slope (per ×10 of lr) and method contrasts, ``(name, column) -> Effect``. ``swaps``
    (only where every trial of a column has the same number of sources, which leaves the effects of adding a
    language unidentified): the effect of a language *in place of* an average other varying language."""

    task_metric: str
    sources: list[str]
    columns: list[str]
    effects: dict[tuple[str, str], Effect]
    covariates: dict[tuple[str, str], Effect]
    fits: dict[str, TargetFit]
    level: float
    scale: float
    digits: int
    used: int                                   # trials that count (before per-column missing scores)
    left_out: list[str] = field(default_factory=list)
    swaps: dict[tuple[str, str], Effect] = field(default_factory=dict)   # fixed set size: see _swap_contrasts

    def effect(self, source: str, column: str) -> Effect:
        """The effect of including ``source`` on ``column``; KeyError names the sources and columns there are."""
        try:
            return self.effects[(source, column)]
        except KeyError:
            raise KeyError(f"no effect for source {source!r} on {column!r}: sources {self.sources}, "
                           f"columns {self.columns}") from None

    def covariate_names(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.covariates))

    def to_markdown(self) -> str:
        """The body of the "Source-language effects" section (no heading: the report's section writer adds
        :data:`TITLE`): what a cell means, the table, n and df per column, why the empty cells are empty, and
        the trials left out."""
        return "\n".join(_markdown(self)) + "\n"


# ------------------------------------------------------------------------------------------- design

@dataclass(frozen=True)
class _Trial:
    run: RunRecord
    sources: frozenset[str]
    log_lr: float | None


def _eligible(runs: list[RunRecord]) -> tuple[list[_Trial], list[str]]:
    """The trials that count, each with its source languages and log10 lr, and why the others do not."""
    used, left = [], []
    for r in runs:
        why = exclusion(r)
        sources: frozenset[str] = frozenset()
        if why is None:
            try:
                sources = frozenset(decode_set(r.source_set))
            except UserError as e:
                why = f"unreadable source set: {e}"
        log_lr = None
        if why is None and "lr" in r.params:
            try:
                lr = float(r.params["lr"])
            except ValueError:
                lr = math.nan
            if not (math.isfinite(lr) and lr > 0):
                why = f"learning rate {r.params['lr']!r} is not a positive number"
            else:
                log_lr = math.log10(lr)
        if why is None:
            used.append(_Trial(r, sources, log_lr))
        else:
            left.append(f"{r.describe()}: {why}")
    if any(t.log_lr is None for t in used) and any(t.log_lr is not None for t in used):
        left += [f"{t.run.describe()}: no lr param (other trials have one)" for t in used if t.log_lr is None]
        used = [t for t in used if t.log_lr is not None]
    return used, left


def _covariates(trials: list[_Trial]) -> tuple[list[str], np.ndarray, list[str]]:
    """The covariate columns that vary among ``trials``: centred log10(lr) and the method dummies (the
    alphabetically first method is the reference), with a note for each one that does not vary."""
    names, cols, notes = [], [], []
    lrs = [t.log_lr for t in trials if t.log_lr is not None]
    if len(lrs) < len(trials):
        notes.append("no lr param: no lr covariate")
    elif len(set(lrs)) > 1:
        mean = sum(lrs) / len(lrs)
        names.append(LR)
        cols.append([v - mean for v in lrs])
    else:
        notes.append(f"one learning rate ({10 ** lrs[0]:g}): no lr covariate")
    methods = sorted({t.run.method for t in trials})
    if len(methods) == 1:
        notes.append(f"one method ({methods[0]}): no method covariate")
    for m in methods[1:]:
        names.append(f"method {m} vs {methods[0]}")
        cols.append([1.0 if t.run.method == m else 0.0 for t in trials])
    return names, np.array(cols, dtype=float).T.reshape(len(trials), len(names)), notes


def _why_aliased(s: str, ind: np.ndarray, langs: list[str], trials: list[_Trial], fit: Fit) -> str:
    """Why the effect of ``s`` (column of ``ind``, trials x languages) is not identified, in words."""
    col = ind[:, langs.index(s)]
    n, count = len(col), int(col.sum())
    if count == n:
        return f"in all {n} trials (a must-include language): its effect cannot be told from the intercept"
    if count == 0:
        return f"in none of the {n} trials"
    sizes = set(ind.sum(axis=1).astype(int))
    if len(sizes) == 1:
        return (f"every trial has exactly {sizes.pop()} sources, so adding {s} always means dropping another "
                "language: only differences between languages are identified")
    for other in langs:
        if other != s and np.array_equal(col, ind[:, langs.index(other)]):
            return f"always included together with {other}"
        if other != s and np.array_equal(col, 1 - ind[:, langs.index(other)]):
            return f"included exactly when {other} is not"
    for m in sorted({t.run.method for t in trials}):
        if np.array_equal(col, np.array([t.run.method == m for t in trials], dtype=float)):
            return f"included exactly in the {m} trials: confounded with the method"
    return _collinear(fit)


def _collinear(fit: Fit) -> str:
    """The generic reason an effect is aliased: too few trials, or a collinearity of the design."""
    if fit.n < fit.p:
        return f"{fit.n} trials for {fit.p} parameters: too few trials to tell them apart"
    return f"collinear with other columns of the design (rank {fit.rank} of {fit.p} columns)"


def _effect(c: Coefficient, fit: Fit, scale: float, aliased_reason: str, trials: list[_Trial]) -> Effect:
    if c.problem is None:
        return Effect(c.estimate, c.low, c.high, fit.n, fit.df)
    reason = {
        "no data": "no trial has this score",
        "aliased": aliased_reason,
        "df": f"{fit.n} trials for {fit.rank} parameters leave {fit.df} residual degrees of freedom "
              f"(an interval needs at least {MIN_DF})",
        "leverage": "rests on one trial alone (" + ", ".join(trials[i].run.describe() for i in c.lone_trials)
                    + "): its noise cannot be estimated",
    }[c.problem]
    return Effect(math.nan, math.nan, math.nan, fit.n, fit.df, reason)


def _swap_contrasts(langs: list[str], ind: np.ndarray, p: int) -> dict[str, np.ndarray]:
    """When every trial has the same number of sources, adding a language is never observed, only swapping
    one for another: for each language included in some trials but not all, the contrast
    ``beta_s - mean(beta_j, j another such language)``, the change when ``s`` replaces one of them (averaged
    over which). Identified whenever the set size is the only constraint; empty when sizes vary."""
    n = ind.shape[0]
    counts = ind.sum(axis=0)
    varying = [i for i in range(len(langs)) if 0 < counts[i] < n]
    if n == 0 or len(set(ind.sum(axis=1).astype(int))) != 1 or len(varying) < 2:
        return {}
    out = {}
    for i in varying:
        c = np.zeros(p)
        c[1 + i] = 1.0
        for j in varying:
            if j != i:
                c[1 + j] = -1.0 / (len(varying) - 1)
        out[langs[i]] = c
    return out


def effects_table(runs: list[RunRecord], task_metric: str, targets: list[str], sources: list[str] | None = None,
                  prefix: str = "best/", level: float = 0.95, scale: float = 100.0, digits: int = 1) -> EffectsTable:
    """Estimate the effect of including each source language on each target (and on ``avg``, the logged
    target average) from ``runs``, a sweep's trials (see the module docstring). ``sources`` (the sweep's
    pool) adds languages no counted trial used, so that they are reported as such."""
    trials, left_out = _eligible(runs)
    langs = sorted(set(sources or ()) | {s for t in trials for s in t.sources})
    columns = list(targets) + [AVG]
    table = EffectsTable(task_metric, langs, columns, {}, {}, {}, level, scale, digits, len(trials), left_out)
    for col in columns:
        key = f"{prefix}zero_shot/{task_metric}/{col}"
        mine = [t for t in trials if finite(t.run.metrics.get(key))]
        notes = [f"{len(trials) - len(mine)} counted trials have no finite {key}"] if len(mine) < len(trials) else []
        names, cov, cov_notes = _covariates(mine) if mine else ([], np.zeros((0, 0)), [])
        ind = np.array([[1.0 if s in t.sources else 0.0 for s in langs] for t in mine]).reshape(len(mine), len(langs))
        x = np.hstack([np.ones((len(mine), 1)), ind, cov])
        y = np.array([float(t.run.metrics[key]) * scale for t in mine])
        swaps = _swap_contrasts(langs, ind, x.shape[1])
        fit = ols_hc3(x, y, level, contrasts=list(swaps.values()))
        for s, c in zip(swaps, fit.contrasts):
            why = _collinear(fit)
            table.swaps[(s, col)] = _effect(c, fit, scale, why, mine)
        table.fits[col] = TargetFit(fit.n, fit.p, fit.rank, fit.df, notes + cov_notes)
        for j, s in enumerate(langs, start=1):
            why = _why_aliased(s, ind, langs, mine, fit) if fit.coefficients[j].problem == "aliased" else ""
            table.effects[(s, col)] = _effect(fit.coefficients[j], fit, scale, why, mine)
        for j, name in enumerate(names, start=1 + len(langs)):
            why = _collinear(fit)
            table.covariates[(name, col)] = _effect(fit.coefficients[j], fit, scale, why, mine)
    return table


# ----------------------------------------------------------------------------------------- Markdown

def _cell(t: EffectsTable, e: Effect | None) -> str:
    if e is None:
        return ""
    if not e.estimable:
        return "n/e"
    d = t.digits
    return f"{e.estimate:+.{d}f} [{e.low:+.{d}f}, {e.high:+.{d}f}]" + ("\\*" if e.excludes_zero else "")


def _left_out_summary(left: list[str]) -> str:
    kinds = Counter("stopped early by ASHA" if "stopped early" in line else line.rsplit(": ", 1)[-1]
                    for line in left)
    return ", ".join(f"{n} {why}" for why, n in kinds.items())


def _markdown(t: EffectsTable) -> list[str]:
    scaled = f" (×{t.scale:g})" if t.scale != 1 else ""
    pct = f"{t.level * 100:g}%"
    out = [
        f"Change in the zero-shot {t.task_metric}{scaled} of each target when a source language is **added** to "
        "the source set, the other source languages, log10 of the learning rate and the method held fixed: "
        f"one least-squares fit per column over the sweep's {t.used} counted trials (FINISHED, not stopped "
        f"early), {pct} intervals from HC3 (heteroscedasticity-robust) standard errors with t quantiles. "
        f"\\* the interval excludes 0. Intervals are per cell, not adjusted for the {len(t.sources)} × "
        f"{len(t.columns)} cells: with no effect at all, about one cell in {round(1 / (1 - t.level)):d} is still "
        "marked. n/e: not estimable (why below). The model is additive: one effect per cell for every method.",
        "",
        "| source | " + " | ".join(md_escape(c) for c in t.columns) + " |",
        "|---|" + "--:|" * len(t.columns),
    ]
    for s in t.sources:
        out.append(f"| {md_escape(s)} | " + " | ".join(_cell(t, t.effects.get((s, c))) for c in t.columns) + " |")
    for name in t.covariate_names():
        label = "*lr (per ×10, i.e. per unit of log10 lr)*" if name == LR else f"*{name}*"
        out.append(f"| {md_escape(label)} | "
                   + " | ".join(_cell(t, t.covariates.get((name, c))) for c in t.columns) + " |")
    out.append("| *n trials* | " + " | ".join(str(t.fits[c].n) for c in t.columns) + " |")
    out.append("| *residual df* | " + " | ".join(str(t.fits[c].df) for c in t.columns) + " |")
    out.append("")
    if t.swaps:
        swapped = list(dict.fromkeys(s for s, _ in t.swaps))
        out += [
            "Every trial has the same number of source languages, so adding one is never observed, only swapping "
            "one for another. Change in each target's score when the language is in the source set **in place "
            "of** one of the other languages of this table (averaged over which one): its coefficient minus "
            "the mean of theirs, same fits and intervals.", "",
            "| source (in place of another) | " + " | ".join(md_escape(c) for c in t.columns) + " |",
            "|---|" + "--:|" * len(t.columns),
        ]
        out += [f"| {md_escape(s)} | " + " | ".join(_cell(t, t.swaps.get((s, c))) for c in t.columns) + " |"
                for s in swapped]
        out.append("")
    reasons: dict[tuple[str, str], list[str]] = {}
    for (s, c), e in list(t.effects.items()) + list(t.covariates.items()):
        if e.reason is not None:
            reasons.setdefault((s, e.reason), []).append(c)
    if reasons:
        out.append("Not estimable:")
        out += [f"- {s} → {', '.join(cols)}: {why}" for (s, why), cols in reasons.items()]
        out.append("")
    deficient = [c for c in t.columns if t.fits[c].rank < t.fits[c].p]
    if deficient:
        out.append("Rank-deficient design (not regularised; the aliased effects are the n/e cells): " + ", ".join(
            f"{c} rank {t.fits[c].rank} of {t.fits[c].p}" for c in deficient) + ".")
        out.append("")
    notes = list(dict.fromkeys(note for c in t.columns for note in t.fits[c].notes))
    out += [f"- {note}" for note in notes] + ([""] if notes else [])
    if t.left_out:
        trials = "trial" if len(t.left_out) == 1 else "trials"
        out.append(f"Left out of the fits: {len(t.left_out)} {trials} ({_left_out_summary(t.left_out)}).")
        out.append("")
    return out


# ------------------------------------------------------------------------------------------- section

def searched_sets(runs: list[RunRecord]) -> list[str]:
    """The distinct source sets among the trials that count (FINISHED, not stopped early), sorted."""
    return sorted({r.source_set for r in runs if exclusion(r) is None})


def effects_section(runs: list[RunRecord], task_metric: str, targets: list[str], out_dir: Path,
                    sources: list[str] | None = None, scale: float = 100.0,
                    digits: int = 1) -> tuple[str, list[Path]]:
    """The report's "Source-language effects" section (:data:`TITLE`): its Markdown body (table, notes; no
    heading, no image link: the section writer adds both) and the heatmap ``out_dir/source_effects.png``.
    Called by ``lfmlf report`` with the sweep's trials; returns ``("", [])`` when the counted trials used
    fewer than two source sets (nothing was searched)."""
    if len(searched_sets(runs)) < 2:
        return "", []
    from lfmlf import plots  # lazy: matplotlib, and plots imports lfmlf.report

    table = effects_table(runs, task_metric, targets, sources, scale=scale, digits=digits)
    pct = f"{table.level * 100:g}%"
    cells, rows, what = table.effects, table.sources, "adding a source language"
    if table.swaps and not any(e.estimable for e in table.effects.values()):
        cells, what = table.swaps, "a source language in place of another"
        rows = list(dict.fromkeys(s for s, _ in table.swaps))
    values = [[cells[(s, c)].estimate if (s, c) in cells else math.nan for c in table.columns] for s in rows]
    marked = [[(s, c) in cells and cells[(s, c)].excludes_zero for c in table.columns] for s in rows]
    scaled = f" (×{scale:g})" if scale != 1 else ""
    png = plots.source_effects_heatmap(
        Path(out_dir) / FIGURE, rows, table.columns, values, marked, digits=digits,
        title=f"Effect of {what} on zero-shot {task_metric}{scaled}\n"
              f"(* {pct} HC3 interval excludes 0; hatched: not estimable)",
        label=f"change in zero-shot {task_metric}{scaled}")
    return table.to_markdown(), [] if png is None else [png]
