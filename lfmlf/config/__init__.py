"""The ground floor: sweep YAML -> validated, frozen config objects (:mod:`.schema`, :mod:`.loading`).

Every layer reads these objects; this package imports nothing of lfmlf's but the leaves ``languages``,
``storage`` and ``errors`` (the layer rules are import-linter contracts in ``pyproject.toml``). Checks of a
sweep against the registries of tasks, methods and search spaces live a floor up, in :mod:`lfmlf.checks`.
"""
from __future__ import annotations

from lfmlf.config.loading import apply_overrides, load_sweep, read_yaml
from lfmlf.config.schema import (
    ConfigError,
    LanguageConfig,
    MethodEntry,
    ModelConfig,
    ProbeConfig,
    RayConfig,
    ResourceConfig,
    SchedulerConfig,
    SearchConfig,
    SplitFiles,
    SweepConfig,
    SyntheticData,
    TaskConfig,
    TinyModel,
    TrackingConfig,
    TrainConfig,
    TrialSpec,
    UnlabelledConfig,
    check_fields,
    trial_spec,
)

__all__ = ["ConfigError", "LanguageConfig", "MethodEntry", "ModelConfig", "ProbeConfig", "RayConfig",
           "ResourceConfig", "SchedulerConfig", "SearchConfig", "SplitFiles", "SweepConfig", "SyntheticData",
           "TaskConfig", "TinyModel", "TrackingConfig", "TrainConfig", "TrialSpec", "UnlabelledConfig",
           "apply_overrides", "check_fields", "load_sweep", "read_yaml", "trial_spec"]
