"""The training loop: one trial, top to bottom. Imports no Ray, Optuna or MLflow.

``fit(spec)`` builds the task data, the model and the method, then trains for ``max_steps`` optimizer
steps and yields an :class:`Evaluation` every ``eval_every`` steps (source-language dev scores for model
selection, target-language scores zero-shot). The caller reports it and may save ``evaluation.state()``,
a plain dict that is enough to resume (pass it back as ``fit(spec, state)``), to audit, and to export
the model behind the numbers: besides the current trainable weights it carries those of the *selected*
evaluation (best source-dev average, whose scores are the ``best/*`` metrics) and, with
``train.average_last`` = k, those of the last k evaluations (checkpoint averaging, ``avg/*`` metrics),
each on the CPU and stored once (:func:`weights_at`, :func:`selected_weights`, :func:`averaged_weights`).
"""
from __future__ import annotations

import math
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from lfmlf.config import TrialSpec
from lfmlf.methods import METHODS, Method, StepObjectives, without_mlm_head
from lfmlf.methods.base import SetupData
from lfmlf.models import MissingMlmHead, TaskModel, load_encoder, tokenizer_digest
from lfmlf.tasks import TASKS, Task
from lfmlf.data.streams import LanguageStream, allocate, language_weights
from lfmlf.data.unlabelled import UnlabelledText, file_texts, unlabelled_stream


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the step, the language and what to change."""


@dataclass
class Evaluation:
    step: int
    metrics: dict[str, float]
    state: Callable[[], dict[str, Any]] = field(repr=False)


# ----------------------------------------------------------------------------------------------- helpers
def pick_device(name: str) -> torch.device:
    """``auto`` -> the GPU Ray assigned to this trial (it is cuda:0 under CUDA_VISIBLE_DEVICES), else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_optimizer(model: TaskModel, spec: TrialSpec) -> torch.optim.Optimizer:
    """AdamW (or SGD) over trainable parameters; no weight decay on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if spec.train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.train.lr)
    return torch.optim.AdamW(groups, lr=spec.train.lr)


def reset_peak_memory(device: torch.device) -> None:
    """Called at the start of every trial: Tune reuses a worker process for the next trial, and a trial's
    peak memory must not be an earlier trial's. Linux resets the process's peak RSS (VmHWM) on request."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass   # elsewhere the figure is the process's peak since it started (ru_maxrss)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this trial so far: allocated CUDA memory, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024   # KiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def setup_data(task: Task, spec: TrialSpec, device: torch.device) -> SetupData:
    """Training micro-batches for a method's one-off use in setup (EWC's Fisher), drawn lazily from streams
    and a generator of their own: the training streams and the RNGs stay untouched, so the trial (and its
    resume) is the same whether or not a method looks."""
    def batches(n: int) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        tc = spec.train
        streams = {lang: LanguageStream(task.train_examples(lang), tc.seed, f"setup/{lang}") for lang in spec.sources}
        weights = language_weights({k: len(s.examples) for k, s in streams.items()}, tc.sampler, tc.temperature)
        rng = torch.Generator().manual_seed(tc.seed + 1)
        micro = max(1, tc.batch_size // tc.grad_accum)
        for _ in range(n):
            yield {lang: {k: v.to(device) for k, v in task.collate(streams[lang].take(m)).items()}
                   for lang, m in allocate(micro, weights, rng).items()}
    return SetupData(batches=batches, loss=task.loss)


def build_model(spec: TrialSpec, device: torch.device, mlm_head: bool = False) -> tuple[Task, TaskModel]:
    """Task data (encoded with the trial's tokenizer) and model (encoder at theta0 + fresh head, + the frozen
    MLM head with ``mlm_head``) of a trial, without its method: what ``build`` trains and what an export
    loads a checkpoint's trainable weights into (the frozen ones come from the model source again)."""
    task = TASKS[spec.task.name](spec.task)
    texts = None
    if spec.model.name_or_path == "tiny":   # its tokenizer is trained on the sweep's own text
        texts = list(task.texts(spec.pool)) + [t for lines in file_texts(spec.unlabelled).values() for t in lines]
    encoder, tokenizer, mlm = load_encoder(spec.model, texts, mlm_head=mlm_head)
    started = time.perf_counter()
    task.prepare(tokenizer, spec.sources, spec.targets)
    task.prep_stats["prepare_s"] = time.perf_counter() - started
    torch.manual_seed(spec.train.seed)
    model = TaskModel(encoder, task.build_head(encoder.config.hidden_size, spec.model.dropout), mlm).to(device)
    return task, model


def build(spec: TrialSpec, device: torch.device) -> tuple[Task, TaskModel, Method]:
    """Task data, model (encoder + fresh head, + the frozen MLM head if the method needs it) and method for
    a trial; the model is at theta0."""
    method = METHODS[spec.method](**spec.method_params)
    try:
        task, model = build_model(spec, device, mlm_head=method.needs().mlm_head)
    except MissingMlmHead as e:
        raise MissingMlmHead(f"{e}, and method '{spec.method}' with parameters {spec.method_params or '{}'} needs "
                             f"one. Fix: {without_mlm_head()}") from None
    method.setup(model, spec.sources, data=setup_data(task, spec, device))
    return task, model, method


def build_unlabelled(spec: TrialSpec, task: Task, method: Method) -> UnlabelledText | None:
    """The unlabelled-text stream the method needs (None for most): the sweep's text files, else the
    task's own source-language text."""
    return unlabelled_stream(spec.unlabelled, method.needs().unlabelled,
                             lambda: {lang: list(task.texts([lang])) for lang in spec.sources},
                             task.tokenizer, spec.train.seed)


def build_probe(spec: TrialSpec, model: TaskModel, tokenizer: Any, device: torch.device):
    """The forgetting probe and its theta0 scores (measured once per model and cached on disk), or None.
    Called right after ``build``, while the model is at theta0 (also on resume, before the state loads)."""
    if spec.probe is None:
        return None
    from lfmlf.probes import RetrievalProbe, model_key

    probe = RetrievalProbe(spec.probe)
    probe.prepare(tokenizer)
    return probe, probe.baseline(model.encoder, device, model_key(spec.model, tokenizer))


def evaluate(task: Task, model: TaskModel, spec: TrialSpec, device: torch.device) -> dict[str, float]:
    """Source-language dev scores (model selection) and target-language scores (zero-shot)."""
    bs = spec.train.eval_batch_size
    out: dict[str, float] = {}
    for prefix, langs, split in (("source", spec.sources, "dev"),
                                 ("zero_shot", spec.targets, spec.task.target_split)):
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
    if probe is not None:
        metrics.update(probe[0].metrics(probe[0].measure(model.encoder, device), probe[1]))
    return metrics


# ----------------------------------------------------------------------------- kept weights, averaging
def cpu_weights(model: TaskModel) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable weights (what an evaluation keeps for export or averaging)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def average_weights(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform mean of state dicts with the same keys (checkpoint averaging, Schmidt et al. 2023),
    summed in float64 and cast back to each tensor's dtype."""
    if not states:
        raise ValueError("nothing to average")
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError("the state dicts to average do not have the same keys")
    return {k: (sum(s[k].to(torch.float64) for s in states) / len(states)).to(states[0][k].dtype) for k in keys}


def weights_at(state: Mapping[str, Any], step: int) -> dict[str, torch.Tensor]:
    """The trainable weights of evaluation ``step`` kept in a checkpoint dict (``evaluation.state()``): the
    current ones at the checkpoint's own step, else those kept for the selection or for averaging."""
    if step == state["step"]:
        return {k: v.to("cpu") for k, v in state["trainable"].items()}   # on the GPU in a live state
    kept = state.get("kept") or {}
    if step not in kept:
        raise KeyError(f"the checkpoint at step {state['step']} keeps no weights of step {step} (it keeps "
                       f"{sorted(kept) or 'none'}; checkpoints written before lfmlf kept selected weights have none)")
    return kept[step]


def selected_weights(state: Mapping[str, Any]) -> tuple[int, dict[str, torch.Tensor]]:
    """(step, trainable weights) of the selected evaluation: the best source-dev average so far, whose
    scores are the ``best/*`` metrics."""
    step = int(state["best"]["step"])
    return step, weights_at(state, step)


def averaged_weights(state: Mapping[str, Any]) -> tuple[list[int], dict[str, torch.Tensor]]:
    """(steps, mean trainable weights) of the last ``train.average_last`` evaluations of a checkpoint."""
    steps = [int(s) for s in state.get("recent") or []]
    if not steps:
        raise KeyError(f"the checkpoint at step {state['step']} keeps no evaluations to average (train.average_last "
                       "was 0)")
    return steps, average_weights([weights_at(state, s) for s in steps])


def _averaged_metrics(task: Task, model: TaskModel, spec: TrialSpec, device: torch.device, probe,
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


@torch.no_grad()
def _losses_now(task: Task, model: TaskModel, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, float]:
    """Source losses on the step's own sub-batches without dropout: measured around the optimizer step at
    evaluation steps, their difference is the realised change of each source loss (what the optimizer
    really did, which AdamW's rescaling can make differ from the direction a method asked for)."""
    model.eval()
    out = {lang: task.loss(model, b)[0].item() for lang, b in batches.items()}
    model.train()
    return out


def _check_finite(losses: dict[str, torch.Tensor], step: int, spec: TrialSpec) -> None:
    for lang, loss in losses.items():
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the {spec.task.name} loss of source language '{lang}' is {loss.item()} at step {step} "
                f"(method {spec.method}, lr {spec.train.lr:g}). Fix: lower the learning rate, keep "
                "train.grad_clip set, or turn off train.bf16. Checkpoints up to the last evaluation are kept.")


# ----------------------------------------------------------------------------------------------- the loop
def fit(spec: TrialSpec, state: dict[str, Any] | None = None) -> Iterator[Evaluation]:
    """Train one configuration; yield an Evaluation every ``eval_every`` steps (resuming from ``state``)."""
    tc = spec.train
    device = pick_device(tc.device)
    reset_peak_memory(device)

    # --- build: data, model at theta0, method (snapshots theta0), optimizer, schedule
    task, model, method = build(spec, device)
    unlabelled = build_unlabelled(spec, task, method)
    probe = build_probe(spec, model, task.tokenizer, device)
    optimizer = build_optimizer(model, spec)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(tc.warmup_ratio * tc.max_steps), tc.max_steps)
    streams = {lang: LanguageStream(task.train_examples(lang), tc.seed, lang) for lang in spec.sources}
    weights = language_weights({k: len(s.examples) for k, s in streams.items()}, tc.sampler, tc.temperature)
    batch_rng = torch.Generator().manual_seed(tc.seed)
    step, best, last = 0, {"score": -math.inf, "metrics": {}}, {}
    kept: dict[int, dict[str, torch.Tensor]] = {}   # step -> trainable weights (CPU) of the selected and recent evals
    recent: list[int] = []                          # the last average_last evaluation steps
    digest = tokenizer_digest(task.tokenizer)       # an export checks it rebuilt exactly this tokenizer

    # --- resume: trainable weights, optimizer, schedule, data positions, RNGs, method counters
    if state is not None:
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        for lang, pos in state["streams"].items():
            streams[lang].restore(pos)
        batch_rng.set_state(state["batch_rng"])
        torch.set_rng_state(state["torch_rng"])
        method.load_state_dict(state["method"])
        if unlabelled is not None:
            unlabelled.restore(state["unlabelled"])
        step, best, last = state["step"], state["best"], state.get("metrics", {})
        recent = [int(s) for s in state.get("recent") or []]
        kept = {int(s): w for s, w in (state.get("kept") or {}).items()}
        if step in recent or step == best.get("step"):
            kept[step] = {k: v.detach().to("cpu", copy=True) for k, v in state["trainable"].items()}

    def snapshot() -> dict[str, Any]:
        return {"step": step, "trainable": model.trainable_state(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "streams": {k: s.state() for k, s in streams.items()},
                "batch_rng": batch_rng.get_state(), "torch_rng": torch.get_rng_state(),
                "method": method.state_dict(), "best": best, "metrics": last,
                "unlabelled": unlabelled.state() if unlabelled is not None else None,
                "kept": {s: w for s, w in kept.items() if s != step},   # the current ones are "trainable"
                "recent": list(recent), "tokenizer": digest, "spec": spec.model_dump(mode="json")}

    # --- a trial killed after its last evaluation but before its end was recorded: report that again
    if step >= tc.max_steps and last:
        yield Evaluation(step=step, metrics=last, state=snapshot)
        return

    # --- train
    window: dict[str, list[float]] = defaultdict(list)
    micro = max(1, tc.batch_size // tc.grad_accum)
    model.train()
    started, steps_in_window = time.perf_counter(), 0
    while step < tc.max_steps:
        optimizer.zero_grad(set_to_none=True)
        for _ in range(tc.grad_accum):
            sizes = allocate(micro, weights, batch_rng)
            batches = {lang: {k: v.to(device) for k, v in task.collate(streams[lang].take(n)).items()}
                       for lang, n in sizes.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.bf16):
                outputs = {lang: task.loss(model, b) for lang, b in batches.items()}
            losses = {lang: out[0] for lang, out in outputs.items()}
            _check_finite(losses, step, spec)
            signals = method.backward(StepObjectives(
                task=losses, hidden={k: o[1] for k, o in outputs.items()}, batches=batches, sizes=sizes,
                grad_scale=1.0 / tc.grad_accum, unlabelled=None if unlabelled is None else unlabelled.batch(device)))
            for lang, loss in losses.items():
                window[f"train/loss/task/{lang}"].append(loss.item())
            for key, value in signals.items():
                window[key].append(value)
        if tc.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], tc.grad_clip)
            if not torch.isfinite(norm):
                _check_finite({"(gradient norm)": norm}, step, spec)
            window["train/grad_norm"].append(float(norm))
        at_eval = (step + 1) % tc.eval_every == 0 or step + 1 == tc.max_steps
        before = _losses_now(task, model, batches) if at_eval else {}
        optimizer.step()
        scheduler.step()
        step += 1
        for lang, after in (_losses_now(task, model, batches) if at_eval else {}).items():
            window[f"train/realised_dloss/{lang}"].append(after - before[lang])
        steps_in_window += 1

        # --- evaluate: source dev (selection) and targets (zero-shot); track the selected checkpoint
        if at_eval:
            elapsed = time.perf_counter() - started
            metrics = evaluate_all(task, model, spec, device, probe)
            metrics.update({k: sum(v) / len(v) for k, v in window.items()})
            metrics.update(method.report())
            score = metrics[f"source/{task.metric}/avg"]
            if score > best["score"]:
                best = {"score": score, "step": step,
                        "metrics": {k: v for k, v in metrics.items()
                                    if k.startswith(("zero_shot/", "source/", "forgetting/"))}}
            # keep the weights an export or the average needs (the selected ones, the last k), on the CPU
            if tc.average_last:
                recent = (recent + [step])[-tc.average_last:]
            if step == best.get("step") or step in recent:
                kept[step] = cpu_weights(model)
            kept = {s: w for s, w in kept.items() if s == best.get("step") or s in recent}
            if tc.average_last and step == tc.max_steps:
                metrics.update(_averaged_metrics(task, model, spec, device, probe, kept, recent, step))
            metrics.update({f"best/{k}": v for k, v in best["metrics"].items()})
            metrics.update({"step": float(step), "eval_step": float(step // tc.eval_every),
                            "best/step": float(best["step"]), "train/lr": scheduler.get_last_lr()[0],
                            "perf/steps_per_s": steps_in_window / elapsed if elapsed > 0 else 0.0,
                            "perf/peak_mem_mb": peak_memory_mb(device),
                            "perf/cuda": float(device.type == "cuda"),   # which device the trial trained on
                            **{f"perf/data_{k}": float(v) for k, v in task.prep_stats.items()}})
            last = metrics
            yield Evaluation(step=step, metrics=metrics, state=snapshot)
            window.clear()
            started, steps_in_window = time.perf_counter(), 0
