"""LF-MLF: less-forgetting multilingual fine-tuning as constrained optimisation (DESIGN.md §4).

Each step, over the pre-trained (encoder) parameters:

    d = argmin_d <g_F, d> + 1/2 ||d||^2   s.t.  <g_k, d> <= -eps_k   (every source language k)
    eps_k = slack * ||g_k||^2                                          (constraint form "margin")
    d = -(g_F + G^T lam),  lam = the box-QP dual solution, 0 <= lam <= max_multiplier

g_F is the gradient of the forgetting objective, g_k the task gradient of source k on its own sub-batch.
The task head (no pre-trained state) gets the plain sum of the task gradients. When the QP does not solve
(non-finite gradients, iteration limit), the step falls back to the plain sum of the task gradients over
every parameter and the fallback is counted (``lfmlf/qp_fallbacks``). With gradient accumulation each
micro-batch solves its own QP and the resulting updates are averaged.

The QP's guarantee (first-order decrease of every source loss) holds for the raw direction d; AdamW then
rescales each coordinate, so the loop logs the realised change of each source loss
(``train/realised_dloss/<lang>``); ``train.optimizer: sgd`` keeps the direction as it is.
"""
from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.grads import cosines
from lfmlf.methods.gradient import GradientMethod, GradientParams
from lfmlf.qp import QPResult, combine, gram, solve_box_qp


class LfmlfParams(GradientParams):
    slack: float = Field(0.5, ge=0.0, description="Constraint slack: every source loss must fall at rate "
                         "at least slack * ||g_k||^2 along the step (0 = only forget less).")
    forgetting: Literal["l2", "distill"] = Field(
        "l2", description="Forgetting objective: 'l2' distance to theta0, or 'distill' to the frozen "
                          "encoder's hidden states on the source sub-batches.")
    max_multiplier: float = Field(100.0, gt=0.0, description="Upper bound C on the QP multipliers "
                                  "(soft constraints: conflicting sources give a bounded step).")


class Lfmlf(GradientMethod):
    name = "lfmlf"
    Params = LfmlfParams
    fallback_key = "qp_fallbacks"

    def forgetting_objective(self) -> str:
        return self.params.forgetting

    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        assert g_f is not None
        Q, Gg = gram(G, g_f)                                  # one pass over G, float64 sums
        eps = self.params.slack * Q.diagonal()                 # margin: slack * ||g_k||^2
        qp = solve_box_qp(Q.cpu(), (Gg - eps).cpu(), self.params.max_multiplier)
        # minus the step direction, g_F + G^T lam, built in the reusable buffer
        update = combine(G, g_f.to(self.update.dtype), qp.lam, out=self.update) if qp.ok else None
        return update, self._signals(langs, Q, Gg, qp)

    def _signals(self, langs: list[str], Q: torch.Tensor, Gg: torch.Tensor, qp: QPResult) -> dict[str, float]:
        lam = qp.lam.to(Q.device)
        sq = Q.diagonal().clamp_min(1e-300)
        decrease = (Gg + Q @ lam) / sq          # -<g_k, d> / ||g_k||^2: first-order decrease, scale-free
        signals = {"lfmlf/active": float((lam > 0).sum()), "lfmlf/qp_ok": float(qp.ok)}
        for k, lang in enumerate(langs):
            signals[f"lfmlf/lambda/{lang}"] = float(lam[k])
            signals[f"lfmlf/decrease/{lang}"] = float(decrease[k])
        cos = cosines(Q)
        pairs = [(i, j) for i in range(len(langs)) for j in range(i + 1, len(langs))]
        if pairs:
            signals["lfmlf/grad_cos/mean"] = sum(float(cos[i, j]) for i, j in pairs) / len(pairs)
            for i, j in pairs:
                signals[f"lfmlf/grad_cos/{langs[i]}-{langs[j]}"] = float(cos[i, j])
        return signals
