"""``lfmlf interpolate``: the weight-interpolation baseline (WiSE-FT, Wortsman et al. 2022) of a finished run.

A run's selected checkpoint (the weights behind its ``best/*`` scores, kept in its checkpoint dict) is moved
back toward theta0 along a grid of ``alpha``::

    encoder  = theta0 + alpha * (theta - theta0)     (every trainable pre-trained encoder parameter)
    head     = the run's fine-tuned head, unchanged   (at every alpha)

and scored at each alpha with the trial's own evaluation (source dev, target zero-shot, the forgetting
probe). This gives a whole zero-shot/forgetting front from one finished run, without training.

The task head is new (it has no theta0), so there is no zero-shot head to interpolate toward as WiSE-FT
has; it is kept fine-tuned. The consequence: at ``alpha = 0`` the encoder is exactly theta0, so the probe,
which reads only the encoder, gives exactly theta0's scores (``retrieval_drop`` 0), while the task scores
are those of theta0's encoder under the trained head (not a model anyone trained). At ``alpha = 1`` the
model is the run's selected one, and every score is the run's ``best/*`` (to float precision).

The blend is computed in float64 as ``(1 - alpha) * theta0 + alpha * theta`` (the same line), which is
bitwise theta0 at 0 and bitwise theta at 1, and cast back to each parameter's dtype.

Each (run, alpha) point is logged as an MLflow child run next to its source run (under the same sweep or
rerun run), as a method of its own, ``interp:<method>``, with param ``alpha`` and the metrics a trial logs
(``best/zero_shot/...``, ``best/source/...``, ``best/forgetting/...``, ``best/step`` = the source's selected
step), so a report can treat each point like a trial. Points are found again by their tags
(``lfmlf.interp.source_run``, ``lfmlf.interp.alpha``): a rerun skips the ones already FINISHED.

Imports no MLflow, Ray or Optuna: runs are read and written through :mod:`lfmlf.tracking` and
:mod:`lfmlf.trial_record`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lfmlf.config import TrialSpec
from lfmlf.device import pick_device
from lfmlf.errors import SweepError, UserError
from lfmlf.evaluation import add_probe, evaluate
from lfmlf.export import check_against_run, kept_weights, load_kept_weights, read_checkpoint, trial_folders
from lfmlf.loop import build_model, build_probe
from lfmlf.report import RunRecord
from lfmlf.storage import redact
from lfmlf.tracking import RunStore, SweepTracker
from lfmlf.trial_record import record_end, record_evaluation, record_start, run_tags

DEFAULT_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
METHOD_PREFIX = "interp:"
ROLE = "interpolate"
SOURCE_TAG = "lfmlf.interp.source_run"
ALPHA_TAG = "lfmlf.interp.alpha"
#: the metric families a point logs (as ``best/<key>`` and as the last evaluation's ``<key>``)
SCORED = ("zero_shot/", "source/", "forgetting/")


# ------------------------------------------------------------------------------------ the alpha grid
def alpha_key(alpha: float) -> str:
    """The canonical spelling of an alpha (param, tag, run name): ``0``, ``0.25``, ``1``."""
    return f"{alpha:.6g}"


def parse_alphas(text: str) -> tuple[float, ...]:
    """``--alphas 0,0.25,0.5``: finite numbers, comma-separated, no duplicates, in the order given. Values
    outside [0, 1] extrapolate (allowed, as in WiSE-FT's plots). A bad list is a UserError naming the fix."""
    out: list[float] = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            raise UserError(f"--alphas {text!r}: {part!r} is not a number. Fix: pass comma-separated numbers, "
                            "e.g. --alphas 0,0.25,0.5,0.75,1.") from None
        if not math.isfinite(value):
            raise UserError(f"--alphas {text!r}: {part} is not finite. Fix: pass numbers such as 0,0.5,1.")
        if alpha_key(value) in {alpha_key(a) for a in out}:
            raise UserError(f"--alphas {text!r}: {part} is given twice. Fix: list each alpha once.")
        out.append(value)
    return tuple(out)


# ------------------------------------------------------------------------------------ the weights
def blend(theta0: torch.Tensor, theta: torch.Tensor, alpha: float) -> torch.Tensor:
    """theta0 + alpha (theta - theta0), computed in float64 as (1 - alpha) theta0 + alpha theta (exactly
    theta0 at alpha 0 and theta at alpha 1) and cast to ``theta``'s dtype."""
    mixed = (1.0 - alpha) * theta0.to(torch.float64) + alpha * theta.to(torch.float64)
    return mixed.to(theta.dtype)


class Interpolation:
    """A run's model rebuilt from its checkpoint dict, ready to be scored at any alpha.

    Built once per run (the model at theta0, the probe and its theta0 scores, then the selected weights,
    with the tokenizer and parameter checks of ``lfmlf export``); :meth:`weights` and :meth:`scores` are
    then called once per alpha."""

    def __init__(self, state: Mapping[str, Any], device: str | torch.device = "cpu") -> None:
        self.spec = TrialSpec.model_validate(state["spec"])
        self.device = pick_device(device) if isinstance(device, str) else device
        self.step = int(state["best"]["step"])
        _, theta = kept_weights(state, averaged=False)
        self.task, self.model = build_model(self.spec, self.device)
        self.probe = build_probe(self.spec, self.model, self.task.tokenizer, self.device)   # at theta0
        self.encoder_names = [n for n, _ in self.model.pretrained_parameters()]
        params = dict(self.model.named_parameters())
        self.theta0 = {n: params[n].detach().to("cpu", copy=True) for n in self.encoder_names}
        load_kept_weights(self.model, self.task.tokenizer, theta, state, self.spec.model.name_or_path)
        heads = {n for n, _ in self.model.head_parameters()}
        other = set(theta) - heads - set(self.encoder_names)
        if other:
            raise SweepError(f"the checkpoint trains parameters that are neither the encoder's nor the task head's "
                             f"({sorted(other)[:3]}); interpolate cannot tell which to move toward theta0. Fix: "
                             "interpolate runs of a plain encoder + task head model.")
        self.theta = {k: v.to("cpu") for k, v in theta.items()}

    def weights(self, alpha: float) -> dict[str, torch.Tensor]:
        """The trainable weights at ``alpha``: the encoder's blended (:func:`blend`), the head's the run's."""
        return {n: blend(self.theta0[n], w, alpha) if n in self.theta0 else w.clone() for n, w in self.theta.items()}

    def scores(self, alpha: float) -> dict[str, float]:
        """Source dev, target zero-shot and probe scores of the model at ``alpha`` (the keys a trial's
        evaluation logs: ``source/f1/avg``, ``zero_shot/f1/fr``, ``forgetting/retrieval_drop/avg``, ...)."""
        self.model.load_state_dict(self.weights(alpha), strict=False)
        self.model.eval()
        with torch.random.fork_rng(devices=[]):
            metrics = evaluate(self.task, self.model, self.spec, self.device)
            add_probe(metrics, self.model, self.device, self.probe)
        return metrics


def point_metrics(scores: Mapping[str, float], alpha: float, selected_step: int) -> dict[str, float]:
    """What one (run, alpha) point logs: its scores as ``best/<key>`` (the report's family) and as the last
    evaluation's ``<key>``, ``best/step`` (the source run's selected step) and ``interp/alpha``."""
    kept = {k: float(v) for k, v in scores.items() if k.startswith(SCORED)}
    return {**kept, **{f"best/{k}": v for k, v in kept.items()}, "best/step": float(selected_step),
            "interp/alpha": float(alpha)}


# ------------------------------------------------------------------------------------ finding a checkpoint
def find_checkpoint(source: RunRecord, parent_storage: str | None,
                    storage: str | None) -> tuple[dict[str, Any], str]:
    """(checkpoint dict, location) behind ``source``'s numbers, found as ``lfmlf export`` finds it: its Ray
    folder in the storage its sweep or rerun recorded (``parent_storage``), else in ``storage`` (the sweep
    file's, or ``--output-dir``). Checked against the run's ``best/*``; missing is a SweepError with a fix."""
    folders = list(dict.fromkeys(trial_folders(source.tags, parent_storage) + trial_folders(source.tags, storage)))
    for folder in folders:
        found = read_checkpoint(folder)
        if found is not None:
            check_against_run(found[0], source.metrics, source.run_id)
            return found
    raise SweepError(f"run {source.run_id} ({source.method}) has no kept checkpoint in "
                     f"{', '.join(map(redact, folders)) or 'its storage (the run has no lfmlf.trial_dir tag)'}. "
                     "Fix: run `lfmlf interpolate` where the sweep's storage is visible (pass --output-dir if it "
                     "moved), with the credentials it needs; a run whose checkpoints were deleted cannot be "
                     "interpolated (rerun its configuration with `lfmlf rerun`).")


def check_source(source: RunRecord) -> None:
    """A run that can be interpolated: a FINISHED trial of a sweep or rerun (not a train run, which keeps no
    checkpoint, and not an interpolation point itself)."""
    if source.method.startswith(METHOD_PREFIX) or source.tags.get("lfmlf.role") == ROLE:
        raise UserError(f"run {source.run_id} is itself an interpolation point ({source.method}). Fix: pass the "
                        f"run it was made from ({source.tags.get(SOURCE_TAG, '?')}).")
    if source.tags.get("lfmlf.role") == "train":
        raise UserError(f"run {source.run_id} is an `lfmlf train` run, which keeps no checkpoint. Fix: pass a "
                        "sweep or rerun trial's run id.")
    if source.status != "FINISHED":
        raise UserError(f"run {source.run_id} ({source.method}) is {source.status}, not FINISHED: its checkpoint "
                        "may not be the one behind final scores. Fix: interpolate a finished trial.")
    if not source.tags.get("mlflow.parentRunId"):
        raise UserError(f"run {source.run_id} has no parent sweep or rerun run. Fix: pass a trial's run id.")


# ------------------------------------------------------------------------------------ logging the points
@dataclass
class Outcome:
    """What :func:`interpolate_runs` did: run ids of the points logged, and the (run, alpha) pairs skipped
    because an earlier call had already logged them."""
    logged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    scores: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)   # (source run, alpha) -> metrics


def _point_tags(source: RunRecord, spec: TrialSpec, alpha: float, location: str) -> dict[str, str]:
    tags = {**run_tags(spec), "lfmlf.method": METHOD_PREFIX + source.method, "lfmlf.role": ROLE,
            SOURCE_TAG: source.run_id, ALPHA_TAG: alpha_key(alpha), "lfmlf.interp.checkpoint": redact(location),
            "lfmlf.interp.selected_step": str(int(source.metrics.get("best/step", -1)))}
    if source.seed is not None:
        tags["lfmlf.seed"] = str(source.seed)
    return tags


def interpolate_source(tracker: SweepTracker, source: RunRecord, alphas: Sequence[float], *,
                       parent_storage: str | None, storage: str | None, device: str = "auto",
                       outcome: Outcome | None = None) -> Outcome:
    """Score and log ``source`` at each alpha not yet logged for it (called once per chosen run)."""
    outcome = outcome or Outcome()
    check_source(source)
    parent = source.tags["mlflow.parentRunId"]
    existing = {t.get(ALPHA_TAG, ""): (rid, status)
                for rid, status, t in tracker.derived_runs(parent, {SOURCE_TAG: source.run_id})}
    todo = []
    for alpha in alphas:
        rid, status = existing.get(alpha_key(alpha), ("", ""))
        if status == "FINISHED":
            outcome.skipped.append((source.run_id, alpha_key(alpha)))
        else:
            todo.append((alpha, rid))   # a point an interrupted call left unfinished is done again, in its run
    if not todo:
        return outcome
    state, location = find_checkpoint(source, parent_storage, storage)
    model = Interpolation(state, device)
    params = {**source.params, "method": METHOD_PREFIX + source.method, "interp.source_run": source.run_id}
    for alpha, rid in todo:
        key = alpha_key(alpha)
        tags = _point_tags(source, model.spec, alpha, location)
        if not rid:
            rid = tracker.derived_run(parent, f"interp-{source.method}-{source.run_id[:8]}-a{key}",
                                      {**params, "alpha": key}, tags)
        try:
            record_start(tracker, rid, model.spec)
            metrics = point_metrics(model.scores(alpha), alpha, model.step)
            record_evaluation(tracker, rid, metrics, step=model.step)
            record_end(tracker, rid, {**metrics, "step": float(state["step"])}, max_steps=model.spec.train.max_steps)
        except BaseException as e:
            tracker.set_tags(rid, {"lfmlf.error": f"{type(e).__name__}: {e}"[-4000:]})
            tracker.end_run(rid, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
            raise
        tracker.end_run(rid, "FINISHED")
        outcome.logged.append(rid)
        outcome.scores[(source.run_id, key)] = metrics
    return outcome


def interpolate_runs(store: RunStore, tracker: SweepTracker, run_ids: Sequence[str], alphas: Sequence[float], *,
                     storage: str | None = None, device: str = "auto") -> Outcome:
    """``lfmlf interpolate``'s work once the runs are chosen: each run (a trial's MLflow run id) scored and
    logged at each alpha; prints one line per point and what was skipped."""
    outcome = Outcome()
    task_metric = ""
    for run_id in run_ids:
        source = store.record(run_id)
        parent = source.tags.get("mlflow.parentRunId", "")
        parent_storage = store.tags(parent).get("lfmlf.sweep_dir") if parent else None
        before = len(outcome.skipped)
        interpolate_source(tracker, source, alphas, parent_storage=parent_storage, storage=storage, device=device,
                           outcome=outcome)
        done = [(a, outcome.scores[(run_id, a)]) for a in map(alpha_key, alphas) if (run_id, a) in outcome.scores]
        if done:
            task_metric = task_metric or _task_metric(done[0][1])
            print(f"run {run_id} ({source.method}, {source.source_set}): theta0 + alpha (theta - theta0)")
            for key, m in done:
                print(f"  alpha {key:>5s}  " + "  ".join(f"{k} {m[k]:.4f}" for k in _shown(m, task_metric)))
        skipped = len(outcome.skipped) - before
        if skipped:
            print(f"run {run_id}: {skipped} of {len(alphas)} alphas already logged; skipped")
    print(f"Interpolation: {len(outcome.logged)} point(s) logged, {len(outcome.skipped)} already logged and skipped "
          f"({redact(store.uri)})")
    return outcome


def _task_metric(metrics: Mapping[str, float]) -> str:
    return next((k.split("/")[1] for k in metrics if k.startswith("zero_shot/") and k.endswith("/avg")), "")


def _shown(metrics: Mapping[str, float], task_metric: str) -> list[str]:
    keys = [f"zero_shot/{task_metric}/avg", f"source/{task_metric}/avg", "forgetting/retrieval_drop/avg"]
    return [k for k in keys if k in metrics]
