"""Method registry: name -> Method class. Add a method by writing one module and one line here."""
from __future__ import annotations

from lfmlf.methods.base import Method, MethodParams, StepObjectives
from lfmlf.methods.lfmlf import Lfmlf
from lfmlf.methods.mlf import Mlf

METHODS: dict[str, type[Method]] = {Mlf.name: Mlf, Lfmlf.name: Lfmlf}

__all__ = ["METHODS", "Method", "MethodParams", "StepObjectives"]
