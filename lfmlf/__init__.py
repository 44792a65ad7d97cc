"""lfmlf: method and hyper-parameter sweeps for multilingual fine-tuning (Ray Tune, Optuna, MLflow).

The small public API; everything else is an implementation module. ``run_sweep`` loads Ray on first use.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from lfmlf.config import ConfigError, SweepConfig, TrialSpec, load_sweep, trial_spec
from lfmlf.loop import Evaluation, fit
from lfmlf.methods import METHODS, Method
from lfmlf.tasks import TASKS, Task

try:
    __version__ = version("lfmlf")
except PackageNotFoundError:   # a source tree on sys.path without an install (e.g. shipped to a Ray node)
    __version__ = "0+unknown"

__all__ = ["__version__", "ConfigError", "Evaluation", "METHODS", "Method", "SweepConfig", "TASKS", "Task", "TrialSpec",
           "fit", "load_sweep", "run_sweep", "trial_spec"]


def __getattr__(name: str) -> Any:
    if name == "run_sweep":
        from lfmlf.sweep import run

        return run
    raise AttributeError(f"module 'lfmlf' has no attribute {name!r}")
