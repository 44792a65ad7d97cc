"""Multi-task fine-tuning with masked-LM (Liu et al. 2020): MLF's task loss plus a masked-LM loss on
unlabelled text, back-propagated together.

    loss = MLF's combined task loss + weight * MLM(unlabelled batch)

The MLM loss reads the live encoder out through the model's *pre-trained* MLM head, which stays frozen
(its output matrix is the word-embedding matrix, which follows the encoder's own freezing): the head
cannot absorb the encoder's drift, so the MLM term keeps the encoder itself close to what pre-training
taught it. The unlabelled batch (``unlabelled.batch_size`` sequences, BERT-style masking at
``unlabelled.mlm_probability``) comes from the sweep's text files, else from the task's source-language
text. Needs a model with an MLM head (xlm-roberta-*, bert-base-multilingual-*); the signal
``mtl_mlm/penalty`` is the MLM loss.
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import Needs
from lfmlf.methods.base import StepObjectives
from lfmlf.methods.penalty import PenaltyMethod, PenaltyParams
from lfmlf.models import TaskModel


class MtlMlmParams(PenaltyParams):
    weight: float = Field(1.0, ge=0.0, description="Multiplier of the masked-LM loss (0 = plain MLF).")


class MtlMlm(PenaltyMethod[MtlMlmParams]):
    name = "mtl_mlm"

    def needs(self) -> Needs:
        return Needs(mlm_head=True, unlabelled="masked")

    def setup(self, model: TaskModel, sources: Sequence[str], data: object = None) -> None:
        super().setup(model, sources)
        self.model = model

    def penalty(self, obj: StepObjectives) -> Tensor:
        assert obj.unlabelled is not None, "the loop gives a masked batch to methods that need one"
        return self.model.mlm_loss(dict(obj.unlabelled))
