"""The artificial languages: each derives, from its code alone, its sound changes and affixes (applied to
the shared roots), its word order and its hard negatives (:func:`language_profile`).
"""
from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from lfmlf.data.base import DataError
from lfmlf.data.synthetic.lexicon import CONCEPTS, NAMES, VOWELS, pick, root_word, stable_hash

_VOWEL_TARGETS = ("a", "e", "i", "o", "u", "ei", "ou", "y", "ö", "å", "ä")
_CONS_RULES = (("p", "b"), ("t", "d"), ("k", "g"), ("s", "z"), ("f", "v"), ("l", "r"), ("k", "c"),
               ("ch", "sh"), ("v", "w"), ("tr", "tl"), ("st", "sht"), ("h", ""), ("j", "y"), ("g", "gh"),
               ("d", "th"), ("r", "rr"), ("b", "v"), ("m", "mb"), ("n", "ñ"), ("z", "ts"))
_SUFFIXES = {
    "noun": ("", "", "a", "en", "o", "ik", "um", "et", "is", "an"),
    "verb": ("", "ar", "en", "it", "u", "as", "te", "ir", "ot"),
    "adj": ("", "i", "ne", "ul", "o", "sk", "ar", "ig"),
    "adv": ("", "", "e", "os", "li"),
}
_VOWEL_RE = re.compile(r"[aeiouyöåä]")


@dataclass(frozen=True)
class LanguageProfile:
    """The derived grammar and lexicon of one artificial language (see the module docstring)."""

    code: str
    word_order: str  # "SVO" | "SOV" | "VSO"
    adj_before_noun: bool
    postpositions: bool
    articles: bool
    object_marker: bool
    capitalize_first: bool
    adverb_first: bool
    lexicon: Mapping[str, str] = field(repr=False)  # concept -> word form
    hard_negatives: tuple[str, ...] = ()  # common words spelled like lower-cased names


def _pos(category: str) -> str:
    if category.startswith("n_"):
        return "noun"
    return category if category in ("verb", "adj", "adv") else "func"


@cache
def language_profile(lang: str) -> LanguageProfile:
    """Derive (deterministically from the code alone) the word order and lexicon of language ``lang``."""
    if not isinstance(lang, str) or not lang.strip():
        raise DataError(f"a synthetic language needs a non-empty code, got {lang!r}")
    rng = random.Random(stable_hash("lang", lang))
    vmap = {v: (v if rng.random() < 0.7 else pick(rng, _VOWEL_TARGETS)) for v in VOWELS}
    cons = {a: b for a, b in _CONS_RULES if rng.random() < 0.22}
    cons_re = re.compile("|".join(sorted(map(re.escape, cons), key=len, reverse=True))) if cons else None
    drop_final_vowel = rng.random() < 0.3
    add_final_e = rng.random() < 0.2
    geminate = rng.random() < 0.15
    suffix = {pos: pick(rng, opts) for pos, opts in _SUFFIXES.items()}
    verb_prefix = pick(rng, ("ge", "ta", "o")) if rng.random() < 0.2 else ""

    def derive(root: str, pos: str) -> str:
        w = cons_re.sub(lambda m: cons[m.group(0)], root) if cons_re else root
        w = "".join(vmap.get(c, c) for c in w)
        if pos != "func":
            if drop_final_vowel and len(w) > 3 and w[-1] in "aeiou":
                w = w[:-1]
            if geminate:
                w = re.sub(r"([aeiouy])([bdgklmnprst])([aeiouy])", r"\1\2\2\3", w, count=1)
            w += suffix.get(pos, "")
            if pos == "verb":
                w = verb_prefix + w
            if add_final_e and not _VOWEL_RE.search(w[-1]):
                w += "e"
        w = re.sub(r"(.)\1\1+", r"\1\1", w)
        return w or root

    lexicon: dict[str, str] = {}
    used: set[str] = set()
    for category, concepts in CONCEPTS.items():
        for concept in concepts:
            w = derive(root_word(concept, category), _pos(category))
            while w in used:  # keep forms unique within the language
                w += pick(rng, "aeiklmnrst")
            used.add(w)
            lexicon[concept] = w

    # Hard negatives: a few thing nouns spelled like lower-cased (seen) first names or city names.
    pool = [x.lower() for x in NAMES.seen["FIRST"][:40] + NAMES.seen["CITY"][:30]]
    pool = [x for x in pool if x not in used]
    negs = []
    for concept in rng.sample(CONCEPTS["n_THING"], 3):
        w = pick(rng, pool)
        pool.remove(w)
        lexicon[concept] = w
        negs.append(w)

    order = rng.choices(("SVO", "SOV", "VSO"), weights=(0.45, 0.4, 0.15))[0]
    post = rng.random() < (0.85 if order == "SOV" else 0.15)
    return LanguageProfile(
        code=lang,
        word_order=order,
        adj_before_noun=rng.random() < 0.5,
        postpositions=post,
        articles=rng.random() < 0.75,
        object_marker=order in ("SOV", "VSO") or rng.random() < 0.3,
        capitalize_first=rng.random() < 0.85,
        adverb_first=rng.random() < 0.5,
        lexicon=lexicon,
        hard_negatives=tuple(negs),
    )
