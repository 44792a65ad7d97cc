"""A-GEM (Chaudhry et al. 2019), with the forgetting objective as the episodic memory, as Liu et al. (2020)
use it against cross-lingual forgetting.

Each step, over the pre-trained (encoder) parameters, with g = sum_k g_k (the plain multi-source gradient)
and g_ref = g_F (the gradient of the forgetting loss, the "memory" gradient):

    update = g                                         if <g, g_F> >= 0
    update = g - (<g, g_F> / ||g_F||^2) g_F            otherwise      (then <update, g_F> = 0)

``update`` goes into ``.grad`` (the step is -update), so the step never increases the forgetting loss to
first order. Note: with ``forgetting: l2`` the gradient at theta0 is g_F = theta - theta0 = 0, so A-GEM
does not project until the encoder has moved; with ``distill`` g_F is also 0 at theta0 unless dropout
makes the live encoder differ from the frozen one. ``agem/projected`` (1.0 when the step was projected)
averages to the projection rate between evaluations.
"""
from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import Tensor

from lfmlf.forgetting import ForgettingName
from lfmlf.methods.gradient import GradientMethod, GradientParams
from lfmlf.qp import combine, gram
from lfmlf.teacher import TeacherParams


class AgemParams(GradientParams, TeacherParams):   # TeacherParams: forgetting "distill"
    forgetting: ForgettingName = Field(
        "distill", description="Forgetting objective whose gradient is the episodic-memory gradient: 'l2' "
                               "distance to theta0 (zero at theta0), 'distill' to the frozen encoder, or 'mlm' (the "
                               "masked-LM loss through the model's pre-trained MLM head, Liu et al. 2020).")


def agem_coefficient(dot: float, ref_sq: float) -> float:
    """Multiple of g_ref to subtract from g: <g, g_ref> / ||g_ref||^2 when they conflict (dot < 0), else 0."""
    return dot / ref_sq if dot < 0 and ref_sq > 0 else 0.0


class Agem(GradientMethod[AgemParams]):
    name = "agem"

    def forgetting_objective(self) -> str:
        return self.params.forgetting

    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        assert g_f is not None
        g = combine(G, self.update.zero_(), torch.ones(G.shape[0], dtype=torch.float64), out=self.update)
        ref_sq, dot = (float(x) for x in gram(g_f[None], g))   # ||g_F||^2, <g_F, g> in float64
        g_sq = float(torch.dot(g, g))
        if not (math.isfinite(ref_sq) and math.isfinite(dot)):
            return None, {"agem/projected": 0.0}
        c = agem_coefficient(dot, ref_sq)
        if c != 0.0:
            g.add_(g_f.to(g.dtype), alpha=-c)
        cos = dot / math.sqrt(ref_sq * g_sq) if ref_sq > 0 and g_sq > 0 else 0.0
        return g, {"agem/projected": float(c != 0.0), "agem/grad_cos": cos}
