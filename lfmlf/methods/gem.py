"""GEM (Lopez-Paz & Ranzato 2017) with margin, the forgetting gradient g_F being the only memory gradient.

Primal over the update u that goes into ``.grad`` (the step is -u), with g = sum_k g_k and the memory
gradients as rows of M (here M = [g_F], but the code takes any number of rows):

    u = argmin_u 1/2 ||u - g||^2   s.t.  M u >= 0
    dual (GEM's, with its margin gamma on the multipliers):
    v = argmin_{v >= gamma} 1/2 v^T (M M^T) v + (M g)^T v,      u = g + M^T v

As in GEM's code, the QP is solved only when a constraint is violated (some <g, m_i> < 0); otherwise u = g.
With one memory gradient the solution is v = max(gamma, -<g, g_F> / ||g_F||^2). The margin is in units of
the multiplier (GEM's definition), so its effect depends on the scale of g_F relative to g: gamma > 0 also
pushes the step to *decrease* F, by gamma ||g_F||^2 to first order. The dual is solved by ``solve_box_qp``
after the shift v = gamma + w (0 <= w <= C, C large); Q and b are divided by max diag(Q) (the minimiser is
unchanged) so the solver's tolerances are relative. GEM's eps=1e-3 ridge on M M^T is not added (the
solver handles a singular Gram matrix). Signal: ``gem/projected`` (averages to the projection rate).
"""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import ForgettingName
from lfmlf.methods.gradient import GradientMethod, GradientParams
from lfmlf.qp import QPResult, combine, gram, solve_box_qp
from lfmlf.teacher import TeacherParams


class GemParams(GradientParams, TeacherParams):   # TeacherParams: forgetting "distill"
    forgetting: ForgettingName = Field(
        "distill", description="Forgetting objective whose gradient is the memory gradient: 'l2' distance "
                               "to theta0 (zero at theta0), 'distill' to the frozen encoder, or 'mlm' (the "
                               "masked-LM loss through the model's pre-trained MLM head, Liu et al. 2020).")
    margin: float = Field(0.5, ge=0.0, description="GEM's margin gamma: lower bound on the dual multipliers "
                          "(u = g + v g_F with v >= gamma when the constraint is active).")


def gem_dual(Q: Tensor, b: Tensor, margin: float) -> QPResult | None:
    """GEM's dual  min_{v >= margin} 1/2 v^T Q v + b^T v  (Q = M M^T, b = M g), as a box QP in w = v - margin.
    Returns the QPResult with ``lam`` = v, or None when no constraint is violated (no projection)."""
    Q, b = Q.detach().double().cpu(), b.detach().double().cpu()
    if not bool((b < 0).any()):
        return None
    diag = Q.diagonal()
    scale = float(diag.max())
    if not (scale > 0 and math.isfinite(scale)):
        return QPResult(torch.zeros_like(b), "nonfinite", 0, math.inf)
    pos = diag[diag > 0]
    upper = 1e6 * (1.0 + margin + float(b.abs().max()) / float(pos.min()))
    shifted = Q @ torch.full_like(b, margin) + b
    qp = solve_box_qp(Q / scale, shifted / scale, upper)
    return QPResult(qp.lam + margin, qp.status, qp.iterations, qp.kkt_residual)


class Gem(GradientMethod[GemParams]):
    name = "gem"

    def forgetting_objective(self) -> str:
        return self.params.forgetting

    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        assert g_f is not None
        g = combine(G, self.update.zero_(), torch.ones(G.shape[0], dtype=torch.float64), out=self.update)
        M = g_f[None]                                   # memory gradients, one row each
        Q, b = gram(M, g)                               # M M^T, M g in float64
        qp = gem_dual(Q, b, self.params.margin)
        if qp is None:
            return g, {"gem/projected": 0.0, "gem/multiplier": 0.0}
        if not qp.ok:
            return None, {"gem/projected": 0.0, "gem/multiplier": 0.0}
        g = combine(M, g, qp.lam, out=g)                # g + M^T v, in place
        return g, {"gem/projected": 1.0, "gem/multiplier": float(qp.lam.max())}
