"""Synthetic NER sentences: an abstract clause tree over typed slots (verb frames, adjuncts, relational
nouns), some slots filled with entity names, linearised in each language's word order
(:func:`synthetic_ner`).
"""
from __future__ import annotations

import random
from collections.abc import Sequence

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.synthetic.lexicon import CONCEPTS, NAMES, entity_name, pick, stable_hash
from lfmlf.data.synthetic.profiles import LanguageProfile, language_profile

#: The label set, in WikiAnn's order.
NER_TAGS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

SPLITS = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}

# Relational noun -> type of its complement ("the mayor of LOC").
_REL_ARG = {"director": "ORG", "president": "ORG", "leader": "ORG", "member": "ORG", "mayor": "LOC",
            "friend": "PER", "brother": "PER", "sister": "PER"}
# Verb frames: (verb, subject type, object) with object None, "CLAUSE", ("dir", T) or (adposition, T).
_FRAMES: tuple[tuple[str, str, object], ...] = (
    ("visit", "PER", ("dir", "LOC")), ("meet", "PER", ("dir", "PER")), ("call", "PER", ("dir", "PER")),
    ("help", "ORG", ("dir", "PER")), ("work", "PER", ("for", "ORG")), ("live", "PER", ("in", "LOC")),
    ("travel", "PER", ("to", "LOC")), ("arrive", "PER", ("in", "LOC")), ("leave", "PER", ("dir", "LOC")),
    ("found", "PER", ("dir", "ORG")), ("join", "PER", ("dir", "ORG")), ("lead", "PER", ("dir", "ORG")),
    ("hire", "ORG", ("dir", "PER")), ("buy", "ORG", ("dir", "ORG")), ("sue", "ORG", ("dir", "ORG")),
    ("speak", "PER", ("with", "PER")), ("write", "PER", ("dir", "THING")), ("read", "PER", ("dir", "THING")),
    ("sell", "ORG", ("dir", "THING")), ("build", "ORG", ("dir", "THING")), ("open", "ORG", ("dir", "THING")),
    ("sleep", "PER", None), ("sing", "PER", None), ("win", "ORG", None), ("win", "PER", None),
    ("say", "PER", "CLAUSE"), ("say", "ORG", "CLAUSE"), ("lose", "ORG", ("dir", "THING")),
    ("border", "LOC", ("dir", "LOC")), ("grow", "LOC", None), ("thank", "PER", ("dir", "PER")),
    ("see", "PER", ("dir", "THING")), ("work", "PER", ("in", "LOC")), ("buy", "PER", ("dir", "THING")),
)
# Adjunct kinds: (adposition, slot type); "ADV" = time adverb, "YEAR" = a number after "in".
_ADJUNCTS: tuple[tuple[str, str], ...] = (
    ("in", "LOC"), ("in", "LOC"), ("from", "LOC"), ("at", "ORG"), ("with", "PER"), ("for", "ORG"),
    ("in", "YEAR"), ("ADV", ""), ("ADV", ""), ("to", "LOC"),
)


# --------------------------------------------------------------------------------------------------
# Sentence generation: an abstract clause tree, then a language-specific linearisation
# --------------------------------------------------------------------------------------------------
class _Slot:
    """A noun-phrase position of a type (PER/LOC/ORG/THING); may become an entity name."""

    __slots__ = ("etype", "name", "rel")

    def __init__(self, etype: str, rel: str | None = None, inner: _Slot | None = None) -> None:
        self.etype = etype
        self.name: list[str] | None = None
        self.rel: tuple[str, _Slot] | None = None
        if rel:
            assert inner is not None, "a relational noun comes with its complement"
            self.rel = (rel, inner)


def _np(rng: random.Random, etype: str, slots: list[_Slot], depth: int) -> _Slot:
    if etype == "PER" and depth < 2 and rng.random() < 0.15:
        rel = pick(rng, CONCEPTS["n_REL"])
        inner = _np(rng, _REL_ARG[rel], slots, depth + 1)
        return _Slot("PER", rel, inner)
    s = _Slot(etype)
    if etype != "THING":
        slots.append(s)
    return s


def _clause(rng: random.Random, slots: list[_Slot], depth: int) -> tuple:
    while True:
        verb, subj_t, obj = pick(rng, _FRAMES)
        if obj != "CLAUSE" or depth == 0:
            break
    subj = _np(rng, subj_t, slots, 0)
    o: tuple[str, object] | None
    if obj is None:
        o = None
    elif obj == "CLAUSE":
        o = ("clause", _clause(rng, slots, depth + 1))
    else:
        assert isinstance(obj, tuple)   # (adposition or "dir", slot type)
        adp, t = obj
        o = ("np" if adp == "dir" else adp, _np(rng, t, slots, 0))
    adjuncts: list[tuple[str, object]] = []
    for _ in range(pick(rng, (0, 0, 1, 1, 1, 2))):
        adp, t = pick(rng, _ADJUNCTS)
        if adp == "ADV":
            adjuncts.append(("ADV", pick(rng, CONCEPTS["adv"])))
        elif t == "YEAR":
            adjuncts.append(("in", str(rng.randint(1890, 2024))))
        else:
            adjuncts.append((adp, _np(rng, t, slots, 0)))
    return (verb, subj, o, adjuncts)


class _Out:
    __slots__ = ("tags", "tokens")

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.tags: list[str] = []

    def word(self, w: str) -> None:
        self.tokens.append(w)
        self.tags.append("O")


def _emit_np(out: _Out, s: _Slot, L: LanguageProfile, rng: random.Random) -> None:
    lex = L.lexicon
    if s.name is not None:
        out.tokens.extend(s.name)
        out.tags.append("B-" + s.etype)
        out.tags.extend(["I-" + s.etype] * (len(s.name) - 1))
        return
    if s.rel is not None:
        rel, inner = s.rel
        if L.postpositions:  # X of director
            _emit_np(out, inner, L, rng)
            out.word(lex["of"])
            out.word(lex[rel])
        else:
            if L.articles:
                out.word(lex["the"])
            out.word(lex[rel])
            out.word(lex["of"])
            _emit_np(out, inner, L, rng)
        return
    if L.articles and rng.random() < 0.8:
        out.word(lex[pick(rng, CONCEPTS["det"])])
    noun = lex[pick(rng, CONCEPTS["n_" + s.etype])]
    if rng.random() < 0.3:
        adj = lex[pick(rng, CONCEPTS["adj"])]
        if L.adj_before_noun:
            out.word(adj)
            out.word(noun)
        else:
            out.word(noun)
            out.word(adj)
    else:
        out.word(noun)


def _emit_pp(out: _Out, adp: str, arg: object, L: LanguageProfile, rng: random.Random) -> None:
    if not L.postpositions:
        out.word(L.lexicon[adp])
    if isinstance(arg, _Slot):
        _emit_np(out, arg, L, rng)
    else:
        out.word(str(arg))
    if L.postpositions:
        out.word(L.lexicon[adp])


def _emit_clause(out: _Out, c: tuple, L: LanguageProfile, rng: random.Random, main: bool) -> None:
    verb, subj, o, adjuncts = c
    lex = L.lexicon
    advs = [a for a in adjuncts if a[0] == "ADV"]
    pps = [a for a in adjuncts if a[0] != "ADV"]
    if main and L.adverb_first:
        for _, a in advs:
            out.word(lex[a])

    def emit_obj() -> None:
        if o is None:
            return
        kind, arg = o
        if kind == "np":
            _emit_np(out, arg, L, rng)
            if L.object_marker:
                out.word(lex["ACC"])
        elif kind == "clause":
            if L.word_order == "SOV":
                _emit_clause(out, arg, L, rng, False)
                out.word(lex["that"])
            else:
                out.word(lex["that"])
                _emit_clause(out, arg, L, rng, False)
        else:
            _emit_pp(out, kind, arg, L, rng)

    def emit_pps() -> None:
        for adp, arg in pps:
            _emit_pp(out, adp, arg, L, rng)

    if L.word_order == "SOV":
        _emit_np(out, subj, L, rng)
        emit_pps()
        emit_obj()
        out.word(lex[verb])
    elif L.word_order == "VSO":
        out.word(lex[verb])
        _emit_np(out, subj, L, rng)
        emit_obj()
        emit_pps()
    else:
        _emit_np(out, subj, L, rng)
        out.word(lex[verb])
        emit_obj()
        emit_pps()
    if not (main and L.adverb_first):
        for _, a in advs:
            out.word(lex[a])


_N_ENTITIES = (0, 1, 1, 2, 2, 3)  # target entity count: 1/6 none


def _sentence(rng: random.Random, L: LanguageProfile, train: bool) -> TaggedSentence:
    for _attempt in range(50):
        slots: list[_Slot] = []
        clauses = [_clause(rng, slots, 0)]
        if rng.random() < 0.2:
            clauses.append(_clause(rng, slots, 1))
        k = min(pick(rng, _N_ENTITIES), len(slots))
        for s in rng.sample(slots, k):
            pool = NAMES.seen if train or rng.random() < 0.5 else NAMES.unseen
            s.name = entity_name(rng, s.etype, pool)
        out = _Out()
        _emit_clause(out, clauses[0], L, rng, True)
        if len(clauses) > 1:
            out.word(",")
            out.word(L.lexicon[pick(rng, ("and", "but", "because"))])
            _emit_clause(out, clauses[1], L, rng, True)
        out.word(".")
        if 6 <= len(out.tokens) <= 20:
            break
    if L.capitalize_first and out.tags[0] == "O":
        out.tokens[0] = out.tokens[0][:1].upper() + out.tokens[0][1:]
    return TaggedSentence(tuple(out.tokens), tuple(out.tags))


def synthetic_ner(langs: Sequence[str], split: str, n: int, seed: int = 0) -> dict[str, list[TaggedSentence]]:
    """``n`` synthetic IOB2 NER sentences per language code, deterministic in ``(seed, lang, split)``.

    ``split`` is train, validation (alias dev) or test; only train restricts itself to the seen part of
    the name pool.  Returns ``{lang: [TaggedSentence, ...]}`` in the order of ``langs``.
    """
    if isinstance(langs, str):
        langs = [langs]
    if split not in SPLITS:
        raise DataError(f"unknown synthetic split {split!r}: use train, validation (alias dev) or test")
    if not isinstance(n, int) or n < 0:
        raise DataError(f"synthetic_ner needs a non-negative sentence count n, got {n!r}")
    canon = SPLITS[split]
    out: dict[str, list[TaggedSentence]] = {}
    for lang in langs:
        L = language_profile(lang)
        rng = random.Random(stable_hash("sentences", seed, lang, canon))
        out[lang] = [_sentence(rng, L, canon == "train") for _ in range(n)]
    return out


def synthetic_parallel(langs: Sequence[str], n: int, seed: int = 0) -> dict[str, list[str]]:
    """``n`` sentences per language that translate each other: sentence ``i`` has the same clauses, slots
    and names in every language (drawn from ``(seed, i)``), rendered in each language's own lexicon and word
    order. For the forgetting probe of the offline quickstart (cross-lingual retrieval needs parallel text)."""
    out: dict[str, list[str]] = {lang: [] for lang in langs}
    profiles = {lang: language_profile(lang) for lang in langs}
    for i in range(n):
        content = random.Random(stable_hash("parallel", seed, i))
        slots: list[_Slot] = []
        clauses = [_clause(content, slots, 0)]
        for s in content.sample(slots, min(pick(content, _N_ENTITIES), len(slots))):
            s.name = entity_name(content, s.etype, NAMES.seen)
        for lang in langs:
            sentence = _Out()
            # the surface choices (articles, markers) are the language's own, the content is shared
            _emit_clause(sentence, clauses[0], profiles[lang], random.Random(stable_hash("parallel", seed, i, lang)),
                         True)
            sentence.word(".")
            out[lang].append(" ".join(sentence.tokens))
    return out
