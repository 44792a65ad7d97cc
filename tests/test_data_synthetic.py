"""lfmlf.data.synthetic: determinism, valid IOB2, shared names, unseen test names, distinct languages."""
from __future__ import annotations

from collections import Counter

import pytest

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.synthetic import NER_TAGS, language_profile, synthetic_ner

LANGS = ["en", "de", "fr", "sw", "ja", "xx"]


def spans(s: TaggedSentence) -> list[tuple[str, str]]:
    """(type, surface) of every entity, read from IOB2 tags."""
    out: list[tuple[str, str]] = []
    cur: list[str] = []
    typ = ""
    for tok, tag in zip(s.tokens, s.tags):
        if tag.startswith("B-") or tag == "O":
            if cur:
                out.append((typ, " ".join(cur)))
            cur, typ = ([tok], tag[2:]) if tag != "O" else ([], "")
        else:
            cur.append(tok)
    if cur:
        out.append((typ, " ".join(cur)))
    return out


def valid_iob2(tags: tuple[str, ...]) -> bool:
    prev = "O"
    for t in tags:
        if t not in NER_TAGS:
            return False
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        prev = t
    return True


@pytest.fixture(scope="module")
def train() -> dict[str, list[TaggedSentence]]:
    return synthetic_ner(LANGS, "train", 600, seed=0)


@pytest.fixture(scope="module")
def test_split() -> dict[str, list[TaggedSentence]]:
    return synthetic_ner(LANGS, "test", 600, seed=0)


def test_shape_and_types(train) -> None:
    assert list(train) == LANGS
    for lang in LANGS:
        assert len(train[lang]) == 600
        assert all(isinstance(s, TaggedSentence) for s in train[lang])
    assert NER_TAGS == ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")


def test_deterministic_under_seed(train) -> None:
    again = synthetic_ner(LANGS, "train", 600, seed=0)
    assert again == train
    # a language's data does not depend on which other languages were asked for
    assert synthetic_ner(["de"], "train", 600, seed=0)["de"] == train["de"]
    other = synthetic_ner(LANGS, "train", 600, seed=1)
    assert all(other[lang] != train[lang] for lang in LANGS)
    # dev is an alias of validation; validation and test differ
    assert synthetic_ner(["en"], "dev", 50)["en"] == synthetic_ner(["en"], "validation", 50)["en"]
    assert synthetic_ner(["en"], "test", 50)["en"] != synthetic_ner(["en"], "validation", 50)["en"]


def test_valid_iob2_lengths_and_entity_counts(train, test_split) -> None:
    for data in (train, test_split):
        for lang in LANGS:
            sents = data[lang]
            assert all(valid_iob2(s.tags) for s in sents)
            lengths = [len(s.tokens) for s in sents]
            assert min(lengths) >= 6 and max(lengths) <= 20
            n_ent = Counter(sum(t.startswith("B-") for t in s.tags) for s in sents)
            assert set(n_ent) == {0, 1, 2, 3}
            assert 0.08 < n_ent[0] / len(sents) < 0.3  # some sentences have no entity
            types = Counter(t[2:] for s in sents for t in s.tags if t.startswith("B-"))
            assert set(types) == {"PER", "LOC", "ORG"} and min(types.values()) > 60
            multi = sum(1 for s in sents for typ, surf in spans(s) if " " in surf)
            assert multi > 100  # many multi-token names
            assert all(s.tokens[-1] == "." for s in sents)


def test_entity_names_shared_across_languages(train) -> None:
    names = {lang: {surf for s in train[lang] for _, surf in spans(s)} for lang in LANGS}
    for a in LANGS:
        for b in LANGS:
            if a < b:
                assert len(names[a] & names[b]) >= 20, (a, b)
    all_text = {tok for lang in LANGS for s in train[lang] for tok in s.tokens}
    assert {"Ana", "Kovacs", "Banco", "Norte"} <= all_text


def test_test_split_has_names_unseen_in_train(train, test_split) -> None:
    train_words = {tok for lang in LANGS for s in train[lang] for tok, tag in zip(s.tokens, s.tags) if tag != "O"}
    for lang in LANGS:
        test_ents = [surf for s in test_split[lang] for _, surf in spans(s)]
        unseen = [e for e in test_ents if any(w not in train_words for w in e.split())]
        frac = len(unseen) / len(test_ents)
        assert 0.2 < frac < 0.8, (lang, frac)  # a good share is new, the rest was seen
    dev = synthetic_ner(["en"], "dev", 300)["en"]
    assert any(w not in train_words for s in dev for _, surf in spans(s) for w in surf.split())


def test_languages_differ_in_lexicon_and_order(train) -> None:
    vocab = {lang: {tok.lower() for s in train[lang] for tok, tag in zip(s.tokens, s.tags) if tag == "O"}
             for lang in LANGS}
    for a in LANGS:
        for b in LANGS:
            if a < b:
                jacc = len(vocab[a] & vocab[b]) / len(vocab[a] | vocab[b])
                assert jacc < 0.5, (a, b, jacc)
    profiles = [language_profile(lang) for lang in LANGS]
    assert len({p.word_order for p in profiles}) >= 2
    assert len({(p.word_order, p.adj_before_noun, p.postpositions, p.articles) for p in profiles}) >= 4
    assert len({p.lexicon["visit"] for p in profiles}) >= 5


def test_cognates_share_subword_pieces() -> None:
    """Words for the same concept derive from one root: related forms share character trigrams."""
    concepts = ["visit", "company", "village", "teacher", "famous", "contract", "travel", "yesterday"]

    def tri(w: str) -> set[str]:
        return {w[i:i + 3] for i in range(len(w) - 2)}

    shared = 0
    pairs = 0
    for c in concepts:
        forms = [language_profile(lang).lexicon[c] for lang in LANGS]
        for i in range(len(forms)):
            for j in range(i + 1, len(forms)):
                pairs += 1
                shared += bool(tri(forms[i]) & tri(forms[j]))
    assert shared / pairs > 0.3
    # ... whereas unrelated concepts of one language rarely overlap that much
    lex = language_profile("en").lexicon
    assert lex["visit"] != lex["travel"]


def test_hard_negatives_are_lowercase_name_lookalikes(train) -> None:
    names = {w.lower() for lang in LANGS for s in train[lang] for w, t in zip(s.tokens, s.tags) if t != "O"}
    found = 0
    for lang in LANGS:
        negs = set(language_profile(lang).hard_negatives)
        assert negs and all(n == n.lower() for n in negs)
        used = {tok for s in train[lang] for tok, tag in zip(s.tokens, s.tags) if tag == "O" and tok in negs}
        found += len(used & names)
    assert found > 0


def test_context_cue_words_precede_or_follow_entities(train) -> None:
    """The typed adposition 'in' sits next to LOC entities in every language (on its side of the NP)."""
    for lang in LANGS:
        p = language_profile(lang)
        word_in = p.lexicon["in"]
        hits = 0
        for s in train[lang]:
            for i, tag in enumerate(s.tags):
                if tag == "B-LOC" and not p.postpositions and i > 0 and s.tokens[i - 1].lower() == word_in:
                    hits += 1
                if tag == "B-LOC" and p.postpositions:
                    j = i + 1
                    while j < len(s.tags) and s.tags[j] == "I-LOC":
                        j += 1
                    hits += j < len(s.tokens) and s.tokens[j] == word_in
        assert hits > 20, lang


def test_a_large_request_gives_every_sentence() -> None:
    """2000 sentences for each of the six languages (the time it takes: ``benchmarks/data_reading.py``)."""
    data = synthetic_ner(LANGS, "train", 2000, seed=3)
    assert sorted(data) == sorted(LANGS) and all(len(v) == 2000 for v in data.values())


def test_bad_arguments() -> None:
    with pytest.raises(DataError, match="split"):
        synthetic_ner(["en"], "training", 5)
    with pytest.raises(DataError, match="non-negative"):
        synthetic_ner(["en"], "train", -1)
    with pytest.raises(DataError, match="non-empty code"):
        synthetic_ner([""], "train", 5)
    assert synthetic_ner(["en"], "train", 0) == {"en": []}
    assert list(synthetic_ner("en", "train", 3)) == ["en"]  # a single code as a string
