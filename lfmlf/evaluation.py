"""Scoring a model during training: source-language dev scores (selection), target-language scores
(zero-shot), the forgetting probe's, and the checkpoint average's (``avg/``). Called by :func:`lfmlf.loop.fit`
at every evaluation; imports no Ray, Optuna or MLflow."""
from __future__ import annotations

import torch

from lfmlf.checkpoints import average_weights
from lfmlf.config import TrialSpec
from lfmlf.models import TaskModel
from lfmlf.tasks import Task


def evaluate(task: Task, model: TaskModel, spec: TrialSpec, device: torch.device, *,
             sources: bool = True, targets: bool = True) -> dict[str, float]:
    """Source-language dev scores (model selection) and target-language scores (zero-shot)."""
    bs = spec.train.eval_batch_size
    out: dict[str, float] = {}
    parts = ((("source", spec.sources, "dev"),) if sources else ()) + \
        ((("zero_shot", spec.targets, spec.task.target_split),) if targets else ())
    for prefix, langs, split in parts:
        per_lang = {lang: task.evaluate(model, lang, split, bs, device) for lang in langs}
        for m in per_lang[langs[0]]:   # every score the task returns (QA: em and f1), per language
            scores = [per_lang[lang][m] for lang in langs]
            out.update({f"{prefix}/{m}/{lang}": s for lang, s in zip(langs, scores)})
            out[f"{prefix}/{m}/avg"] = sum(scores) / len(scores)
            out[f"{prefix}/{m}/min"] = min(scores)
    return out


def evaluate_all(task: Task, model: TaskModel, spec: TrialSpec, device: torch.device, probe) -> dict[str, float]:
    """:func:`evaluate`, plus the forgetting probe's scores when there is one (``build_probe``'s result)."""
    metrics = evaluate(task, model, spec, device)
    add_probe(metrics, model, device, probe)
    return metrics


def add_probe(metrics: dict[str, float], model: TaskModel, device: torch.device, probe) -> None:
    """Add the forgetting probe's scores (``build_probe``'s result; None: no probe) to ``metrics``; with
    ``probe.scoring: margin`` also ``forgetting/margin_nonpositive``, the count of scores whose margin
    denominator was not positive (0 for a real encoder; otherwise the margin ranking there is meaningless)."""
    if probe is not None:
        metrics.update(probe[0].metrics(probe[0].measure(model.encoder, device), probe[1]))
        if probe[0].cfg.scoring == "margin":
            metrics["forgetting/margin_nonpositive"] = float(probe[0].stats["margin_nonpositive"])


def averaged_metrics(task: Task, model: TaskModel, spec: TrialSpec, device: torch.device, probe,
                     kept: dict[int, dict[str, torch.Tensor]], recent: list[int], step: int) -> dict[str, float]:
    """Evaluate the mean of the kept weights of the ``recent`` evaluations, then put the current weights
    back; the scores are the ``avg/`` family (selection-free: no dev score picks anything)."""
    model.load_state_dict(average_weights([kept[s] for s in recent]), strict=False)
    try:
        with torch.random.fork_rng(devices=[]):
            scores = evaluate_all(task, model, spec, device, probe)
    finally:
        model.load_state_dict(kept[step], strict=False)
    return {**{f"avg/{k}": v for k, v in scores.items()},
            "avg/checkpoints": float(len(recent)), "avg/first_step": float(recent[0])}
