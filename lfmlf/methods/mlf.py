"""MLF: plain multi-source fine-tuning. The per-source losses are combined and back-propagated once."""
from __future__ import annotations

from typing import Literal, TypeVar, cast

from pydantic import Field
from torch import Tensor

from lfmlf.methods.base import Method, MethodParams, StepObjectives


class MlfParams(MethodParams):
    reduction: Literal["mean", "sum", "size"] = Field(
        "mean", description="How per-source losses combine: their mean, their sum, or weighted by the "
                            "number of examples each source has in the batch (= one loss over the union).")


MP = TypeVar("MP", bound=MlfParams)


class Mlf(Method[MP]):
    """Generic in its parameters, so that freezing and the penalty methods extend MLF's own."""

    name = "mlf"

    def combined_loss(self, obj: StepObjectives) -> Tensor:
        """The per-source losses combined by ``reduction`` (also the task part of the penalty methods)."""
        langs = list(obj.task)
        if self.params.reduction == "size":
            total = sum(obj.sizes[lang] for lang in langs)
            return cast(Tensor, sum(obj.task[lang] * (obj.sizes[lang] / total) for lang in langs))
        loss = cast(Tensor, sum(obj.task[lang] for lang in langs))   # a source is never empty
        return loss / len(langs) if self.params.reduction == "mean" else loss

    def backward(self, obj: StepObjectives) -> dict[str, float]:
        (self.combined_loss(obj) * obj.grad_scale).backward()
        return {}
