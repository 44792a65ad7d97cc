"""The training loop: one trial, top to bottom. Imports no Ray, Optuna or MLflow.

``fit(spec)`` builds the task data, the model and the method, then runs :func:`train_step` ``max_steps``
times and yields an :class:`Evaluation` every ``eval_every`` steps (source-language dev scores for model
selection, target-language scores zero-shot). The caller reports it and may save ``evaluation.state()``,
a plain dict that is enough to resume (pass it back as ``fit(spec, state)``), to audit, and to export the
model behind the numbers: it also keeps the weights of the selected and the averaged evaluations
(:mod:`lfmlf.checkpoints` reads them).
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from lfmlf.checkpoints import cpu_weights
from lfmlf.config import TrialSpec
from lfmlf.data.cache import cache_root, fingerprint
from lfmlf.data.streams import LanguageStream, allocate, language_weights
from lfmlf.data.unlabelled import UnlabelledText, file_texts, unlabelled_stream
from lfmlf.device import peak_memory_mb, pick_device, reset_peak_memory
from lfmlf.evaluation import add_probe, averaged_metrics, evaluate
from lfmlf.methods import METHODS, Method, StepObjectives, without_mlm_head
from lfmlf.methods.base import SetupData, TrainingSet
from lfmlf.models import MissingMlmHead, TaskModel, eval_mode, load_encoder, tokenizer_digest
from lfmlf.probes import RetrievalProbe, model_key
from lfmlf.tasks import TASKS, Task
from lfmlf.tasks.base import by_length


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN/inf; the message names the step, the language and what to change."""


@dataclass
class Evaluation:
    step: int
    metrics: dict[str, float]
    state: Callable[[], dict[str, Any]] = field(repr=False)


# ----------------------------------------------------------------------------------------------- helpers
def build_optimizer(model: TaskModel, spec: TrialSpec) -> torch.optim.Optimizer:
    """AdamW (or SGD) over trainable parameters; no weight decay on biases and LayerNorm weights."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": spec.train.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if spec.train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.train.lr)
    return torch.optim.AdamW(groups, lr=spec.train.lr)


def setup_data(task: Task, spec: TrialSpec, device: torch.device) -> SetupData:
    """Training micro-batches for a method's one-off use in setup (EWC's Fisher), drawn lazily from streams
    and a generator of their own: the training streams and the RNGs stay untouched, so the trial (and its
    resume) is the same whether or not a method looks."""
    def batches(n: int) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        streams, weights = _streams(task, spec, "setup/")
        rng = torch.Generator().manual_seed(spec.train.seed + 1)
        for _ in range(n):
            yield _draw(task, spec, streams, weights, rng, device)[1]
    return SetupData(batches=batches, loss=task.loss, training_sets=lambda: _training_sets(task, spec, device))


def _training_sets(task: Task, spec: TrialSpec, device: torch.device) -> list[TrainingSet]:
    """Called by a distilling objective's setup (through ``SetupData.training_sets``): each source's whole
    training set as right-padded batches by length (collated as the store is filled), keyed by the model's
    theta0 and the language's tokenised examples, for the per-node store of the frozen encoder's states
    (:func:`lfmlf.teacher.precompute`)."""
    theta0 = model_key(spec.model, task.tokenizer)
    settings = spec.task.model_dump(mode="json", exclude={"files", "cache_dir", "target_split"})
    tokenizer = tokenizer_digest(task.tokenizer)

    def one(lang: str) -> TrainingSet:
        examples = task.train_examples(lang)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for idx in by_length(examples, spec.train.eval_batch_size):
                b = task.collate([examples[i] for i in idx])
                yield b["input_ids"].to(device), b["attention_mask"].to(device)
        key = fingerprint(spec.task.name, settings, lang, len(examples), tokenizer)
        return TrainingSet(batches, sum(len(e["input_ids"]) for e in examples), theta0, key,
                           str(cache_root(spec.task.cache_dir)))
    return [one(lang) for lang in spec.sources]


def _streams(task: Task, spec: TrialSpec, name: str = "") -> tuple[dict[str, LanguageStream], dict[str, float]]:
    """One training stream per source language (named ``name + lang``) and the sampler's language weights."""
    tc = spec.train
    streams = {lang: LanguageStream(task.train_examples(lang), tc.seed, f"{name}{lang}") for lang in spec.sources}
    return streams, language_weights({k: len(s.examples) for k, s in streams.items()}, tc.sampler, tc.temperature)


def _draw(task: Task, spec: TrialSpec, streams: Mapping[str, LanguageStream], weights: Mapping[str, float],
          rng: torch.Generator, device: torch.device) -> MicroBatch:
    """One micro-batch: examples per source language (``allocate``: ``train.per_source_batch`` of each, else
    one each plus a draw by the sampler's weights), and each language's collated sub-batch."""
    tc = spec.train
    sizes = allocate(max(1, tc.batch_size // tc.grad_accum), dict(weights), rng, per_source=tc.per_source_batch)
    return sizes, {lang: {k: v.to(device) for k, v in task.collate(streams[lang].take(n)).items()}
                   for lang, n in sizes.items()}


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
    head = task.build_head(encoder.config.hidden_size, spec.model.task_head_dropout)   # model.head_dropout
    model = TaskModel(encoder, head, mlm).to(device)
    return task, model


def build(spec: TrialSpec, device: torch.device) -> tuple[Task, TaskModel, Method]:
    """Task data, model (encoder + fresh head, + the frozen MLM head if the method needs it) and method for
    a trial; the model is at theta0."""
    method = METHODS[spec.registered](**spec.method_params)
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
    probe = RetrievalProbe(spec.probe)
    probe.prepare(tokenizer)
    return probe, probe.baseline(model.encoder, device, model_key(spec.model, tokenizer))


# ------------------------------------------------------------------------------------------ one step
MicroBatch = tuple[dict[str, int], dict[str, dict[str, torch.Tensor]]]   # (examples per source, its sub-batch)


@dataclass
class TrialParts:
    """What :func:`build_parts` builds for a trial and :func:`train_step` trains."""
    spec: TrialSpec
    device: torch.device
    task: Task
    model: TaskModel
    method: Method
    optimizer: torch.optim.Optimizer
    scheduler: Any = None                       # the learning-rate schedule, stepped after the optimizer
    unlabelled: UnlabelledText | None = None    # the method's unlabelled text (MLM objectives), else None
    probe: Any = None                           # build_probe's (probe, theta0 scores), else None


def build_parts(spec: TrialSpec, device: torch.device) -> TrialParts:
    """Everything a trial trains, at theta0: task data, model, method (snapshots theta0), the method's
    unlabelled text, the forgetting probe, the optimizer and the linear warm-up/decay schedule."""
    from transformers import get_linear_schedule_with_warmup  # lazy, as in models.py: a slow import

    task, model, method = build(spec, device)
    unlabelled = build_unlabelled(spec, task, method)
    probe = build_probe(spec, model, task.tokenizer, device)
    optimizer = build_optimizer(model, spec)
    tc = spec.train
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(tc.warmup_ratio * tc.max_steps), tc.max_steps)
    return TrialParts(spec, device, task, model, method, optimizer, scheduler, unlabelled, probe)


@torch.no_grad()
def _losses_now(task: Task, model: TaskModel, batches: dict[str, dict[str, torch.Tensor]]) -> dict[str, float]:
    """Source losses on the step's own sub-batches without dropout: measured around the optimizer step at
    evaluation steps, their difference is the realised change of each source loss (what the optimizer
    really did, which AdamW's rescaling can make differ from the direction a method asked for)."""
    with eval_mode(model):
        return {lang: task.loss(model, b)[0].item() for lang, b in batches.items()}


def _check_finite(losses: dict[str, torch.Tensor], step: int, spec: TrialSpec) -> None:
    for lang, loss in losses.items():
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the {spec.task.name} loss of source language '{lang}' is {loss.item()} at step {step} "
                f"(method {spec.method}, lr {spec.train.lr:g}). Fix: lower the learning rate, keep "
                "train.grad_clip set, or turn off train.bf16. Checkpoints up to the last evaluation are kept.")


def train_step(parts: TrialParts, micro_batches: Iterable[MicroBatch], step: int,
               measure_realised: bool = False) -> dict[str, list[float]]:
    """One optimizer step, the same for :func:`fit` (``max_steps`` times), the method contract tests and
    ``benchmarks/step_cost.py``. It zeroes ``.grad``; for each of the ``train.grad_accum`` micro-batches (on
    the trial's device; ``fit`` draws them lazily) it runs the forward of each source's own sub-batch (bf16
    autocast with ``train.bf16``), checks that the losses are finite (:class:`TrainingDiverged` names
    ``step``, the steps done before this one) and calls ``method.backward``, the method's hook that writes
    ``.grad``; then it clips the gradient norm (``train.grad_clip``), steps the optimizer and the schedule.
    The model must be in training mode. With ``measure_realised`` (evaluation steps) the last micro-batch's
    losses are also measured without dropout before and after the optimizer step.

    Returns the step's training signals, each a list (one value per micro-batch where it is per micro-batch):
    ``train/loss/task/<lang>``, the method's signals, ``train/grad_norm``, ``train/realised_dloss/<lang>``.
    """
    spec, task, model, method, device = parts.spec, parts.task, parts.model, parts.method, parts.device
    tc = spec.train
    signals: dict[str, list[float]] = defaultdict(list)
    batches: dict[str, dict[str, torch.Tensor]] = {}
    parts.optimizer.zero_grad(set_to_none=True)
    for sizes, batches in micro_batches:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.bf16):
            outputs = {lang: task.loss(model, b) for lang, b in batches.items()}
        losses = {lang: out[0] for lang, out in outputs.items()}
        _check_finite(losses, step, spec)
        method_signals = method.backward(StepObjectives(
            task=losses, hidden={k: o[1] for k, o in outputs.items()}, batches=batches, sizes=sizes,
            grad_scale=1.0 / tc.grad_accum,
            unlabelled=None if parts.unlabelled is None else parts.unlabelled.batch(device)))
        for lang, loss in losses.items():
            signals[f"train/loss/task/{lang}"].append(loss.item())
        for key, value in method_signals.items():
            signals[key].append(value)
    if tc.grad_clip is not None:
        norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], tc.grad_clip)
        if not torch.isfinite(norm):
            _check_finite({"(gradient norm)": norm}, step, spec)
        signals["train/grad_norm"].append(float(norm))
    before = _losses_now(task, model, batches) if measure_realised else {}
    parts.optimizer.step()
    if parts.scheduler is not None:
        parts.scheduler.step()
    for lang, after in (_losses_now(task, model, batches) if measure_realised else {}).items():
        signals[f"train/realised_dloss/{lang}"].append(after - before[lang])
    return signals


# ----------------------------------------------------------------------------------------------- the loop
@dataclass
class _Progress:
    """Where a trial stands: data positions and sampler, steps done, the selected evaluation (``best``), the
    last metrics, and the CPU weights of the selected and the last ``average_last`` (``recent``) evaluations."""
    streams: dict[str, LanguageStream]
    weights: dict[str, float]
    batch_rng: torch.Generator
    step: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"score": -math.inf, "metrics": {}})
    last: dict[str, float] = field(default_factory=dict)
    kept: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    recent: list[int] = field(default_factory=list)


def _start(parts: TrialParts, state: dict[str, Any] | None) -> _Progress:
    """The trial's data streams at their start, or everything resumed from a checkpoint dict: trainable
    weights, optimizer, schedule, data positions, RNGs, method counters, selection and kept weights."""
    streams, weights = _streams(parts.task, parts.spec)
    run = _Progress(streams, weights, torch.Generator().manual_seed(parts.spec.train.seed))
    if state is None:
        return run
    parts.model.load_state_dict(state["trainable"], strict=False)
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    for lang, pos in state["streams"].items():
        streams[lang].restore(pos)
    run.batch_rng.set_state(state["batch_rng"])
    torch.set_rng_state(state["torch_rng"])
    parts.method.load_state_dict(state["method"])
    if parts.unlabelled is not None:
        parts.unlabelled.restore(state["unlabelled"])
    run.step, run.best, run.last = state["step"], state["best"], state.get("metrics", {})
    run.recent = [int(s) for s in state.get("recent") or []]
    run.kept = {int(s): w for s, w in (state.get("kept") or {}).items()}
    if run.step in run.recent or run.step == run.best.get("step"):
        run.kept[run.step] = {k: v.detach().to("cpu", copy=True) for k, v in state["trainable"].items()}
    return run


def _checkpoint(parts: TrialParts, run: _Progress, digest: str) -> dict[str, Any]:
    """The checkpoint dict (``Evaluation.state()``): enough to resume, audit and export the trial."""
    return {"step": run.step, "trainable": parts.model.trainable_state(), "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(), "streams": {k: s.state() for k, s in run.streams.items()},
            "batch_rng": run.batch_rng.get_state(), "torch_rng": torch.get_rng_state(),
            "method": parts.method.state_dict(), "best": run.best, "metrics": run.last,
            "unlabelled": parts.unlabelled.state() if parts.unlabelled is not None else None,
            "kept": {s: w for s, w in run.kept.items() if s != run.step},   # the current ones are "trainable"
            "recent": list(run.recent), "tokenizer": digest, "spec": parts.spec.model_dump(mode="json")}


def _micro_batches(parts: TrialParts, run: _Progress) -> Iterator[MicroBatch]:
    """The step's ``grad_accum`` micro-batches, drawn lazily from the trial's streams and sampler."""
    for _ in range(parts.spec.train.grad_accum):
        yield _draw(parts.task, parts.spec, run.streams, run.weights, run.batch_rng, parts.device)


def _evaluation_metrics(parts: TrialParts, run: _Progress, window: Mapping[str, list[float]],
                        steps_per_s: float) -> dict[str, float]:
    """Every metric of the evaluation after step ``run.step``: source dev (selection) and target (zero-shot)
    scores, the probe's, the window's mean training signals, the method's report, the ``best/`` family of the
    selected evaluation, ``avg/`` at the last step, performance. Updates the selection and the kept weights."""
    spec, task, model, device, tc, step = parts.spec, parts.task, parts.model, parts.device, parts.spec.train, run.step
    mode, last = spec.target_eval_mode, step >= tc.max_steps
    clock = [time.perf_counter()]
    metrics = evaluate(task, model, spec, device, targets=False)
    score = metrics[f"source/{task.metric}/avg"]
    improved = score > run.best["score"]
    clock.append(time.perf_counter())
    # the targets where a reader needs them (train.target_eval): at every evaluation; where best/* can select
    # this evaluation and at the last step; or ("selected") once, at the end, on the selected weights
    if mode == "every" or (mode == "improved" and (improved or last)):
        metrics.update(evaluate(task, model, spec, device, sources=False))
    clock.append(time.perf_counter())
    if mode != "selected":
        add_probe(metrics, model, device, parts.probe)
    clock.append(time.perf_counter())
    metrics.update({f"perf/{k}_s": b - a for k, a, b in zip(("eval_source", "eval_target", "probe"), clock, clock[1:])})
    metrics.update({k: sum(v) / len(v) for k, v in window.items()})
    metrics.update(parts.method.report())
    if score > run.best["score"]:
        run.best = {"score": score, "step": step, "metrics": {
            k: v for k, v in metrics.items() if k.startswith(("zero_shot/", "source/", "forgetting/"))}}
    # keep the weights an export or the average needs (the selected ones, the last k), on the CPU
    if tc.average_last:
        run.recent = (run.recent + [step])[-tc.average_last:]
    if step == run.best.get("step") or step in run.recent:
        run.kept[step] = cpu_weights(model)
    run.kept = {s: w for s, w in run.kept.items() if s == run.best.get("step") or s in run.recent}
    if mode == "selected" and last:
        selected = _score_selected(parts, run, metrics)
        run.best["metrics"].update(selected)
        if run.best["step"] == step:
            metrics.update(selected)
    if tc.average_last and step == tc.max_steps:
        metrics.update(averaged_metrics(task, model, spec, device, parts.probe, run.kept, run.recent, step))
    metrics.update({f"best/{k}": v for k, v in run.best["metrics"].items()})
    metrics.update({"step": float(step), "eval_step": float(step // tc.eval_every),
                    "best/step": float(run.best["step"]), "train/lr": parts.scheduler.get_last_lr()[0],
                    "perf/steps_per_s": steps_per_s, "perf/peak_mem_mb": peak_memory_mb(device),
                    "perf/cuda": float(device.type == "cuda"),   # which device the trial trained on
                    **{f"perf/data_{k}": float(v) for k, v in task.prep_stats.items()}})
    run.last = metrics
    return metrics


def _score_selected(parts: TrialParts, run: _Progress, metrics: dict[str, float]) -> dict[str, float]:
    """``train.target_eval: selected``, at the last evaluation: the target and probe scores of the selected
    weights (the current ones when the last evaluation is the selected one, else the kept copy, swapped in
    and back). Their time is added to ``metrics``' perf/eval_target_s and perf/probe_s."""
    spec, model, device = parts.spec, parts.model, parts.device
    current = None
    if run.best["step"] != run.step:
        current = cpu_weights(model)
        model.load_state_dict(run.kept[run.best["step"]], strict=False)
    try:
        with torch.random.fork_rng(devices=[]):
            started = time.perf_counter()
            scores = evaluate(parts.task, model, spec, device, sources=False)
            middle = time.perf_counter()
            add_probe(scores, model, device, parts.probe)
            metrics["perf/eval_target_s"] += middle - started
            metrics["perf/probe_s"] += time.perf_counter() - middle
    finally:
        if current is not None:
            model.load_state_dict(current, strict=False)
    return scores


def fit(spec: TrialSpec, state: dict[str, Any] | None = None) -> Iterator[Evaluation]:
    """Train one configuration; yield an Evaluation every ``eval_every`` steps (resuming from ``state``)."""
    tc = spec.train
    entered = time.perf_counter()
    device = pick_device(tc.device)
    reset_peak_memory(device)

    # --- build: data, model at theta0, method (snapshots theta0), optimizer, schedule; then resume
    parts = build_parts(spec, device)
    run = _start(parts, state)
    digest = tokenizer_digest(parts.task.tokenizer)       # an export checks it rebuilt exactly this tokenizer
    startup_s, eval_s = time.perf_counter() - entered, 0.0   # model load, data (cache) read, probe's theta0

    def snapshot() -> dict[str, Any]:   # called by the caller right after a yield: the state at that evaluation
        return _checkpoint(parts, run, digest)

    # --- a trial killed after its last evaluation but before its end was recorded: report that again
    if run.step >= tc.max_steps and run.last:
        yield Evaluation(step=run.step, metrics=run.last, state=snapshot)
        return

    # --- train: one optimizer step at a time, the realised loss changes measured at evaluation steps
    window: dict[str, list[float]] = defaultdict(list)
    parts.model.train()
    started, steps_in_window = time.perf_counter(), 0
    while run.step < tc.max_steps:
        at_eval = (run.step + 1) % tc.eval_every == 0 or run.step + 1 == tc.max_steps
        for key, values in train_step(parts, _micro_batches(parts, run), run.step, measure_realised=at_eval).items():
            window[key].extend(values)
        run.step += 1
        steps_in_window += 1

        # --- evaluate: source dev (selection) and targets (zero-shot); track the selected checkpoint
        if at_eval:
            now = time.perf_counter()
            elapsed = now - started
            metrics = _evaluation_metrics(parts, run, window, steps_in_window / elapsed if elapsed > 0 else 0.0)
            eval_s += time.perf_counter() - now
            wall = time.perf_counter() - entered
            metrics.update({"perf/startup_s": startup_s, "perf/eval_s": eval_s,   # this process's share so far
                            "perf/wall_s": wall, "perf/eval_fraction": eval_s / wall,
                            "perf/startup_fraction": startup_s / wall})
            yield Evaluation(step=run.step, metrics=metrics, state=snapshot)
            window.clear()
            started, steps_in_window = time.perf_counter(), 0
