"""Aggregate runs into a :class:`~lfmlf.report.table.Table`: which runs count, the columns, the rows, the
cells (mean ± std), the best per column, the significance marks, the notes and the caption.

Every rule is stated in the :mod:`lfmlf.report` docstring.
"""
from __future__ import annotations

import math

from lfmlf.report.groups import group_column, group_key, groups_note, with_group_scores
from lfmlf.report.rows import RowLayout, averaged_key, lay_out_rows
from lfmlf.report.runs import RunRecord, exclusion, finite, no_eligible_reason
from lfmlf.report.stats import mean_std, significance
from lfmlf.report.table import FORGETTING, SOURCE_AVG, TARGET_AVG, Table
from lfmlf.selection import Selection


def build_table(runs: list[RunRecord], *, task_metric: str, targets: list[str], baseline: str = "mlf",
                forgetting_key: str | None = "best/forgetting/retrieval_drop/avg", prefix: str = "best/",
                alpha: float = 0.05, budget: dict[str, int] | None = None, selection_rule: str | None = None,
                scale: float = 100.0, digits: int = 1, selection: Selection | None = None,
                methods: list[str] | None = None, why_missing: dict[str, str] | None = None,
                oracle_runs: list[RunRecord] | None = None, oracle_selection: Selection | None = None,
                provenance: list[str] | None = None, groups: dict[str, list[str]] | None = None,
                group_by: str = "") -> Table:
    """Aggregate runs into a :class:`Table` (see the module docstring for every rule).

    ``budget`` (method -> number of trials), ``selection_rule`` (how each method's configuration was
    chosen) and ``selection`` (the label of the metric it was chosen on) go into the caption; ``scale``/
    ``digits`` only affect how the renderers print numbers. ``methods``: every method the table must show
    (one without a counted run is listed in ``missing``, with ``why_missing[method]`` or the reasons its
    runs were left out). ``oracle_runs`` (labelled by ``oracle_selection``) become one reference row per
    method, after its own rows. ``provenance``: run ids, rendered as comments. Rows whose runs logged a
    checkpoint average (``avg/*``) get an averaged row after them (module docstring, "Averaged rows").
    ``groups`` (group -> its target languages, grouped by ``group_by``: :func:`lfmlf.report.groups.language_groups`)
    orders the target columns by group, each group followed by its average column (``"Latn avg"``).
    """
    left_out: list[str] = []
    if groups:
        runs = with_group_scores(runs, groups, task_metric, (prefix, "avg/"))
        oracle_runs = with_group_scores(oracle_runs or [], groups, task_metric, (prefix, "avg/"))
    used = _counted(runs, "", left_out)
    oracle_used = _counted(oracle_runs or [], "oracle ", left_out)
    keys = _columns(task_metric, targets, prefix, forgetting_key, used + oracle_used, groups or {})
    columns = list(keys)
    lower = {c: c == FORGETTING for c in columns}
    avg_keys = {c: averaged_key(k, prefix) for c, k in keys.items()}
    marker = selection.marker if selection is not None else ""
    oracle_marker = (oracle_selection.marker if oracle_selection is not None else "") or "oracle"
    layout = lay_out_rows(used, oracle_used, baseline, marker, oracle_marker, avg_keys, left_out)

    notes: list[str] = [groups_note(groups, group_by or "group")] if groups else []
    if layout.split_methods:
        notes.append("Rows split by source set for: " + ", ".join(sorted(layout.split_methods)) + ".")
    no_row = _without_row(methods or [], runs, used + oracle_used, why_missing or {})
    if no_row:
        notes.append("No row for " + "; ".join(f"{m}: {why}" for m, why in no_row.items())
                     + ". Such methods are shown with empty cells, never dropped.")
    means, stds, ns = _cells(layout, keys, left_out)
    # Averaged rows take no bold (nor a test, below): bold and † answer "which method wins under this table's
    # selection protocol", and an averaged row is another protocol on a configuration that was tuned for the
    # selected checkpoint (its runs were picked, and their hyperparameters searched, by best/ scores), so a
    # win or a loss against the selected rows would mix the two. Averaging uses no dev data, so comparing
    # the numbers by eye is not unfair; it is simply not the comparison the marks state.
    unranked = set(layout.reference) | set(layout.averaged)
    best = _best(layout.rows, means, lower, unranked)
    tests = significance(layout, baseline, unranked, [keys[t] for t in targets], alpha)
    if tests.has_baseline:
        notes.append(
            f"† on {TARGET_AVG}: two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero_method='wilcox': "
            f"zero differences dropped) vs the {baseline} row (same source set when rows are split), paired over "
            f"(seed, target language) with the same seed; p < {alpha:g}. Pairs of one seed share a model, so they "
            f"are not independent: read p as a screening signal.")
    notes.extend(tests.notes)
    notes.extend(_closing_notes(used, keys, avg_keys, prefix, layout.averaged))

    caption = _caption(task_metric, targets, baseline, alpha, budget, selection_rule, scale,
                       FORGETTING in keys, selection, oracle_selection if layout.reference else None, oracle_marker,
                       sorted(set(layout.variant.values())))
    return Table(rows=layout.rows, columns=columns, keys=keys, lower_is_better=lower, means=means, stds=stds,
                 n=ns, pvalues=tests.pvalues, n_pairs=tests.n_pairs, significant=tests.significant, best=best,
                 left_out=left_out, notes=notes, caption=caption, row_method=layout.method,
                 row_source_sets=layout.source_sets, row_runs=layout.runs, baseline=baseline,
                 baseline_of=tests.baseline_of, task_metric=task_metric, targets=list(targets), alpha=alpha,
                 scale=scale, digits=digits, missing=no_row, row_marker=layout.marker,
                 reference_rows=layout.reference, selection=selection, provenance=list(provenance or []),
                 averaged_rows=layout.averaged, row_keys=layout.keys, row_variant=layout.variant,
                 groups=dict(groups or {}), group_by=group_by if groups else "")


def _counted(runs: list[RunRecord], label: str, left_out: list[str]) -> list[RunRecord]:
    """The runs that count (:func:`exclusion`); each other one goes to ``left_out`` with its reason."""
    used: list[RunRecord] = []
    for r in runs:
        why = exclusion(r)
        if why is None:
            used.append(r)
        else:
            left_out.append(f"{label}{r.describe()}: {why}")
    return used


def _columns(task_metric: str, targets: list[str], prefix: str, forgetting_key: str | None,
             counted: list[RunRecord], groups: dict[str, list[str]]) -> dict[str, str]:
    """column -> metric key: each target language (by group, each group followed by its average, when
    ``groups`` is given), the target and source averages, and the forgetting drop when a counted run has it
    (or its checkpoint-averaged copy)."""
    avg = f"{prefix}zero_shot/{task_metric}/avg"
    keys: dict[str, str] = {}
    for group, langs in (groups or {"": list(targets)}).items():
        keys.update({lang: f"{prefix}zero_shot/{task_metric}/{lang}" for lang in langs})
        if groups:
            keys[group_column(group)] = group_key(avg, group)
    keys[TARGET_AVG] = avg
    keys[SOURCE_AVG] = f"{prefix}source/{task_metric}/avg"
    if forgetting_key and any(k in r.metrics for r in counted
                              for k in (forgetting_key, averaged_key(forgetting_key, prefix))):
        keys[FORGETTING] = forgetting_key
    return keys


def _without_row(methods: list[str], runs: list[RunRecord], counted: list[RunRecord],
                 why_missing: dict[str, str]) -> dict[str, str]:
    """method -> why it has no row, for each of ``methods`` without a counted run (oracle runs included)."""
    shown = {r.method for r in counted}
    no_row: dict[str, str] = {}
    for m in methods:
        if m not in shown:
            mine = [r for r in runs if r.method == m]
            no_row[m] = why_missing.get(m) or no_eligible_reason(mine, what="run")
    return no_row


def _cells(layout: RowLayout, keys: dict[str, str], left_out: list[str]
           ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    """(means, stds, n) per row and column over the row's runs that have a finite value; a run without
    one, and a cell no run has, are noted in ``left_out``."""
    means: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}
    ns: dict[str, dict[str, int]] = {}
    for row in layout.rows:
        means[row], stds[row], ns[row] = {}, {}, {}
        for col in keys:
            key = layout.keys.get(row, keys)[col]
            vals: list[float] = []
            missing: list[str] = []
            for r in layout.runs[row]:
                v = r.metrics.get(key)
                if finite(v):
                    vals.append(float(v))  # type: ignore[arg-type]
                else:
                    missing.append(r.describe() + ("" if v is None else f" (value {v})"))
            means[row][col], stds[row][col] = mean_std(vals)
            ns[row][col] = len(vals)
            if not vals:
                left_out.append(f"row {row}: no run has {key} (cell left empty)")
            elif missing:
                left_out.append(f"row {row}: {key} missing or non-finite in " + "; ".join(missing)
                                + f" (cell over n={len(vals)})")
    return means, stds, ns


def _best(rows: list[str], means: dict[str, dict[str, float]], lower: dict[str, bool],
          unranked: set[str]) -> dict[str, tuple[str, ...]]:
    """column -> the row(s) with the highest mean (lowest where ``lower``) among the ranked rows."""
    best: dict[str, tuple[str, ...]] = {}
    for col, lower_is_better in lower.items():
        cands = [(means[row][col], row) for row in rows
                 if math.isfinite(means[row][col]) and row not in unranked]
        if not cands:
            best[col] = ()
            continue
        target = min(v for v, _ in cands) if lower_is_better else max(v for v, _ in cands)
        best[col] = tuple(row for v, row in cands if v == target)
    return best


def _closing_notes(used: list[RunRecord], keys: dict[str, str], avg_keys: dict[str, str], prefix: str,
                   averaged_rows: list[str]) -> list[str]:
    """The notes on seedless runs, the runs left out, the target average, the forgetting column and the
    averaged rows."""
    notes = []
    if any(r.seed is None for r in used):
        notes.append("Runs without a seed (sweep trials) are averaged but cannot be paired for the test.")
    notes.append("Runs left out: not FINISHED, or stopped early by ASHA (tag lfmlf.stopped_early=true; "
                 "their scores come from shorter training). Reruns have no scheduler and always count.")
    notes.append(f"Target avg is the logged {keys[TARGET_AVG]} (over all target languages of the run).")
    if FORGETTING in keys:
        notes.append(f"Forgetting = {keys[FORGETTING]} (retrieval accuracy lost vs the pre-trained encoder; "
                     "lower is better, best = lowest).")
    if averaged_rows:
        notes.append("Averaged rows (" + ", ".join(averaged_rows) + ") read "
                     + ", ".join(avg_keys[c] for c in keys) + f" instead of the {prefix or 'plain'} keys: "
                     "the checkpoint average logged at each run's last step (train.average_last; avg/checkpoints "
                     "evaluations averaged, from avg/first_step). Same runs and configurations as the row above "
                     "them: only the checkpoint is selection-free.")
    return notes


def _caption(task_metric: str, targets: list[str], baseline: str, alpha: float, budget: dict[str, int] | None,
             selection_rule: str | None, scale: float, forgetting: bool, selection: Selection | None = None,
             oracle: Selection | None = None, oracle_marker: str = "oracle",
             averaged: list[str] | None = None) -> str:
    scaled = f" (×{scale:g})" if scale != 1 else ""
    parts = []
    if selection is not None and selection.is_oracle:
        parts.append(f"ORACLE SELECTION, NOT ZERO-SHOT: rows marked ({selection.marker}) were {selection.sentence}.")
    parts.append(f"Zero-shot {task_metric}{scaled} on {', '.join(targets)}, their average, and the source-language "
                 f"average; mean ± sample std over runs (seeds), n = runs.")
    best = "Best per column in bold"
    parts.append(best + (" (lowest for the forgetting drop)." if forgetting else "."))
    parts.append(f"† p < {alpha:g} on the target average: two-sided Wilcoxon signed-rank test vs {baseline}, "
                 f"paired over (seed, target language).")
    rule = selection_rule or (selection.sentence if selection is not None else "")
    if rule and selection is not None and selection.label not in rule:
        rule += f" ({selection.label})"
    parts.append(f"Selection: {rule}." if rule else "Selection rule: not stated.")
    if oracle is not None:
        parts.append(f"Rows marked ({oracle_marker}): each method's sweep trial {oracle.sentence}, shown beside "
                     "the zero-shot-faithful row as a reference for what selection costs (no bold, no test).")
    if averaged:
        parts.append(f"Rows labelled ({' / '.join(averaged)}) are selection-free: each run's model is the uniform "
                     "average of the weights of its last k evaluations (checkpoint averaging, Schmidt et al., 2023), "
                     "scored at its last step, so no dev data picks its checkpoint (no bold, no test).")
    if budget:
        parts.append("Trial budget: " + ", ".join(f"{m} {n}" for m, n in budget.items()) + "."
                     + ("" if len(set(budget.values())) <= 1 else " Budgets differ across methods."))
    return " ".join(parts)
