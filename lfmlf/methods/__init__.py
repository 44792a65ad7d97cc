"""Method registry: name -> Method class. Add a method by writing one module and one line here."""
from __future__ import annotations

from lfmlf.methods.agem import Agem
from lfmlf.methods.base import Method, MethodParams, SetupData, StepObjectives
from lfmlf.methods.distill import Distill
from lfmlf.methods.ewc import Ewc
from lfmlf.methods.freeze import Freeze
from lfmlf.methods.l2sp import L2sp
from lfmlf.methods.gem import Gem
from lfmlf.methods.lfmlf import Lfmlf
from lfmlf.methods.mgda import Mgda
from lfmlf.methods.mlf import Mlf
from lfmlf.methods.pcgrad import Pcgrad

METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Mlf, Freeze, L2sp, Ewc, Distill, Lfmlf, Agem, Gem, Mgda, Pcgrad)}

__all__ = ["METHODS", "Method", "MethodParams", "SetupData", "StepObjectives"]
