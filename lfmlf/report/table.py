"""The :class:`Table` a report renders, and the names of its fixed columns.

A table holds raw metric values (unscaled, full precision) per row and column, the significance results
and every note and left-out run; :func:`lfmlf.report.build.build_table` fills it, :mod:`lfmlf.report.render`
prints it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from lfmlf.report.runs import RunRecord
from lfmlf.selection import Selection

TARGET_AVG = "target avg"
SOURCE_AVG = "source avg"
FORGETTING = "forgetting"


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
    ``groups`` (``--group-by``): the target columns come by group, each followed by its average column.
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
    groups: dict[str, list[str]] = field(default_factory=dict)  # group -> its targets (--group-by), else empty
    group_by: str = ""                                          # "script" | "family" | "" (not grouped)

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
