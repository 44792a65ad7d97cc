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

The package, one job per module: :mod:`~lfmlf.report.runs` (which runs count, and why the others do not),
:mod:`~lfmlf.report.table` (the :class:`Table`), :mod:`~lfmlf.report.rows` (the row layout),
:mod:`~lfmlf.report.stats` (mean ± std, pairing, the Wilcoxon test), :mod:`~lfmlf.report.build`
(:func:`build_table`), :mod:`~lfmlf.report.render` (Markdown, LaTeX, CSV), :mod:`~lfmlf.report.write`
(the report's files, parameter importances, the cost of selection), :mod:`~lfmlf.report.sections` (extra
sections of ``report.md``: :class:`Section`), :mod:`~lfmlf.report.fronts` (forgetting-versus-transfer fronts,
hypervolumes, dominance; its definitions are stated there), :mod:`~lfmlf.report.front_section` (the "Fronts"
section), :mod:`~lfmlf.report.drops` (per-language retrieval of the probe), :mod:`~lfmlf.report.groups`
(targets grouped by script or family, ``--group-by``), :mod:`~lfmlf.report.effects` (source-language effects
on each target: a regression over inclusion indicators) and :mod:`~lfmlf.report.ols` (its least squares with
HC3 intervals). Everything public is importable from ``lfmlf.report``.
"""
from __future__ import annotations

from lfmlf.report.build import build_table
from lfmlf.report.drops import retrieval_by_language
from lfmlf.report.effects import EffectsTable, effects_section, effects_table
from lfmlf.report.front_section import Fronts, build_fronts, fronts_csv, fronts_markdown
from lfmlf.report.groups import GROUP_BY, language_groups
from lfmlf.report.render import latex_escape, to_csv, to_latex, to_markdown
from lfmlf.report.runs import RunRecord, exclusion, merge_left_out, no_eligible_reason, sweep_left_out
from lfmlf.report.sections import Section
from lfmlf.report.stats import paired_differences
from lfmlf.report.table import FORGETTING, SOURCE_AVG, TARGET_AVG, Table
from lfmlf.report.write import Importance, selection_cost, write_report

__all__ = [
    "FORGETTING",
    "GROUP_BY",
    "SOURCE_AVG",
    "TARGET_AVG",
    "EffectsTable",
    "Fronts",
    "Importance",
    "RunRecord",
    "Section",
    "Table",
    "build_fronts",
    "build_table",
    "effects_section",
    "effects_table",
    "exclusion",
    "fronts_csv",
    "fronts_markdown",
    "language_groups",
    "latex_escape",
    "merge_left_out",
    "no_eligible_reason",
    "paired_differences",
    "retrieval_by_language",
    "selection_cost",
    "sweep_left_out",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_report",
]
