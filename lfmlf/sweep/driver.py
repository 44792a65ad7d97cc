"""The sweep driver: one Ray Tune ``Tuner`` for every method's Optuna study, ASHA per method, MLflow.

One Optuna study per method, each with the same trial budget (a fair comparison), all served by one
``Tuner`` (:class:`~lfmlf.sweep.routing.MethodSearch` and :class:`~lfmlf.sweep.routing.MethodScheduler`),
so every method's trials share the cluster at once. Each trial runs :func:`lfmlf.loop.fit` and reports
every evaluation with a checkpoint; ASHA schedules on the loop's own ``eval_step`` counter (Tune's
``training_iteration`` restarts for resumed trials). Ray writes results and checkpoints to the sweep's
storage (``<output_dir>/ray/sweep``: a shared folder or a URI). MLflow is written from this (driver)
process only, by a Tune callback that forwards to :class:`lfmlf.tracking.SweepTracker`.
"""
from __future__ import annotations

import functools
import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from lfmlf.config import SweepConfig
from lfmlf.errors import SweepError
from lfmlf.preflight import check_model
from lfmlf.redaction import redact_data
from lfmlf.search import (
    DefineByRun,
    check_stored_study,
    fail_orphaned_trials,
    load_space,
    make_sampler,
    pareto_trials,
    search_metric,
    search_objectives,
    study_name,
    study_storage,
    study_storage_url,
)
from lfmlf.selection import selection_label
from lfmlf.storage import Storage, redact
from lfmlf.sweep.callbacks import TrackingCallback
from lfmlf.sweep.cluster import start_ray
from lfmlf.sweep.routing import MethodScheduler, MethodSearch, ResumableOptunaSearch, SchedulerState, SearchLedger
from lfmlf.sweep.trainable import RerunSpecs, SweepSpecs, trainable
from lfmlf.tasks import TASKS
from lfmlf.tracking import SweepTracker, check_store, resolve_uri

EXPERIMENT = "sweep"   # Tune's experiment folder below <storage>/ray
#: Printed when ``search.objectives`` turns the configured ASHA scheduler off.
ASHA_OFF = ("search.objectives: ASHA is off: a multi-objective study has no single score to compare trials at a "
            "rung; every trial runs to max_steps")


@dataclass
class SweepOutcome:
    run_dir: Path
    tracking_uri: str
    parent_run_id: str
    storage: str = ""                                                # where Ray's results are
    best: dict[str, dict[str, Any]] = field(default_factory=dict)   # method -> {config, metric, run_id}
    errors: dict[str, int] = field(default_factory=dict)             # method -> failed trials
    stopped: dict[str, int] = field(default_factory=dict)            # method -> trials stopped by ASHA
    studies: tuple[str, dict[str, str]] = ("", {})                   # Optuna storage URL, method -> study

    first_errors: dict[str, str] = field(default_factory=dict)       # method -> the first failed trial's error
    trials: dict[str, int] = field(default_factory=dict)             # method -> trials run
    max_failed_share: float = 1.0

    @property
    def ok(self) -> bool:
        """Every method has a finished trial and no more than ``max_failed_share`` of the trials failed."""
        total = sum(self.trials.values())
        failed = sum(self.errors.values())
        return bool(self.best) and all(m in self.best for m in self.trials) and \
            (total == 0 or failed / total <= self.max_failed_share)


@functools.cache
def _git_sha() -> str:   # one `git rev-parse` per process: the sweep run and every trial run carry it
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lineage_tags(cfg: SweepConfig) -> dict[str, str]:
    """Tags every run of a sweep or rerun carries: the code (MLflow's own git tag) and the model."""
    sha = _git_sha()
    return {"mlflow.source.git.commit": sha, "lfmlf.git_sha": sha, "lfmlf.model": cfg.model.name_or_path,
            **({"lfmlf.model_revision": cfg.model.revision} if cfg.model.revision else {}),
            **({"lfmlf.data_revision": cfg.task.hub_revision} if cfg.task.hub_revision else {})}


def sweep_params(cfg: SweepConfig, location: str) -> dict[str, str]:
    """The sweep run's params: what was searched, with which budget, selected how, stored where."""
    selection = selection_label(search_metric(cfg), cfg.task.target_split)
    return {"task": cfg.task.name, "model": cfg.model.name_or_path, "methods": ",".join(cfg.methods),
            "source_pool": "+".join(sorted(cfg.languages.sources)), "targets": "+".join(cfg.languages.targets),
            "num_samples_per_method": str(cfg.search.num_samples), "search_metric": search_metric(cfg),
            "selection": selection.kind, "selection_label": selection.label, "storage": redact(location),
            **{f"budget.{m}": str(cfg.search.num_samples) for m in cfg.methods}}


#: Checkpoints kept per trial. Tune deletes the older ones as soon as a new one is registered, but the experiment
#: state it restores from reaches the storage later (an asynchronous upload, at most every 2 s or after each
#: checkpoint). With 1, a driver killed in that gap resumes a trial from a checkpoint already deleted ("Could
#: not recover from checkpoint as it does not exist on storage anymore": the trial is lost). With 2, the
#: previous checkpoint is still there unless two checkpoints of one trial fall inside one upload gap.
KEEP_CHECKPOINTS = 2


def preflight(uri: str, configs: list[SweepConfig]) -> None:
    """The tracking store and (offline) every configuration's model, checked in seconds before a sweep or
    rerun writes anything or starts Ray."""
    check_store(uri)
    for model in {(c.model.name_or_path, c.model.revision) for c in configs}:
        check_model(*model)


def _open_storage(location: str, name: str, resume: bool) -> Storage:
    """The sweep's storage, checked writable; refuses to start twice in one place, or to resume nothing.
    Writes nothing but a probe file it deletes again."""
    storage = Storage(location)
    storage.check_writable()
    if storage.exists("ray") and not resume:
        raise SweepError(f"the output location {redact(location)} already holds '{name}'. Fix: continue it with "
                         "--resume, or start a new one with another name (--set name=...) or --output-dir.")
    if resume and not storage.exists("ray"):
        raise SweepError(f"nothing to resume: {redact(storage.uri('ray'))} does not exist. Fix: drop --resume to "
                         "start afresh.")
    return storage


def _trial_name(trial: Any) -> str:
    return f"{trial.config.get('method') or trial.config.get('config', 'trial')}_{trial.trial_id}"


class _Driver:
    """What a sweep and a rerun share: the checks before anything is written, Ray, the MLflow parent run, a
    Tuner restored on ``--resume`` or built fresh with the project's Tune settings, and the parent run's
    end (KILLED if ``fit`` is interrupted, with the trial runs Tune never saved marked KILLED).

    Used in this order: ``__init__`` (checks, storage, Ray), :meth:`start` (parent run),
    :meth:`tune_config` / :meth:`run_config` inside the ``fresh`` function given to :meth:`fit`."""

    def __init__(self, cfg: SweepConfig, configs: list[SweepConfig], experiment: str,
                 specs: SweepSpecs | RerunSpecs, *, resume: bool, address: str | None, tracking_uri: str | None):
        self.cfg, self.experiment, self.specs, self.resume = cfg, experiment, specs, resume
        self.uri = resolve_uri(tracking_uri, cfg.tracking.uri)
        preflight(self.uri, configs)   # before anything is written: a failed start leaves nothing behind
        self.storage = _open_storage(cfg.storage_location, cfg.name, resume)
        start_ray(cfg, address or cfg.ray.address)
        self.tracker = SweepTracker(self.uri, cfg.tracking.experiment)
        self.fn = tune.with_resources(tune.with_parameters(trainable, specs=specs),
                                      {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})

    def start(self, title: str, role: str, params: dict[str, str], tags: dict[str, str]) -> str:
        """Create (or, resuming, find) the parent run; returns its id."""
        return self.tracker.start_sweep(title, self.storage.location, params, {**lineage_tags(self.cfg), **tags},
                                        self.resume, role=role)

    def tune_config(self, **kw: Any) -> tune.TuneConfig:
        """Tune's settings; ``max_concurrent_trials`` is ``search.max_concurrent`` unless ``kw`` sets it (a
        sweep passes its own ``ConcurrencyLimiter`` and None here)."""
        kw.setdefault("max_concurrent_trials", self.cfg.search.max_concurrent)
        return tune.TuneConfig(reuse_actors=True, trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
                               **kw)

    def run_config(self, callbacks: list, reporter: Any) -> tune.RunConfig:
        return tune.RunConfig(name=self.experiment, storage_path=self.storage.uri("ray"), callbacks=callbacks,
                              verbose=1, progress_reporter=reporter,
                              failure_config=tune.FailureConfig(max_failures=self.cfg.ray.max_failures),
                              checkpoint_config=tune.CheckpointConfig(num_to_keep=KEEP_CHECKPOINTS))

    def fit(self, fresh: Callable[[], tune.Tuner], summarise: Callable[[Any], dict[str, float]]) -> Any:
        """Run the Tuner (restored from the experiment state on ``--resume``: searcher, scheduler and
        callbacks come back with it; else ``fresh()``); ``summarise(grid)`` gives the parent run's final
        metrics. The parent run ends FINISHED, or KILLED when interrupted."""
        path = self.storage.uri("ray", self.experiment)
        if self.resume and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, trainable=self.fn, resume_unfinished=True, resume_errored=True)
        else:
            tuner = fresh()
        status, metrics = "FINISHED", {}
        try:
            grid = tuner.fit()
            metrics = summarise(grid)
            return grid
        except BaseException:
            status = "KILLED"
            raise
        finally:
            lost = self.tracker.finish_sweep(status, metrics)
            if lost:
                print(f"lfmlf: {lost} trial run(s) were lost when the sweep was interrupted before Tune saved "
                      "them; their sampled points ran again as new trials, and the old MLflow runs are marked "
                      "KILLED.", flush=True)


def _sweep_tuner(d: _Driver, cfg: SweepConfig, parent: str, optuna_url: str, studies: dict[str, str],
                 spaces: dict[str, Any]) -> tune.Tuner:
    """A fresh Tuner for every method's study: one Optuna searcher and one ASHA (or FIFO) per method. With
    ``search.objectives`` the studies are multi-objective (told every objective at a trial's end), Tune's own
    metric / mode (progress table, ``lfmlf best``) stay the first objective, and ASHA is off (printed)."""
    metric, mode = search_metric(cfg), cfg.search.mode
    objectives = search_objectives(cfg)
    study_metric: str | list[str] = [m for m, _ in objectives] if objectives else metric
    study_mode: str | list[str] = [d for _, d in objectives] if objectives else mode
    sc = cfg.search.scheduler
    asha = sc.name == "asha" and not objectives
    if objectives and sc.name == "asha":
        print(ASHA_OFF, flush=True)
    max_t = -(-cfg.train.max_steps // cfg.train.eval_every)
    searchers, schedulers, columns = {}, {}, ["method"]
    for method in cfg.methods:
        space = DefineByRun(method, spaces[method], cfg.source_sets())
        searchers[method] = ResumableOptunaSearch(
            space=space, metric=study_metric, mode=study_mode, storage=study_storage(optuna_url),
            study_name=studies[method], sampler=make_sampler(cfg.train.seed, cfg.search.n_startup_trials),
            max_steps=cfg.train.max_steps)
        schedulers[method] = (ASHAScheduler(time_attr="eval_step", metric=metric, mode=mode, max_t=max_t,
                                            grace_period=min(sc.grace_period, max_t),
                                            reduction_factor=sc.reduction_factor)
                              if asha else FIFOScheduler())
        columns += [k for k in ("lr", "slack", "source_set") if k in space.space and k not in columns]
    searcher = MethodSearch(searchers, cfg.search.num_samples, metric, mode)
    # the limit Tune would build from max_concurrent_trials, built here so SearchLedger can mend it on resume
    limiter = ConcurrencyLimiter(searcher, max_concurrent=cfg.search.max_concurrent)
    scheduler = MethodScheduler(schedulers)
    callback = TrackingCallback(d.uri, cfg.tracking.experiment, parent, d.specs, searcher, lineage_tags(cfg))
    m = TASKS[cfg.task.name].metric
    reporter = tune.CLIReporter(
        metric_columns={"step": "step", f"source/{m}/avg": "source", f"zero_shot/{m}/avg": "zero-shot",
                        metric: "best source"},
        parameter_columns=columns, max_report_frequency=20)   # no cross-method "best trial" line: not comparable
    return tune.Tuner(d.fn, tune_config=d.tune_config(search_alg=limiter, scheduler=scheduler,
                                                      num_samples=cfg.search.num_samples * len(cfg.methods),
                                                      max_concurrent_trials=None),
                      run_config=d.run_config([callback, SchedulerState(scheduler), SearchLedger(searcher, limiter)],
                                              reporter))


def run(cfg: SweepConfig, *, resume: bool = False, address: str | None = None,
        tracking_uri: str | None = None) -> SweepOutcome:
    """Run (or resume) every method's study in one Tuner; print the best trial per method and how to open
    MLflow. The tracking store, the model, the storage and (on a cluster) every node are checked before
    anything is written."""
    d = _Driver(cfg, [cfg], EXPERIMENT, SweepSpecs(cfg, search_metric(cfg)), resume=resume, address=address,
                tracking_uri=tracking_uri)
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "sweep.yaml").write_text(yaml.safe_dump(redact_data(cfg.model_dump(mode="json")), sort_keys=False))
    parent = d.start(cfg.name, "sweep", sweep_params(cfg, d.storage.location), {"lfmlf.sweep": cfg.name})
    optuna_url = study_storage_url(d.uri, run_dir)
    studies = {m: study_name(cfg.name, m, parent) for m in cfg.methods}
    d.tracker.set_tags(parent, {"lfmlf.optuna_storage": optuna_url,
                                **{f"lfmlf.optuna_study.{m}": n for m, n in studies.items()}})
    d.tracker.log_text(parent, (run_dir / "sweep.yaml").read_text(), "sweep.yaml")
    # each file read once; a named entry's space is checked against the method it runs
    spaces = {m: load_space(entry.method or m, entry.space, cfg) for m, entry in cfg.methods.items()}
    for method, entry in cfg.methods.items():
        if entry.space is not None:
            d.tracker.log_text(parent, yaml.safe_dump({k: v.model_dump() for k, v in spaces[method].items()}),
                               f"search_spaces/{method}.yaml")

    outcome = SweepOutcome(run_dir=run_dir, tracking_uri=d.uri, parent_run_id=parent, storage=d.storage.location,
                           studies=(optuna_url, studies), max_failed_share=cfg.search.max_failed_share)
    print(f"\n=== {cfg.name}: {', '.join(cfg.methods)} ({cfg.search.num_samples} trials each, at most "
          f"{cfg.search.max_concurrent} at once) ===", flush=True)

    def summarise(grid: Any) -> dict[str, float]:
        for method in cfg.methods:
            _summarise_method(cfg, grid, method, outcome)
            # every Tune trial has ended: the study's trials still RUNNING errored (kept open until now, so a
            # --resume could finish them) or were sampled by a process killed before Tune saved the trial
            fail_orphaned_trials(optuna_url, studies[method])
        return {f"best/{m}": b["metric"] for m, b in outcome.best.items() if b.get("metric") is not None}

    if resume:   # Tune restores each searcher with the space of the first start: a changed encoding is refused here
        for method in cfg.methods:
            check_stored_study(optuna_url, studies[method], DefineByRun(method, spaces[method], cfg.source_sets()),
                               [d for _, d in search_objectives(cfg)] or [cfg.search.mode])
    d.fit(lambda: _sweep_tuner(d, cfg, parent, optuna_url, studies, spaces), summarise)
    _print_summary(cfg, outcome, search_metric(cfg))
    return outcome


def _summarise_method(cfg: SweepConfig, grid: Any, method: str, outcome: SweepOutcome) -> None:
    """One method's trials, failures (errors and divergences), early stops and best trial, into ``outcome``."""
    metric = search_metric(cfg)
    mine = [r for r in grid if r.config.get("method") == method]
    failed = [r.error or RuntimeError(r.metrics.get("diverged_reason", "")) for r in mine
              if r.error is not None or (r.metrics or {}).get("diverged")]
    outcome.trials[method], outcome.errors[method] = len(mine), len(failed)
    if failed:
        outcome.first_errors[method] = _error_line(failed[0])
    outcome.stopped[method] = sum(1 for r in mine if r.error is None and r.metrics and not r.metrics.get("diverged")
                                  and int(r.metrics.get("step", 0)) < cfg.train.max_steps)
    best = _best_result(grid, method, metric, cfg.search.mode, cfg.train.max_steps)
    if best is not None:
        outcome.best[method] = {"config": best.config, "metric": best.metrics.get(metric),
                                "zero_shot": best.metrics.get(metric.replace("source", "zero_shot")),
                                "forgetting": best.metrics.get("best/forgetting/retrieval_drop/avg"),
                                "trial_id": best.metrics.get("trial_id", "")}


def _error_line(error: BaseException) -> str:
    """The line of a trial's error that names the exception (the last non-empty line of its text)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _best_result(grid: Any, method: str, metric: str, mode: str, max_steps: int) -> Any:
    """The method's trial with the best finite ``metric`` among those that ran to ``max_steps`` (not failed,
    not stopped by the scheduler); None if there is none."""
    usable = [r for r in grid if r.config.get("method") == method and r.error is None and r.metrics
              and int(r.metrics.get("step", 0)) >= max_steps
              and isinstance(r.metrics.get(metric), (int, float)) and math.isfinite(r.metrics[metric])]
    if not usable:
        return None
    pick = max if mode == "max" else min
    return pick(usable, key=lambda r: r.metrics[metric])


def rerun(configs: dict[str, SweepConfig], seeds: list[int], *, location: str, resume: bool = False,
          address: str | None = None, tracking_uri: str | None = None) -> SweepOutcome:
    """Run every single-method configuration (``lfmlf best`` output, or any one-method sweep file) once per
    seed, in parallel on Ray, under one MLflow parent run (``lfmlf.role`` = rerun). ``location`` is the
    rerun's storage (a folder or a URI), like a sweep's ``output_dir``."""
    first = next(iter(configs.values()))
    name = location.rstrip("/").rsplit("/", 1)[-1]
    local = first.model_copy(update={"output_dir": location, "name": name})
    specs = RerunSpecs(configs)
    d = _Driver(local, list(configs.values()), "rerun", specs, resume=resume, address=address,
                tracking_uri=tracking_uri)
    sweeps = sorted({str((c.selection or {}).get("sweep_run_id", "")) for c in configs.values()} - {""})
    params = {"configs": ",".join(configs), "seeds": ",".join(map(str, seeds)), "task": first.task.name,
              **{f"selection.{k}": str((c.selection or {}).get("rule", "given")) for k, c in configs.items()}}
    parent = d.start(f"rerun: {', '.join(configs)}", "rerun", params, {"lfmlf.sweep_run_id": ",".join(sweeps)})
    for key, c in configs.items():
        d.tracker.log_text(parent, yaml.safe_dump(redact_data(c.model_dump(mode="json", exclude={"source"})),
                                                  sort_keys=False), f"configs/{key}.yaml")

    def fresh() -> tune.Tuner:
        m = TASKS[first.task.name].metric
        reporter = tune.CLIReporter(metric_columns={"step": "step", f"zero_shot/{m}/avg": "zero-shot"},
                                    parameter_columns=["config", "seed"], max_report_frequency=20)
        callback = TrackingCallback(d.uri, first.tracking.experiment, parent, specs, lineage_tags=lineage_tags(first))
        return tune.Tuner(d.fn, param_space={"config": tune.grid_search(list(configs)),
                                             "seed": tune.grid_search(list(seeds))},
                          tune_config=d.tune_config(num_samples=1), run_config=d.run_config([callback], reporter))

    outcome = SweepOutcome(run_dir=local.run_dir, tracking_uri=d.uri, parent_run_id=parent, storage=d.storage.location)

    def summarise(grid: Any) -> dict[str, float]:
        outcome.errors["rerun"] = len(grid.errors)
        outcome.best = {f"{r.config['config']}/seed{r.config['seed']}": {"metric": None} for r in grid if not r.error}
        return {}

    d.fit(fresh, summarise)
    print(f"\n=== rerun {name}: {len(outcome.best)} of {len(configs) * len(seeds)} runs finished "
          f"({outcome.errors['rerun']} failed); MLflow parent run {parent} in {redact(d.uri)}")
    return outcome


def _print_summary(cfg: SweepConfig, outcome: SweepOutcome, metric: str) -> None:
    print(f"\n=== {cfg.name}: best trial per method (selected on {metric}: "
          f"{selection_label(metric, cfg.task.target_split).label}) ===")
    width = max(8, *(len(m) for m in cfg.methods))   # method names line up
    for method in cfg.methods:
        b = outcome.best.get(method)
        failed, stopped = outcome.errors.get(method, 0), outcome.stopped.get(method, 0)
        if b is None:
            print(f"  {method:{width}s} no finished trial ({failed} failed, {stopped} stopped early; see "
                  f"{redact(outcome.storage)}/ray/{EXPERIMENT})")
            continue
        shown = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in b["config"].items() if k != "method"}
        zero_shot = b["zero_shot"] if isinstance(b["zero_shot"], (int, float)) else float("nan")
        forgetting = b.get("forgetting")
        drop = f"   retrieval drop = {forgetting:+.3f}" if isinstance(forgetting, (int, float)) else ""
        print(f"  {method:{width}s} {metric} = {b['metric']:.4f}   zero-shot (same checkpoint) = "
              f"{zero_shot:.4f}{drop}   {shown}" + (f"   [{failed} failed]" if failed else "")
              + (f"   [{stopped} stopped early by ASHA, not eligible]" if stopped else ""))
    if any(isinstance(b.get("forgetting"), (int, float)) for b in outcome.best.values()):
        print("  (retrieval drop: the forgetting probe's top-1 translation retrieval at theta0 minus at that "
              "checkpoint, averaged over its languages; positive = forgotten)")
    objectives = search_objectives(cfg)
    if objectives:
        _print_pareto(cfg, outcome, objectives)
    if not outcome.ok:
        failed, total = sum(outcome.errors.values()), sum(outcome.trials.values())
        print(f"\nlfmlf: the sweep is incomplete (exit status 3): {failed} of {total} trials failed (allowed: "
              f"{outcome.max_failed_share:.0%}, search.max_failed_share); methods without a finished trial: "
              f"{', '.join(m for m in cfg.methods if m not in outcome.best) or 'none'}.")
        for method, line in outcome.first_errors.items():
            print(f"  {method:8s} {outcome.errors[method]} failed; first error: {line}")
    uri = redact(outcome.tracking_uri)
    print(f"\nMLflow: runs are in {uri} (parent run {outcome.parent_run_id}).")
    print(f"Open the UI with:  mlflow ui --backend-store-uri {uri} --host 127.0.0.1")
    print(f"Ray results and checkpoints: {redact(outcome.storage)}/ray/{EXPERIMENT}")
    print(f"Optuna studies ({', '.join(outcome.studies[1].values())}) in {outcome.studies[0]}; browse them with:  "
          f"pip install optuna-dashboard && optuna-dashboard {outcome.studies[0]}")
    print(f"Next: lfmlf best {cfg.source or 'SWEEP.yaml'}   (each method's best configuration)")


def _print_pareto(cfg: SweepConfig, outcome: SweepOutcome, objectives: list[tuple[str, str]]) -> None:
    """Each method's Pareto-optimal trials (Optuna's ``best_trials`` over its COMPLETE trials) with every
    objective's value; called by the summary of a multi-objective sweep. ``lfmlf best`` still selects on the
    first objective alone."""
    url, studies = outcome.studies
    print(f"\n=== {cfg.name}: Pareto-optimal trials per method ("
          + ", ".join(f"{m} {d}" for m, d in objectives) + f"; lfmlf best selects on {objectives[0][0]} alone) ===")
    for method in cfg.methods:
        front = pareto_trials(url, studies[method])
        if not front:
            print(f"  {method:8s} no COMPLETE trial in study {studies[method]}")
            continue
        for t in front:
            values = "   ".join(f"{m} = {v:.4f}" for (m, _), v in zip(objectives, t.values or []))
            params = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in t.params.items()}
            run = t.user_attrs.get("mlflow_run_id", "")
            print(f"  {method:8s} trial {t.number:3d}   {values}   {params}" + (f"   run {run}" if run else ""))
