"""Extractive-QA scores: exact match and token F1, the max over the gold answers, averaged over questions.

Two normalisations, written after the official scripts (scores in [0, 1], not percent):

* ``"squad"`` -- SQuAD v1.1 ``evaluate-v1.1.py``: lower-case, drop ASCII punctuation, drop the English
  articles a/an/the, collapse whitespace; tokens are whitespace-separated. XTREME scores XQuAD and TyDi QA
  GoldP this way.
* ``"mlqa"`` -- MLQA ``mlqa_evaluation_v1.py``: lower-case, drop every Unicode punctuation character
  (category ``P*``) and ASCII punctuation, drop language-specific articles (en, es, de, vi, ar; none for
  hi and zh), then tokenise on whitespace, except zh, which is split into single CJK characters (mixed
  segmentation: runs of non-CJK characters stay whitespace tokens). The official script rejects other
  languages; here they get no article removal and whitespace tokens.

As in SQuAD v1.1, F1 is 0 when either side normalises to no tokens (EM can still be 1 then).

Which one scores a dataset by default (:func:`dataset_normalisation`) follows XTREME: MLQA with MLQA's script,
everything else (XQuAD, TyDi QA GoldP, SQuAD) with SQuAD v1.1's. A language tag is scored by its language
subtag (``zh-Hant`` as ``zh``).
"""
from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import Literal

__all__ = ["Normalisation", "dataset_normalisation", "exact_match", "f1_score", "normalize_answer", "qa_scores",
           "score_question", "tokens"]

Normalisation = Literal["squad", "mlqa"]

_ASCII_PUNCT = frozenset(string.punctuation)
_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),   # as in the MLQA script: in effect every "ال" goes
}
_MIXED_SEGMENTATION = frozenset({"zh"})
_CJK = re.compile(r"[\u4e00-\u9fa5]")


# MLQA's release names its files ``dev-context-de-question-de.json``; its hub configs are ``mlqa.de.de``.
_MLQA_SOURCE = re.compile(r"mlqa|context-[A-Za-z-]+-question-[A-Za-z-]+", re.IGNORECASE)


def dataset_normalisation(source: str) -> Normalisation:
    """The normalisation XTREME scores a dataset with: ``"mlqa"`` when ``source`` (a data file's path, or a hub
    dataset id and config) names MLQA, else ``"squad"`` (XQuAD, TyDi QA GoldP, SQuAD and any other SQuAD-format
    data). Called by the QA task for every language and split when ``task.options.normalisation`` is ``auto``."""
    return "mlqa" if _MLQA_SOURCE.search(source) else "squad"


def _is_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


def _mixed_segmentation(text: str) -> list[str]:
    """CJK characters and punctuation are tokens of their own; other runs are split on whitespace."""
    out: list[str] = []
    run = ""
    for ch in text:
        if _CJK.match(ch) or _is_punct(ch):
            out.extend(run.split())
            run = ""
            out.append(ch)
        else:
            run += ch
    out.extend(run.split())
    return out


def normalize_answer(text: str, lang: str = "en", normalisation: Normalisation = "squad") -> str:
    """The normalised answer string of the chosen script (tokens joined by single spaces)."""
    lang = lang.split("-")[0]
    text = text.lower()
    if normalisation == "squad":
        text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
        return " ".join(_ARTICLES["en"].sub(" ", text).split())
    if normalisation != "mlqa":
        raise ValueError(f"unknown QA normalisation {normalisation!r}. Fix: use 'squad' or 'mlqa'.")
    text = "".join(ch for ch in text if not _is_punct(ch))
    if lang in _ARTICLES:
        text = _ARTICLES[lang].sub(" ", text)
    toks = _mixed_segmentation(text) if lang in _MIXED_SEGMENTATION else text.split()
    return " ".join(t for t in toks if t.strip())


def tokens(text: str, lang: str = "en", normalisation: Normalisation = "squad") -> list[str]:
    """The tokens F1 counts: the normalised answer split on whitespace."""
    return normalize_answer(text, lang, normalisation).split()


def exact_match(prediction: str, gold: str, lang: str = "en",
                normalisation: Normalisation = "squad") -> float:
    pred, ref = normalize_answer(prediction, lang, normalisation), normalize_answer(gold, lang, normalisation)
    return float(pred == ref)


def f1_score(prediction: str, gold: str, lang: str = "en",
             normalisation: Normalisation = "squad") -> float:
    pred, ref = tokens(prediction, lang, normalisation), tokens(gold, lang, normalisation)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def score_question(prediction: str, golds: Sequence[str], lang: str = "en",
                   normalisation: Normalisation = "squad") -> tuple[float, float]:
    """(EM, F1) of one prediction: each the max over the gold answers."""
    if not golds:
        raise ValueError("a question needs at least one gold answer")
    return (max(exact_match(prediction, g, lang, normalisation) for g in golds),
            max(f1_score(prediction, g, lang, normalisation) for g in golds))


def qa_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]], lang: str = "en",
              normalisation: Normalisation = "squad") -> dict[str, float]:
    """``{"em": ..., "f1": ...}`` averaged over questions, in [0, 1] (0 for no questions)."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions but {len(golds)} gold answer lists")
    if not predictions:
        return {"em": 0.0, "f1": 0.0}
    scores = [score_question(p, g, lang, normalisation) for p, g in zip(predictions, golds)]
    return {"em": sum(s[0] for s in scores) / len(scores), "f1": sum(s[1] for s in scores) / len(scores)}
