"""The rows of a results table: one per method (or method × source set), each followed by its
checkpoint-averaged row and its oracle reference row, in display order.

The baseline comes first, then the other methods alphabetically, source sets sorted within a method (the
rules are in the :mod:`lfmlf.report` docstring).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from lfmlf.report.runs import RunRecord, finite
from lfmlf.report.table import TARGET_AVG

AVERAGED_PREFIX = "avg/"


def averaged_key(key: str, prefix: str) -> str:
    """``best/zero_shot/f1/fr`` -> ``avg/zero_shot/f1/fr``: the checkpoint average's copy of a key."""
    for p in (prefix, "best/"):
        if p and key.startswith(p):
            return AVERAGED_PREFIX + key[len(p):]
    return AVERAGED_PREFIX + key


def _averaged_variant(runs: list[RunRecord]) -> str:
    """``averaged last 3`` (``avg/checkpoints``, else the ``train.average_last`` param; ``2–3`` if they differ)."""
    ks = {int(r.metrics["avg/checkpoints"]) for r in runs if finite(r.metrics.get("avg/checkpoints"))}
    if not ks:
        for r in runs:
            try:
                ks.add(int(float(r.params.get("train.average_last", ""))))
            except ValueError:
                pass
    if not ks:
        return "averaged"
    return f"averaged last {min(ks)}" if len(ks) == 1 else f"averaged last {min(ks)}–{max(ks)}"


@dataclass
class RowLayout:
    """The rows in display order and, per row, its runs, method, source sets and marker; which rows are
    oracle references (``reference``) and checkpoint-averaged (``averaged``, reading ``keys[row]``
    instead of the table's keys and labelled ``variant[row]``); the methods split by source set."""

    rows: list[str] = field(default_factory=list)
    runs: dict[str, list[RunRecord]] = field(default_factory=dict)
    method: dict[str, str] = field(default_factory=dict)
    source_sets: dict[str, list[str]] = field(default_factory=dict)
    marker: dict[str, str] = field(default_factory=dict)
    reference: list[str] = field(default_factory=list)
    averaged: list[str] = field(default_factory=list)
    keys: dict[str, dict[str, str]] = field(default_factory=dict)
    variant: dict[str, str] = field(default_factory=dict)
    split_methods: set[str] = field(default_factory=set)

    def add(self, label: str, runs: list[RunRecord], method: str, source_sets: list[str], marker: str) -> None:
        """Append a row."""
        self.rows.append(label)
        self.runs[label] = runs
        self.method[label] = method
        self.source_sets[label] = source_sets
        self.marker[label] = marker

    def add_averaged(self, of: str, source_set: str | None, avg_keys: dict[str, str], left_out: list[str]) -> None:
        """After row ``of``: its checkpoint-averaged row, over its runs that logged the ``avg/`` target avg
        (the others are noted in ``left_out``)."""
        has = [r for r in self.runs[of] if finite(r.metrics.get(avg_keys[TARGET_AVG]))]
        if not has:
            return
        variant = _averaged_variant(has)
        method = self.method[of]
        label = f"{method} ({source_set}, {variant})" if source_set else f"{method} ({variant})"
        # an oracle-selected configuration stays marked as one
        self.add(label, has, method, sorted({r.source_set for r in has}), self.marker[of])
        self.averaged.append(label)
        self.keys[label] = avg_keys
        self.variant[label] = variant
        for r in self.runs[of]:
            if r not in has:
                left_out.append(f"row {label}: {r.describe()} has no {avg_keys[TARGET_AVG]} (no checkpoint "
                                "average logged)")


def lay_out_rows(used: list[RunRecord], oracle_used: list[RunRecord], baseline: str, marker: str,
                 oracle_marker: str, avg_keys: dict[str, str], left_out: list[str]) -> RowLayout:
    """The rows of the counted runs ``used`` (marked ``marker``) and of the oracle's picks ``oracle_used``
    (reference rows marked ``oracle_marker``); averaged rows read ``avg_keys``. Runs of a row that have no
    checkpoint average are noted in ``left_out``."""
    by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for r in used:
        by_method[r.method].append(r)
    oracle_by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for r in oracle_used:
        oracle_by_method[r.method].append(r)
    layout = RowLayout()
    for m in sorted(set(by_method) | set(oracle_by_method), key=lambda m: (m != baseline, m)):
        sets = sorted({r.source_set for r in by_method[m]})
        if len(sets) > 1:
            layout.split_methods.add(m)
            for s in sets:
                label = f"{m} ({s})"
                layout.add(label, [r for r in by_method[m] if r.source_set == s], m, [s], marker)
                layout.add_averaged(label, s, avg_keys, left_out)
        elif sets:
            layout.add(m, list(by_method[m]), m, sets, marker)
            layout.add_averaged(m, None, avg_keys, left_out)
        if oracle_by_method[m]:
            label = f"{m} ({oracle_marker})"
            layout.add(label, list(oracle_by_method[m]), m, sorted({r.source_set for r in oracle_by_method[m]}),
                       oracle_marker)
            layout.reference.append(label)
    return layout
