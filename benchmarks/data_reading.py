#!/usr/bin/env python
"""Seconds to read the largest UNER training file and to generate the synthetic quickstart data.

    python benchmarks/data_reading.py                 # 5 repeats each, a few seconds on 2 cores
    python benchmarks/data_reading.py --repeats 10

The unit tests check what these produce (``tests/test_data_conll.py``, ``tests/test_data_synthetic.py``);
their speed is measured here, not asserted there (a loaded machine made a wall-clock assert fail).
Printed per case: the best and the median of ``--repeats`` runs, and the budget that the figure was
meant to stay under:

- ``read_tagged`` of ``uner/pt_bosque-ud-train.iob2`` (7018 sentences, 171776 tokens) from the shared data
  folder (``$LFMLF_DATA_DIR``, default ``<repo>/../shared/data``): budget 1 s;
- ``synthetic_ner`` of 2000 training sentences in each of six languages (12000 sentences): budget 1 s.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LFMLF_DATA_DIR") or REPO.parent / "shared" / "data")


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` (after one untimed warm-up call) and its result."""
    out = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per case (after one warm-up run)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from lfmlf.data.conll import read_tagged
    from lfmlf.data.synthetic import synthetic_ner

    rows = []
    uner = DATA_DIR / "uner" / "pt_bosque-ud-train.iob2"
    if uner.is_file():
        times, sents = timed(lambda: read_tagged(uner), args.repeats)
        rows.append((f"read_tagged {uner.name} ({len(sents)} sentences)", times, 1.0))
    else:
        print(f"# skipped read_tagged: {uner} is absent (LFMLF_DATA_DIR names the shared data folder)")
    langs = ["en", "de", "fr", "sw", "ja", "xx"]
    times, data = timed(lambda: synthetic_ner(langs, "train", 2000, seed=3), args.repeats)
    rows.append((f"synthetic_ner 6 x 2000 ({sum(len(v) for v in data.values())} sentences)", times, 1.0))

    width = max(len(r[0]) for r in rows)
    print(f"{'case':{width}s} {'best s':>8s} {'median s':>9s} {'budget s':>9s}")
    for name, times, budget in rows:
        flag = "" if min(times) <= budget else "   over budget"
        print(f"{name:{width}s} {min(times):8.3f} {statistics.median(times):9.3f} {budget:9.1f}{flag}")
    print(f"({args.repeats} timed runs each after one warm-up run; load average {os.getloadavg()[0]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
