"""lfmlf.languages: code normalisation, script and family groups, the canonical source-set spelling, set
enumeration under constraints."""
from __future__ import annotations

import pytest

from lfmlf.languages import (
    UNKNOWN,
    LanguageError,
    check_language,
    decode_set,
    encode_set,
    enumerate_sets,
    family_of,
    group_of,
    normalize_language,
    script_of,
)

# ---------------------------------------------------------------- normalize_language


@pytest.mark.parametrize("code", ["en", "de", "zh", "swh", "pcm", "quy", "cni", "fon", "tl", "pt-BR", "zh-Hant"])
def test_shortest_codes_pass_through(code: str) -> None:
    assert normalize_language(code) == code
    assert check_language(code) == code


@pytest.mark.parametrize(("code", "short"), [
    ("yor", "yo"), ("swa", "sw"), ("zul", "zu"), ("hau", "ha"),   # ISO 639-2/3 -> 639-1 of the same entry
    ("deu", "de"), ("ger", "de"), ("fre", "fr"),                  # 639-2/T and 639-2/B
    ("aym", "ay"),                                                # AmericasNLI's Aymara
    ("tgl", "tl"),                                                # not langcodes' 'fil': files named tl match
    ("iw", "he"), ("in", "id"),                                   # withdrawn ISO 639-1 spellings
    ("EN", "en"), ("Yor", "yo"), ("en_US", "en-US"), ("pt-br", "pt-BR"),
    ("en-Latn-US", "en-US"), ("zh-Hans", "zh"),                   # the usual script is dropped
    ("zh-yue", "yue"), ("zh-min-nan", "nan"), ("i-klingon", "tlh"),
])
def test_codes_are_normalised_to_the_shortest_form(code: str, short: str) -> None:
    assert normalize_language(code) == short


@pytest.mark.parametrize("code", ["tl", "mo", "sh", "swh", "cmn", "arb", "no"])
def test_no_replacement_that_changes_the_language_or_file_name(code: str) -> None:
    # langcodes would give fil, ro, sr-Latn; macrolanguage members stay distinct from their macrolanguage
    assert normalize_language(code) == code


@pytest.mark.parametrize(("code", "hint"), [("pt-XX-whatever", "pt"), ("EN-zzzzzzzzz", "en")])
def test_invalid_tags_get_a_hint_from_their_language_subtag(code: str, hint: str) -> None:
    with pytest.raises(LanguageError) as ei:
        normalize_language(code)
    assert f"'{code}'" in str(ei.value)
    assert f"Did you mean '{hint}'?" in str(ei.value)


@pytest.mark.parametrize("code", ["xx", "english", "", "e", "zzz", "  "])
def test_unknown_codes_rejected_without_a_false_hint(code: str) -> None:
    with pytest.raises(LanguageError) as ei:
        check_language(code)
    msg = str(ei.value)
    assert "ISO 639" in msg
    assert "Did you mean" not in msg


@pytest.mark.parametrize(("code", "why"), [
    ("qqq", "private-use"), ("qaa", "private-use"), ("qtz", "private-use"), ("x-foo", "private-use"),
    ("und", "undetermined"), ("mul", "multiple languages"), ("zxx", "no linguistic content"),
])
def test_codes_naming_no_particular_language_are_refused(code: str, why: str) -> None:
    with pytest.raises(LanguageError, match=why):
        normalize_language(code)


def test_language_error_is_a_value_error() -> None:
    # config.py and tasks rely on catching ValueError subclasses
    assert issubclass(LanguageError, ValueError)


# ---------------------------------------------------------------- script and family groups


@pytest.mark.parametrize(("code", "script"), [
    ("ru", "Cyrl"), ("zh", "Hans"), ("zh-Hant", "Hant"), ("yue", "Hant"), ("ja", "Jpan"), ("ko", "Kore"),
    ("hi", "Deva"), ("ar", "Arab"), ("he", "Hebr"), ("th", "Thai"), ("am", "Ethi"), ("ka", "Geor"),
    ("sr", "Cyrl"), ("sr-Latn", "Latn"), ("en", "Latn"), ("yor", "Latn"), ("quy", "Latn"), ("cni", "Latn"),
    ("fon", "Latn"), ("ta", "Taml"), ("my", "Mymr"),
])
def test_script_of(code: str, script: str) -> None:
    assert script_of(code) == script
    assert group_of(code, "script") == script


@pytest.mark.parametrize(("code", "family"), [
    ("en", "Indo-European"), ("hi", "Indo-European"), ("fa", "Indo-European"), ("ru", "Indo-European"),
    ("zh", "Sino-Tibetan"), ("cmn", "Sino-Tibetan"), ("my", "Sino-Tibetan"),
    ("ar", "Afro-Asiatic"), ("he", "Afro-Asiatic"), ("hau", "Afro-Asiatic"), ("am", "Afro-Asiatic"),
    ("yor", "Atlantic-Congo"), ("sw", "Atlantic-Congo"), ("swh", "Atlantic-Congo"), ("fon", "Atlantic-Congo"),
    ("bam", "Mande"), ("luo", "Nilotic"), ("pcm", "Creole"),
    ("id", "Austronesian"), ("tgl", "Austronesian"), ("jv", "Austronesian"),
    ("ta", "Dravidian"), ("te", "Dravidian"), ("tr", "Turkic"), ("kk", "Turkic"), ("fi", "Uralic"),
    ("et", "Uralic"), ("hu", "Uralic"), ("ja", "Japonic"), ("ko", "Koreanic"), ("th", "Tai-Kadai"),
    ("vi", "Austroasiatic"), ("ka", "Kartvelian"), ("eu", "isolate"),
    ("quy", "Quechuan"), ("cni", "Arawakan"), ("gn", "Tupian"), ("nah", "Uto-Aztecan"), ("aym", "Aymaran"),
    ("bzd", "Chibchan"), ("shp", "Pano-Tacanan"), ("oto", "Otomanguean"), ("hch", "Uto-Aztecan"),
])
def test_family_of(code: str, family: str) -> None:
    assert family_of(code) == family
    assert group_of(code, "family") == family


def test_languages_outside_the_tables_are_unknown_by_name() -> None:
    assert UNKNOWN == "unknown"
    assert family_of("abc") == UNKNOWN          # Ambala Ayta: valid, not in the family table
    assert script_of("abc") == UNKNOWN          # and not in CLDR's likely subtags: no guessed Latn


def test_every_benchmark_language_has_a_family() -> None:
    xtreme = ("af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt ru sw ta "
              "te th tl tr ur vi yo zh")
    pud = "ar cs de en es fi fr gl hi id is it ja ko pl pt ru sv th tr zh"
    masakhaner = "amh bam bbj ewe fon hau ibo kin lug luo mos nya pcm sna swa tsn twi wol xho yor zul"
    americas_nli = "aym bzd cni gn hch nah oto quy shp tar"
    for code in f"{xtreme} {pud} {masakhaner} {americas_nli}".split():
        assert family_of(code) != UNKNOWN, code
        assert script_of(code) != UNKNOWN, code


def test_group_of_rejects_an_unknown_grouping() -> None:
    with pytest.raises(ValueError, match="'script' or 'family'"):
        group_of("en", "region")  # type: ignore[arg-type]


# ---------------------------------------------------------------- encode / decode


@pytest.mark.parametrize(("langs", "canonical"), [
    (["de", "en", "fr"], "de+en+fr"),
    (["fr", "de", "en"], "de+en+fr"),
    (("en", "de", "en", "fr", "de"), "de+en+fr"),   # duplicates collapse
    ({"sv", "da"}, "da+sv"),
    (["en"], "en"),
    (iter(["quy", "en"]), "en+quy"),
])
def test_encode_set_is_canonical(langs, canonical: str) -> None:
    assert encode_set(langs) == canonical


def test_encode_empty_set_rejected() -> None:
    with pytest.raises(LanguageError, match="at least one"):
        encode_set([])


@pytest.mark.parametrize("value", ["de+en+fr", "en", "da+en+pt+sv", "en+quy", "cni+fon+quy+yo"])
def test_decode_round_trip(value: str) -> None:
    codes = decode_set(value)
    assert codes == tuple(value.split("+"))
    assert isinstance(codes, tuple)
    assert encode_set(codes) == value


@pytest.mark.parametrize(("value", "canonical"), [
    ("en+de", "de+en"),
    ("fr+de+en", "de+en+fr"),
    ("de+en+de", "de+en"),
    ("en+hau", "en+ha"),          # a code that is not in its shortest form
    ("en+yor", "en+yo"),
])
def test_decode_rejects_non_canonical_with_the_canonical_spelling(value: str, canonical: str) -> None:
    with pytest.raises(LanguageError) as ei:
        decode_set(value)
    msg = str(ei.value)
    assert "not canonical" in msg
    assert f"'{canonical}'" in msg


@pytest.mark.parametrize("value", ["de+xx", "De+en", "", "de++en", "en+qqq"])
def test_decode_rejects_unknown_codes(value: str) -> None:
    with pytest.raises(LanguageError):
        decode_set(value)


# ---------------------------------------------------------------- enumerate_sets


def test_enumerate_pool_of_four_sizes_two_to_three_with_en() -> None:
    sets = enumerate_sets(["nl", "en", "es", "de"], 2, 3, ["en"])
    assert sets == ["de+en", "en+es", "en+nl", "de+en+es", "de+en+nl", "en+es+nl"]


def test_enumerate_without_constraint_counts() -> None:
    pool = ["de", "en", "es", "nl"]
    assert len(enumerate_sets(pool, 1, 4)) == 4 + 6 + 4 + 1
    assert enumerate_sets(pool, 4, 4) == ["de+en+es+nl"]
    assert enumerate_sets(pool, 1, 1) == ["de", "en", "es", "nl"]


def test_enumerate_sorted_by_size_then_alphabetically_and_canonical() -> None:
    sets = enumerate_sets(["sv", "pt", "en", "da"], 1, 4)
    assert sets == sorted(sets, key=lambda s: (s.count("+"), s))
    for s in sets:
        assert decode_set(s)  # every value is canonical (Optuna choices == MLflow params)


def test_enumerate_duplicates_in_pool_do_not_duplicate_sets() -> None:
    sets = enumerate_sets(["en", "de", "en"], 1, 2)
    assert sets == ["de", "en", "de+en"]


def test_enumerate_two_required_languages() -> None:
    assert enumerate_sets(["de", "en", "es", "nl"], 1, 3, ["en", "nl"]) == ["en+nl", "de+en+nl", "en+es+nl"]


def test_enumerate_must_include_outside_pool_raises() -> None:
    with pytest.raises(LanguageError) as ei:
        enumerate_sets(["de", "en"], 1, 2, ["fr"])
    assert "fr" in str(ei.value) and "not in the source pool" in str(ei.value)


@pytest.mark.parametrize(("min_size", "max_size", "must"), [
    (5, 6, ()),          # bigger than the pool
    (3, 2, ()),          # min > max
    (1, 1, ["de", "en"]),  # two required languages in a set of one
])
def test_enumerate_impossible_constraints_raise(min_size: int, max_size: int, must) -> None:
    with pytest.raises(LanguageError, match="no source set"):
        enumerate_sets(["de", "en", "es", "nl"], min_size, max_size, must)
