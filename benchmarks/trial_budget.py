#!/usr/bin/env python
"""Where one trial of the real-data POS sweep spends its wall time, for each ``train.target_eval`` setting.

    python benchmarks/trial_budget.py                       # sweeps/pos_e5.yaml's own trial: ~15 minutes on 2 cores
    python benchmarks/trial_budget.py --steps 120 --eval-every 20 --eval-sentences 300 --modes every auto

Runs the MLF trial of ``sweeps/pos_e5.yaml`` (6-layer e5, English UPOS -> 5 PUD targets, Tatoeba probe on 5
languages) in this process, once per mode, with the same seed, and splits its wall time into:

- start-up: model load, data read (through the tokenised-data cache, warm after the first run), the probe's
  theta0 (``perf/startup_s``; Ray's actor start is not in it: the trial runs here, without Ray);
- source evaluation (``perf/eval_source_s``), target evaluation (``perf/eval_target_s``), probe
  (``perf/probe_s``), summed over the evaluations;
- training: the rest.

Needs the shared data (``$LFMLF_DATA_DIR``, default ``<repo>/../shared/data``) and the encoder in
``.cache/e5-6l`` (``python ../shared/tools/build_encoder.py .cache/e5-6l --layers 6``).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lfmlf.checks import load_checked  # noqa: E402
from lfmlf.config import trial_spec  # noqa: E402
from lfmlf.loop import fit  # noqa: E402


def run(mode: str, args: argparse.Namespace) -> dict[str, float]:
    cfg = load_checked(REPO / "sweeps" / "pos_e5.yaml",
                       [f"train.max_steps={args.steps}", f"train.eval_every={args.eval_every}",
                        f"train.target_eval={mode}", f"task.max_eval_sentences={args.eval_sentences}",
                        f"probe.max_pairs={args.pairs}"])
    spec = trial_spec(cfg, {"method": "mlf", "lr": 3e-5, "seed": 0})
    started = time.perf_counter()
    evals = [e.metrics for e in fit(spec)]
    wall = time.perf_counter() - started
    parts = {"start-up": evals[0]["perf/startup_s"],
             "source eval": sum(m["perf/eval_source_s"] for m in evals),
             "target eval": sum(m["perf/eval_target_s"] for m in evals),
             "probe": sum(m["perf/probe_s"] for m in evals)}
    parts["training"] = wall - sum(parts.values())
    return {"wall": wall, "evaluations": len(evals),
            # evaluations that scored the targets: those carrying zero_shot/*, and the last one in mode "selected"
            "target evaluations": sum("zero_shot/acc/avg" in m or (m is evals[-1] and "best/zero_shot/acc/avg" in m)
                                      for m in evals), **parts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="the sweep: 300")
    ap.add_argument("--eval-every", type=int, default=50, help="the sweep: 50")
    ap.add_argument("--eval-sentences", type=int, default=500, help="per target language (the sweep: 500)")
    ap.add_argument("--pairs", type=int, default=300, help="probe pairs per language (the sweep: 300)")
    ap.add_argument("--modes", nargs="+", default=["every", "auto"],
                    choices=["every", "auto", "improved", "selected"])
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    rows = {mode: run(mode, args) for mode in args.modes}
    print(f"\nMLF trial of sweeps/pos_e5.yaml: {args.steps} steps, an evaluation every {args.eval_every}, "
          f"{args.eval_sentences} sentences per target, {args.pairs} probe pairs per language; "
          f"load average {os.getloadavg()[0]:.2f}")
    cols = ["start-up", "training", "source eval", "target eval", "probe"]
    print("| target_eval | wall s | " + " | ".join(f"{c} s (%)" for c in cols) + " | evaluations (with targets) |")
    print("|---" * (len(cols) + 3) + "|")
    for mode, r in rows.items():
        cells = " | ".join(f"{r[c]:.1f} ({100 * r[c] / r['wall']:.0f}%)" for c in cols)
        print(f"| {mode} | {r['wall']:.1f} | {cells} | {r['evaluations']} ({r['target evaluations']}) |")


if __name__ == "__main__":
    main()
