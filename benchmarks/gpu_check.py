#!/usr/bin/env python
"""GPU readiness check: a small MLF vs LF-MLF sweep sharing one GPU, then the GPU step cost of each method.

    python benchmarks/gpu_check.py                # on a machine with one NVIDIA GPU: under 5 minutes
    python benchmarks/gpu_check.py --cpu-smoke    # the same code path on the CPU with the tiny model (CI)

On a machine without CUDA (``torch.cuda.is_available()`` is False) it says so, skips the GPU checks and
exits 0.

1. Sweep. It writes a sweep YAML into a temporary folder (synthetic NER data, sources de/en/es, target fr;
   the ``tiny`` model shaped like xlm-roberta-base with random weights from a fixed seed, so no hub access and
   the same theta0 in every trial; methods ``mlf`` and ``lfmlf`` with ``forgetting: l2``, 2 trials each,
   ``resources: {gpu: 0.5}``, ``train.bf16: true``, ``search.max_concurrent: 4``, no scheduler, MLflow in a
   SQLite file of that folder) and runs it with the command line, ``lfmlf sweep FILE --tracking-uri ...``,
   in a child process that sees one GPU. Then it reads the trial runs back from MLflow (the runs tagged
   ``mlflow.parentRunId``) and asserts that every trial FINISHED, that every trial trained on CUDA (metric
   ``perf/cuda`` = 1, logged by the training loop at every evaluation) and that two trials shared the GPU at
   the same time (their MLflow runs overlap in time by more than ``--min-overlap-s``; see
   :func:`check_trials` for why that proves it).
2. Step cost. It runs ``benchmarks/step_cost.py --models xlmr-random --gpu --bf16`` for mlf,
   lfmlf-l2 and lfmlf-distill (batch 32, every sub-batch padded to 128 tokens, K = 3 sources) and prints
   s/step, the ratio to MLF, and the peak GPU memory of a process that holds one configuration (weights, AdamW
   state, .grad and the method's K + 1 flat gradient copies).

``--cpu-smoke`` runs all of it on the CPU (GPUs hidden) with the default tiny model, ``gpu: 0``, one trial per
method and a few steps, and asserts ``perf/cuda`` = 0 instead of 1; the overlap is reported, not required.
Exit status: 0 when every check passed (or no CUDA device), 1 when a check failed (the temporary folder with
the sweep's log is kept and named).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
STEP_COST = HERE / "step_cost.py"
EXPERIMENT = "gpu_check"
METHODS = ("mlf", "lfmlf")
STEP_COST_CONFIGS = ("mlf", "lfmlf-l2", "lfmlf-distill")
# TinyModel fields of a randomly initialised xlm-roberta-base (278 M parameters, 250002 embedding rows)
XLMR_BASE_SHAPE = {"architecture": "xlm-roberta", "hidden_size": 768, "layers": 12, "heads": 12,
                   "min_embedding_rows": 250002}
NO_CUDA = ("gpu_check: no CUDA device here (torch.cuda.is_available() is False): the GPU checks were "
           "skipped. Run it on a machine with an NVIDIA GPU and a CUDA build of torch; `--cpu-smoke` runs "
           "the same code path on the CPU.")


class CheckFailed(AssertionError):
    """A GPU-readiness check did not hold; the message says which and what was seen."""


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """What one run of the check does: the sweep and the step-cost measurement."""

    smoke: bool
    trials: int                      # per method
    gpu: float                       # resources.gpu per trial
    cpu: int                         # resources.cpu per trial
    tiny: dict[str, Any]             # model.tiny
    bf16: bool
    max_steps: int
    eval_every: int
    batch_size: int
    step_cost_args: tuple[str, ...]
    min_overlap_s: float
    expect_cuda: bool                # every trial must report perf/cuda = 1 (else 0)
    require_overlap: bool

    @classmethod
    def gpu_check(cls, min_overlap_s: float) -> Plan:
        # 2 CPUs per trial where the machine has them, so that two trials fit next to each other
        cpu = 2 if (os.cpu_count() or 1) >= 4 else 1
        # one evaluation per trial: each checkpoint holds the weights and AdamW state of 278 M parameters
        return cls(smoke=False, trials=2, gpu=0.5, cpu=cpu, tiny=dict(XLMR_BASE_SHAPE), bf16=True,
                   max_steps=20, eval_every=20, batch_size=16,
                   step_cost_args=("--models", "xlmr-random", "--gpu", "--bf16", "--batch-size",
                                   "32", "--max-length", "128", "--fixed-length", "--warmup", "3", "--steps",
                                   "5", "--repeats", "2", "--threads", str(cpu)),
                   min_overlap_s=min_overlap_s, expect_cuda=True, require_overlap=True)

    @classmethod
    def cpu_smoke(cls, min_overlap_s: float) -> Plan:
        # the same flags as the GPU run where the CPU allows; no peak-memory processes (30 s on 2 cores)
        return cls(smoke=True, trials=1, gpu=0.0, cpu=1, tiny={}, bf16=True, max_steps=4, eval_every=4,
                   batch_size=12,
                   step_cost_args=("--models", "tiny", "--device", "cpu", "--bf16", "--warmup", "1",
                                   "--steps", "2", "--repeats", "1", "--no-memory"),
                   min_overlap_s=min_overlap_s, expect_cuda=False, require_overlap=False)


def sweep_config(plan: Plan, workdir: Path, tracking_uri: str) -> dict[str, Any]:
    """The sweep YAML (as a mapping) that the check runs with ``lfmlf sweep``."""
    lr = {"type": "float", "low": 2.0e-5, "high": 1.0e-4, "log": True}
    slack = {"type": "float", "low": 0.1, "high": 10.0, "log": True}
    return {
        "name": "gpu_check",
        "output_dir": str(workdir / "runs"),
        "task": {"name": "ner", "format": "synthetic", "synthetic": {"train": 200, "dev": 32, "test": 32},
                 "max_length": 64, "cache_dir": str(workdir / "cache")},
        "model": {"name_or_path": "tiny", "tiny": plan.tiny},
        "languages": {"sources": ["de", "en", "es"], "targets": ["fr"]},
        "train": {"max_steps": plan.max_steps, "eval_every": plan.eval_every, "batch_size": plan.batch_size,
                  "eval_batch_size": 64, "bf16": plan.bf16, "device": "auto"},
        "methods": {"mlf": {"space": {"lr": dict(lr)}},
                    "lfmlf": {"space": {"lr": dict(lr), "slack": slack}, "params": {"forgetting": "l2"}}},
        "search": {"num_samples": plan.trials, "max_concurrent": 4, "n_startup_trials": 1,
                   "scheduler": {"name": "none"}},
        "resources": {"cpu": plan.cpu, "gpu": plan.gpu},
        "tracking": {"uri": tracking_uri, "experiment": EXPERIMENT},
        "ray": {"max_failures": 0},
    }


# ---------------------------------------------------------------------------------------------- the checks
@dataclass(frozen=True)
class TrialRun:
    """One trial as MLflow recorded it (times in seconds since the epoch)."""

    run_id: str
    method: str
    status: str
    start: float
    end: float | None
    metrics: Mapping[str, float] = field(default_factory=dict)

    @property
    def cuda(self) -> float | None:
        return self.metrics.get("perf/cuda")


def overlaps(intervals: Mapping[str, tuple[float, float]],
             min_s: float = 0.0) -> list[tuple[str, str, float]]:
    """Pairs of intervals that share more than ``min_s`` seconds, as (name, name, seconds), longest first.
    Intervals that only touch (one ends when the other starts) share 0 seconds."""
    out = []
    for (a, (sa, ea)), (b, (sb, eb)) in combinations(sorted(intervals.items()), 2):
        shared = min(ea, eb) - max(sa, sb)
        if shared > min_s:
            out.append((a, b, shared))
    return sorted(out, key=lambda x: -x[2])


def max_concurrent(intervals: Mapping[str, tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end at t closes before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals.values()] + [(e, -1) for _, e in intervals.values()])
    now = best = 0
    for _, delta in events:
        now += delta
        best = max(best, now)
    return best


def check_trials(runs: Sequence[TrialRun], plan: Plan) -> list[str]:
    """Assert what the sweep must show; return the lines that say what was seen. Raises CheckFailed.

    Why an overlap of two runs proves that two trials shared the GPU: the check's sweep process sees exactly
    one GPU, every trial asks Ray for 0.5 of it, and every trial reports ``perf/cuda`` = 1, i.e. it trained
    on ``cuda`` (``train.device: auto`` picks the GPU Ray assigned, cuda:0 under the CUDA_VISIBLE_DEVICES Ray
    sets). A trial's MLflow run starts when Tune starts the trial and ends after Tune has received its last
    result, so the run spans the trial's whole life, model on the GPU included. Two runs that overlap by
    more than a few seconds (far more than the Tune controller's bookkeeping between one trial ending and
    the next starting) were therefore two processes holding memory and running kernels on that one GPU at
    the same time: the 0.5 GPU share Ray packed them by."""
    problems, lines = [], []
    by_method: dict[str, list[TrialRun]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    for method in METHODS:
        got = by_method.get(method, [])
        finished = [r for r in got if r.status == "FINISHED"]
        if len(finished) != plan.trials:
            problems.append(f"{method}: {len(finished)} FINISHED trial run(s) of {plan.trials} expected "
                            f"(statuses: {', '.join(r.status for r in got) or 'no runs'})")
    want = 1.0 if plan.expect_cuda else 0.0
    device = "cuda" if plan.expect_cuda else "cpu"
    for r in runs:
        if r.cuda is None:
            problems.append(f"trial {r.method} {r.run_id}: no perf/cuda metric (it logged no evaluation)")
        elif r.cuda != want:
            problems.append(f"trial {r.method} {r.run_id}: trained on {'cuda' if r.cuda == 1.0 else 'cpu'}, "
                            f"not {device}")
    on_device = {f"{r.method}/{r.run_id[:8]}": (r.start, r.end) for r in runs
                 if r.end is not None and r.cuda == want}
    pairs = overlaps(on_device, plan.min_overlap_s)
    most = max_concurrent(on_device) if on_device else 0
    if pairs:
        a, b, shared = pairs[0]
        lines.append(f"overlap: {len(pairs)} pair(s) of {device} trials ran at the same time for more than "
                     f"{plan.min_overlap_s:g} s (longest: {a} and {b}, {shared:.1f} s); "
                     f"at most {most} at once")
    else:
        lines.append(f"overlap: no two {device} trials ran at the same time for more than "
                     f"{plan.min_overlap_s:g} s")
        if plan.require_overlap:
            problems.append(f"no two trials shared the GPU: no pair of cuda trial runs overlaps by more than "
                            f"{plan.min_overlap_s:g} s (resources.gpu {plan.gpu:g}, at most {most} at once)")
    if problems:
        raise CheckFailed("\n".join(problems))
    counts = ", ".join(f"{m} {len(by_method.get(m, []))}" for m in METHODS)
    lines.insert(0, f"trials: {len(runs)} ({counts}), all FINISHED, all on {device}")
    return lines


def read_trials(tracking_uri: str, experiment: str) -> list[TrialRun]:
    """The sweep's trial runs (child runs: tagged ``mlflow.parentRunId``) read back from MLflow."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise CheckFailed(f"MLflow at {tracking_uri} has no experiment '{experiment}': the sweep logged "
                          "nothing")
    runs, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    out = []
    for run in runs:
        tags = run.data.tags
        if not tags.get("mlflow.parentRunId"):
            continue   # the sweep's own run
        method = tags.get("lfmlf.method") or run.data.params.get("method", "?")
        out.append(TrialRun(run_id=run.info.run_id, method=method, status=run.info.status,
                            start=run.info.start_time / 1000.0,
                            end=run.info.end_time / 1000.0 if run.info.end_time else None,
                            metrics=dict(run.data.metrics)))
    return sorted(out, key=lambda r: r.start)


def _num(value: float | None, width: int, decimals: int) -> str:
    return f"{value:{width}.{decimals}f}" if value is not None else f"{'-':>{width}s}"


def trial_table(runs: Sequence[TrialRun]) -> list[str]:
    """One row per trial: method, run id, status, device, start and end (s from the first start), the
    loop's steps/s and peak memory (GPU memory on cuda, RSS on the CPU)."""
    t0 = min((r.start for r in runs), default=0.0)
    lines = [(f"{'method':7s} {'run':8s} {'status':9s} {'device':6s} {'start s':>8s} {'end s':>8s} "
              f"{'steps/s':>8s} {'peak mem MB':>11s}")]
    for r in runs:
        dev = {1.0: "cuda", 0.0: "cpu"}.get(r.cuda, "?") if r.cuda is not None else "?"
        end = r.end - t0 if r.end is not None else None
        lines.append(f"{r.method:7s} {r.run_id[:8]:8s} {r.status:9s} {dev:6s} {r.start - t0:8.1f} "
                     f"{_num(end, 8, 1)} {_num(r.metrics.get('perf/steps_per_s'), 8, 2)} "
                     f"{_num(r.metrics.get('perf/peak_mem_mb'), 11, 0)}")
    return lines


def step_cost_table(result: Mapping[str, Any]) -> list[str]:
    """s/step, ratio to MLF and peak memory per configuration, from step_cost.py's --json file."""
    lines = []
    for model, by in result["results"].items():
        cuda = any(r.get("peak_cuda_mb") is not None for r in by.values())
        mem = "peak GPU MB" if cuda else "peak RSS MB"
        lines.append(f"{'model':11s} {'config':14s} {'s/step':>8s} {'ratio':>6s} {'paired':>6s} {mem:>11s} "
                     f"{'QP params':>10s}")
        for label in STEP_COST_CONFIGS:
            r = by.get(label)
            if r is None:
                raise CheckFailed(f"step_cost.py returned no result for {label} on {model}")
            peak = r.get("peak_cuda_mb") if cuda else r.get("peak_rss_mb")
            qp = f"{r['qp_params'] / 1e6:9.1f}M" if r.get("qp_params") else f"{'-':>10s}"
            lines.append(f"{model:11s} {label:14s} {r['median']:8.4f} {r['ratio']:6.2f} "
                         f"{r['paired_ratio_median']:6.2f} {_num(peak, 11, 0)} {qp}")
    return lines


# ---------------------------------------------------------------------------------------------- running
def child_env(plan: Plan) -> dict[str, str]:
    """Environment of the sweep and step-cost processes: exactly one GPU visible (none for the smoke)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    if plan.smoke:
        env["CUDA_VISIBLE_DEVICES"] = ""
        return env
    import torch

    if torch.cuda.device_count() > 1:
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[0] if visible else "0"
        print(f"gpu_check: {torch.cuda.device_count()} GPUs visible; the check uses one "
              f"(CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']})", flush=True)
    return env


def gpu_name() -> str:
    """The first GPU's name from nvidia-smi: this process creates no CUDA context (in the exclusive-process
    compute mode one here would keep every trial off the GPU)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out.splitlines()[0] if out else "a CUDA device (nvidia-smi not found)"


def run_logged(cmd: list[str], log: Path, env: Mapping[str, str], timeout_s: float, what: str) -> None:
    started = time.perf_counter()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(env), timeout=timeout_s,
                                cwd=HERE.parent, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = None
    tail = log.read_text(errors="replace")[-3000:]
    if rc != 0:
        why = f"ran past {timeout_s:.0f} s" if rc is None else f"exit status {rc}"
        raise CheckFailed(f"{what} failed ({why}); the last lines of {log}:\n{tail}")
    print(f"gpu_check: {what} done in {time.perf_counter() - started:.0f} s", flush=True)


def run_sweep(plan: Plan, workdir: Path, env: Mapping[str, str], timeout_s: float) -> list[TrialRun]:
    import yaml

    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    sweep_file = workdir / "gpu_check.yaml"
    sweep_file.write_text(yaml.safe_dump(sweep_config(plan, workdir, uri), sort_keys=False))
    print(f"gpu_check: sweep of {plan.trials} mlf + {plan.trials} lfmlf (l2) trials at resources.gpu "
          f"{plan.gpu:g}{', bf16' if plan.bf16 else ''}: lfmlf sweep {sweep_file} --tracking-uri {uri}",
          flush=True)
    run_logged([sys.executable, "-m", "lfmlf.cli", "sweep", str(sweep_file), "--tracking-uri", uri],
               workdir / "sweep.log", env, timeout_s, "the sweep")
    return read_trials(uri, EXPERIMENT)


def run_step_cost(plan: Plan, workdir: Path, env: Mapping[str, str], timeout_s: float) -> dict[str, Any]:
    out = workdir / "step_cost.json"
    cmd = [sys.executable, str(STEP_COST), *plan.step_cost_args, "--configs", ",".join(STEP_COST_CONFIGS),
           "--json", str(out)]
    print(f"gpu_check: step cost: python benchmarks/step_cost.py {' '.join(cmd[2:-2])}", flush=True)
    run_logged(cmd, workdir / "step_cost.log", env, timeout_s, "step_cost.py")
    return json.loads(out.read_text())


def remove(workdir: Path) -> None:
    """Delete the temporary folder, and Ray's temp folder when the sweep put it elsewhere behind a link (a
    local Ray instance does that when the run folder's path is too long for its sockets)."""
    link = workdir / "runs" / "ray_tmp"
    if link.is_symlink():
        shutil.rmtree(link.resolve(), ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run the same code path on the CPU with the tiny model, 1 trial per method (for CI)")
    ap.add_argument("--min-overlap-s", type=float, default=2.0,
                    help="seconds two trial runs must overlap to count as sharing the GPU (default 2)")
    ap.add_argument("--skip-step-cost", action="store_true", help="run only the sweep and its checks")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary folder (sweep YAML, logs, MLflow db)")
    ap.add_argument("--timeout-s", type=float, default=420,
                    help="limit for each child process: the sweep, step_cost.py (default 420)")
    args = ap.parse_args(argv)

    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(NO_CUDA, flush=True)
        return 0
    plan = (Plan.cpu_smoke if args.cpu_smoke else Plan.gpu_check)(args.min_overlap_s)
    started = time.perf_counter()
    device = "CPU smoke run (GPUs hidden)" if plan.smoke else gpu_name()
    print(f"gpu_check: {device}; torch {torch.__version__} (CUDA {torch.version.cuda})", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="lfmlf-gpu-check-"))
    env = child_env(plan)
    try:
        runs = run_sweep(plan, workdir, env, args.timeout_s)
        print("\n".join(["", "Sweep trials (times from the first trial's start):", *trial_table(runs)]),
              flush=True)
        lines = check_trials(runs, plan)
        print("\n".join(f"OK  {line}" for line in lines), flush=True)
        if not args.skip_step_cost:
            result = run_step_cost(plan, workdir, env, args.timeout_s)
            shape = ("xlm-roberta-base shape, random weights, batch 32 x 128 tokens, bf16 autocast"
                     if not plan.smoke else "tiny model, CPU")
            title = (f"Step cost, K = 3 sources ({shape}); ratio and paired: to MLF; peak memory of a "
                     "process holding one configuration, K + 1 flat gradient copies included:")
            print("\n".join(["", title, *step_cost_table(result)]), flush=True)
    except CheckFailed as e:
        print(f"\ngpu_check: FAILED\n{e}\n(temporary folder kept: {workdir})", file=sys.stderr, flush=True)
        return 1
    elapsed = time.perf_counter() - started
    print(f"\ngpu_check: all checks passed in {elapsed:.0f} s"
          + (" (over the 5-minute budget)" if elapsed > 300 and not plan.smoke else ""), flush=True)
    if args.keep:
        print(f"gpu_check: kept {workdir}")
    else:
        remove(workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
