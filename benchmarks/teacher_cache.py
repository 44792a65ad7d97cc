#!/usr/bin/env python
"""What the distillation teacher-state cache saves once it is warm: LF-MLF with ``forgetting: distill`` on the
very same batches, its frozen states recomputed every step (``cache`` off) or read from the filled cache.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/teacher_cache.py --model e5 --batches 6 --repeats 3

``benchmarks/step_cost.py`` draws new examples at every step, so a per-trial cache only misses there (a trial
hits once its sources' data repeats: a second pass, a small pool, unlabelled text files). Here the same
``--batches`` batches (the loop's own sampler, as step_cost builds them) are run once to fill the cache, then
``--repeats`` times over, the configurations interleaved step by step so machine load hits them alike.
Printed: median s/step and the median time of the forgetting term (``value_and_grad``: frozen forward or
cache read, plus the backward of F), per configuration, and the cache's report.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from step_cost import REPO, Trial


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="e5", choices=["tiny", "e5"])
    ap.add_argument("--encoder-dir", default=str(REPO / ".cache" / "e5-6l"))
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    from lfmlf.loop import train_step

    torch.set_num_threads(args.threads)
    job = {"model": args.model, "encoder_dir": args.encoder_dir, "batch_size": 16, "max_length": 64,
           "fixed_length": False, "device": "cpu", "bf16": False}
    total = args.batches * (args.repeats + 1)
    trials = {"mlf": Trial(job, "mlf", "mlf", {}, total),
              "distill, cache off": Trial(job, "off", "lfmlf", {"forgetting": "distill"}, total),
              "distill, cache warm": Trial(job, "warm", "lfmlf", {"forgetting": "distill"}, total)}
    trials["distill, cache off"].method.forgetting.teacher.cache = False
    plan = trials["mlf"].plan(job, args.batches)
    forgetting_s: dict[str, list[float]] = {k: [] for k in trials}
    for label, trial in trials.items():
        f = getattr(trial.method, "forgetting", None)
        if f is not None:
            def timed(*a, _f=f.value_and_grad, _label=label, **kw):
                t0 = time.perf_counter()
                out = _f(*a, **kw)
                forgetting_s[_label].append(time.perf_counter() - t0)
                return out
            f.value_and_grad = timed
    step_s: dict[str, list[float]] = {k: [] for k in trials}
    order = list(trials)
    for rep in range(args.repeats + 1):        # pass 0 fills the cache and warms up; not timed
        for i, (sizes, batches) in enumerate(plan):
            order = order[1:] + order[:1]
            for label in order:
                t = trials[label]
                t0 = time.perf_counter()
                train_step(t.parts, [(sizes, batches)], step=rep * len(plan) + i)
                if rep > 0:
                    step_s[label].append(time.perf_counter() - t0)
        if rep == 0:
            for v in forgetting_s.values():
                v.clear()
    print(f"# {args.model}: {args.batches} batches x {args.repeats} timed passes (after one filling pass), "
          f"{args.threads} threads")
    print(f"{'configuration':<22} {'s/step med':>10} {'forgetting ms med':>18}")
    for label in trials:
        f_ms = f"{1e3 * statistics.median(forgetting_s[label]):.1f}" if forgetting_s[label] else "-"
        print(f"{label:<22} {statistics.median(step_s[label]):>10.4f} {f_ms:>18}")
    print("cache report (warm):", trials["distill, cache warm"].method.forgetting.report())
    print("cache report (off): ", trials["distill, cache off"].method.forgetting.report())


if __name__ == "__main__":
    main()
