"""L2-SP (Li, Grandvalet & Davoine 2018): pull the pre-trained parameters back toward their starting point.

penalty = 1/2 sum ||theta - theta0||^2 over the *pre-trained trainable* parameters (the encoder). The task
head is excluded: it is new, so its theta0 is a random draw with nothing learnt to keep, and pulling toward
it would only be weight decay toward noise (Li et al. likewise apply L2-SP to the pre-trained part and plain
L2 to new layers; here the optimizer's weight decay plays that role). Frozen parameters never move, so they
are excluded too. Gradient: weight * (theta - theta0).
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field
from torch import Tensor

from lfmlf.methods.base import StepObjectives
from lfmlf.methods.penalty import PenaltyMethod, PenaltyParams, squared_distance
from lfmlf.models import TaskModel


class L2spParams(PenaltyParams):
    weight: float = Field(0.01, ge=0.0, description="Multiplier of 1/2 ||theta - theta0||^2 over the pre-trained "
                                                    "trainable parameters (0 = plain MLF).")


class L2sp(PenaltyMethod[L2spParams]):
    name = "l2sp"

    def setup(self, model: TaskModel, sources: Sequence[str], data: object = None) -> None:
        super().setup(model, sources)
        self.protected = [p for _, p in model.pretrained_parameters()]
        self.theta0 = [p.detach().float().clone() for p in self.protected]

    def penalty(self, obj: StepObjectives) -> Tensor:
        return squared_distance(self.protected, self.theta0)
