"""The material every artificial language is made from: the shared concepts (with their fixed pseudo-word
roots) and the pool of entity names, seen and held out, that all languages share; plus the fast random
pick and the stable hash the generators draw from (see the :mod:`lfmlf.data.synthetic` docstring).
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


def pick(rng: random.Random, seq: Sequence[T]) -> T:
    """rng.choice, several times faster (the generator is hot)."""
    return seq[int(rng.random() * len(seq))]


def stable_hash(*parts: object) -> int:
    """A stable (process-independent) 64-bit hash."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


# --------------------------------------------------------------------------------------------------
# Shared concepts
# --------------------------------------------------------------------------------------------------
CONCEPTS: dict[str, tuple[str, ...]] = {
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

_ONSETS = ("p", "t", "k", "b", "d", "g", "m", "n", "s", "l", "r", "v", "f", "z", "h", "ch", "sh", "tr",
           "kr", "pl", "st", "br", "j")
VOWELS = ("a", "e", "i", "o", "u")
_CODAS = ("", "", "", "", "n", "r", "s", "l", "m", "k", "t")


def root_word(concept: str, category: str) -> str:
    """The fixed pseudo-word root of a concept (1 syllable for function words, 2 for adverbs, else 2-3)."""
    rng = random.Random(stable_hash("root", concept))
    if category in ("det", "adp", "conj", "acc"):
        n_syl = 1
    elif category == "adv":
        n_syl = 2
    else:
        n_syl = pick(rng, (2, 2, 3))
    out = []
    for i in range(n_syl):
        onset = pick(rng, _ONSETS) if (i > 0 or rng.random() < 0.85) else ""
        out.append(onset + pick(rng, VOWELS) + (pick(rng, _CODAS) if i == n_syl - 1 else ""))
    return "".join(out)


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
    rng = random.Random(stable_hash("names", 2024))
    seen: dict[str, list[str]] = {}
    unseen: dict[str, list[str]] = {}
    taken: set[str] = set()
    for kind, count in _NAME_COUNTS.items():
        names = list(_NAME_SEEDS[kind])
        taken.update(names)
        while len(names) < count:
            n_syl = pick(rng, (1, 2, 2))
            stem = "".join(pick(rng, _ONSETS) + pick(rng, VOWELS) for _ in range(n_syl))
            name = (stem + pick(rng, _NAME_ENDINGS[kind])).capitalize()
            if name not in taken and 3 <= len(name) <= 12:
                taken.add(name)
                names.append(name)
        seen[kind] = [x for x in names if x in _ALWAYS_SEEN or stable_hash("heldout", x) % 4 != 0]
        unseen[kind] = [x for x in names if x not in seen[kind]]
    return _NamePool(seen, unseen)


NAMES = _build_names()


def entity_name(rng: random.Random, etype: str, pool: dict[str, list[str]]) -> list[str]:
    """The tokens of a random PER, LOC or ORG name built from ``pool`` (``NAMES.seen`` or ``NAMES.unseen``)."""
    r = rng.random()
    if etype == "PER":
        if r < 0.55:
            return [pick(rng, pool["FIRST"]), pick(rng, pool["SUR"])]
        if r < 0.75:
            return [pick(rng, pool["FIRST"])]
        if r < 0.88:
            return [pick(rng, pool["SUR"])]
        return [pick(rng, pool["FIRST"]), pick(rng, pool["FIRST"]), pick(rng, pool["SUR"])]
    if etype == "LOC":
        if r < 0.65:
            return [pick(rng, pool["CITY"])]
        return [pick(rng, _LOC_PREFIX), pick(rng, pool["CITY"])]
    # ORG
    if r < 0.45:
        return [pick(rng, _ORG_PREFIX), pick(rng, pool["ORGNAME"])]
    if r < 0.7:
        return [pick(rng, pool["ORGNAME"]), pick(rng, _ORG_SUFFIX)]
    if r < 0.85:
        return [pick(rng, pool["ORGNAME"])]
    return [pick(rng, _ORG_PREFIX), pick(rng, pool["ORGNAME"]), pick(rng, _ORG_SUFFIX)]

