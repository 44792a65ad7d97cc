"""Data preparation of the first and the second trial of a sweep on one machine, with the tokenised-data
cache (lfmlf/data/cache.py) starting empty.

    python benchmarks/data_cache.py                          # every real-data sweep in sweeps/*_e5.yaml
    python benchmarks/data_cache.py sweeps/pos_e5.yaml --set task.max_train_sentences=2000

Each trial is its own process (as Ray's trial actors are), building exactly what ``lfmlf.loop.build``
builds for the sweep's first source set and its first method. Reported per sweep: ``task.prepare`` wall
time (reading, tokenising and encoding every source and target split: the data preparation), the cache
hits and misses, and the ratio second / first. Target: second <= 10% of first.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT = sorted(str(p.relative_to(REPO)) for p in (REPO / "sweeps").glob("*_e5.yaml")
                 if "methods" not in p.name)


def child(sweep: str, overrides: list[str]) -> None:
    """One trial's build; prints its data-preparation stats as one JSON line."""
    import torch

    from lfmlf.config import load_sweep, trial_spec
    from lfmlf.loop import build

    torch.set_num_threads(1)
    cfg = load_sweep(sweep, overrides)
    method = next(iter(cfg.methods))
    spec = trial_spec(cfg, {"method": method, "source_set": cfg.source_sets()[-1]})
    t0 = time.perf_counter()
    task, _, _ = build(spec, torch.device("cpu"))
    print("@@RESULT@@" + json.dumps({**task.prep_stats, "build_s": time.perf_counter() - t0,
                                     "sources": list(spec.sources), "targets": list(spec.targets)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweeps", nargs="*", default=DEFAULT)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.child:
        child(args.sweeps[0], args.overrides)
        return 0
    rows = []
    for sweep in args.sweeps:
        with tempfile.TemporaryDirectory(prefix="lfmlf-cache-bench-") as cache:
            env = {**os.environ, "LFMLF_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
            trials = []
            for _ in range(2):
                cmd = [sys.executable, __file__, sweep, "--child", *sum((["--set", o] for o in args.overrides), [])]
                proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
                line = next((s for s in proc.stdout.splitlines() if s.startswith("@@RESULT@@")), None)
                if proc.returncode or line is None:
                    sys.stderr.write(proc.stderr[-3000:])
                    sys.exit(f"data_cache: a trial of {sweep} failed (exit {proc.returncode})")
                trials.append(json.loads(line[len("@@RESULT@@"):]))
        first, second = trials
        rows.append({"sweep": sweep, "first": first, "second": second,
                     "ratio": second["prepare_s"] / first["prepare_s"]})
        print(f"# {sweep}: first {first['prepare_s']:.2f} s ({first['cache_misses']} misses), second "
              f"{second['prepare_s']:.2f} s ({second['cache_hits']} hits)", flush=True)
    print("\n| sweep | languages | first trial: prepare s | second trial: prepare s | second / first "
          "| target <= 0.10 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        langs = "+".join(r["first"]["sources"]) + " -> " + "+".join(r["first"]["targets"])
        ok = "yes" if r["ratio"] <= 0.10 else "NO"
        print(f"| {r['sweep']} | {langs} | {r['first']['prepare_s']:.2f} | {r['second']['prepare_s']:.2f} "
              f"| {r['ratio']:.3f} | {ok} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
