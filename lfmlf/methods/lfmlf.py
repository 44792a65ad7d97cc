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

from lfmlf.forgetting import FORGETTING, Forgetting
from lfmlf.grads import add_flat_to_grad, cosines, numel, objective_grads, share_storage
from lfmlf.methods.base import Method, MethodParams, StepObjectives
from lfmlf.models import TaskModel
from lfmlf.qp import QPResult, combine, gram, solve_box_qp


class LfmlfParams(MethodParams):
    slack: float = Field(0.5, ge=0.0, description="Constraint slack: every source loss must fall at rate "
                         "at least slack * ||g_k||^2 along the step (0 = only forget less).")
    forgetting: Literal["l2", "distill"] = Field(
        "l2", description="Forgetting objective: 'l2' distance to theta0, or 'distill' to the frozen "
                          "encoder's hidden states on the source sub-batches.")
    max_multiplier: float = Field(100.0, gt=0.0, description="Upper bound C on the QP multipliers "
                                  "(soft constraints: conflicting sources give a bounded step).")
    grad_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Storage dtype of the K per-source flat gradients (bfloat16 halves memory).")
    embeddings_in_qp: bool = Field(True, description="Include the word-embedding matrix in the QP; if false "
                                   "it is updated by the plain sum of the task gradients.")


def _kept_slices(params: list, kept: list) -> list[slice]:
    """Slices of a flat vector laid out over ``params`` that belong to the ``kept`` parameters."""
    slices, offset = [], 0
    for p in params:
        if any(p is q for q in kept):  # identity, not tensor equality
            slices.append(slice(offset, offset + p.numel()))
        offset += p.numel()
    return slices


class Lfmlf(Method):
    name = "lfmlf"
    Params = LfmlfParams

    def setup(self, model: TaskModel, sources) -> None:
        super().setup(model, sources)
        emb = model.encoder.get_input_embeddings().weight
        shared = [p for _, p in model.pretrained_parameters()]
        share_storage(shared)        # theta as one vector without copies (the l2 gradient is theta - theta0)
        self.forgetting: Forgetting = FORGETTING[self.params.forgetting]()
        self.forgetting.setup(model)
        self.qp_params = [p for p in shared if self.params.embeddings_in_qp or p is not emb]
        in_qp = {id(p) for p in self.qp_params}
        self.sum_params = [p for p in shared if id(p) not in in_qp] + [p for _, p in model.head_parameters()]
        self.model = model
        self._qp_slices = None if len(self.qp_params) == len(shared) else _kept_slices(shared, self.qp_params)
        self.fallbacks = 0
        self.steps = 0
        dtype = torch.bfloat16 if self.params.grad_dtype == "bfloat16" else torch.float32
        device = shared[0].device if shared else None
        self.G = torch.empty(len(self.sources), numel(self.qp_params), dtype=dtype, device=device)
        self.update = torch.empty(numel(self.qp_params), dtype=torch.float32, device=device)

    def backward(self, obj: StepObjectives) -> dict[str, float]:
        langs = [lang for lang in self.sources if lang in obj.task]
        G = self.G[:len(langs)]
        f_value, g_f = self.forgetting.value_and_grad(self.model, obj.hidden, obj.batches)
        if self._qp_slices is not None:
            g_f = torch.cat([g_f[s] for s in self._qp_slices])
        for k, lang in enumerate(langs):
            objective_grads(obj.task[lang], self.qp_params, self.sum_params, G[k], obj.grad_scale)
        Q, Gg = gram(G, g_f)                                  # one pass over G, float64 sums
        eps = self.params.slack * Q.diagonal()                 # margin: slack * ||g_k||^2
        qp = solve_box_qp(Q.cpu(), (Gg - eps).cpu(), self.params.max_multiplier)
        # .grad gets minus the step direction, g_F + G^T lam, built in a buffer kept across steps
        update = combine(G, g_f.to(self.update.dtype), qp.lam, out=self.update) if qp.ok else None
        self.steps += 1
        # a sum is non-finite iff an entry is (inf - inf = nan): no D-sized boolean temporary
        if update is not None and bool(torch.isfinite(update.sum())):
            add_flat_to_grad(self.qp_params, update, obj.grad_scale)
        else:
            self.fallbacks += 1
            add_flat_to_grad(self.qp_params, G.sum(dim=0, dtype=torch.float32), obj.grad_scale)  # plain sum
        return self._signals(langs, Q, Gg, qp, f_value)

    def _signals(self, langs: list[str], Q: torch.Tensor, Gg: torch.Tensor, qp: QPResult,
                 f_value: float) -> dict[str, float]:
        lam = qp.lam.to(Q.device)
        sq = Q.diagonal().clamp_min(1e-300)
        decrease = (Gg + Q @ lam) / sq          # -<g_k, d> / ||g_k||^2: first-order decrease, scale-free
        signals = {"lfmlf/forgetting": f_value, "lfmlf/active": float((lam > 0).sum()), "lfmlf/qp_ok": float(qp.ok)}
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

    def report(self) -> dict[str, float]:
        return {"lfmlf/qp_fallbacks": float(self.fallbacks),
                "lfmlf/qp_fallback_rate": self.fallbacks / max(self.steps, 1)}

    def state_dict(self) -> dict[str, int]:
        return {"fallbacks": self.fallbacks, "steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.fallbacks, self.steps = int(state["fallbacks"]), int(state["steps"])
