"""lfmlf.languages: codes, the canonical source-set spelling, set enumeration under constraints."""
from __future__ import annotations

import pytest

from lfmlf.languages import (
    KNOWN_LANGUAGES,
    LanguageError,
    check_language,
    decode_set,
    encode_set,
    enumerate_sets,
)

# ---------------------------------------------------------------- check_language


@pytest.mark.parametrize("code", ["en", "de", "zh", "hau", "swh", "pcm"])
def test_known_codes_pass_through(code: str) -> None:
    assert check_language(code) == code


@pytest.mark.parametrize(("code", "hint"), [("EN", "en"), ("De", "de"), ("en_US", "en"), ("pt-BR", "pt")])
def test_near_miss_codes_get_a_hint(code: str, hint: str) -> None:
    with pytest.raises(LanguageError) as ei:
        check_language(code)
    msg = str(ei.value)
    assert f"'{code}'" in msg
    assert f"Did you mean '{hint}'?" in msg


@pytest.mark.parametrize("code", ["xx", "english", "", "e"])
def test_unknown_codes_rejected_without_a_false_hint(code: str) -> None:
    with pytest.raises(LanguageError) as ei:
        check_language(code)
    msg = str(ei.value)
    assert "not a known language code" in msg
    assert "ISO 639" in msg
    assert "Did you mean" not in msg


def test_language_error_is_a_value_error() -> None:
    # config.py and tasks rely on catching ValueError subclasses
    assert issubclass(LanguageError, ValueError)


def test_known_languages_are_lowercase_codes() -> None:
    assert all(c == c.lower() and 2 <= len(c) <= 3 for c in KNOWN_LANGUAGES)


# ---------------------------------------------------------------- encode / decode


@pytest.mark.parametrize(("langs", "canonical"), [
    (["de", "en", "fr"], "de+en+fr"),
    (["fr", "de", "en"], "de+en+fr"),
    (("en", "de", "en", "fr", "de"), "de+en+fr"),   # duplicates collapse
    ({"sv", "da"}, "da+sv"),
    (["en"], "en"),
    (iter(["hau", "en"]), "en+hau"),
])
def test_encode_set_is_canonical(langs, canonical: str) -> None:
    assert encode_set(langs) == canonical


def test_encode_empty_set_rejected() -> None:
    with pytest.raises(LanguageError, match="at least one"):
        encode_set([])


@pytest.mark.parametrize("value", ["de+en+fr", "en", "da+en+pt+sv", "en+hau"])
def test_decode_round_trip(value: str) -> None:
    codes = decode_set(value)
    assert codes == tuple(value.split("+"))
    assert isinstance(codes, tuple)
    assert encode_set(codes) == value


@pytest.mark.parametrize(("value", "canonical"), [
    ("en+de", "de+en"),
    ("fr+de+en", "de+en+fr"),
    ("de+en+de", "de+en"),
])
def test_decode_rejects_non_canonical_with_the_canonical_spelling(value: str, canonical: str) -> None:
    with pytest.raises(LanguageError) as ei:
        decode_set(value)
    msg = str(ei.value)
    assert "not canonical" in msg
    assert f"'{canonical}'" in msg


@pytest.mark.parametrize("value", ["de+xx", "De+en", "", "de++en"])
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
