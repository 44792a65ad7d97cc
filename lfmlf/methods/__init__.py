"""Method registry: name -> Method class. Add a method by writing one module and one line here."""
from __future__ import annotations

from typing import Any

from lfmlf.methods.agem import Agem
from lfmlf.methods.base import Method, MethodParams, SetupData, StepObjectives
from lfmlf.methods.distill import Distill
from lfmlf.methods.ewc import Ewc
from lfmlf.methods.freeze import Freeze
from lfmlf.methods.gem import Gem
from lfmlf.methods.l2sp import L2sp
from lfmlf.methods.lfmlf import Lfmlf
from lfmlf.methods.mgda import Mgda
from lfmlf.methods.mlf import Mlf
from lfmlf.methods.mtl_mlm import MtlMlm
from lfmlf.methods.pcgrad import Pcgrad

METHODS: dict[str, type[Method[Any]]] = {
    m.name: m for m in (Mlf, Freeze, L2sp, Ewc, Distill, MtlMlm, Lfmlf, Agem, Gem, Mgda, Pcgrad)}


def without_mlm_head() -> str:
    """What to use instead when the model has no masked-LM head (for error messages)."""
    free = [name for name, cls in METHODS.items() if not cls().needs().mlm_head]
    return (f"use a model that has one (xlm-roberta-base, bert-base-multilingual-cased), or a method that "
            f"needs none: {', '.join(free)} (with lfmlf, agem and gem: forgetting l2 or distill).")


__all__ = ["METHODS", "Method", "MethodParams", "SetupData", "StepObjectives", "without_mlm_head"]
