"""The numbers behind a table's cells and marks: mean and sample std, the baseline row each row is tested
against, paired differences over (seed, target language), and scipy's Wilcoxon signed-rank test.

scipy is imported only when a test runs.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from lfmlf.report.rows import RowLayout
from lfmlf.report.runs import RunRecord, finite


def mean_std(values: list[float]) -> tuple[float, float]:
    """(mean, sample std with ``ddof=1``); NaN std for one value, NaN both for none."""
    if not values:
        return math.nan, math.nan
    m = math.fsum(values) / len(values)
    if len(values) < 2:
        return m, math.nan
    var = math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var)


def _reference_row(row: str, base_rows: list[str], row_sets: dict[str, list[str]], row_method: dict[str, str],
                   split: set[str]) -> str | None:
    same = [b for b in base_rows if row_sets[b] == row_sets[row]]
    if same:
        return same[0]
    if len(base_rows) == 1 and row_method[row] not in split:
        return base_rows[0]
    return None


def _per_seed(runs: list[RunRecord], keys: list[str]) -> dict[int, dict[str, float]]:
    """seed -> key -> mean over the runs of that seed having a finite value."""
    acc: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        if r.seed is None:
            continue
        for k in keys:
            v = r.metrics.get(k)
            if finite(v):
                acc[r.seed][k].append(float(v))  # type: ignore[arg-type]
    return {s: {k: math.fsum(v) / len(v) for k, v in d.items()} for s, d in acc.items()}


def paired_differences(runs: list[RunRecord], base_runs: list[RunRecord], keys: list[str]) -> list[float]:
    """Differences row − baseline over (seed, key) pairs present in both, ordered by seed then key."""
    a, b = _per_seed(runs, keys), _per_seed(base_runs, keys)
    return [a[s][k] - b[s][k] for s in sorted(set(a) & set(b)) for k in keys if k in a[s] and k in b[s]]


def _wilcoxon(runs: list[RunRecord], base_runs: list[RunRecord], keys: list[str]) -> tuple[float | None, int, str]:
    d = paired_differences(runs, base_runs, keys)
    nonzero = [x for x in d if x != 0.0]
    if len(d) < 2:
        return None, len(d), f"{len(d)} pair(s) with a common seed; at least 2 needed"
    if not nonzero:
        return None, len(d), f"all {len(d)} differences are zero (identical scores)"
    if len(nonzero) < 2:
        return None, len(d), "fewer than 2 non-zero differences"
    from scipy.stats import wilcoxon  # lazy: SciPy is slow to import, and only a table with a test needs it

    res = wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto")
    why = f"{len(d) - len(nonzero)} zero difference(s) dropped" if len(nonzero) < len(d) else ""
    return float(res.pvalue), len(d), why


@dataclass
class Significance:
    """Per row: the p value, the number of pairs, whether p < alpha and the baseline row it was tested
    against; ``notes`` (one per tested row, or why no test ran) and whether the baseline had a row."""

    pvalues: dict[str, float | None]
    n_pairs: dict[str, int]
    significant: dict[str, bool]
    baseline_of: dict[str, str | None]
    notes: list[str]
    has_baseline: bool


def significance(layout: RowLayout, baseline: str, unranked: set[str], target_keys: list[str],
                 alpha: float) -> Significance:
    """Test every ranked row against its baseline row (same source set when rows are split) on the
    ``target_keys`` (one per target language), paired over (seed, target language)."""
    rows = layout.rows
    out = Significance(pvalues={row: None for row in rows}, n_pairs={row: 0 for row in rows},
                       significant={row: False for row in rows}, baseline_of={row: None for row in rows},
                       notes=[], has_baseline=False)
    base_rows = [row for row in rows if layout.method[row] == baseline and row not in unranked]
    if not base_rows:
        out.notes.append(f"No significance tests: baseline method {baseline!r} has no counted run.")
        return out
    out.has_baseline = True
    for row in rows:
        if layout.method[row] == baseline or row in unranked:
            continue
        ref = _reference_row(row, base_rows, layout.source_sets, layout.method, layout.split_methods)
        if ref is None:
            out.notes.append(f"{row}: no test (no {baseline} row with the same source set).")
            continue
        out.baseline_of[row] = ref
        p, npairs, why = _wilcoxon(layout.runs[row], layout.runs[ref], target_keys)
        out.n_pairs[row] = npairs
        out.pvalues[row] = p
        if p is None:
            out.notes.append(f"{row} vs {ref}: no test ({why}).")
        else:
            out.significant[row] = p < alpha
            extra = f"; {why}" if why else ""
            low = "; with fewer than 6 pairs p cannot go below 0.05" if npairs < 6 else ""
            out.notes.append(f"{row} vs {ref}: n={npairs} pairs, p={p:.3g}{extra}{low}.")
    return out
