"""The tokenised-data cache when several trials on one node start together: one process builds an entry
under the file lock, the others wait and read it; nobody reads a half-written file."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

from lfmlf.data.cache import cached


def _build_slowly(log: str) -> dict:
    with open(log, "a") as f:
        f.write(f"{os.getpid()}\n")
    time.sleep(1.0)   # long enough that every other process arrives while the entry is being built
    return {"input_ids": list(range(1000))}


def _trial(root: str, log: str, start: float, out: mp.Queue) -> None:
    while time.time() < start:   # start together
        time.sleep(0.001)
    value, hit = cached(Path(root), "data/ner", "k" * 24, lambda: _build_slowly(log))
    out.put((len(value["input_ids"]), hit))


def test_four_trials_starting_together_build_an_entry_once(tmp_path):
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    log = tmp_path / "builds.log"
    start = time.time() + 0.5
    procs = [ctx.Process(target=_trial, args=(str(tmp_path / "cache"), str(log), start, out)) for _ in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(p.exitcode == 0 for p in procs)
    assert len(log.read_text().split()) == 1                 # built once
    assert sorted(results) == [(1000, False), (1000, True), (1000, True), (1000, True)]
    assert not list((tmp_path / "cache" / "data" / "ner").glob("*.tmp*"))   # no temp file left behind
