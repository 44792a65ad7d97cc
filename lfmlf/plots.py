"""Figures for a sweep report: per-language bars, forgetting vs zero-shot (Pareto), source-set heatmap, QP multipliers.

Every function writes one PNG (dpi 120) and returns its path, or returns ``None`` and writes nothing when
there is nothing to plot (no rows, no run with the metric, no multiplier history). Figures are built as
``matplotlib.figure.Figure`` objects rendered by the Agg canvas directly: no pyplot, so no global figure
registry to leak, no GUI backend, nothing to close. No mlflow/ray/optuna imports: the inputs are
:class:`lfmlf.report.RunRecord` lists and :class:`lfmlf.report.Table` values.

Which runs are used: ``FINISHED`` runs only. Runs stopped early by ASHA (tag ``lfmlf.stopped_early=true``)
are drawn hollow in the forgetting plot but never on a method's front (less training also means less
forgetting, which would put them on the front for the wrong reason), are left out of the heatmap means
unless ``include_stopped_early=True``, and do count in the multiplier curves (a trajectory is still a
trajectory). The heatmap has one panel per method (a source set's row never mixes methods) and shows
scores in the table's units (× 100, one decimal, by default).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from lfmlf.report import TARGET_AVG, RunRecord, Table
from lfmlf.report.fronts import configurations, front_of, pareto_front

__all__ = [
    "DPI",
    "HeatPanel",
    "forgetting_vs_zero_shot",
    "is_blank",
    "language_bars",
    "multipliers_over_steps",
    "pareto_front",
    "pareto_runs",
    "source_effects_heatmap",
    "source_set_heatmap",
    "source_set_panels",
]

DPI = 120
LAMBDA_PREFIX = "lfmlf/lambda/"


def _figure(width: float, height: float):
    # lazy: matplotlib is slow to import, and only `lfmlf report` draws
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png", bbox_inches="tight")
    return path


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x))


def _colours(n: int) -> list:
    from matplotlib import colormaps  # lazy: matplotlib

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ------------------------------------------------------------------------------------------- bars

def language_bars(table: Table, path: Path | str) -> Path | None:
    """Grouped bars: one group per target language plus the target average, one bar per table row,
    error bars = sample std (none where n < 2). Values scaled like the table (``table.scale``). A table
    grouped by script or family (``table.groups``) orders the languages by group, each group followed by its
    average (hatched bars), with the group's name above it and a dashed line between groups."""
    if not table.rows:
        return None
    if table.groups:
        groups = [c for g, langs in table.groups.items() for c in [*langs, f"{g} avg"] if c in table.columns]
    else:
        groups = list(table.targets)
    groups.append(TARGET_AVG)
    fig = _figure(max(5.0, 1.0 + len(groups) * (0.35 * len(table.rows) + 0.5)), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    k = len(table.rows)
    width = 0.8 / k
    averages = {c for c in groups if c not in table.targets}
    for i, (row, colour) in enumerate(zip(table.rows, _colours(k))):
        xs = [g + (i - (k - 1) / 2) * width for g in range(len(groups))]
        ys = [table.means[row][c] * table.scale for c in groups]       # NaN (empty cell): no bar
        err = [table.stds[row][c] * table.scale for c in groups]        # NaN (n < 2): no error bar
        bars = ax.bar(xs, ys, width=width, yerr=err, capsize=3, color=colour, label=row, edgecolor="black",
                      linewidth=0.4)
        if table.groups:
            for bar, c in zip(bars, groups):
                if c in averages:
                    bar.set_hatch("//")
    if table.groups:
        _mark_language_groups(ax, table.groups, groups)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if table.groups else 0, ha="right" if table.groups else "center")
    scaled = f" (×{table.scale:g})" if table.scale != 1 else ""
    by = f", grouped by {table.group_by}" if table.group_by else ""
    ax.set_xlabel("target language")
    ax.set_ylabel(f"zero-shot {table.task_metric}{scaled}")
    ax.set_title(f"Zero-shot {table.task_metric} per target language{by} (mean ± std over runs)",
                 pad=16 if table.groups else 6)
    ax.legend(fontsize="small", loc="best")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _mark_language_groups(ax, groups: dict[str, list[str]], columns: list[str]) -> None:
    """Dashed lines between the groups of a grouped bar chart and each group's name above its bars."""
    start = 0
    for g, langs in groups.items():
        end = start + len([c for c in [*langs, f"{g} avg"] if c in columns])
        ax.axvline(end - 0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.text((start + end - 1) / 2, 1.01, g, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                fontsize=8)
        start = end


# ------------------------------------------------------------------------------------- Pareto

def _scatter_runs(runs: list[RunRecord], zkey: str, fkey: str) -> list[RunRecord]:
    return [r for r in runs if r.status == "FINISHED" and _finite(r.metrics.get(zkey)) and _finite(r.metrics.get(fkey))]


def pareto_runs(runs: list[RunRecord], task_metric: str, forgetting_key: str = "best/forgetting/retrieval_drop/avg",
                prefix: str = "best/") -> list[RunRecord]:
    """The runs on the Pareto front of all methods' runs together (FINISHED, not stopped early, both metrics
    finite), sorted by forgetting; :func:`forgetting_vs_zero_shot` draws one front per method instead."""
    zkey = f"{prefix}zero_shot/{task_metric}/avg"
    full = [r for r in _scatter_runs(runs, zkey, forgetting_key) if not r.stopped_early]
    return [full[i] for i in pareto_front([(r.metrics[zkey], r.metrics[forgetting_key]) for r in full])]


def forgetting_vs_zero_shot(runs: list[RunRecord], path: Path | str, task_metric: str,
                            forgetting_key: str = "best/forgetting/retrieval_drop/avg",
                            prefix: str = "best/") -> Path | None:
    """Scatter of runs (sweep trials, rerun runs): x = forgetting drop (lower is better), y = zero-shot
    average, colour = method; each method's own front as a step line in its colour.

    Uses FINISHED runs having both metrics; early-stopped trials are drawn hollow and kept off the fronts.
    A method's front is the one of the report's "Fronts" section (:mod:`lfmlf.report.fronts`): over its
    configurations, each at the mean of its seeds (a square where that mean is over several runs), joined by
    the step function "best zero-shot at drop <= x" and circled in black. Returns None and writes nothing when
    no run has ``forgetting_key`` (probe off).
    """
    zkey = f"{prefix}zero_shot/{task_metric}/avg"
    pts = _scatter_runs(runs, zkey, forgetting_key)
    if not pts:
        return None
    configs, _ = configurations(pts, zkey, forgetting_key)
    fig = _figure(6.5, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    methods = sorted({r.method for r in pts})
    for method, colour in zip(methods, _colours(len(methods))):
        done = [r for r in pts if r.method == method and not r.stopped_early]
        cut = [r for r in pts if r.method == method and r.stopped_early]
        if done:
            ax.scatter([r.metrics[forgetting_key] for r in done], [r.metrics[zkey] for r in done], color=colour,
                       s=22, alpha=0.55)
        if cut:
            ax.scatter([r.metrics[forgetting_key] for r in cut], [r.metrics[zkey] for r in cut], facecolors="none",
                       edgecolors=[colour], label=f"{method} (stopped early)", s=22)
        front = front_of(configs.get(method, []))
        if not front:
            continue
        xs, ys = [c.f for c in front], [c.z for c in front]
        ax.step(xs, ys, where="post", color=colour, linewidth=1.6, label=f"{method} front ({len(front)})")
        ax.scatter(xs, ys, s=80, facecolors="none", edgecolors="black", linewidths=1.2, zorder=3)
        means = [c for c in front if len(c.runs) > 1]
        if means:
            ax.scatter([c.f for c in means], [c.z for c in means], marker="s", s=30, color=colour,
                       edgecolors="black", linewidths=0.8, zorder=4)
    ax.set_xlabel(f"forgetting: {forgetting_key} (lower is better)")
    ax.set_ylabel(f"zero-shot: {zkey} (higher is better)")
    ax.set_title(f"Forgetting vs zero-shot {task_metric}: runs and each method's front")
    ax.legend(fontsize="small", loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


# ------------------------------------------------------------------------------------- heatmap

@dataclass(frozen=True)
class HeatPanel:
    """One method's source-set heatmap: ``values[i][j]`` = mean over its trials with ``sets[i]`` of the
    score in ``columns[j]``, already scaled (NaN: no trial has it); ``counts[i]`` trials per set."""

    method: str
    sets: list[str]
    counts: list[int]
    columns: list[str]
    values: list[list[float]]


def source_set_panels(runs: list[RunRecord], task_metric: str, targets: list[str], prefix: str = "best/",
                      method: str | None = None, include_stopped_early: bool = False,
                      scale: float = 100.0) -> list[HeatPanel]:
    """The data of :func:`source_set_heatmap`: one panel per method (sorted), from FINISHED trials (not
    stopped early unless ``include_stopped_early``), values × ``scale``."""
    use = [r for r in runs if r.status == "FINISHED" and (include_stopped_early or not r.stopped_early)
           and (method is None or r.method == method)]
    cols = list(targets) + ["avg"]
    keys = [f"{prefix}zero_shot/{task_metric}/{c}" for c in cols]
    panels = []
    for m in sorted({r.method for r in use}):
        mine = [r for r in use if r.method == m]
        sets = sorted({r.source_set for r in mine}, key=lambda s: (s.count("+"), s))
        counts, values = [], []
        for s in sets:
            group = [r for r in mine if r.source_set == s]
            counts.append(len(group))
            row = []
            for k in keys:
                vals = [float(r.metrics[k]) * scale for r in group if _finite(r.metrics.get(k))]
                row.append(sum(vals) / len(vals) if vals else math.nan)
            values.append(row)
        panels.append(HeatPanel(m, sets, counts, cols, values))
    return panels


def source_set_heatmap(runs: list[RunRecord], path: Path | str, task_metric: str, targets: list[str],
                       prefix: str = "best/", method: str | None = None,
                       include_stopped_early: bool = False, scale: float = 100.0, digits: int = 1) -> Path | None:
    """One heatmap per method (stacked panels, one colour scale), never pooled across methods: rows = the
    source sets that method's trials used, columns = target languages + avg; cell = mean zero-shot score over
    the method's FINISHED trials with that source set, in the table's units (value × ``scale``, ``digits``
    decimals). ``method`` draws that method only. Each panel outlines its best row by the average. Cells
    without data grey. Returns None when no run qualifies."""
    import numpy as np  # lazy, with matplotlib

    panels = [(p.method, p.sets, p.counts, np.array(p.values, dtype=float))
              for p in source_set_panels(runs, task_metric, targets, prefix, method, include_stopped_early, scale)]
    if not panels:
        return None
    cols = list(targets) + ["avg"]
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    finite = np.concatenate([d[np.isfinite(d)] for *_, d in panels])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    mid = (vmin + vmax) / 2
    heights = [len(sets) + 1.2 for _, sets, _, _ in panels]
    fig = _figure(1.2 * len(cols) + 3.6, 0.45 * sum(heights) + 0.8)
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    scaled = f" (×{scale:g})" if scale != 1 else ""
    im = None
    for ax, (m, sets, counts, data) in zip(axes, panels):
        im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
        for i in range(len(sets)):
            for j in range(len(cols)):
                v = data[i, j]
                text = f"{v:.{digits}f}" if math.isfinite(v) else "n/a"
                colour = "black" if not math.isfinite(v) or v > mid else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
        avg = data[:, -1]
        if np.isfinite(avg).any():
            top = int(np.nanargmax(avg))
            ax.add_patch(Rectangle((-0.5, top - 0.5), len(cols), 1, fill=False, edgecolor="red", linewidth=1.5))
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels(cols)
        ax.tick_params(labelbottom=ax is axes[-1])      # the same columns in every panel: labelled once
        ax.set_yticks(range(len(sets)))
        ax.set_yticklabels([f"{s} (n={n})" for s, n in zip(sets, counts)])
        ax.set_ylabel("source set")
        ax.set_title(f"{m}: mean over its trials per source set (best average outlined)", fontsize=9)
    axes[-1].set_xlabel("target language")
    fig.suptitle(f"Zero-shot {task_metric}{scaled} by source set, one panel per method")
    fig.subplots_adjust(hspace=0.45)
    fig.colorbar(im, ax=list(axes), label=f"zero-shot {task_metric}{scaled}")
    return _save(fig, path)


# ------------------------------------------------------------------------------------- multipliers

def multipliers_over_steps(runs: list[RunRecord], path: Path | str) -> Path | None:
    """QP multipliers ``lfmlf/lambda/<lang>`` against the step: one panel per (method, source set), one line
    per source language = mean over that group's runs at each step (shaded min–max band when the group has
    several runs). FINISHED runs only (early-stopped ones included). Returns None when no run has such a
    history."""
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        if r.status == "FINISHED" and any(k.startswith(LAMBDA_PREFIX) and v for k, v in r.history.items()):
            groups[(r.method, r.source_set)].append(r)
    if not groups:
        return None
    names = sorted(groups)
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = _figure(4.5 * ncols, 3.3 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    for idx, (method, sset) in enumerate(names):
        ax = axes[idx // ncols][idx % ncols]
        members = groups[(method, sset)]
        langs = sorted({k[len(LAMBDA_PREFIX):] for r in members for k in r.history if k.startswith(LAMBDA_PREFIX)})
        for lang, colour in zip(langs, _colours(len(langs))):
            by_step: dict[int, list[float]] = defaultdict(list)
            for r in members:
                for step, v in r.history.get(LAMBDA_PREFIX + lang, []):
                    if _finite(v):
                        by_step[int(step)].append(float(v))
            steps = sorted(by_step)
            if not steps:
                continue
            mean = [sum(by_step[s]) / len(by_step[s]) for s in steps]
            ax.plot(steps, mean, color=colour, label=lang, linewidth=1.2)
            if len(members) > 1:
                ax.fill_between(steps, [min(by_step[s]) for s in steps], [max(by_step[s]) for s in steps],
                                color=colour, alpha=0.15, linewidth=0)
        runs_note = f"mean of {len(members)} runs" if len(members) > 1 else "1 run"
        ax.set_title(f"{method}, sources {sset} ({runs_note})", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("QP multiplier λ")
        ax.legend(fontsize="small", title="source", title_fontsize="small")
        ax.grid(alpha=0.3)
    for idx in range(len(names), nrows * ncols):
        axes[idx // ncols][idx % ncols].set_visible(False)
    fig.suptitle("LF-MLF constraint multipliers per source language")
    return _save(fig, path)


# ------------------------------------------------------------------------------------- test helper

def is_blank(path: Path | str, tolerance: float = 0.002) -> bool:
    """True when (almost) every pixel of the PNG has the same colour: fewer than ``tolerance`` of the
    pixels differ (by more than 1/255 in any channel) from the most common colour."""
    import numpy as np  # lazy, with matplotlib
    from matplotlib.image import imread

    img = np.asarray(imread(str(path)), dtype=float)
    if img.ndim == 2:
        img = img[..., None]
    px = img.reshape(-1, img.shape[-1])
    q = np.round(px * 255).astype(np.int64)
    packed = np.zeros(len(q), dtype=np.int64)
    for c in range(q.shape[1]):                     # one integer per colour: a fast 1-D np.unique
        packed = packed * 256 + q[:, c]
    values, counts = np.unique(packed, return_counts=True)
    common = q[np.flatnonzero(packed == values[np.argmax(counts)])[0]]
    differs = np.any(np.abs(q - common) > 1, axis=1)
    return float(differs.mean()) < tolerance


# ------------------------------------------------------------------------------------- source-language effects

def source_effects_heatmap(path: Path | str, sources: list[str], columns: list[str], values: list[list[float]],
                           marked: list[list[bool]], title: str, label: str, digits: int = 1) -> Path | None:
    """Heatmap of source-language effects (:func:`lfmlf.report.effects.effects_section` calls it): rows =
    ``sources``, columns = targets (+ avg), cell = ``values[i][j]`` (an effect in points, signed text, ``*``
    where ``marked``: its interval excludes 0) on a diverging scale centred on 0; a NaN cell (not
    estimable) is grey, hatched and reads "n/e". Returns None when there are no rows or columns."""
    import numpy as np  # lazy, with matplotlib
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    if not sources or not columns:
        return None
    data = np.array(values, dtype=float).reshape(len(sources), len(columns))
    finite = data[np.isfinite(data)]
    bound = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    fig = _figure(1.1 * len(columns) + 3.0, 0.5 * len(sources) + 1.8)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["RdBu"].with_extremes(bad="lightgrey")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, aspect="auto", vmin=-bound, vmax=bound)
    for i in range(len(sources)):
        for j in range(len(columns)):
            v = data[i, j]
            if not math.isfinite(v):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="grey",
                                       linewidth=0))
                ax.text(j, i, "n/e", ha="center", va="center", fontsize=8, color="black")
                continue
            text = f"{v:+.{digits}f}" + ("*" if marked[i][j] else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * bound else "black",
                    fontweight="bold" if marked[i][j] else "normal")
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns)
    ax.set_yticks(range(len(sources)))
    ax.set_yticklabels(sources)
    ax.set_xlabel("target language")
    ax.set_ylabel("source language added")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label=label)
    return _save(fig, path)
