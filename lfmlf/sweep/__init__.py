"""Everything that touches Ray: the sweep and rerun driver, the trainable, the Tune callback that writes
MLflow, the per-method search and scheduling, and getting onto a local instance or a checked cluster.
No module outside this package imports Ray (checked in CI)."""
from __future__ import annotations

from lfmlf.sweep.driver import SweepOutcome, rerun, run
from lfmlf.sweep.routing import MethodScheduler, MethodSearch, ResumableOptunaSearch

__all__ = ["MethodScheduler", "MethodSearch", "ResumableOptunaSearch", "SweepOutcome", "rerun", "run"]
