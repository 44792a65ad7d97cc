"""Penalty baselines: MLF's combined task loss plus ``weight * penalty``, back-propagated once.

A subclass snapshots what its penalty needs in ``setup`` (the model is at theta0 then) and defines
``penalty(obj)``. The task part is exactly MLF's (same ``reduction`` parameter, same code:
:meth:`Mlf.combined_loss`).
"""
from __future__ import annotations

from abc import abstractmethod
from typing import TypeVar

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.methods.base import StepObjectives
from lfmlf.methods.mlf import Mlf, MlfParams


class PenaltyParams(MlfParams):
    weight: float = Field(1.0, ge=0.0, description="Multiplier of the penalty added to the combined task loss "
                                                   "(0 = plain MLF).")


PP = TypeVar("PP", bound=PenaltyParams)


class PenaltyMethod(Mlf[PP]):
    """loss = MLF's combined task loss + weight * penalty; signal ``<name>/penalty`` (unweighted)."""

    @abstractmethod
    def penalty(self, obj: StepObjectives) -> Tensor:
        """Called every micro-batch from ``backward``, after ``setup``: a scalar tensor whose autograd graph
        reaches the trainable parameters (it is back-propagated together with the task loss, once).
        ``obj`` is the step's objectives (current hidden states and sub-batches), for data-dependent
        penalties."""

    def backward(self, obj: StepObjectives) -> dict[str, float]:
        penalty = self.penalty(obj)
        loss = self.combined_loss(obj) + self.params.weight * penalty
        (loss * obj.grad_scale).backward()
        return {f"{self.name}/penalty": penalty.item()}


def squared_distance(params: list[torch.nn.Parameter], anchors: list[Tensor],
                     scales: list[Tensor] | None = None) -> Tensor:
    """1/2 sum_i s_i (p_i - a_i)^2 over all parameters (s_i = 1 without ``scales``), in float32."""
    total = params[0].new_zeros((), dtype=torch.float32)
    for i, (p, a) in enumerate(zip(params, anchors)):
        d = (p.float() - a).square()
        total = total + (d if scales is None else d * scales[i]).sum()
    return 0.5 * total
