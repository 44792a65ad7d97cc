"""Result tables from finished runs: mean ± std per method, significance vs a baseline, Markdown/LaTeX/CSV.

Works on plain :class:`RunRecord` values (the caller fetches them from MLflow); this module imports
neither mlflow, ray nor optuna. scipy is imported only when a significance test runs.

Decisions (also written into every table's notes, so a reader of the report sees them):

* **Which runs count.** Only runs with MLflow status ``FINISHED``. Among those, runs tagged
  ``lfmlf.stopped_early = "true"`` (ASHA cut the trial before ``train.max_steps``) are left out too:
  their ``best/*`` scores come from a shorter training and would drag a mean towards whatever the
  scheduler disliked. Reruns have no scheduler, so they are never tagged and always count. Every run
  left out is listed in :attr:`Table.left_out` with the reason (:func:`exclusion`, which ``lfmlf best``
  applies too: a stopped trial is never selected).
* **Every method is shown.** A method of ``methods`` without a counted run is listed in
  :attr:`Table.missing` with the reason ("no eligible trial: 3 stopped early by ASHA, 1 FAILED") and
  rendered as a row of empty cells; it is never dropped silently.
* **Selection label.** ``selection`` (:func:`lfmlf.selection.selection_label` of the metric the rows were
  selected on) goes into the caption. Rows selected on target-language data (an oracle, not zero-shot)
  carry a marker next to their method in Markdown and LaTeX, and the caption says so. ``oracle_runs`` add,
  per method, the trial an oracle would have picked, as a marked reference row: it takes no bold and no
  significance test.
* **Run ids** never go into the caption: they are in :attr:`Table.provenance` (Markdown list, LaTeX ``%``
  comments) and in the per-row run links.
* **Rows.** One per method; a method whose counted runs have more than one source set gets one row per
  (method, source set), labelled ``"method (de+en)"``. The baseline comes first, then the other methods
  alphabetically, source sets sorted within a method.
* **Cells.** Mean and sample standard deviation (``ddof=1``) over the runs of the row that have the metric;
  with one run the std is NaN (shown as "–"). A missing or non-finite value leaves the run out of that
  cell only (noted in ``left_out``); a cell no run has stays empty. The target average is the logged
  ``zero_shot/<metric>/avg`` (over all the run's targets), not recomputed from ``targets``.
* **Best.** Highest mean per column, lowest for the forgetting column (a retrieval *drop*); ties are all
  marked.
* **Significance.** Each row against the baseline row: the baseline method's row with the same source set
  when one exists, else (only if neither row is split by source set) the baseline method's single row.
  Pairs are (seed, target language) with the same seed in both rows (runs of one seed are averaged first;
  runs without a seed cannot be paired); the test is scipy's two-sided Wilcoxon signed-rank test,
  ``zero_method="wilcox"`` (zero differences dropped, the textbook version; scipy's default), ``method="auto"``.
  No test with fewer than 2 non-zero differences (all-zero differences: identical scores). The dagger goes
  on the row's *target avg* cell, since the test pools all target languages. Pairs of one seed share a
  model and are not independent, so read p as a screening signal, not a guarantee.
* **Averaged rows.** Runs trained with ``train.average_last`` = k log, at their last step, the scores of the
  uniform average of their last k evaluations' weights (checkpoint averaging, Schmidt et al., ACL 2023) as
  ``avg/*``. Each (non-oracle) row whose counted runs carry ``avg/zero_shot/<metric>/avg`` is followed by a row
  ``"method (averaged last k)"`` over those runs whose cells read the ``avg/`` keys instead of the ``best/``
  ones. Its checkpoint is selection-free (no dev score picks it); its configuration is the selected row's. It
  takes no bold and no test (see :func:`build_table`), keeps the row's selection marker, and the caption says
  so. Runs without ``avg/`` metrics add no row.
"""
from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

from lfmlf.selection import Selection

__all__ = [
    "FORGETTING",
    "SOURCE_AVG",
    "TARGET_AVG",
    "Importance",
    "RunRecord",
    "Table",
    "build_table",
    "exclusion",
    "latex_escape",
    "merge_left_out",
    "no_eligible_reason",
    "paired_differences",
    "selection_cost",
    "sweep_left_out",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_report",
]

TARGET_AVG = "target avg"
SOURCE_AVG = "source avg"
FORGETTING = "forgetting"
STOPPED_EARLY_TAG = "lfmlf.stopped_early"


@dataclass(frozen=True)
class RunRecord:
    """One MLflow run, as plain values."""

    run_id: str
    status: str                  # MLflow status: FINISHED | FAILED | KILLED | RUNNING
    method: str                  # e.g. "mlf", "lfmlf"
    source_set: str              # canonical "de+en+es"
    seed: int | None             # train seed (reruns); None for sweep trials
    metrics: dict[str, float]    # last logged values, e.g. "best/zero_shot/f1/fr"
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    url: str = ""

    @property
    def stopped_early(self) -> bool:
        return self.tags.get(STOPPED_EARLY_TAG, "").strip().lower() == "true"

    def describe(self) -> str:
        """``run abc123 (lfmlf, de+en, seed 2)``, the form used in left-out notes."""
        seed = f", seed {self.seed}" if self.seed is not None else ""
        return f"run {self.run_id} ({self.method}, {self.source_set}{seed})"

    def last_step(self) -> int | None:
        """The last step any fetched metric history reached (None without histories)."""
        steps = [int(step) for points in self.history.values() for step, _ in points]
        return max(steps) if steps else None


def _stopped_text(r: RunRecord) -> str:
    """``stopped early by ASHA (at step 20 of 80)``, as far as the record tells."""
    try:
        total: int | None = int(float(r.params.get("train.max_steps", "")))
    except ValueError:
        total = None
    step = r.last_step()
    if step is not None and total is not None:
        return f"stopped early by ASHA (at step {step} of {total})"
    if step is not None:
        return f"stopped early by ASHA (at step {step})"
    if total is not None:
        return f"stopped early by ASHA (before step {total})"
    return "stopped early by ASHA"


def exclusion(r: RunRecord, metric: str | None = None) -> str | None:
    """Why ``r`` may not be selected or counted (None: it may): not FINISHED (its status), stopped early by
    ASHA (a FINISHED run tagged ``lfmlf.stopped_early=true``), or, given ``metric``, without a finite
    value of it."""
    if r.status != "FINISHED":
        return r.status
    if r.stopped_early:
        return _stopped_text(r)
    if metric is not None and not _finite(r.metrics.get(metric)):
        return f"no finite {metric}"
    return None


def no_eligible_reason(runs: list[RunRecord], metric: str | None = None, what: str = "trial") -> str:
    """``no eligible trial (3 stopped early by ASHA, 1 FAILED)`` for a method whose ``runs`` none count."""
    if not runs:
        return f"no {what} run"
    reasons: dict[str, int] = defaultdict(int)
    for r in runs:
        why = exclusion(r, metric) or "eligible"
        reasons["stopped early by ASHA" if why.startswith("stopped early") else why] += 1
    return f"no eligible {what} (" + ", ".join(f"{n} {why}" for why, n in reasons.items()) + ")"


@dataclass
class Table:
    """A results table: rows (methods or method × source set) by columns (metrics), plus provenance.

    ``means``/``stds``/``n`` are ``[row][column]``; values are raw metric values (unscaled, full precision),
    NaN where the cell is empty (mean) or undefined (std with n < 2). ``pvalues[row]`` is the Wilcoxon p
    value against ``baseline_of[row]`` (None: baseline itself or no test; ``notes`` says why).
    ``missing`` (method -> reason) are methods without a row; ``row_marker[row]`` is shown next to the
    row's method ("oracle: target dev"); ``reference_rows`` (oracle rows) take no bold and no test.
    ``averaged_rows`` (checkpoint averaging, ``avg/*`` metrics) read ``row_keys[row]`` instead of ``keys``,
    show ``row_variant[row]`` ("averaged last 3") after the method, and take no bold and no test either.
    """

    rows: list[str]
    columns: list[str]
    keys: dict[str, str]                      # column -> metric key
    lower_is_better: dict[str, bool]          # column -> True for the forgetting drop
    means: dict[str, dict[str, float]]
    stds: dict[str, dict[str, float]]
    n: dict[str, dict[str, int]]
    pvalues: dict[str, float | None]
    n_pairs: dict[str, int]
    significant: dict[str, bool]              # row -> p < alpha (dagger on the target-avg cell)
    best: dict[str, tuple[str, ...]]          # column -> best row(s); empty when the column is empty
    left_out: list[str]
    notes: list[str]
    caption: str
    row_method: dict[str, str]
    row_source_sets: dict[str, list[str]]     # source sets of the runs in the row (one unless unsplit & mixed)
    row_runs: dict[str, list[RunRecord]]
    baseline: str
    baseline_of: dict[str, str | None]        # row -> baseline row it is tested against
    task_metric: str
    targets: list[str]
    alpha: float = 0.05
    dagger_column: str = TARGET_AVG
    scale: float = 100.0                      # display only: cells are shown as value * scale
    digits: int = 1
    missing: dict[str, str] = field(default_factory=dict)      # method -> why it has no row
    row_marker: dict[str, str] = field(default_factory=dict)   # row -> marker ("oracle: target dev"), "" none
    reference_rows: list[str] = field(default_factory=list)    # oracle rows beside the faithful ones
    selection: Selection | None = None                         # how the (non-reference) rows were selected
    provenance: list[str] = field(default_factory=list)        # run ids: comments, never the caption
    averaged_rows: list[str] = field(default_factory=list)     # checkpoint-averaged rows (avg/* keys)
    row_keys: dict[str, dict[str, str]] = field(default_factory=dict)   # row -> column -> key, overrides keys
    row_variant: dict[str, str] = field(default_factory=dict)  # row -> "averaged last 3" after the method

    def key(self, row: str, col: str) -> str:
        """The metric key a row's cell reads (``avg/...`` for an averaged row, else ``keys[col]``)."""
        return self.row_keys.get(row, self.keys)[col]

    def method_name(self, row: str) -> str:
        """The method, plus the row's variant ("mlf (averaged last 3)") when it has one."""
        variant = self.row_variant.get(row, "")
        return f"{self.row_method[row]} ({variant})" if variant else self.row_method[row]

    def method_cell(self, row: str) -> str:
        """The method column's text: the method (and variant), plus its marker when it has one."""
        marker = self.row_marker.get(row, "")
        return f"{self.method_name(row)} ({marker})" if marker else self.method_name(row)

    @property
    def oracle_marked(self) -> bool:
        """Whether some row was selected on target-language data."""
        return any(self.row_marker.get(row) for row in self.rows)

    def row_n(self, row: str) -> int:
        """Number of runs counted in a row."""
        return len(self.row_runs[row])


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    m = math.fsum(values) / len(values)
    if len(values) < 2:
        return m, math.nan
    var = math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)
    return m, math.sqrt(var)


AVERAGED_PREFIX = "avg/"


def _averaged_key(key: str, prefix: str) -> str:
    """``best/zero_shot/f1/fr`` -> ``avg/zero_shot/f1/fr``: the checkpoint average's copy of a key."""
    for p in (prefix, "best/"):
        if p and key.startswith(p):
            return AVERAGED_PREFIX + key[len(p):]
    return AVERAGED_PREFIX + key


def _averaged_variant(runs: list[RunRecord]) -> str:
    """``averaged last 3`` (``avg/checkpoints``, else the ``train.average_last`` param; ``2–3`` if they differ)."""
    ks = {int(r.metrics["avg/checkpoints"]) for r in runs if _finite(r.metrics.get("avg/checkpoints"))}
    if not ks:
        for r in runs:
            try:
                ks.add(int(float(r.params.get("train.average_last", ""))))
            except ValueError:
                pass
    if not ks:
        return "averaged"
    return f"averaged last {min(ks)}" if len(ks) == 1 else f"averaged last {min(ks)}–{max(ks)}"


def build_table(runs: list[RunRecord], *, task_metric: str, targets: list[str], baseline: str = "mlf",
                forgetting_key: str | None = "best/forgetting/retrieval_drop/avg", prefix: str = "best/",
                alpha: float = 0.05, budget: dict[str, int] | None = None, selection_rule: str | None = None,
                scale: float = 100.0, digits: int = 1, selection: Selection | None = None,
                methods: list[str] | None = None, why_missing: dict[str, str] | None = None,
                oracle_runs: list[RunRecord] | None = None, oracle_selection: Selection | None = None,
                provenance: list[str] | None = None) -> Table:
    """Aggregate runs into a :class:`Table` (see the module docstring for every rule).

    ``budget`` (method -> number of trials), ``selection_rule`` (how each method's configuration was
    chosen) and ``selection`` (the label of the metric it was chosen on) go into the caption; ``scale``/
    ``digits`` only affect how the renderers print numbers. ``methods``: every method the table must show
    (one without a counted run is listed in ``missing``, with ``why_missing[method]`` or the reasons its
    runs were left out). ``oracle_runs`` (labelled by ``oracle_selection``) become one reference row per
    method, after its own rows. ``provenance``: run ids, rendered as comments. Rows whose runs logged a
    checkpoint average (``avg/*``) get an averaged row after them (module docstring, "Averaged rows").
    """
    left_out: list[str] = []
    notes: list[str] = []
    used: list[RunRecord] = []
    for r in runs:
        why = exclusion(r)
        if why is None:
            used.append(r)
        else:
            left_out.append(f"{r.describe()}: {why}")
    oracle_used: list[RunRecord] = []
    for r in oracle_runs or []:
        why = exclusion(r)
        if why is None:
            oracle_used.append(r)
        else:
            left_out.append(f"oracle {r.describe()}: {why}")

    # ---- columns
    keys: dict[str, str] = {lang: f"{prefix}zero_shot/{task_metric}/{lang}" for lang in targets}
    keys[TARGET_AVG] = f"{prefix}zero_shot/{task_metric}/avg"
    keys[SOURCE_AVG] = f"{prefix}source/{task_metric}/avg"
    if forgetting_key and any(k in r.metrics for r in used + oracle_used
                              for k in (forgetting_key, _averaged_key(forgetting_key, prefix))):
        keys[FORGETTING] = forgetting_key
    columns = list(keys)
    lower = {c: c == FORGETTING for c in columns}
    avg_keys = {c: _averaged_key(k, prefix) for c, k in keys.items()}

    # ---- rows
    by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for r in used:
        by_method[r.method].append(r)
    oracle_by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for r in oracle_used:
        oracle_by_method[r.method].append(r)
    row_order = sorted(set(by_method) | set(oracle_by_method), key=lambda m: (m != baseline, m))
    marker = selection.marker if selection is not None else ""
    oracle_marker = (oracle_selection.marker if oracle_selection is not None else "") or "oracle"
    rows: list[str] = []
    row_runs: dict[str, list[RunRecord]] = {}
    row_method: dict[str, str] = {}
    row_sets: dict[str, list[str]] = {}
    row_marker: dict[str, str] = {}
    reference_rows: list[str] = []
    averaged_rows: list[str] = []
    row_keys: dict[str, dict[str, str]] = {}
    row_variant: dict[str, str] = {}
    split_methods: set[str] = set()

    def add_averaged(of: str, source_set: str | None) -> None:
        """After row ``of``: its checkpoint-averaged row, over its runs that logged the ``avg/`` target avg."""
        has = [r for r in row_runs[of] if _finite(r.metrics.get(avg_keys[TARGET_AVG]))]
        if not has:
            return
        variant = _averaged_variant(has)
        label = f"{row_method[of]} ({source_set}, {variant})" if source_set else f"{row_method[of]} ({variant})"
        rows.append(label)
        averaged_rows.append(label)
        row_runs[label] = has
        row_method[label] = row_method[of]
        row_sets[label] = sorted({r.source_set for r in has})
        row_marker[label] = row_marker[of]      # an oracle-selected configuration stays marked as one
        row_keys[label] = avg_keys
        row_variant[label] = variant
        for r in row_runs[of]:
            if r not in has:
                left_out.append(f"row {label}: {r.describe()} has no {avg_keys[TARGET_AVG]} (no checkpoint "
                                "average logged)")

    for m in row_order:
        sets = sorted({r.source_set for r in by_method[m]})
        if len(sets) > 1:
            split_methods.add(m)
            for s in sets:
                label = f"{m} ({s})"
                rows.append(label)
                row_runs[label] = [r for r in by_method[m] if r.source_set == s]
                row_method[label] = m
                row_sets[label] = [s]
                row_marker[label] = marker
                add_averaged(label, s)
        elif sets:
            rows.append(m)
            row_runs[m] = list(by_method[m])
            row_method[m] = m
            row_sets[m] = sets
            row_marker[m] = marker
            add_averaged(m, None)
        if oracle_by_method[m]:
            label = f"{m} ({oracle_marker})"
            rows.append(label)
            reference_rows.append(label)
            row_runs[label] = list(oracle_by_method[m])
            row_method[label] = m
            row_sets[label] = sorted({r.source_set for r in oracle_by_method[m]})
            row_marker[label] = oracle_marker
    if split_methods:
        notes.append("Rows split by source set for: " + ", ".join(sorted(split_methods)) + ".")
    no_row: dict[str, str] = {}
    for m in methods or []:
        if m not in by_method:
            mine = [r for r in runs if r.method == m]
            no_row[m] = (why_missing or {}).get(m) or no_eligible_reason(mine, what="run")
    if no_row:
        notes.append("No row for " + "; ".join(f"{m}: {why}" for m, why in no_row.items())
                     + ". Such methods are shown with empty cells, never dropped.")

    # ---- cells
    means: dict[str, dict[str, float]] = {}
    stds: dict[str, dict[str, float]] = {}
    ns: dict[str, dict[str, int]] = {}
    for row in rows:
        means[row], stds[row], ns[row] = {}, {}, {}
        for col in columns:
            key = row_keys.get(row, keys)[col]
            vals: list[float] = []
            missing: list[str] = []
            for r in row_runs[row]:
                v = r.metrics.get(key)
                if _finite(v):
                    vals.append(float(v))  # type: ignore[arg-type]
                else:
                    missing.append(r.describe() + ("" if v is None else f" (value {v})"))
            means[row][col], stds[row][col] = _mean_std(vals)
            ns[row][col] = len(vals)
            if not vals:
                left_out.append(f"row {row}: no run has {key} (cell left empty)")
            elif missing:
                left_out.append(f"row {row}: {key} missing or non-finite in " + "; ".join(missing)
                                + f" (cell over n={len(vals)})")

    # ---- best per column
    # Averaged rows take no bold (nor a test, below): bold and † answer "which method wins under this table's
    # selection protocol", and an averaged row is another protocol on a configuration that was tuned for the
    # selected checkpoint (its runs were picked, and their hyperparameters searched, by best/ scores), so a
    # win or a loss against the selected rows would mix the two. Averaging uses no dev data, so comparing
    # the numbers by eye is not unfair; it is simply not the comparison the marks state.
    unranked = set(reference_rows) | set(averaged_rows)
    best: dict[str, tuple[str, ...]] = {}
    for col in columns:
        cands = [(means[row][col], row) for row in rows
                 if math.isfinite(means[row][col]) and row not in unranked]
        if not cands:
            best[col] = ()
            continue
        target = min(v for v, _ in cands) if lower[col] else max(v for v, _ in cands)
        best[col] = tuple(row for v, row in cands if v == target)

    # ---- significance
    pvalues: dict[str, float | None] = {row: None for row in rows}
    n_pairs: dict[str, int] = {row: 0 for row in rows}
    significant: dict[str, bool] = {row: False for row in rows}
    baseline_of: dict[str, str | None] = {row: None for row in rows}
    base_rows = [row for row in rows if row_method[row] == baseline and row not in unranked]
    test_notes: list[str] = []
    if not base_rows:
        test_notes.append(f"No significance tests: baseline method {baseline!r} has no counted run.")
    else:
        for row in rows:
            if row_method[row] == baseline or row in unranked:
                continue
            ref = _reference_row(row, base_rows, row_sets, row_method, split_methods)
            if ref is None:
                test_notes.append(f"{row}: no test (no {baseline} row with the same source set).")
                continue
            baseline_of[row] = ref
            p, npairs, why = _wilcoxon(row_runs[row], row_runs[ref], [keys[t] for t in targets])
            n_pairs[row] = npairs
            pvalues[row] = p
            if p is None:
                test_notes.append(f"{row} vs {ref}: no test ({why}).")
            else:
                significant[row] = p < alpha
                extra = f"; {why}" if why else ""
                low = "; with fewer than 6 pairs p cannot go below 0.05" if npairs < 6 else ""
                test_notes.append(f"{row} vs {ref}: n={npairs} pairs, p={p:.3g}{extra}{low}.")
        notes.append(
            f"† on {TARGET_AVG}: two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon, zero_method='wilcox': "
            f"zero differences dropped) vs the {baseline} row (same source set when rows are split), paired over "
            f"(seed, target language) with the same seed; p < {alpha:g}. Pairs of one seed share a model, so they "
            f"are not independent: read p as a screening signal.")
    notes.extend(test_notes)
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
                     + ", ".join(avg_keys[c] for c in columns) + f" instead of the {prefix or 'plain'} keys: "
                     "the checkpoint average logged at each run's last step (train.average_last; avg/checkpoints "
                     "evaluations averaged, from avg/first_step). Same runs and configurations as the row above "
                     "them: only the checkpoint is selection-free.")

    caption = _caption(task_metric, targets, baseline, alpha, budget, selection_rule, scale,
                       FORGETTING in keys, selection, oracle_selection if reference_rows else None, oracle_marker,
                       sorted(set(row_variant.values())))
    return Table(rows=rows, columns=columns, keys=keys, lower_is_better=lower, means=means, stds=stds, n=ns,
                 pvalues=pvalues, n_pairs=n_pairs, significant=significant, best=best, left_out=left_out,
                 notes=notes, caption=caption, row_method=row_method, row_source_sets=row_sets,
                 row_runs=row_runs, baseline=baseline, baseline_of=baseline_of, task_metric=task_metric,
                 targets=list(targets), alpha=alpha, scale=scale, digits=digits, missing=no_row,
                 row_marker=row_marker, reference_rows=reference_rows, selection=selection,
                 provenance=list(provenance or []), averaged_rows=averaged_rows, row_keys=row_keys,
                 row_variant=row_variant)


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
            if _finite(v):
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
    from scipy.stats import wilcoxon

    res = wilcoxon(d, zero_method="wilcox", alternative="two-sided", method="auto")
    why = f"{len(d) - len(nonzero)} zero difference(s) dropped" if len(nonzero) < len(d) else ""
    return float(res.pvalue), len(d), why


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


# --------------------------------------------------------------------------------------------- rendering

def _fmt(table: Table, x: float) -> str:
    return f"{x * table.scale:.{table.digits}f}"


def _cell_text(table: Table, row: str, col: str, pm: str, dash: str) -> str | None:
    """'85.2 ± 0.4' (n=1: '85.2 ± –'), ' (n=k)' when fewer runs than the row; None for an empty cell."""
    m, s, n = table.means[row][col], table.stds[row][col], table.n[row][col]
    if n == 0 or not math.isfinite(m):
        return None
    text = f"{_fmt(table, m)}{pm}{_fmt(table, s) if math.isfinite(s) else dash}"
    if n < table.row_n(row):
        text += f" (n={n})"
    return text


def _dagger(table: Table, row: str, col: str) -> bool:
    return col == table.dagger_column and table.significant.get(row, False)


def _col_header(table: Table, col: str, down: str) -> str:
    return f"{col} {down}" if table.lower_is_better[col] else col


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with the caption, notes, runs (links), provenance and left-out runs.
    Rows selected on target-language data carry their marker next to the method, under a warning line."""
    out = []
    if table.oracle_marked:
        marks = sorted({table.row_marker[row] for row in table.rows if table.row_marker.get(row)})
        out += ["> **Oracle selection, not zero-shot:** rows marked "
                + ", ".join(f"*({_md_escape(m)})*" for m in marks)
                + " were selected on target-language data.", ""]
    head = ["method", "sources", "n"] + [_md_escape(_col_header(table, c, "↓")) for c in table.columns]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---", "---", "--:"] + ["--:"] * len(table.columns)) + "|")
    for row in table.rows:
        urls = [r.url for r in table.row_runs[row] if r.url]
        label = _md_escape(table.row_method[row])
        if len(table.row_runs[row]) == 1 and urls:
            label = f"[{label}]({urls[0]})"
        if table.row_variant.get(row):
            label += f" ({_md_escape(table.row_variant[row])})"
        if table.row_marker.get(row):
            label += f" *({_md_escape(table.row_marker[row])})*"
        cells = [label, _md_escape(", ".join(table.row_source_sets[row])), str(table.row_n(row))]
        for col in table.columns:
            text = _cell_text(table, row, col, " ± ", "–")
            if text is None:
                cells.append("")
                continue
            if row in table.best[col]:
                text = f"**{text}**"
            if _dagger(table, row, col):
                text += " †"
            cells.append(text)
        out.append("| " + " | ".join(cells) + " |")
    for method, why in table.missing.items():
        out.append("| " + " | ".join([_md_escape(method), _md_escape(why), "0"] + [""] * len(table.columns)) + " |")
    out += ["", f"*{_md_escape(table.caption)}*"]
    linked = [row for row in table.rows if any(r.url for r in table.row_runs[row])]
    if linked:
        out += ["", "Runs:", ""]
        for row in linked:
            links = [f"[{_run_name(r)}]({r.url})" for r in table.row_runs[row] if r.url]
            out.append(f"- {_md_escape(row)}: " + ", ".join(links))
    if table.notes:
        out += ["", "Notes:", ""] + [f"- {n}" for n in table.notes]
    pv = [row for row in table.rows if table.pvalues[row] is not None]
    if pv:
        out += ["", "p-values (vs baseline):", ""]
        out += [f"- {row}: p = {table.pvalues[row]:.4g} (n = {table.n_pairs[row]} pairs)"
                + (" †" if table.significant[row] else "") for row in pv]
    if table.provenance:
        out += ["", "Provenance:", ""] + [f"- {x}" for x in table.provenance]
    out += ["", f"Left out ({len(table.left_out)}):", ""] + ([f"- {x}" for x in table.left_out] or ["- nothing"])
    return "\n".join(out) + "\n"


def _run_name(r: RunRecord) -> str:
    return f"seed {r.seed}" if r.seed is not None else r.run_id[:8]


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "–": "--", "×": r"$\times$", "†": r"$^\dagger$", "↓": r"$\downarrow$",
                  "<": r"$<$", ">": r"$>$"}


def latex_escape(s: str) -> str:
    """Escape LaTeX specials (``_ % & # $ { } ~ ^ \\``) and map ± – × † ↓ to LaTeX."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)


def to_latex(table: Table) -> str:
    """A ``table`` environment with a booktabs tabular, the caption under it, and as ``%`` comments (never
    in the caption): notes, provenance, each row's run ids and the runs left out."""
    ncol = len(table.columns)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{ll" + "r" * (ncol + 1) + "}", r"\toprule"]
    head = ["Method", "Sources", "$n$"] + [latex_escape(_col_header(table, c, "↓")) for c in table.columns]
    lines.append(" & ".join(head) + r" \\")
    lines.append(r"\midrule")
    for row in table.rows:
        cells = [latex_escape(table.method_cell(row)), latex_escape(", ".join(table.row_source_sets[row])),
                 str(table.row_n(row))]
        for col in table.columns:
            m, s, n = table.means[row][col], table.stds[row][col], table.n[row][col]
            if n == 0 or not math.isfinite(m):
                cells.append("")
                continue
            mean = _fmt(table, m)
            if row in table.best[col]:
                mean = rf"\textbf{{{mean}}}"
            std = _fmt(table, s) if math.isfinite(s) else "--"
            text = f"{mean} $\\pm$ {std}"
            if n < table.row_n(row):
                text += f" ($n{{=}}{n}$)"
            if _dagger(table, row, col):
                text += r"$^\dagger$"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    for method, why in table.missing.items():
        lines.append(" & ".join([latex_escape(method), latex_escape(why), "0"] + [""] * ncol) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{latex_escape(table.caption)}}}", r"\end{table}"]
    comments = ([f"% note: {n}" for n in table.notes] + [f"% provenance: {x}" for x in table.provenance]
                + [f"% runs of {row}: " + ", ".join(r.run_id for r in table.row_runs[row]) for row in table.rows]
                + [f"% left out: {x}" for x in table.left_out])
    return "\n".join(lines + [latex_escape_comment(c) for c in comments]) + "\n"


def latex_escape_comment(line: str) -> str:
    """Keep a ``%`` comment on one line (newlines would end it)."""
    return line.replace("\n", " ")


CSV_FIELDS = ["row", "column", "mean", "std", "n", "p_value", "best"]


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def to_csv(table: Table) -> str:
    """Long format ``row,column,mean,std,n,p_value,best``: raw (unscaled) values at full precision
    (``repr``: parses back to the identical float), empty for NaN/none; ``p_value`` on the target-avg line
    of each tested row; ``best`` is 1 or 0. A method without a counted run (``Table.missing``) has lines
    with ``n`` 0 and nothing else."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for row in table.rows:
        for col in table.columns:
            p = table.pvalues[row] if col == table.dagger_column else None
            w.writerow([row, col, _num(table.means[row][col]), _num(table.stds[row][col]), table.n[row][col],
                        _num(p), int(row in table.best[col])])
    for method in table.missing:        # a method without a counted run: empty cells, n = 0
        for col in table.columns:
            w.writerow([method, col, "", "", 0, "", 0])
    return buf.getvalue()


@dataclass(frozen=True)
class Importance:
    """One method's parameter importances, with what they were computed on (see ``lfmlf.search.study_summary``)."""

    values: dict[str, float]                 # parameter -> share (sums to 1); empty when not computed
    evaluator: str                           # e.g. "fANOVA (optuna.importance.FanovaImportanceEvaluator, ...)"
    n_trials: int                            # COMPLETE trials the values are computed on
    excluded: dict[str, int] = field(default_factory=dict)   # reason -> trials left out
    why: str = ""                            # why not computed
    caveat: str = ""                         # e.g. "indicative only: ..." below the trial threshold

    @classmethod
    def from_summary(cls, summary: dict) -> Importance:
        """From ``lfmlf.search.study_summary``'s dict."""
        return cls(values={k: float(v) for k, v in summary.get("importances", {}).items()},
                   evaluator=str(summary.get("evaluator", "unstated evaluator")),
                   n_trials=int(summary.get("n_used", 0)), excluded=dict(summary.get("excluded", {})),
                   why=str(summary.get("why", "")), caveat=str(summary.get("caveat", "")))


def _importance_md(importances: dict[str, Importance]) -> list[str]:
    evaluators = sorted({imp.evaluator for imp in importances.values()})
    out = ["", "## Parameter importance", "",
           (f"Evaluator: {'; '.join(evaluators)}. Computed per method on its COMPLETE trials only: trials stopped "
            "early by ASHA, failed or unfinished are left out. Shares of explained variance, summing to 1."), ""]
    for method in sorted(importances):
        imp = importances[method]
        out += [f"### {method}", ""]
        left = ", ".join(f"{n} {why}" for why, n in imp.excluded.items())
        out.append(f"{imp.evaluator} over n = {imp.n_trials} COMPLETE trial(s)" + (f" (left out: {left})" if left
                                                                                  else "") + ".")
        shown = {k: v for k, v in imp.values.items() if _finite(v)}
        if not shown:
            out += ["", f"Not computed: {imp.why or 'needs at least 2 complete trials with different parameters'}.",
                    ""]
            continue
        if imp.caveat:
            out += ["", f"**Caveat:** {_md_escape(imp.caveat)}."]
        out += ["", "| parameter | importance |", "|---|--:|"]
        out += [f"| {_md_escape(k)} | {v:.2f} |" for k, v in sorted(shown.items(), key=lambda kv: -kv[1])]
        out.append("")
    return out


def sweep_left_out(runs: list[RunRecord], metric: str | None = None) -> list[str]:
    """Sweep trials that may not be selected and are left out of the heatmaps and importances, each with its
    reason (:func:`exclusion`: not FINISHED, stopped early by ASHA, or no finite ``metric``)."""
    out = []
    for r in runs:
        why = exclusion(r, metric)
        if why is not None:
            out.append(f"{r.describe()}: {why}")
    return out


def merge_left_out(*lists: list[str]) -> list[str]:
    """One left-out list: the lines of every list in order, each once."""
    return list(dict.fromkeys(line for lines in lists for line in lines))


def selection_cost(faithful: list[RunRecord], oracle: list[RunRecord], key: str, scale: float = 100.0,
                   digits: int = 1) -> list[str]:
    """Per method, what zero-shot-faithful selection costs on ``key`` against the oracle's pick, both
    single sweep trials: ``mlf: 61.2 (faithful) vs 63.0 (oracle), -1.8``."""
    out = []
    oracle_of = {r.method: r for r in oracle}
    for r in faithful:
        o = oracle_of.get(r.method)
        a, b = r.metrics.get(key), o.metrics.get(key) if o is not None else None
        if o is None or not _finite(a) or not _finite(b):
            continue
        fa, fb = float(a) * scale, float(b) * scale  # type: ignore[arg-type]
        out.append(f"{r.method}: {key} {fa:.{digits}f} (zero-shot-faithful pick, run {r.run_id}) vs "
                   f"{fb:.{digits}f} (oracle pick, run {o.run_id}): selection costs {fb - fa:.{digits}f}")
    return out


def write_report(table: Table, out_dir: Path, importances: dict[str, Importance] | None = None,
                 sweep_excluded: list[str] | None = None) -> list[Path]:
    """Write ``report.md``, ``report.tex`` and ``report.csv`` into ``out_dir`` (created); return their paths.

    ``importances`` (method -> :class:`Importance`) adds a "Parameter importance" section to the Markdown
    that names the evaluator and the number of trials; ``sweep_excluded`` (from :func:`sweep_left_out`) is
    merged into the table's left-out runs, so the page has one left-out list (Markdown, and ``%`` comments
    in LaTeX).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = replace(table, left_out=merge_left_out(table.left_out, sweep_excluded or []))
    md = "# Results\n\n" + to_markdown(table)
    if importances:
        md += "\n".join(_importance_md(importances)) + "\n"
    paths = [out_dir / "report.md", out_dir / "report.tex", out_dir / "report.csv"]
    for path, text in zip(paths, (md, to_latex(table), to_csv(table))):
        path.write_text(text, encoding="utf-8")
    return paths
