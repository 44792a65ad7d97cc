"""Forgetting objectives: how far the encoder has moved from what it knew before fine-tuning.

Each objective covers the *pre-trained* trainable parameters only (the new task head has no pre-trained
state). Call order: ``setup(model)`` once per trial before the first step (the model is at theta0 then,
also on resume, where the model is rebuilt from its source before the checkpoint is loaded), then
``value_and_grad`` every step that needs it.

What an objective needs from the loop is declared in :class:`Needs`: ``distill`` reads unlabelled text
when the sweep gives plain-text files (else the step's own source sub-batches), ``mlm`` needs the model's
pre-trained masked-LM head and a masked batch of unlabelled text every step.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor

from lfmlf.grads import GradRows, flat_params, flat_view, flatten
from lfmlf.models import TaskModel
from lfmlf.teacher import TeacherDtype, TeacherStates, precompute

if TYPE_CHECKING:
    from lfmlf.methods.base import SetupData, StepObjectives


@dataclass(frozen=True)
class Needs:
    """What a method (or its forgetting objective) needs the loop to build, decided from its parameters."""

    mlm_head: bool = False     # load the encoder with its pre-trained masked-LM head (frozen)
    # unlabelled text in StepObjectives.unlabelled every micro-batch: "masked" always (from the sweep's
    # text files, else the task's source-language text); "text" only when the sweep gives text files
    unlabelled: Literal["none", "text", "masked"] = "none"


#: What distillation reads the frozen encoder's states from: (input_ids, attention_mask) -> [B, T, H].
Teacher = Callable[[Tensor, Tensor], Tensor]


class Forgetting(ABC):
    name: ClassVar[str]
    needs: ClassVar[Needs] = Needs()

    @abstractmethod
    def setup(self, model: TaskModel) -> None:
        """Snapshot what the objective needs from theta0 (parameters, or a frozen encoder)."""

    @abstractmethod
    def value_and_grad(self, model: TaskModel, obj: StepObjectives) -> tuple[float, Tensor]:
        """(value, flat gradient over ``model.pretrained_parameters()``) on the step's objectives (current
        hidden states of the source sub-batches with graphs attached, the sub-batches, unlabelled text).
        Keeps the autograd graphs of ``obj.hidden`` alive (the task gradients are taken afterwards)."""

    def prepare(self, data: SetupData | None) -> None:
        """Called once by the method's ``setup`` right after :meth:`setup`, with the loop's one-off access to
        the training data (None from callers that have none): precompute what the objective can (the
        distillation teacher's states). Nothing by default."""
        return None

    def report(self) -> dict[str, float]:
        """Called at every evaluation (through the method's ``report``): the objective's cumulative counters
        and memory, under their own keys. None by default."""
        return {}


class L2Forgetting(Forgetting):
    """F = 1/2 ||theta - theta0||^2; its gradient theta - theta0 is analytic (no backward pass)."""

    name = "l2"

    def setup(self, model: TaskModel) -> None:
        self.theta0 = flat_params([p for _, p in model.pretrained_parameters()])   # a copy
        self.g = torch.empty_like(self.theta0)   # reused every step: callers use g_F within the step

    def value_and_grad(self, model: TaskModel, obj: StepObjectives) -> tuple[float, Tensor]:
        params = [p for _, p in model.pretrained_parameters()]
        theta = flat_view(params)   # no copy when the gradient methods' setup put them in one buffer
        if theta is None:           # else their values go through g's buffer (the subtraction is in place)
            theta = flatten([p.detach() for p in params], params, out=self.g)
        g = torch.sub(theta, self.theta0, out=self.g)
        return 0.5 * torch.dot(g, g).item(), g


class _AutogradForgetting(Forgetting):
    """An objective whose gradient is one autograd pass over the pre-trained parameters, written straight
    into a flat buffer (:class:`lfmlf.grads.GradRows`: no flatten pass)."""

    def setup(self, model: TaskModel) -> None:
        params = [p for _, p in model.pretrained_parameters()]
        self.g = flat_params(params)   # a buffer reused every step: callers use g_F within the step
        self.rows = GradRows(params)

    @abstractmethod
    def loss(self, model: TaskModel, obj: StepObjectives) -> Tensor:
        """The objective as a scalar tensor with its graph."""

    def value_and_grad(self, model: TaskModel, obj: StepObjectives) -> tuple[float, Tensor]:
        value = self.loss(model, obj)
        self.rows.backward(value, self.g, retain_graph=True)
        return value.item(), self.g


class DistillForgetting(_AutogradForgetting):
    """F = mean squared distance between the encoder's last hidden states and those of the frozen
    pre-trained encoder: on the step's source sub-batches (no extra forward of the live encoder), or on the
    unlabelled text when the sweep gives text files. The frozen states come from a
    :class:`lfmlf.teacher.TeacherStates` (each example's computed once per trial unless ``cache`` is off).
    ``fraction`` < 1 distils only that share of each sub-batch (see :func:`distill_objective`)."""

    name = "distill"
    needs = Needs(unlabelled="text")

    def __init__(self, cache: bool = True, dtype: TeacherDtype = "float32", max_mb: float = 1024.0,
                 fraction: float = 1.0) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"the distilled fraction of each sub-batch must be in (0, 1], got {fraction}")
        self.cache, self.dtype, self.max_mb, self.fraction = cache, dtype, max_mb, fraction

    def setup(self, model: TaskModel) -> None:
        super().setup(model)
        self.teacher = TeacherStates(model.frozen_encoder_copy(), cache=self.cache, dtype=self.dtype,
                                     max_mb=self.max_mb)

    def prepare(self, data: SetupData | None) -> None:
        """The frozen states of the sources' training sets, once per node when they fit (teacher.precompute)."""
        precompute(self.teacher, data.training_sets() if data is not None else ())

    def loss(self, model: TaskModel, obj: StepObjectives) -> Tensor:
        return distill_objective(self.teacher, model, obj, self.fraction)

    def report(self) -> dict[str, float]:
        """``distill/teacher_cache_mb``, ``distill/teacher_hits``, ``distill/teacher_misses``,
        ``distill/teacher_uncached`` (see :meth:`TeacherStates.report`)."""
        return {f"distill/{k}": v for k, v in self.teacher.report().items()}


class MlmForgetting(_AutogradForgetting):
    """F = the masked-LM loss of the live encoder read out by its frozen pre-trained MLM head, on a masked
    batch of unlabelled text (Liu et al. 2020's memory objective): it rises as the encoder stops
    supporting the pre-training task. One extra forward and backward per step."""

    name = "mlm"
    needs = Needs(mlm_head=True, unlabelled="masked")

    def loss(self, model: TaskModel, obj: StepObjectives) -> Tensor:
        assert obj.unlabelled is not None, "the loop gives a masked batch to methods that need one"
        return model.mlm_loss(obj.unlabelled)


def distill_objective(teacher: Teacher, model: TaskModel, obj: StepObjectives, fraction: float = 1.0) -> Tensor:
    """Called every step by the distilling objectives and methods: distillation toward the frozen encoder's
    states (``teacher``) on the unlabelled text if the step has some, else on the step's own source
    sub-batches (their hidden states are already computed). With ``fraction`` < 1 only the first
    ceil(fraction * B) examples of each sub-batch (a uniform subset: the streams are shuffled) are distilled:
    a cheaper, noisier estimate, i.e. a different objective."""
    if obj.unlabelled is not None:
        b = _head(obj.unlabelled, fraction)
        return distill_loss(teacher, {"text": model.encode(b["input_ids"], b["attention_mask"])}, {"text": b})
    if fraction >= 1.0:
        return distill_loss(teacher, obj.hidden, obj.batches)
    batches = {lang: _head(b, fraction) for lang, b in obj.batches.items()}
    return distill_loss(teacher, {lang: h[:batches[lang]["input_ids"].shape[0]] for lang, h in obj.hidden.items()},
                        batches)


def _head(batch: Mapping[str, Tensor], fraction: float) -> dict[str, Tensor]:
    """The first ceil(fraction * B) rows (at least one) of a sub-batch's ids and mask."""
    rows = batch["input_ids"].shape[0]
    n = rows if fraction >= 1.0 else max(1, math.ceil(fraction * rows))
    return {"input_ids": batch["input_ids"][:n], "attention_mask": batch["attention_mask"][:n]}


def distill_loss(teacher: Teacher, hidden: Mapping[str, Tensor], batches: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
    """Mean over sub-batches of the per-token squared distance to the frozen encoder's hidden states, which
    ``teacher(input_ids, attention_mask)`` gives (a :class:`TeacherStates`, cached or not)."""
    total = hidden[next(iter(hidden))].new_zeros((), dtype=torch.float32)
    for lang, h in hidden.items():
        b = batches[lang]
        ref = teacher(b["input_ids"], b["attention_mask"])
        mask = b["attention_mask"].unsqueeze(-1).to(torch.float32)
        total = total + ((h.float() - ref.float()).square() * mask).sum() / (mask.sum() * h.shape[-1])
    return total / len(hidden)


FORGETTING: dict[str, type[Forgetting]] = {c.name: c for c in (L2Forgetting, DistillForgetting, MlmForgetting)}
ForgettingName = Literal["l2", "distill", "mlm"]
