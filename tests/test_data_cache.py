"""The tokenised-data cache when several trials on one node start together: one process builds an entry
under the file lock, the others wait and read it; nobody reads a half-written file."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

import pytest

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


def test_values_come_back_as_they_went_in(tmp_path):
    import numpy as np
    import torch

    value = ([{"input_ids": [1, 2, 3], "label": 2}], 4, [["B-PER", "O"]],
             {"fr": torch.arange(5), 3: (np.ones((2, 2), dtype=np.float32), None, 0.5, float("inf"))})
    built, hit = cached(tmp_path, "data/x", "k" * 24, lambda: value)
    again, hit_again = cached(tmp_path, "data/x", "k" * 24, lambda: pytest.fail("rebuilt"))
    assert (hit, hit_again) == (False, True)
    assert again[:3] == value[:3] and isinstance(again, tuple)
    assert torch.equal(again[3]["fr"], torch.arange(5))
    arr, none, half, inf = again[3][3]
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and (arr == 1).all()
    assert (none, half, inf) == (None, 0.5, float("inf"))
    assert not list(tmp_path.rglob("*.pkl"))   # nothing pickled


def test_a_crafted_cache_entry_cannot_run_code(tmp_path):
    """Whoever can write to a shared cache folder can put anything there: the entry is read as JSON and
    safetensors, a class name outside the registered dataclasses is refused, and the entry is rebuilt."""
    import json
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    entry = tmp_path / "data" / "x" / ("k" * 24)
    entry.mkdir(parents=True)
    (entry / "tree.json").write_text(json.dumps({"c": "os.system", "f": {"command": f"touch {marker}"}}))
    (entry / "arrays.safetensors").write_bytes(pickle.dumps(Evil()))   # not safetensors at all
    (entry.parent / (entry.name + ".pkl")).write_bytes(pickle.dumps(Evil()))   # the old format's file name
    with pytest.warns(UserWarning, match="unreadable"):
        value, hit = cached(tmp_path, "data/x", "k" * 24, lambda: {"ok": [1]})
    assert value == {"ok": [1]} and not hit
    assert not marker.exists()
    assert cached(tmp_path, "data/x", "k" * 24, lambda: pytest.fail("rebuilt"))[0] == {"ok": [1]}


def test_an_unregistered_class_is_refused_when_writing(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class Loose:
        x: int

    with pytest.raises(TypeError, match="not registered"):
        cached(tmp_path, "data/x", "k" * 24, lambda: Loose(1))
