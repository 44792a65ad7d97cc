"""EWC (Kirkpatrick et al. 2017): a quadratic pull toward theta0 weighted by a diagonal Fisher.

penalty = 1/2 sum_i F_i (theta_i - theta0_i)^2 over the pre-trained trainable parameters (the new head is
excluded, as in L2-SP). F is estimated ONCE, in ``setup``, at theta0, before any step.

Which Fisher. EWC's F is the Fisher of the *previous* task's likelihood - here the pre-training objective.
That is not available: encoders are loaded without their MLM head (``AutoModel``), the tiny test encoder has
none, and multilingual-e5 was trained contrastively. What is available at theta0 is the downstream task's
likelihood under the freshly initialised head, so F is the empirical Fisher of the task loss at theta0: the
mean, over ``fisher_batches`` micro-batches and their per-source sub-batches, of the squared gradient of the
sub-batch's mean task loss (gold labels), in eval mode (no dropout: deterministic, no RNG drawn, identical on
resume). Per-sub-batch rather than per-example gradients: ~B times cheaper, and a consistent
under-estimate up to a scale that the normalisation removes. F is divided by its mean, so mean(F) = 1 and
``weight`` means the same as L2-SP's (EWC with a uniform F *is* L2-SP).

Data at setup: ``Method.setup`` gets a :class:`~lfmlf.methods.base.SetupData` from the loop: a callable that
yields n micro-batches ``{lang: sub-batch}`` on the device (drawn without moving the training streams or
RNGs), and the task's loss function.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.methods.base import SetupData, StepObjectives
from lfmlf.methods.penalty import PenaltyMethod, PenaltyParams, squared_distance
from lfmlf.models import TaskModel, eval_mode

Batches = Iterable[Mapping[str, Mapping[str, Tensor]]]     # micro-batches {lang: sub-batch}, on the device
LossFn = Callable[[TaskModel, Mapping[str, Tensor]], tuple[Tensor, Tensor]]   # Task.loss: (mean loss, hidden)


class EwcParams(PenaltyParams):
    weight: float = Field(0.01, ge=0.0, description="Multiplier of 1/2 sum F_i (theta_i - theta0_i)^2 with the "
                                                    "Fisher normalised to mean 1 (0 = plain MLF).")
    fisher_batches: int = Field(8, ge=1, description="Micro-batches (each with one sub-batch per source) over "
                                                     "which the Fisher is estimated at theta0, before training.")


class EwcError(ValueError):
    """EWC cannot estimate its Fisher; the message says why and what to do."""


class Ewc(PenaltyMethod[EwcParams]):
    name = "ewc"

    def setup(self, model: TaskModel, sources: Sequence[str], data: SetupData | None = None) -> None:
        super().setup(model, sources)
        if data is None:
            raise EwcError("EWC estimates its Fisher from training data in setup, but setup got no data. Fix: "
                           "the loop must call method.setup(model, sources, data=SetupData(...)).")
        self.protected = [p for _, p in model.pretrained_parameters()]
        self.theta0 = [p.detach().float().clone() for p in self.protected]
        self.fisher = self.estimate_fisher(model, data.batches(self.params.fisher_batches), data.loss)

    @staticmethod
    def estimate_fisher(model: TaskModel, batches: Batches, loss_fn: LossFn) -> list[Tensor]:
        """Diagonal empirical Fisher over ``model.pretrained_parameters()``: mean over sub-batches of the
        squared gradient of ``loss_fn(model, sub_batch)[0]``, normalised to mean 1. Leaves ``.grad``, the
        parameters, the train/eval mode and the RNGs as they were."""
        params = [p for _, p in model.pretrained_parameters()]
        fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        count = 0
        with eval_mode(model):
            for micro in batches:
                for sub in micro.values():
                    loss = loss_fn(model, sub)[0]
                    grads = torch.autograd.grad(loss, params, allow_unused=True)
                    for f, g in zip(fisher, grads):
                        if g is not None:
                            f.add_(g.float().square())
                    count += 1
        if count == 0:
            raise EwcError("EWC got no batches to estimate its Fisher. Fix: fisher_batches >= 1 and non-empty "
                           "source data.")
        total = sum(f.sum() for f in fisher)
        n = sum(f.numel() for f in fisher)
        mean = float(total) / (count * n)
        if not mean > 0 or not torch.isfinite(torch.tensor(mean)):
            raise EwcError(f"the estimated Fisher has mean {mean} (all task gradients zero or not finite at "
                           "theta0). Fix: check the task loss, or use l2sp.")
        return [f.div_(count * mean) for f in fisher]

    def penalty(self, obj: StepObjectives) -> Tensor:
        return squared_distance(self.protected, self.theta0, self.fisher)
