"""Freezing (Wu & Dredze 2019): MLF with the word embeddings and the bottom layers frozen.

Freezing is a model option (``model.freeze_embeddings`` / ``model.freeze_layers``); as a *method* it is
applied in ``setup`` with :func:`lfmlf.models.freeze`, which runs in ``lfmlf.loop.build`` before the optimizer
is built, so the frozen parameters are neither in the optimizer nor in the checkpoint (only trainable
parameters change and are saved; on resume ``setup`` freezes the rebuilt model again before the trainable
state is loaded). Freezing what the model config already froze is a no-op.
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from lfmlf.methods.mlf import Mlf, MlfParams
from lfmlf.models import TaskModel, freeze


class FreezeParams(MlfParams):
    freeze_embeddings: bool = Field(True, description="Freeze the word embeddings.")
    freeze_layers: int = Field(2, ge=0, description="Freeze the bottom n transformer layers (0 = none).")


class Freeze(Mlf[FreezeParams]):
    name = "freeze"

    def setup(self, model: TaskModel, sources: Sequence[str], data: object = None) -> None:
        super().setup(model, sources)
        freeze(model.encoder, self.params.freeze_embeddings, self.params.freeze_layers)
