"""Distillation toward the pre-trained encoder (Learning without Forgetting style, Li & Hoiem 2016).

penalty = :func:`lfmlf.forgetting.distill_objective`: the mean per-token squared distance between the
current last hidden states and those of a frozen copy of the encoder at theta0, on the step's source
sub-batches (one extra frozen forward per sub-batch), or on the sweep's unlabelled text files when it gives
some. Plain penalty, no QP: it is LF-MLF's ``distill`` forgetting objective used as a regulariser. The
frozen copy runs in eval mode, so with dropout > 0 the penalty is not exactly 0 at theta0.
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import Needs, distill_objective
from lfmlf.methods.base import StepObjectives
from lfmlf.methods.penalty import PenaltyMethod, PenaltyParams
from lfmlf.models import TaskModel


class DistillParams(PenaltyParams):
    weight: float = Field(1.0, ge=0.0, description="Multiplier of the mean squared distance to the frozen "
                                                   "pre-trained encoder's hidden states (0 = plain MLF).")


class Distill(PenaltyMethod[DistillParams]):
    name = "distill"

    def needs(self) -> Needs:
        return Needs(unlabelled="text")

    def setup(self, model: TaskModel, sources: Sequence[str], data: object = None) -> None:
        super().setup(model, sources)
        self.model = model
        self.reference = model.frozen_encoder_copy()

    def penalty(self, obj: StepObjectives) -> Tensor:
        return distill_objective(self.reference, self.model, obj)
