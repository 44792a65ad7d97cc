"""Checks of a sweep against the registries, before Ray starts: the task (name, format, options, data
files), each method (name, parameters), its search space (names, and every value the search can pick),
the model's masked-LM head where a method needs one, and the forgetting probe's data.

A floor above ``methods``, ``tasks`` and ``search``, so that ``config`` (the schema and the YAML loading)
imports none of them. Every command that runs a sweep file loads it with :func:`load_checked`; each
problem is one :class:`~lfmlf.config.ConfigError` that names the file, the key and the fix.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from lfmlf.config import ConfigError, SweepConfig, TrainConfig, load_sweep
from lfmlf.data.base import DataError
from lfmlf.forgetting import Needs
from lfmlf.methods import METHODS, without_mlm_head
from lfmlf.models import has_mlm_head
from lfmlf.probes import data_files
from lfmlf.search import SpaceError, edges, load_space, search_objectives
from lfmlf.tasks import TASKS


def load_checked(path: str | Path, overrides: Sequence[str] | Mapping[str, str] = ()) -> SweepConfig:
    """:func:`lfmlf.config.load_sweep`, then :func:`check_sweep`: how a command loads a sweep file."""
    cfg = load_sweep(path, overrides)
    check_sweep(cfg, str(path))
    return cfg


def check_sweep(cfg: SweepConfig, file: str | None = None) -> None:
    """Raise ConfigError (naming ``file``, default the sweep's own) on the first problem found."""
    file = file or cfg.source
    check_task(cfg, file)
    needs = {name: check_method(cfg, name, file) for name in cfg.methods}
    check_mlm_head(cfg, needs, file)
    check_probe_data(cfg, file)
    try:
        search_objectives(cfg)   # two objectives that are one metric once {metric} is filled in
    except SpaceError as e:
        raise ConfigError(f"{file}: key 'search.objectives': {e}") from None


def check_task(cfg: SweepConfig, file: str) -> None:
    """The task exists, reads the format, accepts the options, and has the data files each language needs."""
    if cfg.task.name not in TASKS:
        raise ConfigError(f"{file}: key 'task.name': unknown task '{cfg.task.name}'. "
                          f"Fix: use one of {', '.join(sorted(TASKS))}.")
    task = TASKS[cfg.task.name]
    if cfg.task.format not in task.formats:
        raise ConfigError(f"{file}: key 'task.format': task '{cfg.task.name}' cannot read format "
                          f"'{cfg.task.format}'. Fix: use one of {', '.join(task.formats)}.")
    try:
        task.validate_options(cfg.task.options)
    except ValueError as e:
        raise ConfigError(f"{file}: key 'task.options': {e}") from None
    try:
        task.check_data(cfg.task, cfg.languages.sources, cfg.languages.targets)
    except ValueError as e:
        raise ConfigError(f"{file}: {e}") from None


def check_method(cfg: SweepConfig, name: str, file: str) -> list[Needs]:
    """The method exists and takes its fixed parameters; its space names searchable parameters; and every
    value the search can pick is one the method and the training settings accept. Checked at the edges:
    each range's bounds and each categorical choice, in every combination of the method's own parameters
    (a model validator may tie two of them, as LF-MLF's ``constraint`` and ``slack``). Returns what each
    of those configurations needs from the loop (an MLM head, unlabelled text)."""
    entry = cfg.methods[name]
    algo = entry.method or name
    if algo not in METHODS:
        key = f"methods.{name}.method" if entry.method else f"methods.{name}"
        named = f" '{algo}'" if entry.method else ""
        or_name = "" if entry.method else (f", or keep the name '{name}' and say which method it runs with "
                                           f"'methods.{name}.method'")
        raise ConfigError(f"{file}: key '{key}': unknown method{named}. Fix: use one of "
                          f"{', '.join(sorted(METHODS))}{or_name}.")
    try:
        METHODS[algo].validate_params(entry.params)
    except ValueError as e:
        raise ConfigError(f"{file}: key 'methods.{name}.params': {e}") from None
    try:
        values = edges(load_space(algo, entry.space), cfg.source_sets())
    except SpaceError as e:
        raise ConfigError(f"{file}: key 'methods.{name}.space': {e}") from None
    where = entry.space if isinstance(entry.space, str) else "the inline space"
    _check_train_edges(cfg, name, values, where, file)
    return _method_edges(cfg, name, values, where, file)


def _check_train_edges(cfg: SweepConfig, name: str, edge_values: Mapping[str, list[Any]], where: str,
                       file: str) -> None:
    """Each searched training setting at each of its edges, on top of the sweep's ``train`` section."""
    fixed = cfg.train.model_dump()
    for key, values in edge_values.items():
        if key not in TrainConfig.model_fields:
            continue
        if key == "batch_size" and cfg.train.per_source_batch is not None:
            raise ConfigError(f"{file}: key 'methods.{name}.space': {where} samples batch_size, but "
                              f"train.per_source_batch ({cfg.train.per_source_batch}) fixes each trial's batch. "
                              "Fix: sample per_source_batch instead, or remove train.per_source_batch")
        for value in values:
            try:
                TrainConfig.model_validate({**fixed, key: value})
            except ValidationError as e:
                raise _rejected(file, name, where, {key: value}, "the training settings reject", e) from None


def _method_edges(cfg: SweepConfig, name: str, edge_values: Mapping[str, list[Any]], where: str,
                  file: str) -> list[Needs]:
    algo = cfg.methods[name].method or name
    own = {k: v for k, v in edge_values.items() if k in METHODS[algo].param_names()}
    needs = []
    for values in itertools.product(*own.values()):
        picked = dict(zip(own, values))
        try:
            method = METHODS[algo](**{**cfg.methods[name].params, **picked})
        except ValidationError as e:
            raise _rejected(file, name, where, picked, f"method '{name}' rejects", e,
                            f", or change methods.{name}.params") from None
        needs.append(method.needs())
    return needs


def _rejected(file: str, method: str, where: str, picked: Mapping[str, Any], who_rejects: str,
              e: ValidationError, or_else: str = "") -> ConfigError:
    reasons = "; ".join((f"'{'.'.join(map(str, err['loc']))}': " if err["loc"] else "")
                        + err["msg"].removeprefix("Value error, ") for err in e.errors())
    values = ", ".join(f"{k}={v!r}" for k, v in picked.items())
    return ConfigError(f"{file}: key 'methods.{method}.space': the search can pick {values}, which {who_rejects}: "
                       f"{reasons}. Fix: narrow the range(s) in {where} so that every value from low to high "
                       f"(and every choice) is valid{or_else}.")


def check_mlm_head(cfg: SweepConfig, needs: Mapping[str, list[Needs]], file: str) -> None:
    """A method that needs the model's masked-LM head (in any configuration the search can pick) gets a
    model that has one."""
    wanting = [m for m, method_needs in needs.items() if any(n.mlm_head for n in method_needs)]
    if wanting and has_mlm_head(cfg.model.name_or_path) is False:
        raise ConfigError(f"{file}: key 'methods': {', '.join(wanting)} need(s) a masked-LM head (masked-LM "
                          f"training or forgetting), but model '{cfg.model.name_or_path}' has none. "
                          f"Fix: {without_mlm_head()}")


def check_probe_data(cfg: SweepConfig, file: str) -> None:
    """The forgetting probe's files exist for every probe language."""
    if cfg.probe is None:
        return
    try:
        data_files(cfg.probe)
    except DataError as e:
        raise ConfigError(f"{file}: key 'probe': {e}") from None
