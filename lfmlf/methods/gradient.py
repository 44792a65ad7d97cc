"""Shared plumbing of the gradient-combination methods (LF-MLF, GEM, A-GEM, MGDA, PCGrad).

Per micro-batch: one backward per source language on its own sub-batch gives the rows of G [K, D] over the
pre-trained parameters (the task head gets the plain sum of the task gradients); methods that protect
what the encoder knew also get the forgetting gradient g_F [D]; ``combine`` turns these into the vector
that goes into ``.grad`` (minus the step direction); the optimizer does the rest. A subclass holds only its
algebra in ``combine``.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, Literal, TypeVar

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import FORGETTING, Forgetting, Needs
from lfmlf.grads import add_flat_to_grad, numel, objective_grads, share_storage
from lfmlf.methods.base import Method, MethodParams, SetupData, StepObjectives
from lfmlf.models import TaskModel


class GradientParams(MethodParams):
    grad_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Storage dtype of the K per-source flat gradients (bfloat16 halves memory).")
    embeddings_in_qp: bool = Field(True, description="Include the word-embedding matrix in the gradient "
                                   "combination; if false it is updated by the plain sum of the task gradients.")


def _kept_slices(params: Sequence[torch.nn.Parameter], kept: Sequence[torch.nn.Parameter]) -> list[slice]:
    """Slices of a flat vector laid out over ``params`` that belong to the ``kept`` parameters."""
    slices, offset = [], 0
    for p in params:
        if any(p is q for q in kept):  # identity, not tensor equality
            slices.append(slice(offset, offset + p.numel()))
        offset += p.numel()
    return slices


GP = TypeVar("GP", bound=GradientParams)


class GradientMethod(Method[GP]):
    """Base of the methods that combine per-source gradients (and g_F) into one update."""

    fallback_key: ClassVar[str] = "fallbacks"   # reported as "<name>/<fallback_key>"

    def forgetting_objective(self) -> str | None:
        """Name of the forgetting objective whose gradient ``combine`` needs (None: no g_F)."""
        return None

    def needs(self) -> Needs:
        name = self.forgetting_objective()
        return FORGETTING[name].needs if name else Needs()

    def setup(self, model: TaskModel, sources: Sequence[str], data: SetupData | None = None) -> None:
        super().setup(model, sources)
        emb = model.encoder.get_input_embeddings().weight
        shared = [p for _, p in model.pretrained_parameters()]
        share_storage(shared)        # theta as one vector without copies (the l2 gradient is theta - theta0)
        name = self.forgetting_objective()
        self.forgetting: Forgetting | None = FORGETTING[name]() if name else None
        if self.forgetting is not None:
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
        g_f, signals = None, {}
        if self.forgetting is not None:
            f_value, g_f = self.forgetting.value_and_grad(self.model, obj)
            if self._qp_slices is not None:
                g_f = torch.cat([g_f[s] for s in self._qp_slices])
            signals[f"{self.name}/forgetting"] = f_value
        for k, lang in enumerate(langs):
            objective_grads(obj.task[lang], self.qp_params, self.sum_params, G[k], obj.grad_scale)
        update, own = self.combine(G, g_f, langs)
        self.steps += 1
        # a sum is non-finite iff an entry is (inf - inf = nan): no D-sized boolean temporary
        if update is not None and bool(torch.isfinite(update.sum())):
            add_flat_to_grad(self.qp_params, update, obj.grad_scale)
        else:
            self.fallbacks += 1
            add_flat_to_grad(self.qp_params, G.sum(dim=0, dtype=torch.float32), obj.grad_scale)  # plain sum
        return {**signals, **own}

    @abstractmethod
    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        """Called every micro-batch with the per-source gradients G [K, D] (rows in ``langs`` order) and
        the forgetting gradient g_F [D] (None unless ``forgetting_objective`` names one). Returns the
        vector to add to ``.grad`` (minus the step direction; ``self.update`` is a reusable buffer for it),
        or None when the combination failed (the step then uses the plain sum, counted as a fallback),
        and the method's own signals."""

    def report(self) -> dict[str, float]:
        return {f"{self.name}/{self.fallback_key}": float(self.fallbacks),
                f"{self.name}/fallback_rate": self.fallbacks / max(self.steps, 1)}

    def state_dict(self) -> dict[str, int]:
        return {"fallbacks": self.fallbacks, "steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.fallbacks, self.steps = int(state["fallbacks"]), int(state["steps"])
