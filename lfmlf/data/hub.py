"""Hub datasets through ``datasets.load_dataset``: WikiAnn (PAN-X) NER, Universal Dependencies UPOS, XNLI.

Needs network access (or a warm ``datasets`` cache).  On offline machines use local files instead
(NER: ``format: conll``, read by :func:`lfmlf.data.conll.read_tagged`; POS: ``format: conllu`` or
``udpos``; NLI: ``format: xnli``).
"""
from __future__ import annotations

from typing import Any

from langcodes.data_dicts import LANGUAGE_ALPHA3

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.xnli import NLI_LABELS, NliPair, normalise_label

__all__ = ["UD_HUB_UPOS", "WIKIANN_CONFIGS", "WIKIANN_TAGS", "hub_config_name", "load_ud", "load_wikiann",
           "load_xnli_hub"]

# --------------------------------------------------------------------------------------------------
# Language codes -> the configs of hub datasets
# --------------------------------------------------------------------------------------------------
#: Our (normalised) codes -> WikiAnn's config names where they differ (WikiAnn uses Wikipedia's names).
#: WikiAnn's ``simple``, ``roa-tara`` and ``map-bms`` have no ISO 639 code, so no sweep can name them.
WIKIANN_CONFIGS: dict[str, str] = {
    "yue": "zh-yue", "nan": "zh-min-nan", "lzh": "zh-classical", "sgs": "bat-smg", "be-tarask": "be-x-old",
    "cbk": "cbk-zam", "vro": "fiu-vro", "rup": "roa-rup", "nds-NL": "nds-nl", "gsw": "als",
}
#: AmericasNLI's configs are ISO 639-3 except Guarani's ``gn``: only Aymara differs from our shortest code.
_AMERICAS_NLI_CONFIGS = {"ay": "aym"}


def hub_config_name(path: str, lang: str) -> str:
    """The config of language ``lang`` (a normalised code, :func:`lfmlf.languages.normalize_language`) in the
    hub dataset ``path``; called by the hub loaders just before ``datasets.load_dataset``. The dataset is told by
    the last part of its id or folder: ``*wikiann*`` (Wikipedia's names, :data:`WIKIANN_CONFIGS`),
    ``*masakhaner*`` (ISO 639-3: ``yo`` -> ``yor``), ``*americas_nli*``/``*americasnli*`` (``ay`` -> ``aym``);
    any other dataset gets the code itself. Raises DataError for WikiAnn's ``als``, which is Alemannic there
    but Tosk Albanian in ISO 639-3."""
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    if "masakhaner" in name:
        return LANGUAGE_ALPHA3.get(lang, lang)
    if "americas_nli" in name or "americasnli" in name:
        return _AMERICAS_NLI_CONFIGS.get(lang, lang)
    if "wikiann" in name:
        if lang == "als":
            raise DataError("WikiAnn's config 'als' is Alemannic (ISO 639-3 gsw), but 'als' is the ISO code of "
                            "Tosk Albanian, which WikiAnn does not have. Fix: write gsw for WikiAnn's Alemannic.")
        return WIKIANN_CONFIGS.get(lang, lang)
    return lang

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
    revision: str | None = None,
) -> list[TaggedSentence]:
    """Load one language/split of WikiAnn as tagged sentences (IOB2 tag strings).

    ``path`` is the hub dataset id (or a local dataset folder with the same layout: one config per
    language with ``tokens`` and ``ner_tags`` columns, e.g. MasakhaNER).  ``split`` is train, validation (or
    dev), test. The config of ``lang`` is :func:`hub_config_name`.
    """
    hub_split = _hub_split(split)
    config = hub_config_name(path, lang)
    shown = repr(lang) if config == lang else f"{lang!r} (config {config!r})"
    what = f"WikiAnn dataset {path!r}, language {shown}, split {split!r}"
    try:
        import datasets  # lazy: slow to import, and only hub formats need it
    except ImportError as e:  # pragma: no cover - datasets is a hard dependency
        raise DataError(f"cannot load {what}: the 'datasets' package is not installed ({e})") from None
    try:
        ds = datasets.load_dataset(path, config, split=hub_split, cache_dir=cache_dir, revision=revision)
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


# --------------------------------------------------------------------------------------------------
# Universal Dependencies (UPOS) and XNLI
# --------------------------------------------------------------------------------------------------
#: The ``upos`` ClassLabel order of the hub's ``universal-dependencies/universal_dependencies`` (used when a
#: dataset carries bare integer ids). ``_`` marks multi-word token rows, which :func:`load_ud` drops.
UD_HUB_UPOS: tuple[str, ...] = ("NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ",
                                "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX")


def _load_split(path: str, config: str, split: str, what: str, fix: str, cache_dir: str | None,
                revision: str | None = None) -> Any:
    """``datasets.load_dataset(path, config, split=...)`` with our split names (dev = validation)."""
    base, bracket, rest = split.partition("[")
    if base not in _SPLITS:
        raise DataError(f"unknown split {split!r} of {what}: use one of train, validation (alias dev), test "
                        f"(optionally sliced, e.g. 'train[:1000]')")
    try:
        import datasets  # lazy: slow to import, and only hub formats need it
    except ImportError as e:  # pragma: no cover - datasets is a hard dependency
        raise DataError(f"cannot load {what}: the 'datasets' package is not installed ({e})") from None
    try:
        return datasets.load_dataset(path, config, split=_SPLITS[base] + bracket + rest, cache_dir=cache_dir,
                                     revision=revision)
    except Exception as e:  # no network, unknown config, corrupt cache, ...
        raise DataError(f"cannot load {what} via datasets.load_dataset: {type(e).__name__}: "
                        f"{str(e).rstrip('.')}. Fix: {fix}") from e


def _columns(ds: Any, need: set[str], what: str) -> None:
    missing = need - set(ds.column_names)
    if missing:
        raise DataError(f"{what} has no column(s) {sorted(missing)}; found {ds.column_names}")


def _class_names(features: Any, column: str, sequence: bool) -> list[str] | None:
    feat = features.get(column) if features is not None else None
    if sequence:
        inner = getattr(feat, "feature", None)   # Sequence(ClassLabel) / List(ClassLabel)
        if inner is None and isinstance(feat, list) and feat:
            inner = feat[0]
        feat = inner
    names = getattr(feat, "names", None)
    return list(names) if names else None


def load_ud(
    treebank: str,
    split: str,
    *,
    path: str = "universal-dependencies/universal_dependencies",
    cache_dir: str | None = None,
    revision: str | None = None,
) -> list[TaggedSentence]:
    """Load one treebank/split of a Universal Dependencies hub dataset as UPOS-tagged sentences.

    ``treebank`` is the dataset config (``en_ewt``, ``de_gsd``, ...), ``path`` the hub id or a local
    dataset folder with the same layout (``tokens`` and ``upos`` columns, ``upos`` a sequence of ClassLabel
    or of tag strings). Rows tagged ``_`` (the surface form of a multi-word token such as ``am`` = ``an
    dem``, which the hub keeps next to its words) are dropped, as the CoNLL-U reader does.
    """
    what = f"Universal Dependencies dataset {path!r}, treebank {treebank!r}, split {split!r}"
    ds = _load_split(path, treebank, split, what,
                     "check the treebank name (a config such as 'en_ewt', set per language in "
                     "task.options.treebanks) and the network; on offline machines use local files "
                     "(format: conllu or udpos with files: ...)", cache_dir, revision)
    _columns(ds, {"tokens", "upos"}, what)
    names = _class_names(ds.features, "upos", sequence=True) or list(UD_HUB_UPOS)
    out: list[TaggedSentence] = []
    for i, (tokens, tag_ids) in enumerate(zip(ds["tokens"], ds["upos"])):
        try:
            tags = [t if isinstance(t, str) else names[t] for t in tag_ids]
        except (IndexError, TypeError):
            raise DataError(f"{what}, row {i}: tag ids {tag_ids} outside the label set {names}") from None
        if len(tags) != len(tokens):
            raise DataError(f"{what}, row {i}: {len(tokens)} tokens but {len(tags)} tags")
        kept = [(w, t) for w, t in zip(tokens, tags) if t != "_"]
        if kept:
            out.append(TaggedSentence(tuple(w for w, _ in kept), tuple(t for _, t in kept)))
    return out


def load_xnli_hub(
    lang: str,
    split: str,
    *,
    path: str = "facebook/xnli",
    cache_dir: str | None = None,
    revision: str | None = None,
) -> list[Any]:
    """Load one language/split of XNLI (``facebook/xnli`` layout: one config per language with
    ``premise``, ``hypothesis`` and ``label`` columns, ``label`` a ClassLabel or int in the order entailment,
    neutral, contradiction, or a label string) as :class:`lfmlf.data.xnli.NliPair` records."""
    config = hub_config_name(path, lang)
    shown = repr(lang) if config == lang else f"{lang!r} (config {config!r})"
    what = f"XNLI dataset {path!r}, language {shown}, split {split!r}"
    ds = _load_split(path, config, split, what,
                     "check the language code (an XNLI config such as 'en', 'de') and the network; on "
                     "offline machines use local TSV files (format: xnli with files: ...)", cache_dir, revision)
    _columns(ds, {"premise", "hypothesis", "label"}, what)
    names = _class_names(ds.features, "label", sequence=False) or list(NLI_LABELS)
    out = []
    for i, (premise, hypothesis, label) in enumerate(zip(ds["premise"], ds["hypothesis"], ds["label"])):
        name = label if isinstance(label, str) else names[label] if 0 <= label < len(names) else None
        canon = normalise_label(name) if name is not None else None
        if canon is None:
            raise DataError(f"{what}, row {i}: label {label!r} is not one of {', '.join(NLI_LABELS)}")
        out.append(NliPair(premise, hypothesis, canon))
    return out
