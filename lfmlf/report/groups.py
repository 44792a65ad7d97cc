"""Target languages grouped by script or family (``lfmlf report --group-by``): the groups, and each run's
group-average scores as derived metrics that the results table reads like logged ones.

A group's score for a run is the plain mean of the run's scores on the group's languages; a run missing one
of them has no group score (the table notes the cell as it notes any missing value). Groups come from
:func:`lfmlf.languages.group_of` (ISO 15924 script, Glottolog top-level family; "unknown" outside its table),
in the order of their first language.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from lfmlf.languages import group_of
from lfmlf.report.runs import RunRecord, finite

GROUP_BY = ("script", "family")


def language_groups(langs: Sequence[str], by: str) -> dict[str, list[str]]:
    """group -> its languages among ``langs`` (both in first-seen order), by ``script`` or ``family``."""
    if by not in GROUP_BY:
        raise ValueError(f"cannot group languages by {by!r}. Fix: use one of {', '.join(GROUP_BY)}.")
    out: dict[str, list[str]] = {}
    for lang in langs:
        out.setdefault(group_of(lang, by), []).append(lang)   # type: ignore[arg-type]
    return out


def group_column(group: str) -> str:
    """The results table's column of a group: ``"Latn avg"``."""
    return f"{group} avg"


def group_key(key_of_avg: str, group: str) -> str:
    """``best/zero_shot/f1/avg`` -> ``best/zero_shot/f1/group:Latn``: the derived metric of a group."""
    return key_of_avg.rsplit("/", 1)[0] + f"/group:{group}"


def with_group_scores(runs: Sequence[RunRecord], groups: dict[str, list[str]], task_metric: str,
                      prefixes: Sequence[str] = ("best/", "avg/")) -> list[RunRecord]:
    """Copies of ``runs`` whose metrics also hold each group's mean score under :func:`group_key`, for each
    prefix (the selected checkpoint's ``best/``, the checkpoint average's ``avg/``), where the run has every
    language of the group."""
    out = []
    for r in runs:
        extra: dict[str, float] = {}
        for prefix in prefixes:
            avg = f"{prefix}zero_shot/{task_metric}/avg"
            for group, langs in groups.items():
                vals = [r.metrics.get(f"{prefix}zero_shot/{task_metric}/{lang}") for lang in langs]
                scores = [float(v) for v in vals if v is not None and finite(v)]
                if langs and len(scores) == len(langs):
                    extra[group_key(avg, group)] = sum(scores) / len(scores)
        out.append(replace(r, metrics={**r.metrics, **extra}) if extra else r)
    return out


def groups_note(groups: dict[str, list[str]], by: str) -> str:
    """The table note that says which languages each group average covers."""
    parts = "; ".join(f"{g} = {', '.join(langs)}" for g, langs in groups.items())
    return (f"Group averages by {by}: {parts}. Each is the mean of a run's scores on the group's languages, then "
            "mean ± std over runs (a run missing one of them has no group score).")
