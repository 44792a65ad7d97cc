"""From sweep to paper: ``lfmlf best``, ``lfmlf train`` and ``lfmlf report`` (``lfmlf rerun`` is Ray's, in
:mod:`lfmlf.sweep`). MLflow runs are the source of truth; they are read through
:class:`lfmlf.tracking.RunStore`, so this module imports neither MLflow nor Ray.

A *configuration file* is a sweep file with exactly one method, no search space and one source set:
``lfmlf best`` writes one per method (with a ``selection`` block saying where it came from and by which
rule), and ``lfmlf train`` and ``lfmlf rerun`` accept it (or any sweep file that fits that shape).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import yaml

from lfmlf.config import SweepConfig, TrialSpec, load_sweep, trial_spec
from lfmlf.errors import SweepError
from lfmlf.search import search_metric


# ----------------------------------------------------------------------------------------------- best
def best(cfg: SweepConfig, tracking_uri: str | None = None, out_dir: Path | None = None,
         metric: str | None = None) -> dict[str, Path]:
    """Write each method's best trial of a sweep as a configuration file; returns method -> path."""
    from lfmlf.tracking import RunStore, resolve_uri

    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    store = RunStore(uri, cfg.tracking.experiment)
    sweep_id = store.sweep_run(cfg.storage_location)
    if sweep_id is None:
        raise SweepError(f"no sweep run of {cfg.storage_location} in MLflow store {uri}. Fix: run `lfmlf sweep "
                         f"{cfg.source or 'SWEEP.yaml'}` first, or pass the --tracking-uri it used.")
    metric = metric or search_metric(cfg)
    runs = store.children(sweep_id)
    budget = _budget(store, sweep_id, cfg)
    out_dir = Path(out_dir or cfg.run_dir / "best")
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for method in cfg.methods:
        mine = [r for r in runs if r.method == method]
        usable = _usable(mine, metric)
        if not usable:
            print(f"  {method:8s} no finished trial with {metric} ({len(mine)} trial run(s)); nothing written")
            continue
        top = _top(usable, metric, cfg.search.mode)
        spec = TrialSpec.model_validate(yaml.safe_load(store.text(top.run_id, "trial_config.yaml")))
        rule = (f"{cfg.search.mode} of {metric} (source-language dev, at each trial's selected checkpoint) over "
                f"the {len(usable)} finished of {len(mine)} trials of the '{method}' study (budget "
                f"{budget.get(method, '?')} trials)")
        selection = {"rule": rule, "metric": metric, "value": top.metrics[metric], "sweep": cfg.name,
                     "sweep_run_id": sweep_id, "trial_run_id": top.run_id,
                     "tune_trial_id": top.tags.get("lfmlf.tune_trial_id", ""),
                     "optuna_trial": top.tags.get("lfmlf.optuna_trial", ""), "budget": budget.get(method),
                     "tracking_uri": uri}
        path = out_dir / f"{method}.yaml"
        path.write_text(_header(selection) + yaml.safe_dump(configuration(cfg, spec, selection), sort_keys=False,
                                                            allow_unicode=True), encoding="utf-8")
        written[method] = path
        print(f"  {method:8s} {metric} = {top.metrics[metric]:.4f}  (run {top.run_id})  -> {path}")
    if not written:
        raise SweepError(f"sweep '{cfg.name}' has no finished trial to pick from. Fix: check its runs in MLflow "
                         f"({uri}); failed trials keep their error as the tag lfmlf.error.")
    return written


def configuration(cfg: SweepConfig, spec: TrialSpec, selection: dict[str, Any]) -> dict[str, Any]:
    """A one-method, one-source-set configuration file for a trial of ``cfg`` (paths already absolute)."""
    dump = spec.model_dump(mode="json")
    return {
        "name": f"{cfg.name}-{spec.method}",
        "output_dir": cfg.storage_location,   # a rerun's results go next to the sweep's (same storage)
        "task": dump["task"], "model": dump["model"],
        "languages": {"sources": list(spec.sources), "targets": list(spec.targets)},
        "train": dump["train"], "unlabelled": dump["unlabelled"], "probe": dump["probe"],
        "methods": {spec.method: {"params": dict(spec.method_params)}},
        "search": {"num_samples": 1, "max_concurrent": cfg.search.max_concurrent, "metric": cfg.search.metric,
                   "mode": cfg.search.mode, "scheduler": {"name": "none"}},
        "resources": cfg.resources.model_dump(mode="json"), "tracking": cfg.tracking.model_dump(mode="json"),
        "ray": cfg.ray.model_dump(mode="json"),
        "selection": selection,
    }


def _header(selection: dict[str, Any]) -> str:
    return (f"# Written by `lfmlf best` from sweep '{selection['sweep']}' (MLflow run {selection['sweep_run_id']}).\n"
            f"# Selected: {selection['rule']}.\n"
            "# Run it:  lfmlf train THIS.yaml   |   lfmlf rerun THIS.yaml [OTHER.yaml ...] --seeds 3\n")


def load_configuration(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """A configuration file for ``train``/``rerun``: a sweep file with exactly one method."""
    cfg = load_sweep(path, overrides or [])
    if len(cfg.methods) != 1:
        raise SweepError(f"{path}: lists {len(cfg.methods)} methods ({', '.join(cfg.methods)}); a configuration "
                         "for train/rerun has exactly one. Fix: use a file written by `lfmlf best`, or keep one "
                         "method under 'methods'.")
    return cfg


# ----------------------------------------------------------------------------------------------- train
def train(cfg: SweepConfig, tracking_uri: str | None = None, seed: int | None = None) -> dict[str, float]:
    """Run one configuration in this process (no Ray, no search), tracked as one MLflow run (role train)
    with the same params, tags and metrics as a trial run. Returns the last evaluation's metrics."""
    from lfmlf.loop import fit
    from lfmlf.tracking import resolve_uri, start_run

    method = next(iter(cfg.methods))
    spec = trial_spec(cfg, {"method": method, **({"seed": seed} if seed is not None else {})})
    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    selection = {f"lfmlf.selected.{k}": str(v) for k, v in (cfg.selection or {}).items() if k.endswith("run_id")}
    tracker = start_run(uri, cfg.tracking.experiment, f"train-{cfg.name}-seed{spec.train.seed}", "train",
                        spec.flat_params(), {"lfmlf.method": method, "lfmlf.source_set": "+".join(spec.sources),
                                             "lfmlf.seed": str(spec.train.seed), **selection,
                                             **{f"lfmlf.source.{s}": "true" for s in spec.sources}})
    run_id = tracker.parent_id or ""
    tracker.log_text(run_id, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "trial_config.yaml")
    metrics: dict[str, float] = {}
    status = "FAILED"
    try:
        for evaluation in fit(spec):
            metrics = evaluation.metrics
            tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if "/" in k}, step=evaluation.step)
            print(f"step {evaluation.step}: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in sorted(metrics)
                                                         if k.endswith("/avg") and not k.startswith("best/")))
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        final = {k: v for k, v in metrics.items() if k.startswith(("best/", "zero_shot/", "source/", "forgetting/"))}
        tracker.log_text(run_id, json.dumps(final, indent=2, sort_keys=True), "final_metrics.json")
        tracker.finish_sweep(status)
    print(f"MLflow run {run_id} in {uri}")
    return metrics


# ----------------------------------------------------------------------------------------------- report
def report(cfg: SweepConfig, tracking_uri: str | None = None, rerun_id: str | None = None,
           out_dir: Path | None = None) -> list[Path]:
    """Tables (Markdown, LaTeX, CSV) and plots of a sweep and its rerun, written to ``out_dir`` and logged
    to MLflow (on the rerun's run, else the sweep's) under ``report/``. The table comes from the rerun
    (mean ± std over seeds); without a rerun, from each method's best sweep trial (one seed, said so)."""
    from lfmlf import plots
    from lfmlf.report import build_table, sweep_left_out, write_report
    from lfmlf.search import study_summary
    from lfmlf.tasks import TASKS
    from lfmlf.tracking import RunStore, resolve_uri

    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    store = RunStore(uri, cfg.tracking.experiment)
    sweep_id = store.sweep_run(cfg.storage_location)
    if sweep_id is None:
        raise SweepError(f"no sweep run of {cfg.storage_location} in MLflow store {uri}. Fix: run `lfmlf sweep` first, "
                         "or pass the --tracking-uri it used.")
    metric = TASKS[cfg.task.name].metric
    rerun_id = rerun_id or next(iter(store.reruns_of(sweep_id)), None)
    # multiplier histories (one MLflow query per metric and run) only where the multipliers plot reads them
    lambdas = ("lfmlf/lambda/",)
    sweep_runs = store.children(sweep_id, histories=() if rerun_id else lambdas)
    budget = _budget(store, sweep_id, cfg)
    selection = search_metric(cfg)
    if rerun_id is not None:
        table_runs = store.children(rerun_id, histories=lambdas)
        seeds = sorted({r.seed for r in table_runs if r.seed is not None})
        rule = (f"each method's best trial by {selection} (source-language dev) in its Optuna study, re-run with {len(seeds)} seeds (rerun {rerun_id})")
    else:
        table_runs = _best_trials(sweep_runs, selection, cfg.search.mode)
        rule = (f"each method's best trial by {selection} (source-language dev) in its Optuna study; "
                "one seed (no rerun found: `lfmlf rerun` the files of `lfmlf best` for mean ± std)")
    table = build_table(table_runs, task_metric=metric, targets=list(cfg.languages.targets), budget=budget,
                        selection_rule=rule)
    importances = {}
    tags = store.tags(sweep_id)
    for m in cfg.methods:
        name = tags.get(f"lfmlf.optuna_study.{m}")
        if name and tags.get("lfmlf.optuna_storage"):
            try:
                importances[m] = study_summary(tags["lfmlf.optuna_storage"], name)["importances"]
            except KeyError:
                print(f"lfmlf: Optuna study {name} not found in {tags['lfmlf.optuna_storage']}; no importances for {m}")
    out = Path(out_dir or cfg.run_dir / "report")
    excluded = sweep_left_out(sweep_runs)
    files = write_report(table, out, importances, excluded)
    pngs = [plots.language_bars(table, out / "languages.png"),
            plots.forgetting_vs_zero_shot(sweep_runs, out / "forgetting_vs_zero_shot.png", metric),
            plots.source_set_heatmap(sweep_runs, out / "source_sets.png", metric, list(cfg.languages.targets)),
            plots.multipliers_over_steps(table_runs if rerun_id else sweep_runs, out / "lfmlf_multipliers.png")]
    skipped = {"forgetting_vs_zero_shot.png": "no run logged a forgetting probe (add a `probe` section)",
               "lfmlf_multipliers.png": "no LF-MLF run with multipliers"}
    written = files + [p for p in pngs if p is not None]
    store.log_files(rerun_id or sweep_id, written, "report")
    print(f"Report of '{cfg.name}' ({'rerun ' + rerun_id if rerun_id else 'sweep best trials'}) in {out}:")
    for p in written:
        print(f"  {p}")
    for name, why in skipped.items():
        if not (out / name).exists():
            print(f"  (no {name}: {why})")
    for title, lines in (("Left out of the table", table.left_out), ("Sweep trials left out of the plots", excluded)):
        if lines:
            print(f"{title} ({len(lines)}):")
            for line in lines:
                print(f"  {line}")
    return written


def _budget(store, sweep_id: str, cfg: SweepConfig) -> dict[str, int]:
    """Trials per method as the sweep recorded them (``--set search.num_samples`` may have changed it)."""
    params = store.params(sweep_id)
    return {m: int(params.get(f"budget.{m}", cfg.search.num_samples)) for m in cfg.methods}


def _usable(runs: list, metric: str) -> list:
    """The FINISHED runs with a finite ``metric``: what a selection may pick from."""
    return [r for r in runs if r.status == "FINISHED" and math.isfinite(r.metrics.get(metric, math.nan))]


def _top(runs: list, metric: str, mode: str):
    """The run with the best ``metric`` (``mode`` max or min)."""
    sign = 1.0 if mode == "max" else -1.0
    return max(runs, key=lambda r: sign * r.metrics[metric])


def _best_trials(runs: list, metric: str, mode: str) -> list:
    """Each method's best FINISHED trial by ``metric`` (the table's rows when there is no rerun), by the
    same rule as ``best``; the other runs are not rows, so failed or early-stopped trials are not picked."""
    out = []
    for method in dict.fromkeys(r.method for r in runs):
        usable = _usable([r for r in runs if r.method == method], metric)
        if usable:
            out.append(_top(usable, metric, mode))
    return out
