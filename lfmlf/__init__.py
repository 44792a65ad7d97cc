"""lfmlf: method and hyper-parameter sweeps for multilingual fine-tuning (Ray Tune, Optuna, MLflow).

The small public API; everything else is an implementation module. Each name loads its module on first
use, so ``import lfmlf`` (and the CLI's ``--help``) stays free of torch, Ray and MLflow.
"""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lfmlf.checks import check_sweep, load_checked
    from lfmlf.config import ConfigError, SweepConfig, TrialSpec, load_sweep, trial_spec
    from lfmlf.loop import Evaluation, fit
    from lfmlf.methods import METHODS, Method
    from lfmlf.sweep import run as run_sweep
    from lfmlf.tasks import TASKS, Task

try:
    __version__ = version("lfmlf")
except PackageNotFoundError:   # a source tree on sys.path without an install (e.g. shipped to a Ray node)
    __version__ = "0+unknown"

# public name -> (module, attribute)
_API = {
    "ConfigError": ("lfmlf.config", "ConfigError"), "SweepConfig": ("lfmlf.config", "SweepConfig"),
    "TrialSpec": ("lfmlf.config", "TrialSpec"), "load_sweep": ("lfmlf.config", "load_sweep"),
    "trial_spec": ("lfmlf.config", "trial_spec"), "check_sweep": ("lfmlf.checks", "check_sweep"),
    "load_checked": ("lfmlf.checks", "load_checked"), "Evaluation": ("lfmlf.loop", "Evaluation"),
    "fit": ("lfmlf.loop", "fit"), "METHODS": ("lfmlf.methods", "METHODS"), "Method": ("lfmlf.methods", "Method"),
    "TASKS": ("lfmlf.tasks", "TASKS"), "Task": ("lfmlf.tasks", "Task"), "run_sweep": ("lfmlf.sweep", "run"),
}

__all__ = ["METHODS", "TASKS", "ConfigError", "Evaluation", "Method", "SweepConfig", "Task", "TrialSpec",
           "__version__", "check_sweep", "fit", "load_checked", "load_sweep", "run_sweep", "trial_spec"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'lfmlf' has no attribute {name!r}")
    module, attribute = _API[name]
    value = getattr(importlib.import_module(module), attribute)   # lazy: torch, Ray and MLflow load on use
    globals()[name] = value
    return value
