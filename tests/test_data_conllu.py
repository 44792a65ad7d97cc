"""lfmlf.data.conllu: words and UPOS of CoNLL-U files (multi-word tokens and empty nodes skipped), sent_id and
text kept, malformed lines named by file:line with a fix; layout sniffing; the real PUD files."""
from __future__ import annotations

from pathlib import Path

import pytest

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.conllu import UPOS_TAGS, UdSentence, read_conllu, sniff_layout
from tests.conftest import real_data

FIX = Path(__file__).parent / "fixtures" / "pos"
PUD_LANGS = ("de", "en", "es", "fr", "pt", "ru", "sv", "zh")


def test_upos_tag_set_is_the_17_universal_tags():
    assert len(UPOS_TAGS) == 17 == len(set(UPOS_TAGS))
    assert list(UPOS_TAGS) == sorted(UPOS_TAGS)
    assert {"NOUN", "VERB", "PROPN", "PUNCT", "X", "SYM", "INTJ"} <= set(UPOS_TAGS)


def test_fixture_words_tags_and_metadata():
    sents = read_conllu(FIX / "sample.conllu")
    assert [s.sent_id for s in sents] == ["s1", "s2", "s3"]
    assert sents[0].text == "Ich gehe zum Markt."
    # the multi-word token "zum" (3-4) is skipped, its words "zu dem" kept
    assert sents[0].tokens == ("Ich", "gehe", "zu", "dem", "Markt", ".")
    assert sents[0].tags == ("PRON", "VERB", "ADP", "DET", "NOUN", "PUNCT")
    # the empty node 4.1 is skipped
    assert sents[1].tokens == ("Anna", "liest", "und", "Tom", "auch", ".")
    assert sents[1].tags == ("PROPN", "VERB", "CCONJ", "PROPN", "ADV", "PUNCT")
    # the last sentence has no final blank line
    assert sents[2].tokens == ("Drei", "Hunde", "bellen")
    assert all(isinstance(s, UdSentence) and isinstance(s, TaggedSentence) for s in sents)


def test_other_columns_can_be_read():
    sents = read_conllu(FIX / "sample.conllu", column="deprel")
    assert sents[0].tags == ("nsubj", "root", "case", "det", "obl", "punct")
    with pytest.raises(ValueError, match="unknown CoNLL-U column"):
        read_conllu(FIX / "sample.conllu", column="lemma")


def test_crlf_and_bom_are_fine(tmp_path: Path):
    text = (FIX / "sample.conllu").read_text(encoding="utf-8")
    p = tmp_path / "crlf.conllu"
    p.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    assert read_conllu(p) == read_conllu(FIX / "sample.conllu")


@pytest.mark.parametrize(("name", "line", "words"), [
    ("malformed_columns.conllu", 4, ("expected 10 tab-separated", "no tab")),
    ("malformed_no_blank_line.conllu", 5, ("without a blank line",)),
    ("malformed_tag.conllu", 3, ("'ADJD'", "UPOS")),
])
def test_malformed_lines_name_file_line_and_fix(name, line, words):
    with pytest.raises(DataError) as ei:
        read_conllu(FIX / name, tagset=UPOS_TAGS)
    msg = str(ei.value)
    assert f"{FIX / name}:{line}:" in msg
    assert "Fix:" in msg
    for w in words:
        assert w in msg


def test_bad_ids_and_missing_file(tmp_path: Path):
    row = "\t".join(["x", "Haus", "haus", "NOUN"] + ["_"] * 6)
    (tmp_path / "a.conllu").write_text(row + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.conllu:1: bad word ID 'x'.*Fix:"):
        read_conllu(tmp_path / "a.conllu")
    gap = "\n".join("\t".join([str(i), "w", "w", "X"] + ["_"] * 6) for i in (1, 3))
    (tmp_path / "b.conllu").write_text(gap + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.conllu:2: word ID 3 follows word 1"):
        read_conllu(tmp_path / "b.conllu")
    untagged = "\t".join(["1", "Haus", "haus", "_"] + ["_"] * 6)
    (tmp_path / "c.conllu").write_text(untagged + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.conllu:1: word without a UPOS tag"):
        read_conllu(tmp_path / "c.conllu")
    with pytest.raises(DataError, match="not found.*Fix:"):
        read_conllu(tmp_path / "missing.conllu")


def test_sniff_layout():
    assert sniff_layout(FIX / "sample.conllu") == "conllu"
    assert sniff_layout(FIX / "sample_udpos.tsv") == "tagged"
    assert sniff_layout(FIX / "malformed_columns.conllu") == "conllu"   # decided by its first word line
    assert sniff_layout(FIX / "nope.conllu") is None


# ------------------------------------------------------------------------------------------ real PUD files
def _pud(lang: str) -> Path:
    return real_data(f"ud_pud/{lang}_pud-ud-test.conllu")


def _id_kinds(path: Path) -> tuple[int, int, int]:
    """(integer-ID word lines, n-m lines, n.m lines), counted independently of the reader."""
    words = ranges = empty = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        first = line.split("\t", 1)[0]
        if "\t" not in line or line.startswith("#"):
            continue
        words += first.isdigit()
        ranges += "-" in first
        empty += "." in first
    return words, ranges, empty


@pytest.mark.parametrize("lang", PUD_LANGS)
def test_real_pud_files_have_1000_sentences_and_exactly_their_syntactic_words(lang):
    path = _pud(lang)
    sents = read_conllu(path, tagset=UPOS_TAGS)
    assert len(sents) == 1000
    words, _, _ = _id_kinds(path)
    assert sum(len(s.tokens) for s in sents) == words
    assert all(s.sent_id and s.text for s in sents)


def test_real_pud_multiword_tokens_and_empty_nodes_are_skipped():
    de_words, de_ranges, _ = _id_kinds(_pud("de"))
    fr_words, fr_ranges, _ = _id_kinds(_pud("fr"))
    assert de_ranges > 100 and fr_ranges > 100            # de "am" = an dem, fr "du" = de le
    de = read_conllu(_pud("de"))
    first = de[0]                                          # "... am Montag ..." -> "an dem Montag"
    i = first.tokens.index("Montag")
    assert first.tokens[i - 2:i + 1] == ("an", "dem", "Montag") and "am" not in first.tokens
    en_words, _, en_empty = _id_kinds(_pud("en"))
    assert en_empty > 0                                    # en PUD has empty nodes (5.1) ...
    assert sum(len(s.tokens) for s in read_conllu(_pud("en"))) == en_words   # ... and they are not words


def test_real_pud_is_parallel_by_sent_id():
    ids = {lang: [s.sent_id for s in read_conllu(_pud(lang))] for lang in ("de", "en", "zh")}
    assert ids["de"] == ids["en"] == ids["zh"]
