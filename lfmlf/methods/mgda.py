"""MGDA (Sener & Koltun 2018): the min-norm point of the convex hull of the per-source gradients.

    alpha = argmin_{alpha in simplex} ||G^T alpha||^2 = alpha^T Q alpha,   Q = G G^T (float64, K x K)
    update = G^T alpha   (times K when ``scale_by_k``, so that equal gradients give the plain sum's step)

``update`` goes into ``.grad`` (the step is -update); with x = G^T alpha, <g_k, x> >= ||x||^2 for every k, so
the step decreases every source loss to first order, or x = 0 at a Pareto-stationary point. No forgetting
objective. K = 1: alpha = 1; K = 2: the closed form alpha_1 = clip(<g_2 - g_1, g_2> / ||g_1 - g_2||^2, 0, 1).
K >= 3: exactly, via the box QP of the equivalent problem  min ||z||^2 s.t. <g_k, z> >= 1, whose dual is
lam = argmin_{lam >= 0} 1/2 lam^T Q lam - 1^T lam  and whose solution gives alpha = lam / sum(lam)
(the min-norm point is G^T lam / sum(lam)); solved by ``solve_box_qp`` on Q / max diag(Q) with a large
upper bound (if 0 is in the hull the dual is unbounded: the bound then yields alpha with G^T alpha ~ 0).
The result is checked against the simplex KKT conditions; a failure returns None (plain-sum fallback).
"""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.methods.gradient import GradientMethod, GradientParams
from lfmlf.qp import combine, gram_matrix, solve_box_qp

_UPPER = 1e10   # bound on the normalised dual multipliers: resolves ||min-norm point|| >= ~1e-5 max ||g_k||


class MgdaParams(GradientParams):
    scale_by_k: bool = Field(True, description="Multiply the min-norm point by K (number of sources in the "
                             "step) so its magnitude is comparable to the plain sum of the gradients.")


def min_norm_weights(Q: Tensor, tol: float = 1e-6) -> Tensor | None:
    """alpha in the simplex minimising alpha^T Q alpha (Q = G G^T, K x K), float64; None if not solved."""
    Q = Q.detach().double().cpu()
    K = Q.shape[0]
    if K == 0 or not bool(torch.isfinite(Q).all()):
        return None
    if K == 1:
        return torch.ones(1, dtype=torch.float64)
    scale = float(Q.diagonal().max())
    if scale <= 0:                                  # every gradient is zero: any alpha, take the mean
        return torch.full((K,), 1.0 / K, dtype=torch.float64)
    Q = Q / scale
    if K == 2:
        diff = float(Q[0, 0] - 2 * Q[0, 1] + Q[1, 1])               # ||g_1 - g_2||^2
        a = min(1.0, max(0.0, float(Q[1, 1] - Q[0, 1]) / diff)) if diff > 0 else 0.5
        return torch.tensor([a, 1.0 - a], dtype=torch.float64)
    qp = solve_box_qp(Q, -torch.ones(K, dtype=torch.float64), _UPPER)
    total = float(qp.lam.sum())
    if not qp.ok or not total > 0:
        return None
    alpha = qp.lam / total
    r = Q @ alpha                                    # simplex KKT: r_k >= alpha^T Q alpha, = on the support
    if float((float(alpha @ r) - r).max()) > tol:
        return None
    return alpha


class Mgda(GradientMethod[MgdaParams]):
    name = "mgda"

    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        Q = gram_matrix(G)                           # G G^T in float64
        alpha = min_norm_weights(Q)
        if alpha is None:
            return None, {}
        weights = alpha * len(langs) if self.params.scale_by_k else alpha
        update = combine(G, self.update.zero_(), weights, out=self.update)
        Qd = Q.cpu()
        signals = {f"mgda/weight/{lang}": float(alpha[k]) for k, lang in enumerate(langs)}
        max_sq = float(Qd.diagonal().max())
        norm_sq = max(float(alpha @ Qd @ alpha), 0.0)        # ||G^T alpha||^2
        signals["mgda/min_norm_ratio"] = math.sqrt(norm_sq / max_sq) if max_sq > 0 else 0.0
        return update, signals
