"""The Tune function trainable: one trial of :func:`lfmlf.loop.fit`, resumed from Tune's checkpoint and
reporting every evaluation with a checkpoint of the full training state. Runs in the trial's Ray worker,
which may be on another node than the driver: everything it needs arrives by value (the parsed sweep in
``specs``), except the data files and the model directory, which every node must see (checked before a
cluster sweep starts, :mod:`lfmlf.sweep.cluster`)."""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from lfmlf.config import SweepConfig, TrialSpec, trial_spec
from lfmlf.loop import TrainingDiverged, fit

CHECKPOINT_FILE = "state.pt"


def trial_location(trial: Any) -> str:
    """Where a trial's folder is in the storage: a URI (``s3://...``) or an absolute path. Tune's
    ``trial.path`` drops a URI's scheme; the storage's filesystem says which it was."""
    path = str(getattr(trial, "path", None) or trial.local_path or "")
    filesystem = getattr(getattr(trial, "storage", None), "storage_filesystem", None)
    scheme = getattr(filesystem, "type_name", "local")   # pyarrow: "local", "s3", "gcs", "hdfs", ...
    if scheme != "local" and "://" not in path:
        return f"{scheme}://{path.lstrip('/')}"
    return path


class SweepSpecs:
    """Tune config -> TrialSpec for a sweep: the sweep's settings with the trial's sampled values."""

    trial_location = staticmethod(trial_location)

    def __init__(self, sweep: SweepConfig, metric: str | None = None) -> None:
        self.sweep = sweep
        self.metric = metric   # the search metric: every result Tune sees must carry it

    def __call__(self, config: dict[str, Any]) -> TrialSpec:
        return trial_spec(self.sweep, config)

    def tags(self, config: dict[str, Any]) -> dict[str, str]:
        return {"lfmlf.sweep": self.sweep.name}

    def run_name(self, config: dict[str, Any], trial_id: str) -> str:
        return f"{config.get('method', 'trial')}-{trial_id}"


class RerunSpecs:
    """Tune config ``{"config": name, "seed": s}`` -> the named single-method configuration with that seed."""

    trial_location = staticmethod(trial_location)

    def __init__(self, configs: dict[str, SweepConfig]) -> None:
        self.configs = configs

    def __call__(self, config: dict[str, Any]) -> TrialSpec:
        cfg = self.configs[config["config"]]
        return trial_spec(cfg, {"method": next(iter(cfg.methods)), "seed": int(config["seed"])})

    def run_name(self, config: dict[str, Any], trial_id: str) -> str:
        """``<configuration>-seed<N>``: the seeds of one configuration are told apart in MLflow's run list."""
        return f"{config['config']}-seed{config['seed']}"

    def tags(self, config: dict[str, Any]) -> dict[str, str]:
        selection = self.configs[config["config"]].selection or {}
        return {"lfmlf.config": config["config"], "lfmlf.seed": str(config["seed"]),
                **{f"lfmlf.selected.{k}": str(v) for k, v in selection.items() if k.endswith("run_id")}}


def trainable(config: dict[str, Any], specs: SweepSpecs | RerunSpecs) -> None:
    """One trial: build the spec from Tune's config, resume from Tune's checkpoint if there is one, and
    report every evaluation with a checkpoint of the full training state, the step it resumed from
    (``perf/resumed_from_step``, 0 for a fresh start) and the Ray node it runs on (``node_id``)."""
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one line per checkpoint
    spec = specs(config)
    torch.set_num_threads(max(1, int(spec.cpus)))  # the CPUs Ray reserved for this trial, no more
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, weights_only=True)   # tensors and plain data only
    where = {"perf/resumed_from_step": float(state["step"] if state else 0),
             "node_id": ray.get_runtime_context().get_node_id()}
    step, last = (int(state["step"]), state.get("metrics", {})) if state else (0, {})
    try:
        for evaluation in fit(spec, state):
            with tempfile.TemporaryDirectory() as d:
                torch.save(evaluation.state(), Path(d) / CHECKPOINT_FILE)
                tune.report({**evaluation.metrics, **where}, checkpoint=tune.Checkpoint.from_directory(d))
            step, last = evaluation.step, evaluation.metrics
    except TrainingDiverged as e:
        # A divergence is a result, not a crash: the same seed would diverge again, so the trial ends here
        # (no retry). It ends before max_steps without an error, so Optuna records it PRUNED with its last
        # search-metric value, or the worst score (0, or 1e12 when minimising) before its first evaluation; the
        # MLflow callback marks the run FAILED with the reason (tag lfmlf.diverged).
        metric = getattr(specs, "metric", None)
        mode = specs.sweep.search.mode if isinstance(specs, SweepSpecs) else "max"
        worst = 0.0 if mode == "max" else 1e12
        score = {metric: float(last.get(metric, worst))} if metric else {}
        tune.report({"step": step, **score, "diverged": 1.0, "diverged_reason": str(e)[:2000], **where})
