"""Language codes and source-language sets.

Codes are ISO 639-1 where one exists (``en``, ``de``), else ISO 639-3 (``hau``). A *source set* is its
sorted codes joined by ``+`` (``de+en+fr``): that string is the Optuna categorical value, the Tune config
value and the MLflow param, so one canonical spelling is used everywhere.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations

from lfmlf.errors import UserError

# Every ISO 639-1 code.
_ISO_639_1 = frozenset("""
aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee
el en eo es et eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is
it iu ja jv ka kg ki kj kk kl km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms
mt my na nb nd ne ng nl nn no nr nv ny oc oj om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk
sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi
yo za zh zu
""".split())

# ISO 639-3 codes of languages without a 639-1 code that multilingual benchmarks use (WikiAnn, UD, MasakhaNER).
_ISO_639_3_ONLY = frozenset("""
ace als ang arz ast bar bcl bho cbk ceb ckb crh csb diq dsb frr fur gan hak haw hif hsb ilo jbo kab kbd lad
lij lmo mai mhr min mwl mzn nah nap nds new nov nso pam pap pcm pdc pms pnb rue sah scn sco sgs szl tet tpi
tzl vec vep vls war wuu xmf yue zea hau luo kin lug swh cmn pes tgl
""".split())

KNOWN_LANGUAGES = _ISO_639_1 | _ISO_639_3_ONLY


class LanguageError(UserError, ValueError):
    """An unknown language code or an impossible source-set constraint."""


def check_language(code: str) -> str:
    """Return ``code`` if it is a known ISO 639-1/639-3 code, else raise LanguageError with a hint."""
    if code in KNOWN_LANGUAGES:
        return code
    hint = ""
    lower = code.lower().replace("_", "-").split("-")[0]
    if lower != code and lower in KNOWN_LANGUAGES:
        hint = f" Did you mean '{lower}'?"
    raise LanguageError(
        f"'{code}' is not a known language code; use ISO 639-1 where one exists (en, de, zh), "
        f"else ISO 639-3 (hau).{hint}"
    )


def encode_set(langs: Iterable[str]) -> str:
    """Canonical spelling of a source set: sorted unique codes joined by '+'."""
    codes = sorted(set(langs))
    if not codes:
        raise LanguageError("a source set needs at least one language")
    return "+".join(codes)


def decode_set(value: str) -> tuple[str, ...]:
    """Inverse of :func:`encode_set`; rejects non-canonical spellings so that one set has one name."""
    codes = tuple(value.split("+"))
    for code in codes:
        check_language(code)
    if encode_set(codes) != value:
        raise LanguageError(f"source set '{value}' is not canonical; write it as '{encode_set(codes)}'")
    return codes


def enumerate_sets(pool: Sequence[str], min_size: int, max_size: int,
                   must_include: Sequence[str] = ()) -> list[str]:
    """Every canonical source set drawn from ``pool`` with ``min_size <= size <= max_size`` that holds
    every language of ``must_include``; sorted by size, then alphabetically."""
    missing = sorted(set(must_include) - set(pool))
    if missing:
        raise LanguageError(f"must_include names {missing}, which are not in the source pool {sorted(pool)}")
    required = set(must_include)
    sets = [encode_set(c) for k in range(min_size, max_size + 1)
            for c in combinations(sorted(set(pool)), k) if required <= set(c)]
    if not sets:
        raise LanguageError(
            f"no source set of size {min_size}..{max_size} from pool {sorted(pool)} includes {sorted(required)}"
        )
    return sets
