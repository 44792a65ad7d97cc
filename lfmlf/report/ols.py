"""Ordinary least squares with HC3 intervals and an explicit identifiability check.

Called by :func:`lfmlf.report.effects.effects_table`, once per target language, on a design matrix it built
from sweep trials. Nothing here knows about languages or runs: columns are numbers, and every coefficient
that cannot be given an interval says why with a :data:`Problem` code, which the caller turns into words.

* **Rank deficiency is detected, never regularised.** The design's rank comes from its singular values
  (numpy's ``matrix_rank`` tolerance). Coefficient ``j`` is *identified* when the unit vector ``e_j`` lies in
  the row space of the design (it equals its projection on the right singular vectors of the non-zero
  singular values); otherwise no least-squares solution pins it down and it gets ``"aliased"`` and no
  number. An identified coefficient has one value however the other, aliased ones are resolved, which is
  the one the pseudo-inverse gives.
* **Intervals.** HC3 (MacKinnon & White 1985) standard errors, ``Var(b_j) = sum_i a_ji^2 e_i^2 / (1 - h_ii)^2``
  with ``a_j`` row ``j`` of the pseudo-inverse, ``e`` the residuals and ``h`` the leverages, and Student-t
  quantiles with ``n - rank`` degrees of freedom.
* **No interval** (problem ``"df"``) when fewer than :data:`MIN_DF` residual degrees of freedom remain, and
  (problem ``"leverage"``) for a coefficient that leans on a trial of leverage 1: that trial's residual is
  0 by construction, so its noise cannot be estimated and HC3 would divide 0 by 0 (the typical case: a
  source language included in exactly one trial).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

#: Fewest residual degrees of freedom for an interval: HC3 estimates each trial's noise from its own residual,
#: and with one or two residuals left that estimate (and the t quantile, 12.7 at df 1) is not worth printing.
MIN_DF = 3

Problem = Literal["no data", "aliased", "df", "leverage"]

_ROW_SPACE_TOL = 1e-8       # squared share of a combination outside the row space above which it is aliased
_LEVERAGE_ONE = 1 - 1e-8    # a leverage this close to 1 leaves a residual of (numerically) zero


@dataclass(frozen=True)
class Coefficient:
    """One column's coefficient: estimate, HC3 standard error and ``level`` interval; NaN with a
    ``problem`` when it has no interval. ``lone_trials`` (problem ``"leverage"``): the rows of leverage 1
    it depends on."""

    estimate: float
    se: float
    low: float
    high: float
    problem: Problem | None = None
    lone_trials: tuple[int, ...] = ()


@dataclass(frozen=True)
class Fit:
    """A least-squares fit: ``n`` rows, ``p`` columns, the design's ``rank`` and ``df = n - rank``;
    ``aliased`` lists the columns whose coefficient is not identified (empty when the design has full rank)."""

    n: int
    p: int
    rank: int
    df: int
    coefficients: list[Coefficient]
    aliased: list[int]
    contrasts: list[Coefficient] = field(default_factory=list)

    @property
    def rank_deficient(self) -> bool:
        return self.rank < self.p


def _nan(problem: Problem, lone: tuple[int, ...] = ()) -> Coefficient:
    return Coefficient(math.nan, math.nan, math.nan, math.nan, problem, lone)


def ols_hc3(x: np.ndarray, y: np.ndarray, level: float = 0.95, min_df: int = MIN_DF,
            contrasts: Sequence[np.ndarray] = ()) -> Fit:
    """Fit ``y ~ x`` (``x`` holds the intercept column if one is wanted) and return every coefficient with
    its HC3 interval at ``level``, or the reason it has none (see the module docstring). Each of
    ``contrasts`` (a weight per column) adds the linear combination ``c @ beta`` to :attr:`Fit.contrasts`,
    identified when ``c`` lies in the design's row space."""
    from scipy import stats  # lazy: only `lfmlf report` fits

    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n, p = x.shape
    if n == 0:
        return Fit(0, p, 0, 0, [_nan("no data") for _ in range(p)], list(range(p)),
                   [_nan("no data") for _ in contrasts])
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    rank = int((s > s.max() * max(n, p) * np.finfo(float).eps).sum()) if s.size and s.max() > 0 else 0
    u_r, s_r, v_r = u[:, :rank], s[:rank], vt[:rank].T                  # v_r: p x rank
    pinv = v_r @ (u_r.T / s_r[:, None])                                 # p x n
    beta = pinv @ y
    resid = y - x @ beta
    leverage = (u_r ** 2).sum(axis=1)
    df = n - rank
    lone = leverage > _LEVERAGE_ONE
    weight = np.where(lone, 0.0, resid ** 2 / np.where(lone, 1.0, 1.0 - leverage) ** 2)
    tq = float(stats.t.ppf((1 + level) / 2, df)) if df > 0 else math.nan

    def combination(c: np.ndarray) -> Coefficient:
        c = np.asarray(c, dtype=float)
        norm = float(np.linalg.norm(c))
        outside = float(np.linalg.norm(c - v_r @ (v_r.T @ c)))
        if norm == 0 or outside > math.sqrt(_ROW_SPACE_TOL) * norm:
            return _nan("aliased")
        if df < min_df:
            return _nan("df")
        a = c @ pinv
        leaning = np.flatnonzero(lone & (np.abs(a) > 1e-9 * max(1.0, float(np.abs(a).max()))))
        if leaning.size:
            return _nan("leverage", tuple(int(i) for i in leaning))
        se = math.sqrt(float((a ** 2 * weight).sum()))
        b = float(c @ beta)
        return Coefficient(b, se, b - tq * se, b + tq * se)

    coefs = [combination(np.eye(p)[j]) for j in range(p)]
    return Fit(n, p, rank, df, coefs, [j for j in range(p) if coefs[j].problem == "aliased"],
               [combination(c) for c in contrasts])
