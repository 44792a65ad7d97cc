"""Shared plumbing of the gradient-combination methods (LF-MLF, GEM, A-GEM, MGDA, PCGrad).

Per micro-batch: one backward per source language on its own sub-batch gives the rows of G [K, D] over the
pre-trained parameters (the task head gets the sum of the task gradients, or their mean as MLF gives it:
``head_reduction``); methods that protect what the encoder knew also get the forgetting gradient g_F [D];
``combine`` turns these into the vector that goes into ``.grad`` (minus the step direction); the optimizer
does the rest. A subclass holds only its algebra in ``combine``.

The plumbing moves as few D-sized vectors as it can (each pass over D floats costs about as much as a QP
solve): autograd's gradient of each parameter is copied into its slice of G's row by a hook while it is
still in cache (:class:`lfmlf.grads.GradRows`, no flatten pass afterwards), and ``combine`` writes the
update into a buffer whose slices *are* the parameters' ``.grad`` (no copy into ``.grad``).
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal, TypeVar

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import FORGETTING, DistillForgetting, Forgetting, Needs
from lfmlf.grads import GradRows, numel, set_flat_grad, share_storage
from lfmlf.methods.base import Method, MethodParams, SetupData, StepObjectives
from lfmlf.models import TaskModel
from lfmlf.teacher import TeacherParams


class GradientParams(MethodParams):
    grad_dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="Storage dtype of the K per-source flat gradients (bfloat16 halves memory).")
    embeddings_in_qp: bool = Field(True, description="Include the word-embedding matrix in the gradient "
                                   "combination; if false it is updated like the task head (head_reduction).")
    head_reduction: Literal["sum", "mean", "size"] = Field(
        "sum", description="How the task head (and the word embeddings outside the combination) combine the "
                           "per-source task gradients: 'sum' (K times the scale MLF's default gives the head), "
                           "'mean' or 'size' (exactly what MLF's reduction of the same name gives it).")


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
        self.forgetting: Forgetting | None = None
        if name == "distill" and isinstance(self.params, TeacherParams):
            self.forgetting = DistillForgetting(**self.params.teacher_options(), fraction=self.params.distill_fraction)
        elif name:
            self.forgetting = FORGETTING[name]()
        if self.forgetting is not None:
            self.forgetting.setup(model)
            self.forgetting.prepare(data)
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
        self.rows = GradRows(self.qp_params)
        # the update of a step's first micro-batch is built in _grad and becomes .grad (views); later
        # micro-batches (gradient accumulation) build theirs in _spare and add it
        self._grad = torch.empty(numel(self.qp_params), dtype=torch.float32, device=device)
        self._spare: Tensor | None = None
        self.update = self._grad   # the buffer ``combine`` may write into this micro-batch

    def backward(self, obj: StepObjectives) -> dict[str, float]:
        langs = [lang for lang in self.sources if lang in obj.task]
        G = self.G[:len(langs)]
        g_f, signals = None, {}
        if self.forgetting is not None:
            f_value, g_f = self.forgetting.value_and_grad(self.model, obj)
            if self._qp_slices is not None:
                g_f = torch.cat([g_f[s] for s in self._qp_slices])
            signals[f"{self.name}/forgetting"] = f_value
        head = self._head_weights(langs, obj.sizes)
        for k, lang in enumerate(langs):
            self.rows.backward(obj.task[lang], G[k], also=self.sum_params, scale=obj.grad_scale * head[k])
        if not self.qp_params or self.qp_params[0].grad is None:      # the step's first micro-batch
            self.update = self._grad
        else:
            if self._spare is None:
                self._spare = torch.empty_like(self._grad)
            self.update = self._spare
        update, own = self.combine(G, g_f, langs)
        self.steps += 1
        # a sum is non-finite iff an entry is (inf - inf = nan): no D-sized boolean temporary
        if update is None or not bool(torch.isfinite(update.sum())):
            self.fallbacks += 1
            update = torch.sum(G, dim=0, dtype=torch.float32, out=self.update)  # the plain sum of the task gradients
        elif update is not self.update:       # .grad becomes views of the buffer: never of G or a caller's tensor
            update = self.update.copy_(update)
        set_flat_grad(self.qp_params, update, obj.grad_scale)
        return {**signals, **own}

    def _head_weights(self, langs: list[str], sizes: Mapping[str, int]) -> list[float]:
        """Each source's weight in the head's gradient (``head_reduction``), as MLF's reduction weighs it."""
        if self.params.head_reduction == "mean":
            return [1.0 / len(langs)] * len(langs)
        if self.params.head_reduction == "size":
            total = sum(sizes[lang] for lang in langs)
            return [sizes[lang] / total for lang in langs]
        return [1.0] * len(langs)

    @abstractmethod
    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        """Called every micro-batch with the per-source gradients G [K, D] (rows in ``langs`` order) and
        the forgetting gradient g_F [D] (None unless ``forgetting_objective`` names one). Returns the
        vector to add to ``.grad`` (minus the step direction), best built in ``self.update`` (this micro-batch's
        buffer, which then becomes ``.grad`` without a copy; any other tensor is copied into it),
        or None when the combination failed (the step then uses the plain sum, counted as a fallback),
        and the method's own signals."""

    def report(self) -> dict[str, float]:
        own = {f"{self.name}/{self.fallback_key}": float(self.fallbacks),
               f"{self.name}/fallback_rate": self.fallbacks / max(self.steps, 1)}
        return {**own, **(self.forgetting.report() if self.forgetting is not None else {})}

    def state_dict(self) -> dict[str, int]:
        return {"fallbacks": self.fallbacks, "steps": self.steps}

    def load_state_dict(self, state) -> None:
        self.fallbacks, self.steps = int(state["fallbacks"]), int(state["steps"])
