"""LF-MLF: less-forgetting multilingual fine-tuning as constrained optimisation (DESIGN.md §4).

Each step, over the pre-trained (encoder) parameters:

    d = argmin_d <g_F, d> + 1/2 ||d||^2   s.t.  <g_k, d> <= -eps_k   (every source language k)
    eps_k = slack * ||g_k||^2                                          (constraint form "margin")
    eps_k = (1 - delta) * <g_k, G^T alpha>, alpha = MGDA's min-norm weights   (form "mgda_relative")
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
from pydantic import Field, model_validator
from torch import Tensor

from lfmlf.forgetting import ForgettingName
from lfmlf.grads import cosines
from lfmlf.methods.gradient import GradientMethod, GradientParams
from lfmlf.methods.mgda import min_norm_weights
from lfmlf.qp import QPResult, combine, gram, solve_box_qp
from lfmlf.teacher import TeacherParams


class LfmlfParams(GradientParams, TeacherParams):   # TeacherParams: forgetting "distill"
    constraint: Literal["margin", "mgda_relative"] = Field(
        "margin", description="'margin': source k's loss must fall at rate slack * ||g_k||^2; 'mgda_relative': "
                              "at least (1 - slack) times as fast as along MGDA's min-norm direction.")
    slack: float = Field(0.5, ge=0.0, description="Constraint slack: the required decrease rate for 'margin' "
                         "(0 = only forget less); delta in [0, 1) for 'mgda_relative' (0 = as fast as MGDA).")
    forgetting: ForgettingName = Field(
        "l2", description="Forgetting objective: 'l2' distance to theta0, 'distill' to the frozen "
                          "encoder's hidden states (source sub-batches, or the unlabelled text files), or "
                          "'mlm' (masked-LM loss on unlabelled text through the pre-trained MLM head).")
    max_multiplier: float = Field(100.0, gt=0.0, description="Upper bound C on the QP multipliers "
                                  "(soft constraints: conflicting sources give a bounded step).")


    @model_validator(mode="after")
    def _delta_below_one(self) -> LfmlfParams:
        if self.constraint == "mgda_relative" and self.slack >= 1.0:
            raise ValueError(f"with constraint 'mgda_relative' the slack is delta in [0, 1), got {self.slack}")
        return self


class Lfmlf(GradientMethod[LfmlfParams]):
    name = "lfmlf"
    fallback_key = "qp_fallbacks"

    def forgetting_objective(self) -> str:
        return self.params.forgetting

    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        assert g_f is not None
        Q, Gg = gram(G, g_f)                                  # one pass over G, float64 sums
        eps = self._required_decrease(Q)
        if eps is None:                                        # MGDA's min-norm problem did not solve
            return None, {"lfmlf/qp_ok": 0.0}
        qp = solve_box_qp(Q.cpu(), (Gg - eps).cpu(), self.params.max_multiplier)
        # minus the step direction, g_F + G^T lam, built in the reusable buffer
        update = combine(G, g_f.to(self.update.dtype), qp.lam, out=self.update) if qp.ok else None
        return update, self._signals(langs, Q, Gg, qp)

    def _required_decrease(self, Q: Tensor) -> Tensor | None:
        """eps_k: 'margin' slack * ||g_k||^2; 'mgda_relative' (1 - delta) * <g_k, G^T alpha> with alpha MGDA's
        min-norm weights (along -G^T alpha every source loss falls at rate (Q alpha)_k >= ||G^T alpha||^2)."""
        if self.params.constraint == "margin":
            return self.params.slack * Q.diagonal()
        alpha = min_norm_weights(Q)
        return None if alpha is None else (1.0 - self.params.slack) * (Q @ alpha.to(Q))

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
