"""QA scores: SQuAD v1.1 and MLQA normalisation, EM, token F1, max over gold answers (hand-checked values)."""
from __future__ import annotations

import pytest

from lfmlf.tasks.qa_metrics import (
    dataset_normalisation,
    exact_match,
    f1_score,
    normalize_answer,
    qa_scores,
    score_question,
    tokens,
)


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


# ---------------------------------------------------------------- parity with the official scripts
# Values worked out by hand from the definitions of SQuAD v1.1's evaluate-v1.1.py (lower-case, drop
# string.punctuation, drop \b(a|an|the)\b, split on whitespace; EM = normalised strings equal; F1 = token
# overlap, 0 when nothing is shared; max over the gold answers) and MLQA's mlqa_evaluation_v1.py (the same, but
# every Unicode P* character is punctuation, articles per language, zh split into single CJK characters).
# The official scripts report percent; ours are fractions, so 100 x these numbers is what they print.
_EN_FIXTURE: list[tuple[str, list[str]]] = [
    # 1. ASCII punctuation and an article: both sides -> "eiffel tower".          EM 1, F1 1
    ("The Eiffel Tower!", ["Eiffel Tower"]),
    # 2. pred [in, year, 1889] vs [1889]: P 1/3, R 1 -> F1 2(1/3)/(4/3) = 1/2.     EM 0, F1 1/2
    ("in the year 1889", ["1889"]),
    # 3. Unicode guillemets: SQuAD keeps them ("«paris»" != "paris"): EM 0, F1 0; MLQA drops them: EM 1, F1 1
    ("«Paris»", ["Paris"]),
    # 4. tabs and runs of spaces collapse: "new york city" both sides.            EM 1, F1 1
    ("  New\tYork  City ", ["new york city"]),
    # 5. three references; pred -> [gustave, eiffels, company] (the apostrophe goes, no space left):
    #    vs [gustave, eiffel]: 1 common, P 1/3, R 1/2 -> F1 (1/3)/(5/6) = 2/5
    #    vs [company, of, gustave, eiffel] ("the" goes): 2 common, P 2/3, R 1/2 -> F1 (2/3)/(7/6) = 4/7
    #    vs [eiffel]: 0 common -> 0.                                              EM 0, F1 max = 4/7
    ("Gustave Eiffel's company", ["Gustave Eiffel", "the company of Gustave Eiffel", "Eiffel"]),
    # 6. articles as whole words only: "apple day" both sides.                    EM 1, F1 1
    ("an apple a day", ["apple day"]),
    # 7. empty prediction vs an answer that is only an article: "" == "" -> EM 1; no tokens -> F1 0
    ("", ["the"]),
]


def test_squad_v1_parity_on_the_english_fixture():
    preds, golds = [p for p, _ in _EN_FIXTURE], [g for _, g in _EN_FIXTURE]
    per_question = [score_question(p, g, "en", "squad") for p, g in _EN_FIXTURE]
    assert [em for em, _ in per_question] == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]
    assert [f1 for _, f1 in per_question] == pytest.approx([1.0, 0.5, 0.0, 1.0, 4 / 7, 1.0, 0.0])
    scores = qa_scores(preds, golds, "en", "squad")
    assert scores["em"] == pytest.approx(4 / 7)                  # 4 of 7: 57.14 in the official script
    # (1 + 1/2 + 0 + 1 + 4/7 + 1 + 0) / 7 = (57/14) / 7 = 57/98 = 0.58163...: 58.16 in the official script
    assert scores["f1"] == pytest.approx(57 / 98)


def test_mlqa_parity_on_the_english_fixture():
    # as SQuAD but question 3 now matches: EM 5/7; F1 (57/14 + 1) / 7 = 71/98 = 0.72449...
    preds, golds = [p for p, _ in _EN_FIXTURE], [g for _, g in _EN_FIXTURE]
    scores = qa_scores(preds, golds, "en", "mlqa")
    assert scores["em"] == pytest.approx(5 / 7)
    assert scores["f1"] == pytest.approx(71 / 98)


@pytest.mark.parametrize(("lang", "pred", "gold", "mlqa", "squad"), [
    # es articles (MLQA) vs English-only articles (SQuAD): pred [la, casa, blanca] vs [casa, blanca] under
    # SQuAD: P 2/3, R 1 -> F1 (4/3)/(5/3) = 4/5
    ("es", "la Casa Blanca", "Casa Blanca.", (1.0, 1.0), (0.0, 0.8)),
    # de: [der, rhein] vs [rhein]: P 1/2, R 1 -> F1 1/(3/2) = 2/3 under SQuAD
    ("de", "der Rhein", "Rhein", (1.0, 1.0), (0.0, 2 / 3)),
    # zh: MLQA splits CJK characters: [北, 京, 市] vs [北, 京]: P 2/3, R 1 -> F1 4/5; SQuAD: one token each
    ("zh", "北京市", "北京", (0.0, 0.8), (0.0, 0.0)),
    # zh corner brackets are Unicode punctuation (Ps/Pe): MLQA drops them, SQuAD keeps them
    ("zh", "「北京」", "北京", (1.0, 1.0), (0.0, 0.0)),
    # ar: MLQA removes every "ال"
    ("ar", "الكتاب", "كتاب", (1.0, 1.0), (0.0, 0.0)),
    # vi: MLQA's Vietnamese "articles" (những, cái) go; SQuAD: [những, cái, bàn] vs [bàn]: P 1/3, R 1 -> F1 1/2
    ("vi", "những cái bàn", "bàn", (1.0, 1.0), (0.0, 0.5)),
    # hi: the danda । is Unicode punctuation (Po): MLQA drops it
    ("hi", "भारत।", "भारत", (1.0, 1.0), (0.0, 0.0)),
])
def test_language_aware_parity(lang, pred, gold, mlqa, squad):
    assert score_question(pred, [gold], lang, "mlqa") == pytest.approx(mlqa)
    assert score_question(pred, [gold], lang, "squad") == pytest.approx(squad)


# ---------------------------------------------------------------- which normalisation scores which data


@pytest.mark.parametrize(("source", "expected"), [
    ("xtreme/mlqa_dev/dev-context-de-question-de.json", "mlqa"),
    ("MLQA_V1/test/test-context-zh-question-zh.json", "mlqa"),
    ("facebook/mlqa mlqa.de.de", "mlqa"),
    ("xquad/xquad.de.json", "squad"),
    ("google/xquad xquad.de", "squad"),
    ("xtreme/tydiqa_goldp/tydiqa.goldp.en.train.json", "squad"),
    ("tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-arabic.json", "squad"),
    ("squad/train-v1.1.json", "squad"),
])
def test_dataset_normalisation_follows_xtreme(source, expected):
    assert dataset_normalisation(source) == expected


def _qa_task(options: dict, fmt: str = "squad", **kw):
    from lfmlf.config import TaskConfig
    from lfmlf.tasks.qa import QaTask

    files = {"en": {"train": "xtreme/tydiqa_goldp/tydiqa.goldp.en.train.json", "dev": "xquad/xquad.en.json"},
             "de": {"test": "xquad/xquad.de.json", "dev": "xtreme/mlqa_dev/dev-context-de-question-de.json"}}
    return QaTask(TaskConfig(name="qa", format=fmt, files=files if fmt == "squad" else {}, options=options, **kw))


def test_the_task_scores_each_split_as_xtreme_does_by_default():
    task = _qa_task({})
    assert task.options.normalisation == "auto"
    assert task.normalisation("de", "test") == "squad"     # XQuAD
    assert task.normalisation("de", "dev") == "mlqa"       # MLQA
    assert task.normalisation("en", "train") == "squad"    # TyDi QA GoldP
    assert task.normalisation("en", "dev") == "squad"


@pytest.mark.parametrize("forced", ["squad", "mlqa"])
def test_an_explicit_normalisation_overrides_the_dataset_default(forced):
    task = _qa_task({"normalisation": forced})
    assert {task.normalisation(lang, split) for lang, split in
            [("de", "test"), ("de", "dev"), ("en", "train")]} == {forced}


def test_hub_data_is_told_by_its_id_and_config():
    assert _qa_task({}, "hub").normalisation("de", "test") == "squad"                    # google/xquad
    mlqa = _qa_task({"hub_config": "mlqa.{lang}.{lang}"}, "hub", hub_path="facebook/mlqa")
    assert mlqa.normalisation("de", "test") == "mlqa"
    assert _qa_task({}, "synthetic").normalisation("en", "test") == "squad"
