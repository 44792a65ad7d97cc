"""Language codes, their script and family groups, and source-language sets.

A code is any valid ISO 639-1, 639-2 (T or B) or 639-3 code or BCP-47 tag (validated by ``langcodes``),
normalised by :func:`normalize_language` to its shortest spelling: the ISO 639-1 code where the same ISO 639
entry has one (``yor`` -> ``yo``, ``deu``/``ger`` -> ``de``, ``tgl`` -> ``tl``), else the ISO 639-3 code
(``quy``, ``cni``, ``fon``); tags keep their region and a script that is not the language's usual one
(``pt-BR``, ``zh-Hant``; ``en-Latn-US`` -> ``en-US``). Only the four withdrawn ISO 639-1 spellings (``iw``,
``in``, ``ji``, ``jw``) are replaced by their successors; langcodes' other replacements, which change the
language meant (``tl`` -> ``fil``, ``sh`` -> ``sr-Latn``, ``mo`` -> ``ro``, macrolanguage merges), are not
applied, so data files named after the code as written keep matching. Individual languages of a
macrolanguage stay as written (``swh`` is not ``sw``, ``cmn`` is not ``zh``). Private-use codes (``qaa`` to
``qtz``) and the special codes ``und``, ``mul``, ``mis``, ``zxx`` name no particular language and are refused.

A *source set* is its sorted codes joined by ``+`` (``de+en+fr``): that string is the Optuna categorical
value, the Tune config value and the MLflow param, so one canonical spelling is used everywhere.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from typing import Literal

import langcodes
from langcodes import data_dicts

from lfmlf.errors import UserError

__all__ = ["UNKNOWN", "LanguageError", "check_language", "decode_set", "encode_set", "enumerate_sets",
           "family_of", "group_of", "normalize_language", "script_of"]

#: The group of a code the tables do not cover (shown by name in reports, so nothing is hidden).
UNKNOWN = "unknown"

_ALPHA3_TO_ALPHA2: dict[str, str] = {
    **{a3: a2 for a2, a3 in data_dicts.LANGUAGE_ALPHA3.items() if len(a2) == 2},
    **{a3: a2 for a2, a3 in data_dicts.LANGUAGE_ALPHA3_BIBLIOGRAPHIC.items() if len(a2) == 2},
}
# ISO 639-1 codes withdrawn in 1989 in favour of new spellings of the same language.
_WITHDRAWN_639_1 = {"iw": "he", "in": "id", "ji": "yi", "jw": "jv"}
_SPECIAL = {"und": "undetermined", "mul": "multiple languages", "mis": "uncoded languages",
            "zxx": "no linguistic content"}


class LanguageError(UserError, ValueError):
    """An unknown language code or an impossible source-set constraint."""


def _is_private_use(language: str) -> bool:
    return len(language) == 3 and "qaa" <= language <= "qtz"


def normalize_language(code: str) -> str:
    """The shortest spelling of a language code or BCP-47 tag (see the module docstring for the rules).
    Called for every code a sweep file names (by the config loader) and for every code read back from a
    source set. Raises LanguageError naming the code and the fix when it is not a valid code of one language."""
    if not isinstance(code, str) or not code.strip():
        raise LanguageError(f"{code!r} is not a language code; write an ISO 639-1 code where one exists "
                            "(en, de, zh), else the ISO 639-3 code (quy, fon).")
    tag = code.strip().replace("_", "-")
    if not langcodes.tag_is_valid(tag):
        raise LanguageError(
            f"'{code}' is not a known language code; use ISO 639-1 where one exists (en, de, zh), else "
            f"ISO 639-3 (quy, fon), or a BCP-47 tag (pt-BR).{_hint(tag)}")
    first = tag.split("-")[0].lower()
    if first == "x":
        raise LanguageError(f"'{code}' is a private-use tag, which names no particular language. Fix: use the "
                            "language's ISO 639-3 code (every language in Glottolog/Ethnologue has one).")
    lang = langcodes.Language.get(tag, normalize=False)
    if lang.language is not None and "-" in lang.language:   # a grandfathered tag: its preferred value
        lang = langcodes.Language.get(tag)                   # (i-klingon -> tlh, zh-min-nan -> nan)
    if lang.extlangs:                                        # zh-yue -> yue
        ext = lang.extlangs[0]
        if data_dicts.MACROLANGUAGES.get(ext) != lang.language and lang.language != "sgn":
            raise LanguageError(
                f"'{code}' is not a valid language tag: '{ext}' is not a variety of '{lang.language}' (Wikipedia "
                f"and WikiAnn names such as cbk-zam or map-bms are not BCP-47). Fix: write the language's own "
                f"ISO 639-3 code (cbk for cbk-zam).")
        lang = lang.update_dict({"language": ext, "extlangs": None})
    primary = (lang.language or first).lower()
    if primary in _SPECIAL:
        raise LanguageError(f"'{code}' is the ISO 639 code for '{_SPECIAL[primary]}', not for one language. "
                            "Fix: name the language itself (its ISO 639-1 or 639-3 code).")
    if _is_private_use(primary):
        raise LanguageError(f"'{code}' is a private-use code (qaa-qtz), which names no particular language, so "
                            "it can be neither checked nor grouped by script or family. Fix: use the language's "
                            "ISO 639-3 code (every language in Glottolog/Ethnologue has one).")
    primary = _WITHDRAWN_639_1.get(primary, _ALPHA3_TO_ALPHA2.get(primary, primary))
    lang = lang.update_dict({"language": primary})
    script = lang.script
    if script is not None and script == _likely_script(primary):
        lang = lang.update_dict({"script": None})
    return str(lang.to_tag())


def _hint(tag: str) -> str:
    """' Did you mean 'xx'?' when the first subtag alone is a valid code, else ''."""
    first = tag.split("-")[0].lower()
    if first != tag and len(first) in (2, 3) and first.isalpha() and langcodes.tag_is_valid(first):
        try:
            return f" Did you mean '{normalize_language(first)}'?"
        except LanguageError:
            return ""
    return ""


def check_language(code: str) -> str:
    """The normalised form of ``code`` (:func:`normalize_language`); raises LanguageError for an invalid one.
    Kept for the callers that validate a single code."""
    return normalize_language(code)


# -------------------------------------------------------------------------------------- script and family
# Latin-script languages that CLDR's likely-subtags data (which langcodes ships) does not list.
_SCRIPTS_NOT_IN_CLDR = {c: "Latn" for c in ("quy", "cni", "bzd", "shp", "hch", "tar", "oto", "nah", "aym")}


def _likely_script(primary: str) -> str | None:
    """The script CLDR's likely subtags give the bare language ``primary``, or None when it has no entry."""
    likely = data_dicts.LIKELY_SUBTAGS.get(primary)
    if likely is None:
        return _SCRIPTS_NOT_IN_CLDR.get(primary)
    return langcodes.Language.get(likely, normalize=False).script


def script_of(code: str) -> str:
    """The ISO 15924 script of a language (``ru`` -> ``Cyrl``, ``zh`` -> ``Hans``, ``zh-Hant`` -> ``Hant``,
    ``ja`` -> ``Jpan``): the tag's own script subtag, else CLDR's likely script of the language (or of its
    macrolanguage), else :data:`UNKNOWN`. Called by reports and plots that group targets by script."""
    lang = langcodes.Language.get(normalize_language(code), normalize=False)
    if lang.script:
        return str(lang.script)
    primary = str(lang.language)
    script = _likely_script(primary)
    macro = data_dicts.MACROLANGUAGES.get(primary)
    if script is None and macro is not None:
        script = _likely_script(macro)
    return script or UNKNOWN


# Top-level language families after Glottolog 4.8 (glottolog.org, "top-level families"; its names, e.g.
# Atlantic-Congo rather than Niger-Congo, Tai-Kadai for Kra-Dai, Nilotic on its own, Mande on its own).
# Covers the languages of XTREME, UD PUD, XTREME's Tatoeba, MasakhaNER 1.0/2.0, AmericasNLI and WikiAnn's
# common ones. "isolate" groups language isolates (Basque); "Artificial Language" is Glottolog's pseudo-family;
# "Creole" is this table's group for creoles and pidgins, which are not put under their lexifier's family.
# Codes are the normalised spellings (ISO 639-1 where one exists); an individual language of a macrolanguage
# missing here is looked up under its macrolanguage (swh -> sw, cmn -> zh).
_FAMILY_MEMBERS: dict[str, str] = {
    "Indo-European": """ae af als an ang as ast awa bar be bg bh bho bn br bs ca co cs csb cy da de diq dsb el en
        es fa fo fr frr fur fy ga gd gl gsw gu gv hi hif hr hsb hy is it ku ckb kw la lad lb li lij lmo lt lv mag
        mai mk mo mr mwl mzn nap nb nds ne nl nn no oc or os pa pdc pi pl pms pnb ps pt rm ro rup ru rue sa sc
        scn sco sd sgs sh si sk sl sq sr sv szl tg uk ur vec vls wa yi zea""",
    "Afro-Asiatic": "aa am ar arc arz ary ha he kab mt om so ti tig",
    "Sino-Tibetan": "bo cdo dz gan hak ii lzh mni my nan new wuu yue zh",
    "Atlantic-Congo": "ak bbj ee ff fon ig kg ki kj ln lu lg mos nr nso ny rn rw sg sn ss st sw tn ts tw ve wo xh yo "
                      "zu",
    "Mande": "bm",
    "Nilotic": "luo",
    "Austronesian": "ace ban bcl bjn bug ceb ch fil fj haw id ilo jv mg mh mi min ms na pam sm su tet tl to ty war",
    "Austroasiatic": "km sat vi",
    "Tai-Kadai": "lo shn th za",
    "Dravidian": "kn ml ta tcy te",
    "Turkic": "az ba crh cv gag kk krc ky sah tk tr tt ug uz",
    "Uralic": "et fi hu kv mdf mhr myv olo se udm vep vro",
    "Japonic": "ja",
    "Koreanic": "ko",
    "Kartvelian": "ka xmf",
    "Mongolic-Khitan": "bxr mn xal",
    "Nakh-Daghestanian": "av ce inh lez",
    "Abkhaz-Adyge": "ab ady kbd",
    "Eskimo-Aleut": "ik iu kl",
    "Hmong-Mien": "hmn mww",
    "Quechuan": "qu quy quz",
    "Aymaran": "ay",
    "Arawakan": "cni",
    "Tupian": "gn",
    "Uto-Aztecan": "hch nah tar",
    "Otomanguean": "oto zap",
    "Chibchan": "bzd",
    "Pano-Tacanan": "shp",
    "Mayan": "kek mam quc yua",
    "Athabaskan-Eyak-Tlingit": "nv",
    "Algic": "cr oj",
    "Iroquoian": "chr",
    "isolate": "eu",
    "Artificial Language": "eo ia ie io jbo lfn nov tlh vo",
    "Creole": "bi cbk crs ht jam kea pap pcm srn tpi",
}
_FAMILY: dict[str, str] = {code: family for family, codes in _FAMILY_MEMBERS.items() for code in codes.split()}


def family_of(code: str) -> str:
    """The top-level (Glottolog) family of a language (``hi`` -> ``Indo-European``, ``quy`` -> ``Quechuan``,
    ``eu`` -> ``isolate``), or :data:`UNKNOWN` for a language outside the table. Called by reports and plots
    that group targets by family."""
    primary = str(langcodes.Language.get(normalize_language(code), normalize=False).language)
    family = _FAMILY.get(primary)
    macro = data_dicts.MACROLANGUAGES.get(primary)
    if family is None and macro is not None:
        family = _FAMILY.get(macro)
    return family or UNKNOWN


def group_of(code: str, by: Literal["script", "family"]) -> str:
    """The group of a language for a report's per-group averages: :func:`script_of` or :func:`family_of`."""
    if by == "script":
        return script_of(code)
    if by == "family":
        return family_of(code)
    raise ValueError(f"cannot group languages by {by!r}. Fix: use 'script' or 'family'.")


# -------------------------------------------------------------------------------------- source sets
def encode_set(langs: Iterable[str]) -> str:
    """Canonical spelling of a source set: sorted unique codes joined by '+'."""
    codes = sorted(set(langs))
    if not codes:
        raise LanguageError("a source set needs at least one language")
    return "+".join(codes)


def decode_set(value: str) -> tuple[str, ...]:
    """Inverse of :func:`encode_set`; rejects non-canonical spellings (unsorted, repeated or not normalised
    codes) so that one set has one name."""
    codes = tuple(value.split("+"))
    normal = tuple(normalize_language(code) for code in codes)
    if encode_set(normal) != value:
        raise LanguageError(f"source set '{value}' is not canonical; write it as '{encode_set(normal)}'")
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
