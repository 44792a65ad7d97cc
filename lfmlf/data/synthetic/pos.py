"""Synthetic POS data: the sentences of :func:`~lfmlf.data.synthetic.ner.synthetic_ner` with a UPOS tag per
word, read off the language's lexicon (:func:`synthetic_pos`).
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from lfmlf.data.base import TaggedSentence
from lfmlf.data.synthetic.lexicon import CONCEPTS
from lfmlf.data.synthetic.ner import synthetic_ner
from lfmlf.data.synthetic.profiles import language_profile

_UPOS_OF = {"det": "DET", "adp": "ADP", "acc": "ADP", "adv": "ADV", "adj": "ADJ", "verb": "VERB",
            "n_PER": "NOUN", "n_LOC": "NOUN", "n_ORG": "NOUN", "n_THING": "NOUN", "n_REL": "NOUN"}
_UPOS_OF_CONJ = {"and": "CCONJ", "but": "CCONJ", "because": "SCONJ", "that": "SCONJ"}


@cache
def _upos_lexicon(lang: str) -> dict[str, str]:
    """Word form -> UPOS tag for every lexicon word of a language (forms are unique within a language)."""
    lex = language_profile(lang).lexicon
    out: dict[str, str] = {}
    for category, concepts in CONCEPTS.items():
        for concept in concepts:
            out[lex[concept]] = _UPOS_OF_CONJ[concept] if category == "conj" else _UPOS_OF[category]
    return out


def synthetic_pos(langs: Sequence[str], split: str, n: int, seed: int = 0) -> dict[str, list[TaggedSentence]]:
    """``n`` synthetic UPOS-tagged sentences per language code: the sentences of :func:`synthetic_ner`
    (same arguments, same words) with a part-of-speech tag per word.

    Tags: entity-name words ``PROPN``; nouns (including relational nouns) ``NOUN``; ``VERB``, ``ADJ``,
    ``ADV``, ``DET``; adpositions and the object marker ``ADP``; *and*/*but* ``CCONJ``, *because*/*that*
    ``SCONJ``; years ``NUM``; ``,`` and ``.`` ``PUNCT`` -- 11 of the 17 UPOS tags. The hard negatives
    (common nouns spelled like lower-cased names) are ``NOUN``, so capitalisation and context matter.
    """
    if isinstance(langs, str):
        langs = [langs]
    out: dict[str, list[TaggedSentence]] = {}
    for lang, sents in synthetic_ner(langs, split, n, seed).items():
        upos = _upos_lexicon(lang)
        tagged = []
        for s in sents:
            tags = []
            for i, (tok, ner) in enumerate(zip(s.tokens, s.tags)):
                if ner != "O":
                    tags.append("PROPN")
                elif tok in (",", "."):
                    tags.append("PUNCT")
                elif tok.isdigit():
                    tags.append("NUM")
                else:
                    # the first word may have been capitalised
                    tag = upos.get(tok) or (upos.get(tok[:1].lower() + tok[1:]) if i == 0 else None)
                    if tag is None:  # pragma: no cover - every generated word comes from the lexicon
                        raise AssertionError(f"synthetic word {tok!r} of language {lang!r} has no POS")
                    tags.append(tag)
            tagged.append(TaggedSentence(s.tokens, tuple(tags)))
        out[lang] = tagged
    return out
