"""Forgetting objectives: how far the encoder has moved from what it knew before fine-tuning.

Each objective covers the *pre-trained* trainable parameters only (the new task head has no pre-trained
state). Call order: ``setup(model)`` once per trial before the first step (the model is at theta0 then,
also on resume, where the model is rebuilt from its source before the checkpoint is loaded), then
``value_and_grad`` every step that needs it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Mapping

import torch
from torch import Tensor

from lfmlf.grads import flat_params, flatten
from lfmlf.models import TaskModel


class Forgetting(ABC):
    name: ClassVar[str]

    @abstractmethod
    def setup(self, model: TaskModel) -> None:
        """Snapshot what the objective needs from theta0 (parameters, or a frozen encoder)."""

    @abstractmethod
    def value_and_grad(self, model: TaskModel, hidden: Mapping[str, Tensor],
                       batches: Mapping[str, Mapping[str, Tensor]]) -> tuple[float, Tensor]:
        """(value, flat gradient over ``model.pretrained_parameters()``). ``hidden`` are the current last
        hidden states of the step's sub-batches (graphs attached), ``batches`` the sub-batches themselves.
        Keeps the autograd graphs of ``hidden`` alive (the task gradients are taken afterwards)."""


class L2Forgetting(Forgetting):
    """F = 1/2 ||theta - theta0||^2; its gradient theta - theta0 is analytic (no backward pass)."""

    name = "l2"

    def setup(self, model: TaskModel) -> None:
        self.theta0 = flat_params([p for _, p in model.pretrained_parameters()]).clone()
        self.g = torch.empty_like(self.theta0)   # reused every step: callers use g_F within the step

    def value_and_grad(self, model: TaskModel, hidden: Mapping[str, Tensor],
                       batches: Mapping[str, Mapping[str, Tensor]]) -> tuple[float, Tensor]:
        g = torch.sub(flat_params([p for _, p in model.pretrained_parameters()]), self.theta0, out=self.g)
        return 0.5 * torch.dot(g, g).item(), g


class DistillForgetting(Forgetting):
    """F = mean squared distance between the encoder's last hidden states and those of the frozen
    pre-trained encoder on the same sub-batches (one frozen forward per sub-batch, no copy of the data)."""

    name = "distill"

    def setup(self, model: TaskModel) -> None:
        self.reference = model.frozen_encoder_copy()
        self.g = flat_params([p for _, p in model.pretrained_parameters()]).clone()  # buffer reused every step

    def value_and_grad(self, model: TaskModel, hidden: Mapping[str, Tensor],
                       batches: Mapping[str, Mapping[str, Tensor]]) -> tuple[float, Tensor]:
        params = [p for _, p in model.pretrained_parameters()]
        value = distill_loss(self.reference, hidden, batches)
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        return value.item(), flatten(grads, params, out=self.g)


def distill_loss(reference: torch.nn.Module, hidden: Mapping[str, Tensor],
                 batches: Mapping[str, Mapping[str, Tensor]]) -> Tensor:
    """Mean over sub-batches of the per-token squared distance to the frozen encoder's hidden states."""
    total = hidden[next(iter(hidden))].new_zeros((), dtype=torch.float32)
    for lang, h in hidden.items():
        b = batches[lang]
        with torch.no_grad():
            ref = reference(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        mask = b["attention_mask"].unsqueeze(-1).to(torch.float32)
        total = total + ((h.float() - ref.float()).square() * mask).sum() / (mask.sum() * h.shape[-1])
    return total / len(hidden)


FORGETTING: dict[str, type[Forgetting]] = {L2Forgetting.name: L2Forgetting, DistillForgetting.name: DistillForgetting}
