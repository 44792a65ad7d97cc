"""WikiAnn (PAN-X) NER from the Hugging Face hub, through ``datasets.load_dataset``.

Needs network access (or a warm ``datasets`` cache).  On offline machines use local IOB2 files instead
(``format: conll`` with ``files``, read by :func:`lfmlf.data.conll.read_tagged`).
"""
from __future__ import annotations

from typing import Any

from lfmlf.data.base import DataError, TaggedSentence

__all__ = ["WIKIANN_TAGS", "load_wikiann"]

#: WikiAnn's fixed label order, used when the dataset does not carry ClassLabel names.
WIKIANN_TAGS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

_SPLITS = {"train": "train", "validation": "validation", "dev": "validation", "test": "test"}


def _hub_split(split: str) -> str:
    """Map our split names to WikiAnn's; keeps a `datasets` slice suffix such as ``train[:100]``."""
    base, bracket, rest = split.partition("[")
    if base not in _SPLITS:
        raise DataError(
            f"unknown WikiAnn split {split!r}: use one of train, validation (alias dev), test "
            f"(optionally sliced, e.g. 'train[:1000]')"
        )
    return _SPLITS[base] + bracket + rest


def _tag_names(features: Any) -> list[str] | None:
    """ClassLabel names of the ``ner_tags`` sequence feature, or None if it does not carry them."""
    feat = features.get("ner_tags") if features is not None else None
    inner = getattr(feat, "feature", None)  # Sequence(ClassLabel) / List(ClassLabel)
    if inner is None and isinstance(feat, list) and feat:  # [ClassLabel] shorthand
        inner = feat[0]
    names = getattr(inner, "names", None)
    return list(names) if names else None


def load_wikiann(
    lang: str,
    split: str,
    *,
    path: str = "unimelb-nlp/wikiann",
    cache_dir: str | None = None,
) -> list[TaggedSentence]:
    """Load one language/split of WikiAnn as tagged sentences (IOB2 tag strings).

    ``path`` is the hub dataset id (or a local dataset folder with the same layout: one config per
    language with ``tokens`` and ``ner_tags`` columns).  ``split`` is train, validation (or dev), test.
    """
    hub_split = _hub_split(split)
    what = f"WikiAnn dataset {path!r}, language {lang!r}, split {split!r}"
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a hard dependency
        raise DataError(f"cannot load {what}: the 'datasets' package is not installed ({e})") from None
    try:
        ds = datasets.load_dataset(path, lang, split=hub_split, cache_dir=cache_dir)
    except Exception as e:  # no network, unknown config, corrupt cache, ...
        raise DataError(
            f"cannot load {what} via datasets.load_dataset: {type(e).__name__}: {str(e).rstrip('.')}. "
            f"Check the language code (a WikiAnn config such as 'en', 'de') and the network; on offline "
            f"machines use local IOB2/CoNLL files instead (format: conll with files: ...)."
        ) from e

    missing = {"tokens", "ner_tags"} - set(ds.column_names)
    if missing:
        raise DataError(f"{what} has no column(s) {sorted(missing)}; found {ds.column_names}")
    names = _tag_names(ds.features) or list(WIKIANN_TAGS)

    out: list[TaggedSentence] = []
    for i, (tokens, tag_ids) in enumerate(zip(ds["tokens"], ds["ner_tags"])):
        try:
            tags = tuple(t if isinstance(t, str) else names[t] if t >= 0 else names[len(names)] for t in tag_ids)
        except (IndexError, TypeError):
            raise DataError(f"{what}, row {i}: tag ids {tag_ids} outside the label set {names}") from None
        out.append(TaggedSentence(tuple(tokens), tags))
    return out
