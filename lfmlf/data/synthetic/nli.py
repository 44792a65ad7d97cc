"""Synthetic NLI data: premise-hypothesis pairs built from the POS-tagged synthetic sentences, with each
language's own negation particle (:func:`synthetic_nli`).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cache

from lfmlf.data.synthetic.lexicon import CONCEPTS, VOWELS, pick, stable_hash
from lfmlf.data.synthetic.ner import SPLITS
from lfmlf.data.synthetic.pos import synthetic_pos
from lfmlf.data.synthetic.profiles import language_profile
from lfmlf.data.xnli import NliPair


@cache
def _negation(lang: str) -> tuple[str, bool]:
    """The language's negation particle (a word of its own, not in its lexicon) and whether it precedes
    the verb."""
    rng = random.Random(stable_hash("negation", lang))
    used = set(language_profile(lang).lexicon.values())
    while True:
        w = pick(rng, ("n", "m", "k", "d", "")) + pick(rng, VOWELS) + pick(rng, ("", "n", "t", "k", "ch"))
        if len(w) >= 2 and w not in used:
            return w, rng.random() < 0.7


def synthetic_nli(langs: Sequence[str], split: str, n: int, seed: int = 0) -> dict[str, list]:
    """``n`` synthetic premise-hypothesis pairs per language code (:class:`lfmlf.data.xnli.NliPair`),
    deterministic in ``(seed, lang, split)``; a toy for offline quickstarts and tests, not a benchmark.

    Premises are sentences of :func:`synthetic_ner`; each premise comes with three hypotheses (in a
    shuffled order; the last premise may have fewer), like XNLI. All three start from the premise without
    its adverbs and adjectives (*Ana visited the old village yesterday* -> *Ana visited the village*):

    * ``entailment``: that sentence;
    * ``contradiction``: that sentence with the language's own negation particle before (or after) its
      first verb;
    * ``neutral``: that sentence with a time adverb the premise does not have (*... the village again*):
      new information, neither implied nor excluded.

    The cues are single words of each language, so a small model learns them in a few dozen steps.
    """
    if isinstance(langs, str):
        langs = [langs]
    m = -(-n // 3)
    out: dict[str, list] = {}
    for lang, sents in synthetic_pos(langs, split, m, seed).items():
        L = language_profile(lang)
        neg, before = _negation(lang)
        rng = random.Random(stable_hash("nli", seed, lang, SPLITS[split]))
        pairs: list[NliPair] = []
        for premise in sents:
            kept = [(w, t) for w, t in zip(premise.tokens, premise.tags) if t not in ("ADV", "ADJ")]
            words = [w for w, _ in kept]
            verb = [t for _, t in kept].index("VERB") + (0 if before else 1)
            negated = words[:verb] + [neg] + words[verb:]
            lower = {w.lower() for w in premise.tokens}
            adverb = pick(rng, [a for a in (L.lexicon[c] for c in CONCEPTS["adv"]) if a not in lower])
            added = [adverb] + words if L.adverb_first else words[:-1] + [adverb] + words[-1:]
            hyps = [(words, "entailment"), (negated, "contradiction"), (added, "neutral")]
            rng.shuffle(hyps)
            text = " ".join(premise.tokens)
            pairs.extend(NliPair(text, " ".join(h), label) for h, label in hyps)
        out[lang] = pairs[:n]
    return out
