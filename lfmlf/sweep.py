"""The sweep driver: Ray Tune ``Tuner`` + ``OptunaSearch`` + ASHA. The only module that imports Ray.

One Optuna study per method, each with the same trial budget (a fair comparison), run one after the
other in the same Ray instance. Each trial runs :func:`lfmlf.loop.fit` and reports every evaluation with a
checkpoint; ASHA schedules on the loop's own ``eval_step`` counter (Tune's ``training_iteration``
restarts for resumed trials). MLflow is written from this (driver) process only, by a Tune callback that
forwards to :class:`lfmlf.tracking.SweepTracker`.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
import yaml
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from lfmlf.config import SweepConfig, TrialSpec, trial_spec
from lfmlf.errors import SweepError
from lfmlf.search import (DefineByRun, fail_orphaned_trials, load_space, make_sampler, search_metric,
                          study_name, study_storage, study_storage_url, trial_finished)
from lfmlf.tasks import TASKS
from lfmlf.tracking import SweepTracker, resolve_uri

CHECKPOINT_FILE = "state.pt"


# ------------------------------------------------------------------------------------------- the trainable
class SweepSpecs:
    """Tune config -> TrialSpec for a sweep: the sweep's settings with the trial's sampled values."""

    def __init__(self, sweep: SweepConfig) -> None:
        self.sweep = sweep

    def __call__(self, config: dict[str, Any]) -> TrialSpec:
        return trial_spec(self.sweep, config)

    def tags(self, config: dict[str, Any]) -> dict[str, str]:
        return {"lfmlf.sweep": self.sweep.name}


class RerunSpecs:
    """Tune config ``{"config": name, "seed": s}`` -> the named single-method configuration with that seed."""

    def __init__(self, configs: dict[str, SweepConfig]) -> None:
        self.configs = configs

    def __call__(self, config: dict[str, Any]) -> TrialSpec:
        cfg = self.configs[config["config"]]
        return trial_spec(cfg, {"method": next(iter(cfg.methods)), "seed": int(config["seed"])})

    def tags(self, config: dict[str, Any]) -> dict[str, str]:
        selection = self.configs[config["config"]].selection or {}
        return {"lfmlf.config": config["config"], "lfmlf.seed": str(config["seed"]),
                **{f"lfmlf.selected.{k}": str(v) for k, v in selection.items() if k.endswith("run_id")}}


def trainable(config: dict[str, Any], specs: SweepSpecs | RerunSpecs) -> None:
    """One trial: build the spec from Tune's config, resume from Tune's checkpoint if there is one, and
    report every evaluation with a checkpoint of the full training state."""
    import logging

    from lfmlf.loop import fit

    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # one line per checkpoint
    spec = specs(config)
    torch.set_num_threads(max(1, int(spec.cpus)))  # the CPUs Ray reserved for this trial, no more
    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / CHECKPOINT_FILE, weights_only=False)
    for evaluation in fit(spec, state):
        with tempfile.TemporaryDirectory() as d:
            torch.save(evaluation.state(), Path(d) / CHECKPOINT_FILE)
            tune.report(evaluation.metrics, checkpoint=tune.Checkpoint.from_directory(d))


# ------------------------------------------------------------------------------------------- tracking
class TrackingCallback(tune.Callback):
    """Forwards Tune's trial events to MLflow: one child run per trial under the sweep's parent run, reused
    when the trial resumes. Tune pickles callbacks into the experiment state and restores them with
    ``Tuner.restore``, so this holds only picklable settings and opens its MLflow client lazily."""

    def __init__(self, uri: str, experiment: str, parent_id: str, specs: SweepSpecs | RerunSpecs,
                 searcher: Any = None) -> None:
        self.uri, self.experiment, self.parent_id = uri, experiment, parent_id
        self.specs, self.searcher = specs, searcher
        self._tracker: SweepTracker | None = None
        self._logged: dict[str, int] = {}   # trial id -> last step written (results repeat after a restore)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tracker": None}

    @property
    def tracker(self) -> SweepTracker:
        if self._tracker is None:
            self._tracker = SweepTracker(self.uri, self.experiment)
            self._tracker.attach(self.parent_id)
        return self._tracker

    def _optuna_number(self, trial_id: str) -> dict[str, str]:
        if self.searcher is None:
            return {}
        ot = getattr(self.searcher, "_ot_trials", {}).get(trial_id)  # OptunaSearch's trial-id -> optuna trial
        return {"lfmlf.optuna_trial": str(ot.number) if ot is not None else "unknown"}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        spec = self.specs(trial.config)
        tags = {"lfmlf.method": spec.method, "lfmlf.source_set": "+".join(spec.sources),
                **self._optuna_number(trial.trial_id), **self.specs.tags(trial.config),
                "lfmlf.trial_dir": str(trial.local_path or ""), **{f"lfmlf.source.{s}": "true" for s in spec.sources}}
        run_id = self.tracker.trial_run(trial.trial_id, f"{spec.method}-{trial.trial_id}", spec.flat_params(), tags)
        self.tracker.log_text(run_id, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False),
                              "trial_config.yaml")
        if trial.trial_id not in self._logged:
            self._logged[trial.trial_id] = self.tracker.last_step(run_id)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        run_id = self.tracker.run_id(trial.trial_id)
        step = int(result.get("step", 0))
        if run_id is None or step <= self._logged.get(trial.trial_id, -1):
            return
        metrics = {k: v for k, v in result.items() if "/" in k and isinstance(v, (int, float))}
        self.tracker.log_metrics(run_id, metrics, step=step)
        self._logged[trial.trial_id] = step

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.tracker.run_id(trial.trial_id)
        if run_id is None:
            return
        last = trial.last_result or {}
        done = int(last.get("step", 0)) >= self.specs(trial.config).train.max_steps
        self.tracker.set_tags(run_id, {"lfmlf.stopped_early": str(not done).lower()})
        final = {k: v for k, v in last.items() if k.startswith(("best/", "zero_shot/", "source/"))}
        self.tracker.log_text(run_id, json.dumps(final, indent=2, sort_keys=True), "final_metrics.json")
        self.tracker.finish_trial(trial.trial_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        run_id = self.tracker.run_id(trial.trial_id)
        if run_id is not None:
            self.tracker.set_tags(run_id, {"lfmlf.error": _trial_error(trial)[-4000:]})
        self.tracker.finish_trial(trial.trial_id, "FAILED")


def _trial_error(trial: Any) -> str:
    path = getattr(trial, "error_file", None)
    if path and os.path.exists(path):
        return Path(path).read_text(errors="replace")
    return "the trial failed; see its error.txt in the Ray results folder"


# ------------------------------------------------------------------------------------------- the driver
@dataclass
class SweepOutcome:
    run_dir: Path
    tracking_uri: str
    parent_run_id: str
    best: dict[str, dict[str, Any]] = field(default_factory=dict)   # method -> {config, metric, run_id}
    errors: dict[str, int] = field(default_factory=dict)             # method -> failed trials
    studies: tuple[str, dict[str, str]] = ("", {})                   # Optuna storage URL, method -> study

    @property
    def ok(self) -> bool:
        return bool(self.best)


def _ray_env() -> None:
    """Settings that must be in the environment before Ray and Tune read them."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")   # experiment snapshots: a killed driver loses ~2 s
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")   # the compact CLIReporter table below


def start_ray(cfg: SweepConfig, address: str | None) -> None:
    """Join ``address`` (an existing cluster; its auth token comes from RAY_AUTH_TOKEN or
    RAY_AUTH_TOKEN_PATH as usual), else start a local instance that binds every server to 127.0.0.1, has
    no dashboard and no auth token (nothing else can reach it), and keeps its temp files in the run folder."""
    _ray_env()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address)
        return
    # Ray binds to the node IP; with "clusters" disabled the node IP is 127.0.0.1. The constant is read when
    # ray is imported, so set it in this process too; the processes Ray starts inherit the variable.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False  # noqa: SLF001
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    temp = cfg.run_dir / "ray_tmp"
    if len(str(temp)) > 43:  # Ray's AF_UNIX socket paths under it must stay below 107 bytes
        temp = Path(tempfile.gettempdir()) / f"lfmlf-{zlib.crc32(str(cfg.run_dir).encode()):08x}"  # same on resume
        link = cfg.run_dir / "ray_tmp"
        if not link.exists():
            link.symlink_to(temp, target_is_directory=True)
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, _temp_dir=str(temp),
             logging_level="WARNING", log_to_driver=True)


def _git_sha() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch over a persistent study. The study can be ahead of Tune's experiment snapshot: a driver
    killed after Optuna recorded a trial's end, before Tune's next snapshot, resumes that trial, which
    reports again. A finished Optuna trial cannot be updated, so those reports are not passed on (the
    study already holds the trial's value)."""

    def _finished(self, trial_id: str) -> bool:
        ot = self._ot_trials.get(trial_id)
        return ot is not None and trial_finished(self._ot_study, ot)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if not self._finished(trial_id):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if self._finished(trial_id):
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result, error)


def _tuner(cfg: SweepConfig, method: str, storage: Path, resume: bool, tracker: SweepTracker,
           study: tuple[str, str]) -> tune.Tuner:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    fn = tune.with_resources(tune.with_parameters(trainable, specs=SweepSpecs(cfg)),
                             {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})
    path = storage / method
    if resume and tune.Tuner.can_restore(str(path)):
        # the searcher, scheduler and callbacks come back from the experiment state
        return tune.Tuner.restore(str(path), trainable=fn, resume_unfinished=True, resume_errored=True)
    metric, mode = search_metric(cfg), cfg.search.mode
    space = DefineByRun(method, load_space(method, cfg.methods[method].space, cfg), cfg.source_sets())
    searcher = ResumableOptunaSearch(space=space, metric=metric, mode=mode, storage=study_storage(study[0]),
                                     study_name=study[1],
                                     sampler=make_sampler(cfg.train.seed, cfg.search.n_startup_trials))
    sc = cfg.search.scheduler
    max_t = -(-cfg.train.max_steps // cfg.train.eval_every)
    scheduler = (ASHAScheduler(time_attr="eval_step", metric=metric, mode=mode, max_t=max_t,
                               grace_period=min(sc.grace_period, max_t), reduction_factor=sc.reduction_factor)
                 if sc.name == "asha" else FIFOScheduler())
    callback = TrackingCallback(tracker.uri, cfg.tracking.experiment, tracker.parent_id or "", SweepSpecs(cfg), searcher)
    m = TASKS[cfg.task.name].metric
    reporter = tune.CLIReporter(
        metric_columns={"step": "step", f"source/{m}/avg": "source", f"zero_shot/{m}/avg": "zero-shot",
                        metric: "best source"},
        parameter_columns=[k for k in ("lr", "slack", "source_set") if k in space.space],
        max_report_frequency=20, sort_by_metric=True, metric=metric, mode=mode)
    run_config = tune.RunConfig(
        name=method, storage_path=str(storage), callbacks=[callback], verbose=1, progress_reporter=reporter,
        failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1))
    tune_config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=cfg.search.num_samples,
                                  max_concurrent_trials=cfg.search.max_concurrent, reuse_actors=False,
                                  trial_name_creator=_trial_name, trial_dirname_creator=_trial_name)
    return tune.Tuner(fn, tune_config=tune_config, run_config=run_config)


def _trial_name(trial: Any) -> str:
    return f"{trial.config.get('method') or trial.config.get('config', 'trial')}_{trial.trial_id}"


def run(cfg: SweepConfig, *, resume: bool = False, address: str | None = None,
        tracking_uri: str | None = None) -> SweepOutcome:
    """Run (or resume) every method's study; print the best trial per method and how to open MLflow."""
    run_dir = cfg.run_dir
    storage = _ray_storage(run_dir, cfg.name, resume)
    (run_dir / "sweep.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    tracker = SweepTracker(uri, cfg.tracking.experiment)
    budget = {f"budget.{m}": str(cfg.search.num_samples) for m in cfg.methods}
    params = {"task": cfg.task.name, "model": cfg.model.name_or_path, "methods": ",".join(cfg.methods),
              "source_pool": "+".join(sorted(cfg.languages.sources)), "targets": "+".join(cfg.languages.targets),
              "num_samples_per_method": str(cfg.search.num_samples), "search_metric": search_metric(cfg),
              "selection": "source-dev", **budget}
    parent = tracker.start_sweep(cfg.name, str(run_dir), params,
                                 {"lfmlf.git_sha": _git_sha(), "lfmlf.sweep": cfg.name}, resume)
    optuna_url = study_storage_url(uri, run_dir)
    studies = {m: study_name(cfg.name, m, parent) for m in cfg.methods}
    tracker.set_tags(parent, {"lfmlf.optuna_storage": optuna_url,
                              **{f"lfmlf.optuna_study.{m}": n for m, n in studies.items()}})
    outcome_studies = (optuna_url, studies)
    tracker.log_text(parent, (run_dir / "sweep.yaml").read_text(), "sweep.yaml")
    for method, entry in cfg.methods.items():
        if entry.space is not None:
            tracker.log_text(parent, yaml.safe_dump(
                {k: v.model_dump() for k, v in load_space(method, entry.space, cfg).items()}),
                f"search_spaces/{method}.yaml")

    start_ray(cfg, address)
    outcome = SweepOutcome(run_dir=run_dir, tracking_uri=uri, parent_run_id=parent, studies=outcome_studies)
    metric = search_metric(cfg)
    status = "FINISHED"
    try:
        for method in cfg.methods:
            print(f"\n=== {cfg.name}: method {method} ({cfg.search.num_samples} trials) ===", flush=True)
            grid = _tuner(cfg, method, storage, resume, tracker, (optuna_url, studies[method])).fit()
            outcome.errors[method] = len(grid.errors)
            orphans = fail_orphaned_trials(optuna_url, studies[method])   # every Tune trial has ended
            if orphans:
                print(f"lfmlf: {orphans} Optuna trial(s) of {method} were left RUNNING by a killed process; "
                      "marked FAIL in the study.", flush=True)
            try:
                best = grid.get_best_result(metric=metric, mode=cfg.search.mode, filter_nan_and_inf=True)
            except RuntimeError:
                continue
            trial_id = best.metrics.get("trial_id", "")
            outcome.best[method] = {"config": best.config, "metric": best.metrics.get(metric),
                                    "zero_shot": best.metrics.get(metric.replace("source", "zero_shot")),
                                    "trial_id": trial_id}
    except BaseException:
        status = "KILLED"
        raise
    finally:
        lost = tracker.finish_sweep(status, {f"best/{m}": b["metric"] for m, b in outcome.best.items()
                                             if b.get("metric") is not None})
        if lost:
            print(f"lfmlf: {lost} trial run(s) were lost when the sweep was interrupted before Tune saved them; "
                  "Tune re-ran those trials, and their old MLflow runs are marked KILLED.", flush=True)
    _print_summary(cfg, outcome, metric)
    return outcome


def _ray_storage(run_dir: Path, name: str, resume: bool) -> Path:
    """The run folder's Ray results; refuses to start twice in one folder, or to resume nothing."""
    storage = run_dir / "ray"
    if storage.exists() and not resume:
        raise SweepError(f"the run folder {run_dir} already holds '{name}'. Fix: continue it with "
                         "--resume, or start a new one with another name (--set name=...) or output_dir.")
    if resume and not storage.exists():
        raise SweepError(f"nothing to resume: {storage} does not exist. Fix: drop --resume to start afresh.")
    storage.mkdir(parents=True, exist_ok=True)
    return storage


def rerun(configs: dict[str, SweepConfig], seeds: list[int], *, run_dir: Path, resume: bool = False,
          address: str | None = None, tracking_uri: str | None = None) -> SweepOutcome:
    """Run every single-method configuration (``lfmlf best`` output, or any one-method sweep file) once per
    seed, in parallel on Ray, under one MLflow parent run (``lfmlf.role`` = rerun)."""
    first = next(iter(configs.values()))
    name = run_dir.name
    storage = _ray_storage(run_dir, name, resume)
    uri = resolve_uri(tracking_uri, first.tracking.uri)
    tracker = SweepTracker(uri, first.tracking.experiment)
    sweeps = sorted({str((c.selection or {}).get("sweep_run_id", "")) for c in configs.values()} - {""})
    params = {"configs": ",".join(configs), "seeds": ",".join(map(str, seeds)), "task": first.task.name,
              **{f"selection.{k}": str((c.selection or {}).get("rule", "given")) for k, c in configs.items()}}
    parent = tracker.start_sweep(name, str(run_dir), params, {"lfmlf.sweep_run_id": ",".join(sweeps),
                                 "lfmlf.git_sha": _git_sha()}, resume, role="rerun")
    for key, c in configs.items():
        tracker.log_text(parent, yaml.safe_dump(c.model_dump(mode="json", exclude={"source"}), sort_keys=False),
                         f"configs/{key}.yaml")
    start_ray(first.model_copy(update={"output_dir": str(run_dir)}), address)
    specs = RerunSpecs(configs)
    path = storage / "rerun"
    fn = tune.with_resources(tune.with_parameters(trainable, specs=specs),
                             {"cpu": first.resources.cpu, "gpu": first.resources.gpu})
    if resume and tune.Tuner.can_restore(str(path)):
        tuner = tune.Tuner.restore(str(path), trainable=fn, resume_unfinished=True, resume_errored=True)
    else:
        m = TASKS[first.task.name].metric
        reporter = tune.CLIReporter(metric_columns={"step": "step", f"zero_shot/{m}/avg": "zero-shot"},
                                    parameter_columns=["config", "seed"], max_report_frequency=20)
        tuner = tune.Tuner(
            fn, param_space={"config": tune.grid_search(list(configs)), "seed": tune.grid_search(list(seeds))},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=first.search.max_concurrent,
                                        reuse_actors=False, trial_name_creator=_trial_name,
                                        trial_dirname_creator=_trial_name),
            run_config=tune.RunConfig(name="rerun", storage_path=str(storage), verbose=1, progress_reporter=reporter,
                                      callbacks=[TrackingCallback(uri, first.tracking.experiment, parent, specs)],
                                      failure_config=tune.FailureConfig(max_failures=first.ray.max_failures),
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    outcome = SweepOutcome(run_dir=run_dir, tracking_uri=uri, parent_run_id=parent)
    status = "FINISHED"
    try:
        grid = tuner.fit()
        outcome.errors["rerun"] = len(grid.errors)
        outcome.best = {f"{r.config['config']}/seed{r.config['seed']}": {"metric": None} for r in grid if not r.error}
    except BaseException:
        status = "KILLED"
        raise
    finally:
        tracker.finish_sweep(status)
    print(f"\n=== rerun {name}: {len(outcome.best)} of {len(configs) * len(seeds)} runs finished "
          f"({outcome.errors['rerun']} failed); MLflow parent run {parent} in {uri}")
    return outcome


def _print_summary(cfg: SweepConfig, outcome: SweepOutcome, metric: str) -> None:
    print(f"\n=== {cfg.name}: best trial per method (selected on {metric}) ===")
    for method in cfg.methods:
        b = outcome.best.get(method)
        failed = outcome.errors.get(method, 0)
        if b is None:
            print(f"  {method:8s} no finished trial ({failed} failed; see {outcome.run_dir / 'ray' / method})")
            continue
        shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in b["config"].items() if k != "method"}
        print(f"  {method:8s} {metric} = {b['metric']:.4f}   zero-shot (same checkpoint) = "
              f"{b['zero_shot']:.4f}   {shown}" + (f"   [{failed} failed]" if failed else ""))
    print(f"\nMLflow: runs are in {outcome.tracking_uri} (parent run {outcome.parent_run_id}).")
    print(f"Open the UI with:  mlflow ui --backend-store-uri {outcome.tracking_uri} --host 127.0.0.1")
    print(f"Ray results and checkpoints: {outcome.run_dir / 'ray'}")
    print(f"Optuna studies ({', '.join(outcome.studies[1].values())}) in {outcome.studies[0]}; browse them with:  "
          f"pip install optuna-dashboard && optuna-dashboard {outcome.studies[0]}")
