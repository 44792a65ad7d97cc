"""Render a :class:`~lfmlf.report.table.Table` as Markdown, LaTeX (booktabs) or long-format CSV.

Run ids never go into a caption: Markdown lists them under the table, LaTeX keeps them in ``%`` comments.
"""
from __future__ import annotations

import csv
import io
import math

from lfmlf.report.runs import RunRecord
from lfmlf.report.table import Table


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


def md_escape(s: str) -> str:
    """Escape ``|`` for a Markdown table cell."""
    return s.replace("|", "\\|")


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table with the caption, notes, runs (links), provenance and left-out runs.
    Rows selected on target-language data carry their marker next to the method, under a warning line."""
    out = []
    if table.oracle_marked:
        marks = sorted({table.row_marker[row] for row in table.rows if table.row_marker.get(row)})
        out += ["> **Oracle selection, not zero-shot:** rows marked "
                + ", ".join(f"*({md_escape(m)})*" for m in marks)
                + " were selected on target-language data.", ""]
    head = ["method", "sources", "n"] + [md_escape(_col_header(table, c, "↓")) for c in table.columns]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "|".join(["---", "---", "--:"] + ["--:"] * len(table.columns)) + "|")
    for row in table.rows:
        urls = [r.url for r in table.row_runs[row] if r.url]
        label = md_escape(table.row_method[row])
        if len(table.row_runs[row]) == 1 and urls:
            label = f"[{label}]({urls[0]})"
        if table.row_variant.get(row):
            label += f" ({md_escape(table.row_variant[row])})"
        if table.row_marker.get(row):
            label += f" *({md_escape(table.row_marker[row])})*"
        cells = [label, md_escape(", ".join(table.row_source_sets[row])), str(table.row_n(row))]
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
        out.append("| " + " | ".join([md_escape(method), md_escape(why), "0"] + [""] * len(table.columns)) + " |")
    out += ["", f"*{md_escape(table.caption)}*"]
    linked = [row for row in table.rows if any(r.url for r in table.row_runs[row])]
    if linked:
        out += ["", "Runs:", ""]
        for row in linked:
            links = [f"[{_run_name(r)}]({r.url})" for r in table.row_runs[row] if r.url]
            out.append(f"- {md_escape(row)}: " + ", ".join(links))
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
