"""QA scores: SQuAD v1.1 and MLQA normalisation, EM, token F1, max over gold answers (hand-checked values)."""
from __future__ import annotations

import pytest

from lfmlf.tasks.qa_metrics import exact_match, f1_score, normalize_answer, qa_scores, score_question, tokens


@pytest.mark.parametrize("text, expected", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("Theatre an apple", "theatre apple"),          # articles only as whole words
    ("A.D. 1066", "ad 1066"),                        # punctuation removed, not replaced by a space
    ("  the the  ", ""),
    ("«Berlin»", "«berlin»"),                        # SQuAD v1.1 removes ASCII punctuation only
])
def test_squad_normalisation(text, expected):
    assert normalize_answer(text, "en", "squad") == expected


@pytest.mark.parametrize("text, lang, expected", [
    ("«Berlin»", "en", "berlin"),                    # Unicode punctuation (category P*) goes too
    ("¿Dónde?", "es", "dónde"),
    ("Berlin–Brandenburg", "de", "berlinbrandenburg"),   # an en dash is punctuation (Pd)
    ("The Beatles", "en", "beatles"),
    ("la casa blanca", "es", "casa blanca"),
    ("la casa blanca", "en", "la casa blanca"),      # Spanish articles only for es
    ("die Deutsche Bank", "de", "deutsche bank"),
    ("the Taj Mahal", "hi", "the taj mahal"),        # hi: no articles
    ("những cái bàn", "vi", "bàn"),
    ("الكتاب", "ar", "كتاب"),
    ("2008年北京奥运会", "zh", "2008 年 北 京 奥 运 会"),   # mixed segmentation: one token per CJK char
    ("the dog", "sw", "the dog"),                    # languages outside the MLQA script: no articles
])
def test_mlqa_normalisation(text, lang, expected):
    assert normalize_answer(text, lang, "mlqa") == expected


def test_exact_match_ignores_case_articles_punctuation_and_spaces():
    assert exact_match("the Eiffel Tower.", "Eiffel  tower", "en", "squad") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower", "en", "squad") == 0.0
    assert exact_match("«Berlin»", "Berlin", "de", "squad") == 0.0
    assert exact_match("«Berlin»", "Berlin", "de", "mlqa") == 1.0


def test_partial_overlap_f1_by_hand():
    # pred "the big red barn" -> [big, red, barn]; gold "red barn door" -> [red, barn, door]
    # common = 2: precision 2/3, recall 2/3, F1 = 2 * (2/3) * (2/3) / (4/3) = 2/3
    assert f1_score("the big red barn", "red barn door") == pytest.approx(2 / 3)
    # pred [denver, broncos, won], gold [broncos]: precision 1/3, recall 1, F1 = (2/3) / (4/3) = 1/2
    assert f1_score("Denver Broncos won", "Broncos") == pytest.approx(0.5)
    # repeated tokens count once per occurrence: pred [a, a] (lang hi keeps "a"), gold [a]: P 1/2, R 1 -> 2/3
    assert f1_score("a a", "a", "hi", "mlqa") == pytest.approx(2 / 3)
    assert f1_score("cat", "dog") == 0.0


def test_max_over_gold_answers():
    assert score_question("Denver Broncos", ["Broncos", "Denver Broncos", "the Broncos team"]) == (1.0, 1.0)
    # vs "Denver Broncos": [broncos] common, P 1/2, R 1/2 -> 1/2; vs "team": P 1/2, R 1 -> 2/3; max 2/3
    em, f1 = score_question("Broncos team", ["Denver Broncos", "team"])
    assert em == 0.0 and f1 == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        score_question("x", [])


def test_chinese_is_scored_per_character_under_mlqa_only():
    # pred [北, 京], gold [北, 京, 大, 学]: P 1, R 1/2 -> F1 2/3
    assert f1_score("北京", "北京大学", "zh", "mlqa") == pytest.approx(2 / 3)
    assert f1_score("北京", "北京大学", "zh", "squad") == 0.0     # one whitespace token each
    # pred [北, 京, 奥, 运], gold [2008, 年, 北, 京, 奥, 运, 会]: P 1, R 4/7
    # -> F1 = 2 * 1 * (4/7) / (1 + 4/7) = 8/11
    assert f1_score("北京奥运", "2008年北京奥运会", "zh", "mlqa") == pytest.approx(8 / 11)
    assert tokens("北京，2008", "zh", "mlqa") == ["北", "京", "2008"]


def test_empty_answers_follow_squad_v1():
    assert exact_match("", "the", "en", "squad") == 1.0   # both normalise to ""
    assert f1_score("", "the", "en", "squad") == 0.0      # v1.1: no tokens -> F1 0


def test_qa_scores_average_in_unit_interval():
    s = qa_scores(["Kerstad", "Omar", "nothing"], [["Kerstad"], ["Omar Haddad"], ["Lisara"]], "en", "squad")
    assert s["em"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)      # "Omar" vs "Omar Haddad": P 1, R 1/2
    assert qa_scores([], [], "en") == {"em": 0.0, "f1": 0.0}
    with pytest.raises(ValueError):
        qa_scores(["a"], [], "en")
    with pytest.raises(ValueError, match="Fix:"):
        normalize_answer("x", "en", "bleu")  # type: ignore[arg-type]
