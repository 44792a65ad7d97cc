#!/usr/bin/env python
"""Seconds per training step of LF-MLF against plain MLF, at equal total batch, K = 3 source languages.

    python benchmarks/step_cost.py                          # tiny + e5, default repeats (~4 min on 2 cores)
    python benchmarks/step_cost.py --models tiny --steps 20 --json /tmp/step_cost.json
    python benchmarks/step_cost.py --models xlmr-random --device cuda --bf16 --configs mlf,lfmlf-l2,lfmlf-distill
    python benchmarks/step_cost.py --models e5 --gpu       # the same configurations on CUDA, if there is one

What is timed: ``lfmlf.loop.train_step``, the very function the training loop (``lfmlf/loop.py::fit``) runs
for each optimizer step, with ``grad_accum = 1``: the per-source forward (``task.loss`` on each source's own
sub-batch), the finiteness check, ``method.backward(StepObjectives(...))``, the per-source ``loss.item()``
logging, ``clip_grad_norm_``, ``optimizer.step()`` and ``scheduler.step()``. The model, method, optimizer and
schedule come from ``lfmlf.loop.build_parts`` and the batches from the loop's own sampler (``LanguageStream``
+ ``language_weights`` + ``allocate`` + ``collate``), so every method sees the very same sequence of
sub-batches. Not timed: building, collating and moving the batches (done up front), drawing the masked-LM
methods' unlabelled batch, evaluation.

How: one child process per model builds every configuration (mlf, lfmlf-l2, lfmlf-distill, then every other
registered method) and runs their steps interleaved (step i of each configuration in turn, rotating who goes
first), so a machine whose load changes (other people's tests on the same 2 cores) slows all of them alike.
``--warmup`` steps are discarded, then ``--repeats`` blocks of ``--steps`` steps are timed. Reported: median
s/step over all timed steps with its inter-quartile range, the medians of the blocks, the ratio of medians to
MLF, the median (IQR) of per-step ratios to MLF on the same batch, and the peak RSS (``ru_maxrss``, model
loading included) of a separate process that builds only that configuration and runs 2 steps.

Children run with ``OMP_WAIT_POLICY=PASSIVE`` by default: with 2 torch threads on 2 shared cores, spinning
OpenMP workers made steps 3-4x slower and very noisy whenever anything else ran (e5 forward+backward
16 x 48: median 1.9 s spinning vs 0.6 s passive, measured side by side). ``--omp-wait-policy inherit``
turns this off.

Shapes (batch = 16 examples, K = 3 sources da/pt/sv, uniform sampler: one example of each source plus
13 drawn, so sub-batches of ~5 examples each):
  tiny: ``ModelConfig("tiny")`` (2 layers, hidden 64, vocab 2000, embeddings trainable), synthetic NER
        data; sub-batches are padded to their longest sentence (as ``collate`` does).
  e5:   the first 6 layers of multilingual-e5-small (``build_encoder.py --layers 6``), word embeddings
        frozen (10.8 M parameters in the QP), UNER da/pt/sv train, ``max_length`` 64; sub-batches padded
        to their longest sentence (mean shape printed; ``--fixed-length`` pads every sub-batch to 64).
  xlmr-random: the ``tiny`` model shaped like xlm-roberta-base with random weights (XLMRobertaModel, 12 layers,
        hidden 768, 12 heads, feed-forward 3072, 250002 word-embedding rows, all trainable: 278 M parameters
        in the QP), synthetic NER data as for tiny; no hub access. Meant for ``--device cuda``.

``--device cuda`` (and ``--bf16``, the loop's ``train.bf16`` autocast) time the step on the GPU: the device
is synchronised before and after each timed step, and the memory processes also report the peak GPU
memory (``torch.cuda.max_memory_allocated`` from a reset at the start of the process: weights, AdamW state,
.grad, the method's K + 1 flat gradient copies and the step's activations). On the GPU the phase breakdown
measures host time between synchronisations, so kernels queued in one phase may be counted in a later one.

A phase breakdown (forward / task backward / forgetting / flatten / QP / writing .grad / clip / AdamW) is
collected by wrapping lfmlf and torch functions in the child process (a few perf_counter calls per step; the
code under test is not modified) and printed below the main table.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LFMLF_SHARED", REPO.parent / "shared"))
DATA_DIR = Path(os.environ.get("LFMLF_DATA_DIR", SHARED / "data"))
BUILD_ENCODER = SHARED / "tools" / "build_encoder.py"

SOURCES = ("da", "pt", "sv")
TARGETS = ("de",)
UNER_FILES = {
    "da": {"train": "uner/da_ddt-ud-train.iob2", "dev": "uner/da_ddt-ud-dev.iob2"},
    "pt": {"train": "uner/pt_bosque-ud-train.iob2", "dev": "uner/pt_bosque-ud-dev.iob2"},
    "sv": {"train": "uner/sv_talbanken-ud-train.iob2", "dev": "uner/sv_talbanken-ud-dev.iob2"},
    "de": {"test": "uner/de_pud-ud-test.iob2"},
}
# (label, method, method_params)
CONFIGS_FIXED = [
    ("mlf", "mlf", {}),
    ("lfmlf-l2", "lfmlf", {"forgetting": "l2"}),
    ("lfmlf-distill", "lfmlf", {"forgetting": "distill"}),
    ("lfmlf-mlm", "lfmlf", {"forgetting": "mlm"}),        # tiny only: the e5 encoder has no MLM head
]
def _all_configs() -> list[tuple[str, str, dict[str, Any]]]:
    """MLF and LF-MLF with each forgetting objective, then every other registered method with its defaults."""
    from lfmlf.methods import METHODS

    return CONFIGS_FIXED + [(name, name, {}) for name in sorted(METHODS) if name not in ("mlf", "lfmlf")]


CONFIGS = _all_configs()
PHASES = ["forward", "task_backward", "forgetting", "flatten", "qp_gram", "qp_solve", "qp_direction",
          "write_grad", "signals", "method_other", "clip", "optimizer", "loop_other", "gpu_sync"]


# ================================================================================================ child
# the random xlm-roberta-base-shaped model (``--models xlmr-random``): TinyModel fields
XLMR_BASE_SHAPE = {"architecture": "xlm-roberta", "hidden_size": 768, "layers": 12, "heads": 12,
                   "min_embedding_rows": 250002}
MODELS = ("tiny", "e5", "xlmr-random")


def make_spec(model: str, method: str, params: dict[str, Any], encoder_dir: str, batch_size: int,
              max_length: int, total_steps: int, device: str = "cpu", bf16: bool = False):
    from lfmlf.config import ModelConfig, SplitFiles, SyntheticData, TaskConfig, TrainConfig, TrialSpec

    train = TrainConfig(device=device, bf16=bf16, batch_size=batch_size, max_steps=total_steps,
                        eval_every=total_steps, seed=0)
    if model in ("tiny", "xlmr-random"):
        task = TaskConfig(name="ner", format="synthetic", max_length=max_length,
                          synthetic=SyntheticData(train=600, dev=20, test=20))
        mcfg = ModelConfig(name_or_path="tiny", tiny=XLMR_BASE_SHAPE if model == "xlmr-random" else {})
    else:
        task = TaskConfig(name="ner", format="conll", data_dir=str(DATA_DIR), max_length=max_length,
                          files={k: SplitFiles(**v) for k, v in UNER_FILES.items()},
                          max_train_sentences=2000, max_eval_sentences=20, target_split="test")
        mcfg = ModelConfig(name_or_path=encoder_dir, freeze_embeddings=True)
    return TrialSpec(sweep="step_cost", method=method, method_params=params, sources=SOURCES, targets=TARGETS,
                     pool=tuple(sorted(set(SOURCES) | set(TARGETS))), train=train, task=task, model=mcfg)


class Phases:
    """Nested wall-clock timers: exclusive time per phase name (children subtracted from parents)."""

    def __init__(self) -> None:
        self.excl: dict[str, float] = defaultdict(float)
        self.stack: list[list] = []  # [name, start, child_time]

    def wrap(self, name: str, fn):
        def timed(*a, **kw):
            self.stack.append([name, time.perf_counter(), 0.0])
            try:
                return fn(*a, **kw)
            finally:
                n, t0, child = self.stack.pop()
                dt = time.perf_counter() - t0
                self.excl[n] += dt - child
                if self.stack:
                    self.stack[-1][2] += dt
        return timed

    def reset(self) -> None:
        self.excl = defaultdict(float)


def instrument_modules(phases: Phases) -> None:
    """Wrap the lfmlf functions the step goes through, in this process only (no file is modified)."""
    import torch

    import lfmlf.forgetting as forgetting
    import lfmlf.grads as grads
    import lfmlf.methods.gradient as gradient
    import lfmlf.methods.lfmlf as lfm
    import lfmlf.qp as qp

    torch.nn.utils.clip_grad_norm_ = phases.wrap("clip", torch.nn.utils.clip_grad_norm_)   # train_step's clip
    grads.flatten = phases.wrap("flatten", grads.flatten)           # flat_params when not one buffer
    forgetting.flatten = grads.flatten
    grads.GradRows._store = phases.wrap("flatten", grads.GradRows._store)   # a gradient into its slice of G
    gradient.set_flat_grad = phases.wrap("write_grad", gradient.set_flat_grad)   # the update becomes .grad
    # autograd.grad where a forgetting objective still calls it (GradRows.backward is wrapped per trial)
    forgetting.torch = _TorchShim(torch, grad=phases.wrap("forgetting", torch.autograd.grad))
    # the QP pieces, under whichever names this version of lfmlf uses (wrapped where the caller looks them up)
    for module, attr, phase in ((qp, "solve_box_qp", "qp_solve"), (lfm, "solve_box_qp", "qp_solve"),
                                (lfm, "gram", "qp_gram"), (lfm, "combine", "qp_direction"),
                                (lfm, "margin_eps", "qp_gram")):
        if hasattr(module, attr):
            setattr(module, attr, phases.wrap(phase, getattr(module, attr)))


def instrument_trial(phases: Phases, trial: Trial) -> None:
    """Wrap one configuration's own objects: the task's forward, the method's pieces, the optimizer."""
    method = trial.method
    trial.task.loss = phases.wrap("forward", trial.task.loss)
    if getattr(method, "forgetting", None) is not None:   # gradient methods with a forgetting objective
        method.forgetting.value_and_grad = phases.wrap("forgetting", method.forgetting.value_and_grad)
        if hasattr(method.forgetting, "rows"):             # its backward (distill, mlm) is the forgetting's
            method.forgetting.rows.backward = phases.wrap("forgetting", method.forgetting.rows.backward)
    if hasattr(method, "rows"):                            # the per-source backward passes into G's rows
        method.rows.backward = phases.wrap("task_backward", method.rows.backward)
    if hasattr(method, "_signals"):                        # LF-MLF
        method._signals = phases.wrap("signals", method._signals)
    # Mlf.backward is a single loss.backward(): count it all as task backward
    method.backward = phases.wrap("task_backward" if method.name == "mlf" else "method_other", method.backward)
    optimizer, scheduler = trial.parts.optimizer, trial.parts.scheduler
    optimizer.step = phases.wrap("optimizer", optimizer.step)   # after the schedule patched it (it must be first)
    scheduler.step = phases.wrap("optimizer", scheduler.step)


class _TorchShim:
    """``torch`` with ``torch.autograd.grad`` / ``.backward`` replaced, for one module's global name ``torch``."""

    def __init__(self, torch, **replaced) -> None:
        self._torch, self.autograd = torch, _Autograd(torch.autograd, replaced)

    def __getattr__(self, name):
        return getattr(self._torch, name)


class _Autograd:
    def __init__(self, autograd, replaced) -> None:
        self._autograd = autograd
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(self._autograd, name)


class Trial:
    """One configuration built the way ``loop.fit`` builds it (``build_parts``), at theta0."""

    def __init__(self, job: dict[str, Any], label: str, method: str, params: dict[str, Any], total: int) -> None:
        import torch

        from lfmlf.device import pick_device
        from lfmlf.loop import build_parts

        self.label = label
        self.spec = make_spec(job["model"], method, params, job["encoder_dir"], job["batch_size"],
                              job["max_length"], max(total, 1), job.get("device", "cpu"), job.get("bf16", False))
        self.device = pick_device(self.spec.train.device)
        self.parts = build_parts(self.spec, self.device)
        self.task, self.model, self.method = self.parts.task, self.parts.model, self.parts.method
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.window: dict[str, list[float]] = defaultdict(list)
        self.model.train()
        torch.manual_seed(self.spec.train.seed)

    def plan(self, job: dict[str, Any], total: int) -> list:
        """The loop's batches for ``total`` steps: LanguageStream + language_weights + allocate + collate."""
        import torch

        from lfmlf.data.streams import LanguageStream, allocate, language_weights
        from lfmlf.tasks.base import collate

        tc, task = self.spec.train, self.task
        streams = {lang: LanguageStream(task.train_examples(lang), tc.seed, lang) for lang in self.spec.sources}
        weights = language_weights({k: len(s.examples) for k, s in streams.items()}, tc.sampler, tc.temperature)
        batch_rng = torch.Generator().manual_seed(tc.seed)
        micro = max(1, tc.batch_size // tc.grad_accum)
        out = []
        for _ in range(total):
            sizes = allocate(micro, weights, batch_rng)
            batches = {}
            for lang, n in sizes.items():
                b = collate(streams[lang].take(n), task.pad_id)
                if job["fixed_length"]:
                    width = job["max_length"] - b["input_ids"].shape[1]
                    fills = {"input_ids": task.pad_id, "labels": -100}
                    b = {k: torch.nn.functional.pad(v, (0, width), value=fills.get(k, 0)) for k, v in b.items()}
                batches[lang] = {k: v.to(self.device) for k, v in b.items()}
            out.append((sizes, batches))
        return out

    def step(self, step: int, sizes, batches, phases: Phases) -> float:
        """One optimizer step, ``lfmlf.loop.train_step`` on a prepared micro-batch; returns seconds."""
        import dataclasses

        import torch

        from lfmlf.loop import train_step

        device, parts = self.device, self.parts
        if parts.unlabelled is not None:   # the masked-LM methods' batch, drawn untimed
            parts = dataclasses.replace(parts, unlabelled=_Drawn(parts.unlabelled.batch(device)))
        phases.reset()
        cuda = device.type == "cuda"
        if cuda:   # nothing queued before this step is timed with it
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        signals = train_step(parts, [(sizes, batches)], step)
        if cuda:   # the step's kernels have finished
            t = time.perf_counter()
            torch.cuda.synchronize(device)
            phases.excl["gpu_sync"] += time.perf_counter() - t
        elapsed = time.perf_counter() - start
        phases.excl["loop_other"] += elapsed - sum(phases.excl.values())
        for key, values in signals.items():
            self.window[key].extend(values)
        return elapsed


class _Drawn:
    """An unlabelled-text stream whose next batch is already drawn (``train_step`` calls ``batch(device)``)."""

    def __init__(self, batch) -> None:
        self._batch = batch

    def batch(self, device):
        return self._batch


def rss_mb() -> tuple[float, float]:
    """(current RSS, peak RSS) of this process in MB."""
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """mode "time": build every configuration, then run their steps interleaved (step i of each config in
    turn, the same batches), so machine load hits all alike. mode "memory": one configuration, warm-up
    steps only, peak RSS."""
    import torch

    torch.set_num_threads(job["threads"])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = job.get("device", "cpu").startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warmup, steps, repeats = job["warmup"], job["steps"], job["repeats"]
    total = warmup + steps * repeats
    phases = Phases()
    instrument_modules(phases)
    trials, info = [], {}
    for label, method, params in job["configs"]:
        t0 = time.perf_counter()
        trial = Trial(job, label, method, params, total)
        instrument_trial(phases, trial)
        trials.append(trial)
        info[label] = {"build_s": time.perf_counter() - t0, "rss_after_build_mb": rss_mb()[0],
                       "qp_params": int(trial.method.G.shape[1]) if hasattr(trial.method, "G") else None,
                       "cuda_after_build_mb": torch.cuda.memory_allocated() / 2**20 if cuda else None,
                       "trainable_params": sum(p.numel() for p in trial.params)}
    plan = trials[0].plan(job, total)
    times = {t.label: [] for t in trials}
    breakdown = {t.label: defaultdict(float) for t in trials}
    order = list(trials)
    for step, (sizes, batches) in enumerate(plan):
        if step >= warmup:   # rotate who goes first, so no configuration always follows the same one
            order = order[1:] + order[:1]
        for trial in order:
            dt = trial.step(step, sizes, batches, phases)
            if step >= warmup:
                times[trial.label].append(dt)
                for k, v in phases.excl.items():
                    breakdown[trial.label][k] += v
    for trial in trials:
        info[trial.label].update({
            "times": times[trial.label],
            "breakdown": {k: v / max(len(times[trial.label]), 1) for k, v in breakdown[trial.label].items()},
            "qp_fallbacks": trial.method.report().get("lfmlf/qp_fallbacks"),
            "final_losses": {k: v[-1] for k, v in trial.window.items() if k.startswith("train/loss/task/")},
        })
    tokens = [sum(b["input_ids"].numel() for b in bs.values()) for _, bs in plan[warmup:]]
    widths = [b["input_ids"].shape[1] for _, bs in plan[warmup:] for b in bs.values()]
    current, peak = rss_mb()
    return {"configs": info, "tokens_per_step": statistics.mean(tokens) if tokens else 0.0,
            "mean_sub_batch_width": statistics.mean(widths) if widths else 0.0,
            "rss_mb": current, "peak_rss_mb": peak, "loadavg": os.getloadavg(),
            "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
            "cuda_device": torch.cuda.get_device_name() if cuda else None}


# ================================================================================================ parent
def ensure_encoder(encoder_dir: Path) -> None:
    if not BUILD_ENCODER.is_file():
        sys.exit(f"step_cost: {BUILD_ENCODER} not found; pass --encoder-dir to an existing 6-layer encoder "
                 "directory or set LFMLF_SHARED")
    print(f"# building/checking encoder in {encoder_dir} (no-op when present) ...", flush=True)
    subprocess.run([sys.executable, str(BUILD_ENCODER), str(encoder_dir), "--layers", "6"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,e5", help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--configs", default=",".join(c[0] for c in CONFIGS),
                    help="comma-separated subset of " + ",".join(c[0] for c in CONFIGS))
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per repeat (default: tiny 30, e5 8)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="blocks of --steps timed steps (their medians show the drift)")
    ap.add_argument("--warmup", type=int, default=3,
                    help="untimed steps before the first repeat (lazy AdamW state, allocator warm-up)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--fixed-length", action="store_true", help="pad every sub-batch to --max-length")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each child")
    ap.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", "inherit"],
                    help="OMP_WAIT_POLICY of the children (default passive: on a shared 2-core machine, spinning "
                         "OpenMP threads make 2-thread steps several times slower and very noisy; inherit = "
                         "leave the environment as it is)")
    ap.add_argument("--encoder-dir", default=str(REPO / ".cache" / "e5-6l"),
                    help="6-layer e5 encoder directory (built with build_encoder.py --layers 6 if missing)")
    ap.add_argument("--device", default="cpu", help="torch device of the children: cpu (default) or cuda")
    ap.add_argument("--gpu", action="store_true",
                    help="time the same configurations on CUDA (--device cuda); without a CUDA device, say so "
                         "and exit 0 (benchmarks/gpu_check.py calls it this way)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast of the forward (the loop's train.bf16)")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-configuration peak-RSS processes")
    ap.add_argument("--json", help="also write the results (all per-step times) to this file")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        print("@@RESULT@@" + json.dumps(run_child(json.loads(args._child))), flush=True)
        return 0

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; use {', '.join(MODELS)}")
    if args.gpu:
        import torch

        if not torch.cuda.is_available():
            print("step_cost --gpu: no CUDA device here (torch.cuda.is_available() is False); nothing was timed. "
                  "Run it without --gpu for the CPU figures.")
            return 0
        args.device = "cuda"
    cuda = args.device.startswith("cuda")
    if cuda:
        import torch

        if not torch.cuda.is_available():
            ap.error(f"--device {args.device}: torch.cuda.is_available() is False on this machine")
    wanted = [c.strip() for c in args.configs.split(",")]
    configs = [c for c in CONFIGS if c[0] in wanted]
    if "mlf" not in wanted:
        ap.error("--configs must include mlf (the ratio's denominator)")
    if "e5" in models:
        ensure_encoder(Path(args.encoder_dir))

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if args.omp_wait_policy != "inherit":
        env["OMP_WAIT_POLICY"] = args.omp_wait_policy.upper()

    def child(job: dict[str, Any]) -> dict[str, Any]:
        proc = subprocess.run([sys.executable, __file__, "--_child", json.dumps(job)], capture_output=True,
                              text=True, env=env)
        line = next((s for s in proc.stdout.splitlines() if s.startswith("@@RESULT@@")), None)
        if proc.returncode != 0 or line is None:
            sys.stderr.write(proc.stderr[-4000:])
            sys.exit(f"step_cost: child {job['model']}/{[c[0] for c in job['configs']]} failed "
                     f"(exit {proc.returncode})")
        return json.loads(line[len("@@RESULT@@"):])

    results: dict[str, dict[str, Any]] = {}
    shapes: dict[str, dict[str, float]] = {}
    load = {"start": os.getloadavg()}
    all_configs = configs
    for model in models:
        configs = all_configs
        if model == "e5":   # the e5 encoder has no masked-LM head: MLM methods cannot run on it
            from lfmlf.methods import METHODS

            skipped = [c[0] for c in configs if METHODS[c[1]](**c[2]).needs().mlm_head]
            configs = [c for c in configs if c[0] not in skipped]
            if skipped:
                print(f"# {model}: skipped {', '.join(skipped)} (needs a masked-LM head; this encoder has none)")
        steps = args.steps or (30 if model == "tiny" else 8)
        base_job = {"model": model, "encoder_dir": args.encoder_dir, "batch_size": args.batch_size,
                    "max_length": args.max_length, "fixed_length": args.fixed_length, "threads": args.threads,
                    "device": args.device, "bf16": args.bf16}
        t0 = time.perf_counter()
        timing = child({**base_job, "configs": configs, "warmup": args.warmup, "steps": steps,
                        "repeats": args.repeats})
        print(f"# {model}: timed {len(configs)} configurations x {steps * args.repeats} steps, interleaved "
              f"({time.perf_counter() - t0:.0f} s wall, load average {timing['loadavg'][0]:.2f})", flush=True)
        memory = {}
        if not args.no_memory:
            for cfg in configs:
                t0 = time.perf_counter()
                memory[cfg[0]] = child({**base_job, "configs": [cfg], "warmup": 2, "steps": 0,
                                        "repeats": 0})
                gpu = (f", peak GPU memory {memory[cfg[0]]['peak_cuda_mb']:.0f} MB"
                       if memory[cfg[0]]["peak_cuda_mb"] is not None else "")
                print(f"# {model}: peak RSS of {cfg[0]} alone: {memory[cfg[0]]['peak_rss_mb']:.0f} MB{gpu} "
                      f"({time.perf_counter() - t0:.0f} s wall)", flush=True)
        shapes[model] = {k: timing[k] for k in ("tokens_per_step", "mean_sub_batch_width")}
        base_times = timing["configs"]["mlf"]["times"]
        results[model] = {}
        for label, method, params in configs:
            c = timing["configs"][label]
            times = c["times"]
            blocks = [times[i:i + steps] for i in range(0, len(times), steps)]
            paired = [t / b for t, b in zip(times, base_times)]
            results[model][label] = {
                "method": method, "params": params, "times": times,
                "repeat_medians": [statistics.median(b) for b in blocks],
                "median": statistics.median(times), "q25": percentile(times, 0.25), "q75": percentile(times, 0.75),
                "paired_ratio_median": statistics.median(paired),
                "paired_ratio_q25": percentile(paired, 0.25), "paired_ratio_q75": percentile(paired, 0.75),
                "peak_rss_mb": memory[label]["peak_rss_mb"] if memory else None,
                "peak_cuda_mb": memory[label]["peak_cuda_mb"] if memory else None,
                "cuda_after_build_mb": memory[label]["configs"][label]["cuda_after_build_mb"] if memory else None,
                **{k: c[k] for k in ("breakdown", "build_s", "qp_params", "trainable_params", "qp_fallbacks",
                                     "final_losses")},
            }
        base = results[model]["mlf"]["median"]
        for label in results[model]:
            results[model][label]["ratio"] = results[model][label]["median"] / base
    load["end"] = os.getloadavg()

    # ---- report (model column as wide as the longest model name: 5 for tiny and e5)
    w = max([5] + [len(m) for m in models])
    print()
    print(f"K = {len(SOURCES)} sources ({'/'.join(SOURCES)}), batch {args.batch_size} split into per-source "
          f"sub-batches, max_length {args.max_length}{' (every sub-batch padded to it)' if args.fixed_length else ''}"
          f", torch threads {args.threads}, OMP_WAIT_POLICY {env.get('OMP_WAIT_POLICY', 'unset')}, "
          f"{args.warmup} warm-up steps, {args.repeats} repeats, configurations "
          f"interleaved step by step; load average {load['start'][0]:.2f} -> {load['end'][0]:.2f}"
          + (f"; device {args.device}" if args.device != "cpu" else "") + ("; bf16 autocast" if args.bf16 else ""))
    head = (f"{'model':{w}s} {'method':6s} {'forgetting':10s} {'s/step med':>10s} {'IQR':>17s} "
            f"{'repeat medians':>24s} {'ratio':>6s} {'paired (IQR)':>18s} {'peak RSS MB':>11s}"
            + (f" {'peak GPU MB':>11s}" if cuda else ""))
    print(head)
    print("-" * len(head))
    for model, by in results.items():
        for r in by.values():
            forg = r["params"].get("forgetting", "-")
            reps = "/".join(f"{x:.3f}" for x in r["repeat_medians"])
            iqr = f"[{r['q25']:.4f}, {r['q75']:.4f}]"
            paired = f"{r['paired_ratio_median']:.2f} ({r['paired_ratio_q25']:.2f}-{r['paired_ratio_q75']:.2f})"
            rss = f"{r['peak_rss_mb']:11.0f}" if r["peak_rss_mb"] is not None else f"{'-':>11s}"
            if cuda:
                rss += f" {r['peak_cuda_mb']:11.0f}" if r["peak_cuda_mb"] is not None else f" {'-':>11s}"
            print(f"{model:{w}s} {r['method']:6s} {forg:10s} {r['median']:10.4f} {iqr:>17s} {reps:>24s} "
                  f"{r['ratio']:6.2f} {paired:>18s} {rss}")
        qp = next((r["qp_params"] for r in by.values() if r["qp_params"]), 0)
        print(f"{'':{w}s} ({shapes[model]['tokens_per_step']:.0f} tokens/step incl. padding, mean sub-batch width "
              f"{shapes[model]['mean_sub_batch_width']:.1f}; trainable {by['mlf']['trainable_params'] / 1e6:.2f} M"
              f" parameters, QP over {qp / 1e6:.2f} M)")
    print("ratio = median / MLF median; paired = median (IQR) of per-step ratios to the MLF step on the same "
          "batch.\npeak RSS = ru_maxrss of a separate process that builds only that configuration and runs "
          "2 steps.")
    if cuda:
        print("peak GPU MB = torch.cuda.max_memory_allocated of that process (weights, AdamW state, .grad, the "
              "method's\nK + 1 flat gradient copies, activations); each step is timed between two "
              "torch.cuda.synchronize.")
    print()
    print("Phase breakdown, ms per step (mean over timed steps):")
    cols = [p for p in PHASES if any(r["breakdown"].get(p, 0.0) > 5e-5 for by in results.values() for r in by.values())]
    print(f"{'model':{w}s} {'config':14s} " + " ".join(f"{p:>13s}" for p in cols))
    for model, by in results.items():
        for label, r in by.items():
            print(f"{model:{w}s} {label:14s} " + " ".join(f"{1e3 * r['breakdown'].get(p, 0.0):13.1f}" for p in cols))
    print("  forward: task.loss per source sub-batch | task_backward: autograd over the task losses (MLF: its one\n"
          "  loss.backward) | forgetting: g_F (l2: flatten theta - theta0 and its norm; distill: frozen forward +\n"
          "  autograd of F) | flatten: copying each parameter's gradient into its slice of G's row (a hook, inside\n"
          "  the backward) | qp_gram: Q = G G^T, b = G g_F (and eps)\n"
          "  | qp_solve: solve_box_qp | qp_direction: d = -(g_F + G^T lam) | write_grad:\n"
          "  making -d the encoder's .grad (views of its buffer) | signals: Lfmlf._signals | method_other: the\n"
          "  rest of Lfmlf.backward (e.g. isfinite(d)) | optimizer: AdamW + scheduler."
          + ("\n  gpu_sync: waiting at the end of the step for kernels still queued (GPU time the phases above\n"
             "  only launched)." if cuda else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "_child"},
                                               "shapes": shapes, "loadavg": load, "results": results}, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
