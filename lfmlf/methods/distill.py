"""Distillation toward the pre-trained encoder (Learning without Forgetting style, Li & Hoiem 2016).

penalty = :func:`lfmlf.forgetting.distill_objective`: the mean per-token squared distance between the
current last hidden states and those of a frozen copy of the encoder at theta0, on the step's source
sub-batches, or on the sweep's unlabelled text files when it gives some. The frozen states come from the
teacher-state cache (:class:`lfmlf.teacher.TeacherStates`: each distinct example's frozen forward runs once per
trial; ``teacher_cache: false`` runs it on every sub-batch). Plain penalty, no QP: it is LF-MLF's ``distill``
forgetting objective used as a regulariser. The frozen copy runs in eval mode, so with dropout > 0 the penalty
is not exactly 0 at theta0.
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import Needs, distill_objective
from lfmlf.methods.base import SetupData, StepObjectives
from lfmlf.methods.penalty import PenaltyMethod, PenaltyParams
from lfmlf.models import TaskModel
from lfmlf.teacher import TeacherParams, TeacherStates, precompute


class DistillParams(PenaltyParams, TeacherParams):
    weight: float = Field(1.0, ge=0.0, description="Multiplier of the mean squared distance to the frozen "
                                                   "pre-trained encoder's hidden states (0 = plain MLF).")


class Distill(PenaltyMethod[DistillParams]):
    name = "distill"

    def needs(self) -> Needs:
        return Needs(unlabelled="text")

    def setup(self, model: TaskModel, sources: Sequence[str], data: SetupData | None = None) -> None:
        super().setup(model, sources)
        self.model = model
        self.teacher = TeacherStates(model.frozen_encoder_copy(), **self.params.teacher_options())
        precompute(self.teacher, data.training_sets() if data is not None else ())   # once per node, if it fits

    def penalty(self, obj: StepObjectives) -> Tensor:
        return distill_objective(self.teacher, self.model, obj, self.params.distill_fraction)

    def report(self) -> dict[str, float]:
        """``distill/teacher_cache_mb``, ``distill/teacher_hits``, ``distill/teacher_misses``,
        ``distill/teacher_uncached``: the teacher-state cache's size and counters over the trial."""
        return {**super().report(), **{f"distill/{k}": v for k, v in self.teacher.report().items()}}
