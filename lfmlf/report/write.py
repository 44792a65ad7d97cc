"""The report's files: ``report.md`` (with the extra sections and the parameter-importance section),
``report.tex`` and ``report.csv``, and the note on what zero-shot-faithful selection costs against the oracle's
pick."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from lfmlf.report.render import md_escape, to_csv, to_latex, to_markdown
from lfmlf.report.runs import RunRecord, finite, merge_left_out
from lfmlf.report.sections import Section, section_markdown
from lfmlf.report.table import Table


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
        shown = {k: v for k, v in imp.values.items() if finite(v)}
        if not shown:
            out += ["", f"Not computed: {imp.why or 'needs at least 2 complete trials with different parameters'}.",
                    ""]
            continue
        if imp.caveat:
            out += ["", f"**Caveat:** {md_escape(imp.caveat)}."]
        out += ["", "| parameter | importance |", "|---|--:|"]
        out += [f"| {md_escape(k)} | {v:.2f} |" for k, v in sorted(shown.items(), key=lambda kv: -kv[1])]
        out.append("")
    return out


def selection_cost(faithful: list[RunRecord], oracle: list[RunRecord], key: str, scale: float = 100.0,
                   digits: int = 1) -> list[str]:
    """Per method, what zero-shot-faithful selection costs on ``key`` against the oracle's pick, both
    single sweep trials: ``mlf: 61.2 (faithful) vs 63.0 (oracle), -1.8``."""
    out = []
    oracle_of = {r.method: r for r in oracle}
    for r in faithful:
        o = oracle_of.get(r.method)
        a, b = r.metrics.get(key), o.metrics.get(key) if o is not None else None
        if o is None or not finite(a) or not finite(b):
            continue
        fa, fb = float(a) * scale, float(b) * scale  # type: ignore[arg-type]
        out.append(f"{r.method}: {key} {fa:.{digits}f} (zero-shot-faithful pick, run {r.run_id}) vs "
                   f"{fb:.{digits}f} (oracle pick, run {o.run_id}): selection costs {fb - fa:.{digits}f}")
    return out


def write_report(table: Table, out_dir: Path, importances: dict[str, Importance] | None = None,
                 sweep_excluded: list[str] | None = None, sections: Sequence[Section] = ()) -> list[Path]:
    """Write ``report.md``, ``report.tex`` and ``report.csv`` into ``out_dir`` (created); return their paths.

    ``importances`` (method -> :class:`Importance`) adds a "Parameter importance" section to the Markdown
    that names the evaluator and the number of trials; ``sweep_excluded`` (from
    :func:`~lfmlf.report.runs.sweep_left_out`) is merged into the table's left-out runs, so the page has one
    left-out list (Markdown, and ``%`` comments in LaTeX). ``sections`` (:class:`~lfmlf.report.sections.Section`:
    title, Markdown body, figures) follow the table in ``report.md``, in order, before the importances; the
    LaTeX and CSV files hold the table only.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = replace(table, left_out=merge_left_out(table.left_out, sweep_excluded or []))
    md = "# Results\n\n" + to_markdown(table)
    for section in sections:
        md += "\n" + section_markdown(section, out_dir)
    if importances:
        md += "\n".join(_importance_md(importances)) + "\n"
    paths = [out_dir / "report.md", out_dir / "report.tex", out_dir / "report.csv"]
    for path, text in zip(paths, (md, to_latex(table), to_csv(table))):
        path.write_text(text, encoding="utf-8")
    return paths
