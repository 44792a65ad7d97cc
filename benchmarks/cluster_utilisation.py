#!/usr/bin/env python
"""How busy a sweep keeps its slots: the summed trial wall time over (slots x makespan).

    python benchmarks/cluster_utilisation.py                      # 4 methods x 4 trials, 4 slots, ~3 min
    python benchmarks/cluster_utilisation.py --methods mlf lfmlf l2sp pcgrad ewc --trials 4 --slots 4

It writes a sweep of the tiny model on the synthetic NER data (ASHA on, so trials stop at different rungs
and the methods' steps cost differently: trial lengths vary), runs it with ``lfmlf sweep`` on a local Ray
instance with ``--slots`` logical CPUs and one CPU per trial, and reads every trial's MLflow run back:

- trial wall time: the run's start to its end (the Tune callback opens the run when Tune starts the trial
  and closes it when the trial ends, so actor start-up and model building count as busy);
- makespan: the first trial's start to the last trial's end;
- busy fraction = sum(trial wall time) / (slots x makespan); 1.0 means no slot ever idled.

All methods' studies share one Tuner, so a slot freed by any method's trial goes to the next trial of
whichever method has budget left; the only idle time left is the tail, when fewer trials than slots
remain. The old one-study-after-another driver is gone (it paid that tail once per method), so there is
no second mode to print. On 2 physical cores, 4 logical slots are oversubscribed: the figure measures the
scheduling, not the speed of a trial.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def sweep_yaml(methods: list[str], trials: int, slots: int, out: Path) -> dict:
    spaces = {"lr": {"type": "float", "low": 3e-4, "high": 3e-3, "log": True}, "source_set": {"type": "source_set"}}
    return {
        "name": "utilisation", "output_dir": str(out / "run"),
        "task": {"name": "ner", "format": "synthetic", "synthetic": {"train": 200, "dev": 60, "test": 60},
                 "max_length": 32},
        "model": {"name_or_path": "tiny", "tiny": {"hidden_size": 32, "layers": 2, "heads": 2, "vocab_size": 800}},
        "languages": {"sources": ["de", "en", "es"], "min_sources": 2, "must_include": ["en"], "targets": ["fr"]},
        "train": {"max_steps": 60, "eval_every": 15, "batch_size": 12, "eval_batch_size": 64},
        "methods": {m: {"space": dict(spaces)} for m in methods},
        "search": {"num_samples": trials, "max_concurrent": slots, "n_startup_trials": 2,
                   "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2}},
        "resources": {"cpu": 1, "gpu": 0},
        "ray": {"num_cpus": slots},
        "tracking": {"uri": f"sqlite:///{out / 'mlflow.db'}", "experiment": "utilisation"},
    }


def busy_fraction(intervals: list[tuple[float, float]], slots: int) -> tuple[float, float, float]:
    """(busy fraction, summed trial seconds, makespan seconds) of trial (start, end) intervals."""
    total = sum(end - start for start, end in intervals)
    makespan = max(end for _, end in intervals) - min(start for start, _ in intervals)
    return total / (slots * makespan), total, makespan


def trial_intervals(tracking_uri: str, experiment: str) -> list[tuple[str, float, float]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return [(r.data.params.get("method", "?"), r.info.start_time / 1000, r.info.end_time / 1000)
            for r in runs if r.data.tags.get("mlflow.parentRunId") and r.info.end_time]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["mlf", "lfmlf", "l2sp", "pcgrad"])
    p.add_argument("--trials", type=int, default=4, help="trials per method")
    p.add_argument("--slots", type=int, default=4, help="trials at once (logical CPUs of the local Ray)")
    p.add_argument("--max-steps", type=int, default=60, help="steps of a trial that ASHA does not stop")
    p.add_argument("--keep", help="keep the sweep's folder here (for a look at Ray's and MLflow's records)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = Path(args.keep or d)
        out.mkdir(parents=True, exist_ok=True)
        cfg = sweep_yaml(args.methods, args.trials, args.slots, out)
        cfg["train"]["max_steps"] = args.max_steps
        (out / "sweep.yaml").write_text(yaml.safe_dump(cfg))
        started = time.time()
        proc = subprocess.run([sys.executable, "-m", "lfmlf.cli", "sweep", str(out / "sweep.yaml")], cwd=out,
                              capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            print(f"the sweep failed (exit {proc.returncode})")
            return 1
        rows = trial_intervals(cfg["tracking"]["uri"], "utilisation")
        fraction, total, makespan = busy_fraction([(s, e) for _, s, e in rows], args.slots)
        print(f"methods {', '.join(args.methods)} x {args.trials} trials, {args.slots} slots, one Tuner: "
              f"{len(rows)} trials, wall {time.time() - started:.0f} s")
        print(f"summed trial time {total:.0f} s, makespan {makespan:.0f} s, busy fraction {fraction:.3f} "
              f"(target >= 0.85)")
        tail = max(e for _, _, e in rows) - sorted(e for _, _, e in rows)[-args.slots]
        starts, ends = sorted(s for _, s, _ in rows), sorted(e for _, _, e in rows)
        handovers = [b - a for a, b in zip(ends, starts[args.slots:])]   # a slot freed -> the next trial starts
        print(f"tail (last {args.slots} trial ends): {tail:.0f} s; mean trial {total / len(rows):.1f} s; "
              f"hand-over (a trial ends -> the next starts) median {sorted(handovers)[len(handovers) // 2]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
