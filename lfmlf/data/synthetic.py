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
:func:`synthetic_nli`, premise-hypothesis pairs built from them.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.xnli import NliPair

__all__ = ["NER_TAGS", "LanguageProfile", "language_profile", "synthetic_ner", "synthetic_nli",
           "synthetic_pos"]

#: The label set, in WikiAnn's order.
NER_TAGS: tuple[str, ...] = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

_SPLITS = {"train": "train", "dev": "validation", "validation": "validation", "test": "test"}


def _pick(rng: random.Random, seq: Sequence):  # type: ignore[type-arg]
    """rng.choice, several times faster (the generator is hot)."""
    return seq[int(rng.random() * len(seq))]


def _h(*parts: object) -> int:
    """A stable (process-independent) 64-bit hash."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


# --------------------------------------------------------------------------------------------------
# Shared concepts
# --------------------------------------------------------------------------------------------------
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "det": ("the", "a", "this"),
    "adp": ("in", "to", "for", "with", "from", "of", "at"),
    "conj": ("and", "but", "because", "that"),
    "acc": ("ACC",),
    "adv": ("yesterday", "today", "again", "often", "later", "soon", "also"),
    "adj": ("old", "new", "big", "small", "rich", "young", "famous", "quiet", "strong", "poor", "good"),
    "n_PER": ("man", "woman", "teacher", "doctor", "child", "farmer", "soldier", "student", "driver",
              "singer", "judge", "nurse"),
    "n_LOC": ("city", "village", "river", "market", "school", "museum", "port", "mountain", "island",
              "street", "station", "valley"),
    "n_ORG": ("company", "bank", "club", "party", "team", "ministry", "university", "factory",
              "newspaper", "council"),
    "n_THING": ("book", "letter", "contract", "car", "bread", "money", "report", "ship", "song", "house",
                "bridge", "horse"),
    "n_REL": ("director", "president", "mayor", "friend", "brother", "sister", "leader", "member"),
    "verb": ("visit", "meet", "call", "help", "work", "live", "travel", "arrive", "leave", "found", "join",
             "lead", "hire", "buy", "sue", "speak", "write", "read", "sell", "build", "open", "sleep",
             "sing", "win", "say", "lose", "border", "grow", "thank", "see"),
}
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

_ONSETS = ("p", "t", "k", "b", "d", "g", "m", "n", "s", "l", "r", "v", "f", "z", "h", "ch", "sh", "tr",
           "kr", "pl", "st", "br", "j")
_VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "", "n", "r", "s", "l", "m", "k", "t")


def _root(concept: str, category: str) -> str:
    rng = random.Random(_h("root", concept))
    if category in ("det", "adp", "conj", "acc"):
        n_syl = 1
    elif category == "adv":
        n_syl = 2
    else:
        n_syl = _pick(rng, (2, 2, 3))
    out = []
    for i in range(n_syl):
        onset = _pick(rng, _ONSETS) if (i > 0 or rng.random() < 0.85) else ""
        out.append(onset + _pick(rng, _VOWELS) + (_pick(rng, _CODAS) if i == n_syl - 1 else ""))
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Languages
# --------------------------------------------------------------------------------------------------
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


@lru_cache(maxsize=None)
def language_profile(lang: str) -> LanguageProfile:
    """Derive (deterministically from the code alone) the word order and lexicon of language ``lang``."""
    if not isinstance(lang, str) or not lang.strip():
        raise DataError(f"a synthetic language needs a non-empty code, got {lang!r}")
    rng = random.Random(_h("lang", lang))
    vmap = {v: (v if rng.random() < 0.7 else _pick(rng, _VOWEL_TARGETS)) for v in _VOWELS}
    cons = {a: b for a, b in _CONS_RULES if rng.random() < 0.22}
    cons_re = re.compile("|".join(sorted(map(re.escape, cons), key=len, reverse=True))) if cons else None
    drop_final_vowel = rng.random() < 0.3
    add_final_e = rng.random() < 0.2
    geminate = rng.random() < 0.15
    suffix = {pos: _pick(rng, opts) for pos, opts in _SUFFIXES.items()}
    verb_prefix = _pick(rng, ("ge", "ta", "o")) if rng.random() < 0.2 else ""

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
    for category, concepts in _CONCEPTS.items():
        for concept in concepts:
            w = derive(_root(concept, category), _pos(category))
            while w in used:  # keep forms unique within the language
                w += _pick(rng, "aeiklmnrst")
            used.add(w)
            lexicon[concept] = w

    # Hard negatives: a few thing nouns spelled like lower-cased (seen) first names or city names.
    pool = [x.lower() for x in _NAMES.seen["FIRST"][:40] + _NAMES.seen["CITY"][:30]]
    pool = [x for x in pool if x not in used]
    negs = []
    for concept in rng.sample(_CONCEPTS["n_THING"], 3):
        w = _pick(rng, pool)
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


# --------------------------------------------------------------------------------------------------
# Entity names, shared by all languages
# --------------------------------------------------------------------------------------------------
_NAME_SEEDS = {
    "FIRST": ("Ana", "Marta", "Luka", "Tomas", "Ines", "Jonas", "Sara", "Pavel", "Lea", "Omar", "Nadia",
              "Kenji", "Elif", "Bruno"),
    "SUR": ("Kovacs", "Novak", "Berg", "Silva", "Haddad", "Ivanova", "Lindqvist", "Moreau", "Okafor",
            "Tanaka", "Costa", "Weber"),
    "CITY": ("Valdora", "Kerstad", "Lisara", "Oberhain", "Tolmira", "Brenmouth", "Astoria", "Kalmor"),
    "ORGNAME": ("Norte", "Helix", "Telecor", "Aurora", "Vesta", "Orion", "Meridian", "Solvex"),
}
_NAME_ENDINGS = {
    "FIRST": ("a", "o", "e", "i", "an", "el", "ia", "en"),
    "SUR": ("vic", "son", "ez", "ski", "ner", "berg", "ov", "elli", "ard", "sen", "oglu"),
    "CITY": ("ora", "burg", "ia", "stad", "grad", "ville", "mont", "heim", "polis", "ford"),
    "ORGNAME": ("tech", "cor", "ex", "tel", "ix", "on", "media", "gen"),
}
_NAME_COUNTS = {"FIRST": 140, "SUR": 140, "CITY": 110, "ORGNAME": 80}
_LOC_PREFIX = ("San", "Nova", "Porto", "Monte", "Villa", "Nord", "Bad", "Santa")
_ORG_PREFIX = ("Banco", "Grupo", "Instituto", "Union", "Radio", "Liga", "Compania", "Banca", "Editora")
_ORG_SUFFIX = ("Motors", "Systems", "Holding", "Media", "Airlines", "Energia", "Pharma")
_ALWAYS_SEEN = {"Ana", "Kovacs", "Norte", "Valdora", "Marta", "Helix"}


@dataclass(frozen=True)
class _NamePool:
    seen: dict[str, list[str]]
    unseen: dict[str, list[str]]


def _build_names() -> _NamePool:
    rng = random.Random(_h("names", 2024))
    seen: dict[str, list[str]] = {}
    unseen: dict[str, list[str]] = {}
    taken: set[str] = set()
    for kind, count in _NAME_COUNTS.items():
        names = list(_NAME_SEEDS[kind])
        taken.update(names)
        while len(names) < count:
            n_syl = _pick(rng, (1, 2, 2))
            stem = "".join(_pick(rng, _ONSETS) + _pick(rng, _VOWELS) for _ in range(n_syl))
            name = (stem + _pick(rng, _NAME_ENDINGS[kind])).capitalize()
            if name not in taken and 3 <= len(name) <= 12:
                taken.add(name)
                names.append(name)
        seen[kind] = [x for x in names if x in _ALWAYS_SEEN or _h("heldout", x) % 4 != 0]
        unseen[kind] = [x for x in names if x not in seen[kind]]
    return _NamePool(seen, unseen)


_NAMES = _build_names()


def _entity(rng: random.Random, etype: str, pool: dict[str, list[str]]) -> list[str]:
    r = rng.random()
    if etype == "PER":
        if r < 0.55:
            return [_pick(rng, pool["FIRST"]), _pick(rng, pool["SUR"])]
        if r < 0.75:
            return [_pick(rng, pool["FIRST"])]
        if r < 0.88:
            return [_pick(rng, pool["SUR"])]
        return [_pick(rng, pool["FIRST"]), _pick(rng, pool["FIRST"]), _pick(rng, pool["SUR"])]
    if etype == "LOC":
        if r < 0.65:
            return [_pick(rng, pool["CITY"])]
        return [_pick(rng, _LOC_PREFIX), _pick(rng, pool["CITY"])]
    # ORG
    if r < 0.45:
        return [_pick(rng, _ORG_PREFIX), _pick(rng, pool["ORGNAME"])]
    if r < 0.7:
        return [_pick(rng, pool["ORGNAME"]), _pick(rng, _ORG_SUFFIX)]
    if r < 0.85:
        return [_pick(rng, pool["ORGNAME"])]
    return [_pick(rng, _ORG_PREFIX), _pick(rng, pool["ORGNAME"]), _pick(rng, _ORG_SUFFIX)]


# --------------------------------------------------------------------------------------------------
# Sentence generation: an abstract clause tree, then a language-specific linearisation
# --------------------------------------------------------------------------------------------------
class _Slot:
    """A noun-phrase position of a type (PER/LOC/ORG/THING); may become an entity name."""

    __slots__ = ("etype", "name", "rel")

    def __init__(self, etype: str, rel: str | None = None, inner: _Slot | None = None) -> None:
        self.etype = etype
        self.name: list[str] | None = None
        self.rel = (rel, inner) if rel else None


def _np(rng: random.Random, etype: str, slots: list[_Slot], depth: int) -> _Slot:
    if etype == "PER" and depth < 2 and rng.random() < 0.15:
        rel = _pick(rng, _CONCEPTS["n_REL"])
        inner = _np(rng, _REL_ARG[rel], slots, depth + 1)
        return _Slot("PER", rel, inner)
    s = _Slot(etype)
    if etype != "THING":
        slots.append(s)
    return s


def _clause(rng: random.Random, slots: list[_Slot], depth: int) -> tuple:
    while True:
        verb, subj_t, obj = _pick(rng, _FRAMES)
        if obj != "CLAUSE" or depth == 0:
            break
    subj = _np(rng, subj_t, slots, 0)
    if obj is None:
        o = None
    elif obj == "CLAUSE":
        o = ("clause", _clause(rng, slots, depth + 1))
    else:
        adp, t = obj  # type: ignore[misc]
        o = ("np" if adp == "dir" else adp, _np(rng, t, slots, 0))
    adjuncts = []
    for _ in range(_pick(rng, (0, 0, 1, 1, 1, 2))):
        adp, t = _pick(rng, _ADJUNCTS)
        if adp == "ADV":
            adjuncts.append(("ADV", _pick(rng, _CONCEPTS["adv"])))
        elif t == "YEAR":
            adjuncts.append(("in", str(rng.randint(1890, 2024))))
        else:
            adjuncts.append((adp, _np(rng, t, slots, 0)))
    return (verb, subj, o, adjuncts)


class _Out:
    __slots__ = ("tokens", "tags")

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
        out.word(lex[_pick(rng, _CONCEPTS["det"])])
    noun = lex[_pick(rng, _CONCEPTS["n_" + s.etype])]
    if rng.random() < 0.3:
        adj = lex[_pick(rng, _CONCEPTS["adj"])]
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
        k = min(_pick(rng, _N_ENTITIES), len(slots))
        for s in rng.sample(slots, k):
            pool = _NAMES.seen if train or rng.random() < 0.5 else _NAMES.unseen
            s.name = _entity(rng, s.etype, pool)
        out = _Out()
        _emit_clause(out, clauses[0], L, rng, True)
        if len(clauses) > 1:
            out.word(",")
            out.word(L.lexicon[_pick(rng, ("and", "but", "because"))])
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
    if split not in _SPLITS:
        raise DataError(f"unknown synthetic split {split!r}: use train, validation (alias dev) or test")
    if not isinstance(n, int) or n < 0:
        raise DataError(f"synthetic_ner needs a non-negative sentence count n, got {n!r}")
    canon = _SPLITS[split]
    out: dict[str, list[TaggedSentence]] = {}
    for lang in langs:
        L = language_profile(lang)
        rng = random.Random(_h("sentences", seed, lang, canon))
        out[lang] = [_sentence(rng, L, canon == "train") for _ in range(n)]
    return out


# --------------------------------------------------------------------------------------------------
# Part-of-speech tags for the same sentences
# --------------------------------------------------------------------------------------------------
_UPOS_OF = {"det": "DET", "adp": "ADP", "acc": "ADP", "adv": "ADV", "adj": "ADJ", "verb": "VERB",
            "n_PER": "NOUN", "n_LOC": "NOUN", "n_ORG": "NOUN", "n_THING": "NOUN", "n_REL": "NOUN"}
_UPOS_OF_CONJ = {"and": "CCONJ", "but": "CCONJ", "because": "SCONJ", "that": "SCONJ"}


@lru_cache(maxsize=None)
def _upos_lexicon(lang: str) -> dict[str, str]:
    """Word form -> UPOS tag for every lexicon word of a language (forms are unique within a language)."""
    lex = language_profile(lang).lexicon
    out: dict[str, str] = {}
    for category, concepts in _CONCEPTS.items():
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


# --------------------------------------------------------------------------------------------------
# Natural-language inference pairs built from the same sentences
# --------------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _negation(lang: str) -> tuple[str, bool]:
    """The language's negation particle (a word of its own, not in its lexicon) and whether it precedes
    the verb."""
    rng = random.Random(_h("negation", lang))
    used = set(language_profile(lang).lexicon.values())
    while True:
        w = _pick(rng, ("n", "m", "k", "d", "")) + _pick(rng, _VOWELS) + _pick(rng, ("", "n", "t", "k", "ch"))
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
        rng = random.Random(_h("nli", seed, lang, _SPLITS[split]))
        pairs = []
        for premise in sents:
            kept = [(w, t) for w, t in zip(premise.tokens, premise.tags) if t not in ("ADV", "ADJ")]
            words = [w for w, _ in kept]
            verb = [t for _, t in kept].index("VERB") + (0 if before else 1)
            negated = words[:verb] + [neg] + words[verb:]
            lower = {w.lower() for w in premise.tokens}
            adverb = _pick(rng, [a for a in (L.lexicon[c] for c in _CONCEPTS["adv"]) if a not in lower])
            added = [adverb] + words if L.adverb_first else words[:-1] + [adverb] + words[-1:]
            hyps = [(words, "entailment"), (negated, "contradiction"), (added, "neutral")]
            rng.shuffle(hyps)
            text = " ".join(premise.tokens)
            pairs.extend(NliPair(text, " ".join(h), label) for h, label in hyps)
        out[lang] = pairs[:n]
    return out
