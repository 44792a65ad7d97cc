"""From sweep to paper: ``lfmlf best``, ``lfmlf train`` and ``lfmlf report`` (``lfmlf rerun`` is Ray's, in
:mod:`lfmlf.sweep`). MLflow runs are the source of truth; they are read through
:class:`lfmlf.tracking.RunStore`, so this module imports neither MLflow nor Ray.

A *configuration file* is a sweep file with exactly one method, no search space and one source set:
``lfmlf best`` writes one per method (with a ``selection`` block saying where it came from and by which
rule), and ``lfmlf train`` and ``lfmlf rerun`` accept it (or any sweep file that fits that shape).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml

from lfmlf import plots
from lfmlf.checks import load_checked
from lfmlf.config import SweepConfig, TrialSpec, trial_spec
from lfmlf.errors import SweepError
from lfmlf.export import check_out, log_model, write_model
from lfmlf.interpolate import DEFAULT_ALPHAS, Outcome, interpolate_runs
from lfmlf.loop import fit
from lfmlf.redaction import redact_data
from lfmlf.report import (
    Fronts,
    Importance,
    Section,
    Table,
    build_fronts,
    build_table,
    exclusion,
    fronts_csv,
    fronts_markdown,
    language_groups,
    merge_left_out,
    no_eligible_reason,
    retrieval_by_language,
    selection_cost,
    sweep_left_out,
    write_report,
)
from lfmlf.report.effects import TITLE as EFFECTS_TITLE
from lfmlf.report.effects import effects_section
from lfmlf.report.fronts import statement
from lfmlf.search import search_metric, study_summary
from lfmlf.selection import oracle_metric, selection_label
from lfmlf.storage import redact
from lfmlf.tasks import TASKS
from lfmlf.tracking import RunStore, SweepTracker, resolve_uri, start_run
from lfmlf.trial_record import record_end, record_evaluation, record_start, run_tags


# ----------------------------------------------------------------------------------------------- best
def best(cfg: SweepConfig, tracking_uri: str | None = None, out_dir: Path | None = None,
         metric: str | None = None) -> dict[str, Path]:
    """Write each method's best eligible trial of a sweep as a configuration file; returns method -> path.

    Eligible: FINISHED, not stopped early by ASHA, with a finite ``metric`` (:func:`lfmlf.report.exclusion`).
    A method without one is named with its reasons ("no eligible trial (3 stopped early by ASHA, 1 FAILED)"),
    and every trial that is not eligible is listed with its reason. The rule and the ``selection`` block
    carry the metric's label (:func:`lfmlf.selection.selection_label`): source-language dev, target-language
    data (an oracle: not zero-shot), or the key as is."""
    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    store = RunStore(uri, cfg.tracking.experiment)
    sweep_id = store.sweep_run(cfg.storage_location)
    if sweep_id is None:
        raise SweepError(f"no sweep run of {cfg.storage_location} in MLflow store {uri}. Fix: run `lfmlf sweep "
                         f"{cfg.source or 'SWEEP.yaml'}` first, or pass the --tracking-uri it used.")
    metric = _metric(cfg, metric)
    sel = selection_label(metric, cfg.task.target_split)
    runs = store.children(sweep_id, histories=_STEPS)
    _check_metric_exists(metric, runs)
    budget = _budget(store, sweep_id, cfg)
    out_dir = Path(out_dir or cfg.run_dir / "best")
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"Selection: {sel.sentence}.")
    if sel.is_oracle:
        print("  WARNING: an oracle selection; results of these configurations are not zero-shot.")
    written: dict[str, Path] = {}
    why_none: dict[str, str] = {}
    for method in cfg.methods:
        mine = [r for r in runs if r.method == method]
        usable = _usable(mine, metric)
        if not usable:
            why_none[method] = no_eligible_reason(mine, metric)
            print(f"  {method:8s} {why_none[method]}; nothing written")
            continue
        top = _top(usable, metric, cfg.search.mode)
        spec = TrialSpec.model_validate(yaml.safe_load(store.text(top.run_id, "trial_config.yaml")))
        rule = (f"{cfg.search.mode} of {metric} ({sel.label}; at each trial's selected checkpoint) over the "
                f"{len(usable)} eligible of {len(mine)} trials of the '{method}' study (budget "
                f"{budget.get(method, '?')} trials; trials stopped early by ASHA, failed or without the metric "
                "are not eligible)")
        selection = {"rule": rule, "metric": metric, "label": sel.label, "kind": sel.kind,
                     "value": top.metrics[metric], "sweep": cfg.name,
                     "sweep_run_id": sweep_id, "trial_run_id": top.run_id,
                     "tune_trial_id": top.tags.get("lfmlf.tune_trial_id", ""),
                     "optuna_trial": top.tags.get("lfmlf.optuna_trial", ""), "budget": budget.get(method),
                     "tracking_uri": redact(uri)}
        path = out_dir / f"{method}.yaml"
        path.write_text(_header(selection) + yaml.safe_dump(redact_data(configuration(cfg, spec, selection)),
                                                            sort_keys=False,
                                                            allow_unicode=True), encoding="utf-8")
        written[method] = path
        width = max(8, *(len(m) for m in cfg.methods))
        print(f"  {method:{width}s} {metric} = {top.metrics[metric]:.4f}  (run {top.run_id})  -> {path}")
    left = sweep_left_out([r for r in runs if r.method in cfg.methods], metric)
    if left:
        print(f"Not eligible ({len(left)}):")
        for line in left:
            print(f"  {line}")
    if not written:
        raise SweepError(f"sweep '{cfg.name}' has no eligible trial to pick from ("
                         + "; ".join(f"{m}: {why}" for m, why in why_none.items())
                         + f"). Fix: check its runs in MLflow ({uri}); failed trials keep their error as the tag "
                         "lfmlf.error; trials stopped early by ASHA are never selected.")
    return written


_STEPS = ("perf/steps_per_s",)   # a history logged at every evaluation: where a stopped trial stopped


def _check_metric_exists(metric: str, runs: list) -> None:
    """A selection metric no trial logged is a typo, not "no finished trial": name it, suggest the closest
    logged key and list the selectable ones (the ``best/`` family)."""
    logged = sorted({k for r in runs for k in r.metrics})
    if not runs or metric in logged:
        return
    close = difflib.get_close_matches(metric, logged, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    choices = [k for k in logged if k.startswith("best/") and k.count("/") >= 3 and k.endswith(("/avg", "/min"))]
    raise SweepError(f"no trial of this sweep logged the metric '{metric}'. Fix: {hint}selectable keys: "
                     f"{', '.join(choices[:20]) or ', '.join(logged[:20])}.")


def _metric(cfg: SweepConfig, metric: str | None) -> str:
    """``--metric`` (``{metric}`` filled in with the task's metric), else the sweep's search metric."""
    if not metric:
        return search_metric(cfg)
    return metric.replace("{metric}", TASKS[cfg.task.name].metric)


def configuration(cfg: SweepConfig, spec: TrialSpec, selection: dict[str, Any]) -> dict[str, Any]:
    """A one-method, one-source-set configuration file for a trial of ``cfg`` (paths already absolute)."""
    dump = spec.model_dump(mode="json")
    return {
        "name": f"{cfg.name}-{spec.method}",
        "output_dir": cfg.storage_location,   # a rerun's results go next to the sweep's (same storage)
        "task": dump["task"], "model": dump["model"],
        "languages": {"sources": list(spec.sources), "targets": list(spec.targets)},
        "train": dump["train"], "unlabelled": dump["unlabelled"], "probe": dump["probe"],
        "methods": {spec.method: {"params": dict(spec.method_params),
                                  **({"method": spec.algorithm} if spec.algorithm else {})}},
        "search": {"num_samples": 1, "max_concurrent": cfg.search.max_concurrent, "metric": cfg.search.metric,
                   "mode": cfg.search.mode, "scheduler": {"name": "none"}},
        "resources": cfg.resources.model_dump(mode="json"), "tracking": cfg.tracking.model_dump(mode="json"),
        "ray": cfg.ray.model_dump(mode="json"),
        "selection": selection,
    }


def _header(selection: dict[str, Any]) -> str:
    oracle = ("# ORACLE: selected on target-language data; results of this configuration are not zero-shot.\n"
              if selection.get("kind") == "oracle" else "")
    return (f"# Written by `lfmlf best` from sweep '{selection['sweep']}' (MLflow run {selection['sweep_run_id']}).\n"
            f"# Selected: {selection['rule']}.\n" + oracle +
            "# Run it:  lfmlf train THIS.yaml   |   lfmlf rerun THIS.yaml [OTHER.yaml ...] --seeds 3\n")


def load_configuration(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    """A configuration file for ``train``/``rerun``: a sweep file with exactly one method."""
    cfg = load_checked(path, overrides or [])
    if len(cfg.methods) != 1:
        raise SweepError(f"{path}: lists {len(cfg.methods)} methods ({', '.join(cfg.methods)}); a configuration "
                         "for train/rerun has exactly one. Fix: use a file written by `lfmlf best`, or keep one "
                         "method under 'methods'.")
    return cfg


# ----------------------------------------------------------------------------------------------- train
def train(cfg: SweepConfig, tracking_uri: str | None = None, seed: int | None = None,
          save: Path | str | None = None) -> dict[str, float]:
    """Run one configuration in this process (no Ray, no search), tracked as one MLflow run (role train)
    with the same params, tags and metrics as a trial run. Returns the last evaluation's metrics. With
    ``save``, writes the selected evaluation's model there as ``lfmlf export`` does (and the averaged one
    to ``<save>-averaged`` when ``train.average_last`` is set) and logs it to the run under ``model/``."""
    method = next(iter(cfg.methods))
    spec = trial_spec(cfg, {"method": method, **({"seed": seed} if seed is not None else {})})
    if save is not None:
        check_out(save)   # refused before training, not after
        if spec.train.average_last:
            check_out(Path(save).with_name(Path(save).name + "-averaged"))
    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    selection = {f"lfmlf.selected.{k}": str(v) for k, v in (cfg.selection or {}).items() if k.endswith("run_id")}
    tracker = start_run(uri, cfg.tracking.experiment, f"train-{cfg.name}-seed{spec.train.seed}", "train",
                        spec.flat_params(), {**run_tags(spec), "lfmlf.seed": str(spec.train.seed), **selection})
    run_id = tracker.parent_id or ""
    record_start(tracker, run_id, spec)
    metrics: dict[str, float] = {}
    status = "FAILED"
    last = None
    try:
        for evaluation in fit(spec):
            metrics, last = evaluation.metrics, evaluation
            record_evaluation(tracker, run_id, metrics, evaluation.step)
            print(f"step {evaluation.step}: " + "  ".join(f"{k} {metrics[k]:.4f}" for k in sorted(metrics)
                                                         if k.endswith("/avg") and not k.startswith("best/")))
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        record_end(tracker, run_id, metrics, max_steps=spec.train.max_steps)
        tracker.finish_sweep(status)
    print(f"MLflow run {run_id} in {uri}")
    if save is not None and last is not None:
        _save_trained(last.state(), Path(save), uri, cfg, run_id)
    return metrics


def _save_trained(state: dict[str, Any], out: Path, uri: str, cfg: SweepConfig, run_id: str) -> None:
    """``train --save``: the run's selected model (and its averaged one) as ``lfmlf export`` writes it."""
    store = RunStore(uri, cfg.tracking.experiment)
    provenance = {"run_id": run_id, "tracking_uri": redact(uri), "selection": cfg.selection}
    for averaged, folder in ((False, out), (True, out.with_name(out.name + "-averaged"))):
        if averaged and not state.get("recent"):
            continue
        write_model(folder, state, averaged=averaged, provenance=dict(provenance))
        log_model(store, run_id, folder, averaged)
        print(f"Saved the {'averaged' if averaged else 'selected'} model to {folder} (MLflow run {run_id}, "
              f"{'model_averaged' if averaged else 'model'}/)")


# ----------------------------------------------------------------------------------------------- interpolate
def interpolate(cfg: SweepConfig, tracking_uri: str | None = None, run_ids: list[str] | None = None,
                methods: list[str] | None = None, all_trials: bool = False, alphas: tuple[float, ...] | None = None,
                metric: str | None = None, device: str = "auto") -> Outcome:
    """``lfmlf interpolate``: score runs' selected checkpoints at theta0 + alpha (theta - theta0) and log each
    point as a run of method ``interp:<method>`` (:mod:`lfmlf.interpolate`). The runs: ``run_ids`` as given,
    else each method's best eligible trial of the sweep by ``metric`` (default the search metric), as
    ``lfmlf best`` picks it, or with ``all_trials`` every eligible trial; ``methods`` narrows the methods."""
    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    store = RunStore(uri, cfg.tracking.experiment)
    unknown = [m for m in methods or [] if m not in cfg.methods]
    if unknown:
        raise SweepError(f"--method {', '.join(unknown)}: not a method of sweep '{cfg.name}'. Fix: use one of "
                         f"{', '.join(cfg.methods)}.")
    if run_ids and methods:
        raise SweepError("--run and --method both given: --method chooses among the sweep's trials, --run names "
                         "them. Fix: pass one of them.")
    if not run_ids:
        run_ids = _interpolation_sources(cfg, store, uri, list(methods or cfg.methods), all_trials, metric)
    tracker = SweepTracker(uri, cfg.tracking.experiment)
    return interpolate_runs(store, tracker, run_ids, alphas or DEFAULT_ALPHAS, storage=cfg.storage_location,
                            device=device)


def _interpolation_sources(cfg: SweepConfig, store: RunStore, uri: str, methods: list[str], all_trials: bool,
                           metric: str | None) -> list[str]:
    """The sweep's runs to interpolate: each method's best eligible trial by ``metric``, or all eligible ones."""
    sweep_id = store.sweep_run(cfg.storage_location)
    if sweep_id is None:
        raise SweepError(f"no sweep run of {redact(cfg.storage_location)} in MLflow store {redact(uri)}. Fix: run "
                         "`lfmlf sweep` first, pass the --tracking-uri and --output-dir it used, or pass --run RUN_ID.")
    metric = _metric(cfg, metric)
    runs = store.children(sweep_id)
    _check_metric_exists(metric, runs)
    chosen = []
    for method in methods:
        mine = [r for r in runs if r.method == method]
        usable = _usable(mine, metric)
        if not usable:
            print(f"  {method:8s} {no_eligible_reason(mine, metric)}; not interpolated")
            continue
        picked = usable if all_trials else [_top(usable, metric, cfg.search.mode)]
        print(f"  {method:8s} " + ("every eligible trial" if all_trials else f"best trial by {metric}")
              + f": {', '.join(r.run_id for r in picked)}")
        chosen += [r.run_id for r in picked]
    if not chosen:
        raise SweepError(f"sweep '{cfg.name}' has no eligible trial of {', '.join(methods)} to interpolate. Fix: "
                         "check its runs in MLflow; failed and early-stopped trials are never picked.")
    return chosen


# ----------------------------------------------------------------------------------------------- report
def report(cfg: SweepConfig, tracking_uri: str | None = None, rerun_id: str | None = None,
           out_dir: Path | None = None, metric: str | None = None, oracle: bool = False,
           group_by: str | None = None, hv_ref: tuple[float, float] | None = None,
           forgetting_at: list[float] | None = None, command: str | None = None) -> list[Path]:
    """Tables (Markdown, LaTeX, CSV) and plots of a sweep and its rerun, written to ``out_dir`` and logged
    to MLflow (on the rerun's run, else the sweep's) under ``report/``. The table comes from the rerun
    (mean ± std over seeds); without a rerun, from each method's best eligible sweep trial (one seed, said so).

    The selection metric is the one ``lfmlf best`` recorded in the rerun's configurations, else ``metric``,
    else the sweep's search metric; its label goes into the caption. Every method of the sweep is shown:
    one without an eligible trial (or rerun run) gets an empty row with the reason. ``oracle`` adds, per
    method, the sweep trial with the best target-language score as a marked reference row, and notes what
    the zero-shot-faithful selection costs against it. Runs that logged a checkpoint average
    (``train.average_last``: ``avg/*`` metrics) add a selection-free row per method, ``"mlf (averaged last 3)"``,
    over the same counted runs (:func:`lfmlf.report.build_table`).

    ``group_by`` ("script" or "family") adds group-average columns and groups the bars and the per-language
    retrieval table. The "Fronts" section (:mod:`lfmlf.report.fronts`) is built from the sweep's trials, the
    rerun's runs and their ``lfmlf interpolate`` points; ``hv_ref`` (zero-shot, drop) and ``forgetting_at``
    (budgets) are in the table's units."""
    uri = resolve_uri(tracking_uri, cfg.tracking.uri)
    store = RunStore(uri, cfg.tracking.experiment)
    sweep_id = store.sweep_run(cfg.storage_location)
    if sweep_id is None:
        raise SweepError(f"no sweep run of {cfg.storage_location} in MLflow store {uri}. Fix: run `lfmlf sweep` first, "
                         "or pass the --tracking-uri it used.")
    task_metric = TASKS[cfg.task.name].metric
    split = cfg.task.target_split
    rerun_id = rerun_id or next(iter(store.reruns_of(sweep_id)), None)
    # multiplier histories (one MLflow query per metric and run) only where the multipliers plot reads them
    lambdas = ("lfmlf/lambda/",)
    children = store.children(sweep_id, histories=_STEPS + (() if rerun_id else lambdas))
    rerun_children: list = []
    sweep_runs = [r for r in children if r.method in cfg.methods]
    budget = _budget(store, sweep_id, cfg)
    recorded = _recorded_metrics(store, rerun_id) if rerun_id else {}
    # an oracle among them comes first, so that the table is marked as one (never silently)
    selected_on = sorted(set(recorded.values()), key=lambda k: (not selection_label(k).is_oracle, k)) \
        or [_metric(cfg, metric)]
    if metric and recorded and set(recorded.values()) != {_metric(cfg, metric)}:
        print(f"lfmlf: --metric {metric} ignored: the rerun's configurations were selected on "
              f"{', '.join(selected_on)} (lfmlf best).")
    sel = selection_label(selected_on[0], split)
    by = "; ".join(f"{m} ({selection_label(m, split).label})" for m in selected_on)
    sha = store.tags(sweep_id).get("lfmlf.git_sha", "unknown")
    provenance = [f"sweep '{cfg.name}': MLflow run {sweep_id} in {redact(uri)}, code at git {sha}"]
    if command:   # how this page was made, to make it again
        provenance.append(f"report: `{command}`")
    if rerun_id is not None:
        rerun_children = store.children(rerun_id, histories=lambdas)
        table_runs = [r for r in rerun_children if r.method in cfg.methods]   # interp:<method> points: fronts only
        seeds = sorted({r.seed for r in table_runs if r.seed is not None})
        rule = f"each method's best eligible trial by {by} in its Optuna study, re-run with {len(seeds)} seeds"
        rerun_sha = store.tags(rerun_id).get("lfmlf.git_sha", "unknown")
        provenance.append(f"rerun: MLflow run {rerun_id}, code at git {rerun_sha}")
    else:
        table_runs = _best_trials(sweep_runs, sel.metric, cfg.search.mode)
        rule = (f"each method's best eligible trial by {by} in its Optuna study; one seed (no rerun found: "
                "`lfmlf rerun` the files of `lfmlf best` for mean ± std)")
    why_missing = _why_missing(cfg, sweep_runs, table_runs, recorded, sel.metric, rerun_id is not None)
    oracle_runs, okey = [], oracle_metric(task_metric)
    osel = selection_label(okey, split)
    if oracle and len(selected_on) == 1 and sel.is_oracle:
        print("lfmlf: --oracle adds nothing: the table's rows are already selected on target-language data.")
    elif oracle:
        oracle_runs = _best_trials(sweep_runs, okey, "max")
    groups = language_groups(list(cfg.languages.targets), group_by) if group_by else None
    table = build_table(table_runs, task_metric=task_metric, targets=list(cfg.languages.targets), budget=budget,
                        selection_rule=rule, selection=sel, methods=list(cfg.methods), why_missing=why_missing,
                        oracle_runs=oracle_runs, oracle_selection=osel if oracle_runs else None,
                        provenance=provenance, groups=groups, group_by=group_by or "")
    if oracle_runs:
        table.notes.extend(selection_cost(_best_trials(sweep_runs, sel.metric, cfg.search.mode), oracle_runs, okey,
                                          table.scale, table.digits))
    out = Path(out_dir or cfg.run_dir / "report")
    excluded = sweep_left_out(sweep_runs, sel.metric)
    front_runs = _front_runs(cfg, children, rerun_children if rerun_id else [])
    fronts = build_fronts(front_runs, task_metric, list(cfg.methods), hv_ref=hv_ref, budgets=forgetting_at,
                          scale=table.scale, digits=table.digits)
    pngs = _plots(table, sweep_runs, front_runs, table_runs if rerun_id else sweep_runs, out, task_metric,
                  list(cfg.languages.targets))
    sections = _sections(table, fronts, out, group_by)
    pngs += _source_effects(sections, sweep_runs, cfg, task_metric, table, out)
    files = write_report(table, out, _importances(store, sweep_id, sweep_runs, cfg), excluded, sections)
    if fronts.configs:   # every configuration at full precision, for plots and tables of one's own
        files.append(out / "fronts.csv")
        files[-1].write_text(fronts_csv(fronts), encoding="utf-8")
    written = files + pngs
    store.log_files(rerun_id or sweep_id, written, "report")
    print(f"Report of '{cfg.name}' ({'rerun ' + rerun_id if rerun_id else 'sweep best trials'}) in {out}:")
    print(f"  selection: {sel.sentence}" + (" [ORACLE: not zero-shot]" if sel.is_oracle else ""))
    _print_written(written, out, table, merge_left_out(table.left_out, excluded))
    _print_fronts(fronts)
    return written


def _front_runs(cfg: SweepConfig, sweep_children: list, rerun_runs: list) -> list:
    """The runs the fronts are drawn from: the sweep's trials, the rerun's runs, and the ``lfmlf interpolate``
    points (method ``interp:<method>``) of either, for the sweep's methods."""
    ours = set(cfg.methods) | {f"interp:{m}" for m in cfg.methods}
    return [r for r in [*sweep_children, *rerun_runs] if r.method in ours]


def _sections(table: Table, fronts: Fronts, out: Path, group_by: str | None) -> list[Section]:
    """The report's sections after the results table, in order: the fronts, then the probe's retrieval per
    language of the table's rows. A new section is one more entry here (:class:`lfmlf.report.Section`)."""
    sections = [Section("Fronts: forgetting versus zero-shot transfer", fronts_markdown(fronts),
                        (out / "forgetting_vs_zero_shot.png",) if (out / "forgetting_vs_zero_shot.png").exists()
                        else ())]
    drops = retrieval_by_language({row: table.row_runs[row] for row in table.rows}, group_by)
    if drops:
        sections.append(Section("Forgetting probe per language", drops))
    return sections


def _source_effects(sections: list[Section], sweep_runs: list, cfg: SweepConfig, task_metric: str, table: Table,
                    out: Path) -> list[Path]:
    """Append the "Source-language effects" section when the sweep searched source sets (more than one among
    its counted trials) and return its figure (:func:`lfmlf.report.effects.effects_section`)."""
    md, figs = effects_section(sweep_runs, task_metric, list(cfg.languages.targets), out,
                               sources=list(cfg.languages.sources), scale=table.scale, digits=table.digits)
    if md:
        sections.append(Section(EFFECTS_TITLE, md, tuple(figs)))
    return figs


def _print_fronts(fronts: Fronts) -> None:
    """One line per method (hypervolume and its interval), then the dominance statements."""
    if not fronts.configs:
        return
    area = fronts.scale
    print(f"Fronts (forgetting drop vs zero-shot average; hypervolume × {area:g}):")
    for m in fronts.methods:
        if m not in fronts.configs:
            print(f"  {m:8s} no counted run with both metrics")
        elif m not in fronts.hv:
            print(f"  {m:8s} {len(fronts.fronts[m])} on the front; {fronts.why_no_hv}")
        else:
            iv = fronts.intervals[m]
            ci = iv.why_none or f"95% [{iv.low * area:.{fronts.digits}f}, {iv.high * area:.{fronts.digits}f}]"
            print(f"  {m:8s} HV {fronts.hv[m] * area:.{fronts.digits}f} ({ci}), {len(fronts.fronts[m])} of "
                  f"{len(fronts.configs[m])} configurations on the front")
    for c in fronts.comparisons:
        print(f"  {statement(c, fronts.scale, fronts.digits)}")


def _why_missing(cfg: SweepConfig, sweep_runs: list, table_runs: list, recorded: dict[str, str], metric: str,
                 rerun: bool) -> dict[str, str]:
    """method -> why it has no row: no eligible sweep trial (by its selection metric), or not re-run."""
    why: dict[str, str] = {}
    for m in cfg.methods:
        mine, on = [r for r in sweep_runs if r.method == m], recorded.get(m, metric)
        if not _usable(mine, on):
            why[m] = no_eligible_reason(mine, on)
        elif rerun and not any(r.method == m for r in table_runs):
            why[m] = "not in the rerun (`lfmlf rerun` its file from `lfmlf best`)"
    return why


def _importances(store: RunStore, sweep_id: str, sweep_runs: list, cfg: SweepConfig) -> dict[str, Importance]:
    """method -> its study's parameter importances (trials ASHA stopped left out, as the study marks them)."""
    importances = {}
    tags = store.tags(sweep_id)
    for m in cfg.methods:
        name = tags.get(f"lfmlf.optuna_study.{m}")
        if name and tags.get("lfmlf.optuna_storage"):
            stopped = {int(r.tags["lfmlf.optuna_trial"]) for r in sweep_runs if r.method == m and r.stopped_early
                       and r.tags.get("lfmlf.optuna_trial", "").isdigit()}
            try:
                importances[m] = Importance.from_summary(study_summary(tags["lfmlf.optuna_storage"], name, stopped))
            except KeyError:
                print(f"lfmlf: Optuna study {name} not found in {tags['lfmlf.optuna_storage']}; no importances for {m}")
    return importances


_SKIPPED_PLOTS = {"forgetting_vs_zero_shot.png": "no run logged a forgetting probe (add a `probe` section)",
                  "lfmlf_multipliers.png": "no LF-MLF run with multipliers"}


def _plots(table: Table, sweep_runs: list, front_runs: list, multiplier_runs: list, out: Path, task_metric: str,
           targets: list[str]) -> list[Path]:
    """The report's figures that have data (a figure without any is skipped, and said so by _print_written)."""
    stale = out / "forgetting_vs_zero_shot.png"   # an earlier report's figure must not be linked as this one's
    stale.unlink(missing_ok=True)
    pngs = [plots.language_bars(table, out / "languages.png"),
            plots.forgetting_vs_zero_shot(front_runs, stale, task_metric),
            plots.source_set_heatmap(sweep_runs, out / "source_sets.png", task_metric, targets, scale=table.scale,
                                     digits=table.digits),
            plots.multipliers_over_steps(multiplier_runs, out / "lfmlf_multipliers.png")]
    return [p for p in pngs if p is not None]


def _print_written(written: list[Path], out: Path, table: Table, left: list[str]) -> None:
    for p in written:
        print(f"  {p}")
    for name, why in _SKIPPED_PLOTS.items():
        if not (out / name).exists():
            print(f"  (no {name}: {why})")
    if table.averaged_rows:
        print("  selection-free rows (checkpoint averaging, avg/*): " + ", ".join(table.averaged_rows))
    for method, why in table.missing.items():
        print(f"  {method}: {why}")
    if left:
        print(f"Left out ({len(left)}):")
        for line in left:
            print(f"  {line}")


def _recorded_metrics(store, rerun_id: str) -> dict[str, str]:
    """method -> the metric ``lfmlf best`` selected its configuration on, from the rerun's configurations."""
    out: dict[str, str] = {}
    for key in filter(None, store.params(rerun_id).get("configs", "").split(",")):
        try:
            conf = yaml.safe_load(store.text(rerun_id, f"configs/{key}.yaml")) or {}
        except Exception as e:
            print(f"lfmlf: rerun configuration {key} not readable ({type(e).__name__}); its selection metric is "
                  "taken to be the sweep's")
            continue
        picked = (conf.get("selection") or {}).get("metric")
        if picked and conf.get("methods"):
            out[next(iter(conf["methods"]))] = str(picked)
    return out


def _budget(store, sweep_id: str, cfg: SweepConfig) -> dict[str, int]:
    """Trials per method as the sweep recorded them (``--set search.num_samples`` may have changed it)."""
    params = store.params(sweep_id)
    return {m: int(params.get(f"budget.{m}", cfg.search.num_samples)) for m in cfg.methods}


def _usable(runs: list, metric: str) -> list:
    """The eligible runs: FINISHED, not stopped early by ASHA, with a finite ``metric`` (what a selection may
    pick from; :func:`lfmlf.report.exclusion` says why another is not)."""
    return [r for r in runs if exclusion(r, metric) is None]


def _top(runs: list, metric: str, mode: str):
    """The run with the best ``metric`` (``mode`` max or min); the first of equals (runs come oldest first)."""
    sign = 1.0 if mode == "max" else -1.0
    return max(runs, key=lambda r: sign * r.metrics[metric])


def _best_trials(runs: list, metric: str, mode: str) -> list:
    """Each method's best eligible trial by ``metric`` (the table's rows when there is no rerun), by the
    same rule as ``best``: failed and early-stopped trials are never picked."""
    out = []
    for method in dict.fromkeys(r.method for r in runs):
        usable = _usable([r for r in runs if r.method == method], metric)
        if usable:
            out.append(_top(usable, metric, mode))
    return out
