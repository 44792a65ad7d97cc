"""Synthetic multilingual NER for the offline quickstart and for tests.

``synthetic_ner(langs, split, n, seed=0)`` returns, for each language code, ``n`` IOB2-tagged sentences
(tags ``O``, ``B-/I-PER``, ``B-/I-ORG``, ``B-/I-LOC``).  Everything is deterministic: the grammar and
lexicon of a language depend only on its code (any string, e.g. ``"en"``, ``"xx"``); the sentences depend
on ``(seed, lang, split)``.

How the artificial languages are built
--------------------------------------
* A shared **root lexicon** of concepts (verbs, nouns of people / places / organisations / things,
  relational nouns such as *director of*, adjectives, adverbs, determiners, adpositions, conjunctions).
  Roots are fixed pseudo-words.
* Each language derives its words from the roots by its own deterministic **sound changes** (vowel
  shifts, consonant voicing / lenition, final-vowel loss, gemination) and **affixes** per part of speech,
  all drawn from a hash of the language code.  Related forms therefore share sub-word pieces, like
  cognates in real languages, while the lexicons differ.
* Each language has its own **word order**: SVO / SOV / VSO, adjective before or after the noun,
  prepositions or postpositions (genitive order follows), articles or none, an optional object marker,
  sentence-initial capitalisation or not, time adverbs fronted or not.
* **Entity names** (PER, LOC, ORG, many multi-token: ``Ana Kovacs``, ``Porto Valdora``, ``Banco Norte``)
  come from one pool shared by all languages.  About a quarter of the name parts are held out: ``train``
  uses only the seen parts, other splits draw about half of their entities from held-out parts, so
  dev/test contain names never seen in training and a model has to use context.
* **Context cues**: typed verb frames (*PER visited LOC*, *PER works for ORG*, *ORG hired PER*,
  *PER said that ...*), adjuncts (*in LOC*, *with PER*, *for ORG*, *in 1998*), relational nouns
  (*the mayor of LOC*); the same slots are often filled by common noun phrases (*visited the old
  village*), so the slot alone does not decide the tag.
* **Hard negatives**: in every language a few common nouns are spelled like lower-cased names
  (``marta`` may mean *bread*), sentence-initial words are capitalised in most languages, and years follow
  the same adpositions as places.

Sentences hold 0-3 entities (about 15 % have none) and 6-20 tokens including the final ``.``.

API: :func:`synthetic_ner`, :func:`language_profile` (the derived grammar and lexicon of one code),
:data:`NER_TAGS` (label list, WikiAnn order); :func:`synthetic_pos`, the same sentences with UPOS tags;
:func:`synthetic_nli`, premise-hypothesis pairs built from them; :func:`synthetic_parallel`, sentences
that translate each other across languages (the quickstart's forgetting probe).

The package: :mod:`~lfmlf.data.synthetic.lexicon` (concepts, roots, the shared name pool),
:mod:`~lfmlf.data.synthetic.profiles` (the languages), :mod:`~lfmlf.data.synthetic.ner` (sentences with NER
tags), :mod:`~lfmlf.data.synthetic.pos` (the same with UPOS tags) and :mod:`~lfmlf.data.synthetic.nli`
(premise-hypothesis pairs). Everything public is importable from ``lfmlf.data.synthetic``.
"""
from __future__ import annotations

from lfmlf.data.synthetic.ner import NER_TAGS, synthetic_ner, synthetic_parallel
from lfmlf.data.synthetic.nli import synthetic_nli
from lfmlf.data.synthetic.pos import synthetic_pos
from lfmlf.data.synthetic.profiles import LanguageProfile, language_profile

__all__ = ["NER_TAGS", "LanguageProfile", "language_profile", "synthetic_ner", "synthetic_nli", "synthetic_parallel",
           "synthetic_pos"]
