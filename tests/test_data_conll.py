"""lfmlf.data.conll.read_tagged on hand-written fixtures and on the real files of the shared data folder."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.conll import read_tagged
from tests.conftest import real_data

FIXTURES = Path(__file__).resolve().parent / "fixtures"


# ---------------------------------------------------------------- fixtures


def test_uner_style_fixture() -> None:
    sents = read_tagged(FIXTURES / "ner_uner_style.iob2")
    assert sents == [
        TaggedSentence(("Ana", "Kovacs", "visited", "Porto", "Alegre", "."),
                       ("B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O")),
        TaggedSentence(("She", "works", "for", "Banco", "Norte"), ("O", "O", "O", "B-ORG", "I-ORG")),
    ]


def test_plain_fixture_space_and_tab_docstart_hash_token_no_final_blank() -> None:
    sents = read_tagged(str(FIXTURES / "ner_plain.txt"))  # str path works too
    assert [s.tokens for s in sents] == [
        ("EU", "rejects", "German", "call", "."),
        ("Peter", "Blackburn"),
        ("#", "New York"),  # '#<TAB>SYM' is a token, tab-separated tokens may hold spaces
    ]
    assert sents[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")
    assert sents[2].tags == ("SYM", "B-LOC")


def test_crlf_and_bom(tmp_path: Path) -> None:
    src = (FIXTURES / "ner_uner_style.iob2").read_text(encoding="utf-8")
    f = tmp_path / "crlf_bom.iob2"
    f.write_bytes(b"\xef\xbb\xbf" + src.replace("\n", "\r\n").encode("utf-8"))
    assert read_tagged(f) == read_tagged(FIXTURES / "ner_uner_style.iob2")
    g = tmp_path / "plain_crlf.txt"
    g.write_bytes("\ufeffAna B-PER\r\nsleeps O\r\n\r\nOslo B-LOC\r\n".encode("utf-8"))
    assert read_tagged(g) == [TaggedSentence(("Ana", "sleeps"), ("B-PER", "O")),
                              TaggedSentence(("Oslo",), ("B-LOC",))]


def test_malformed_uner_line_names_file_and_line() -> None:
    path = FIXTURES / "ner_malformed.iob2"
    with pytest.raises(DataError) as ei:
        read_tagged(path)
    msg = str(ei.value)
    assert "line 7" in msg and str(path) in msg  # line 7 is "2<TAB>grows"
    assert "index<TAB>token<TAB>tag" in msg


def test_malformed_plain_line_names_file_and_line() -> None:
    path = FIXTURES / "ner_malformed_plain.txt"
    with pytest.raises(DataError) as ei:
        read_tagged(path)
    msg = str(ei.value)
    assert "line 4" in msg and str(path) in msg and "token<TAB>tag" in msg and "'Berlin'" in msg


def test_missing_file_says_check_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "train.iob2"
    with pytest.raises(DataError, match="data_dir / file setting") as ei:
        read_tagged(missing)
    assert str(missing) in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_bad_utf8(tmp_path: Path) -> None:
    f = tmp_path / "latin1.txt"
    f.write_bytes("Malm\xf6 B-LOC\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_tagged(f)


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.txt"
    f.write_text("\n\n", encoding="utf-8")
    assert read_tagged(f) == []


# ---------------------------------------------------------------- real files


def _independent_uner_parse(path: Path) -> tuple[int, list[tuple[str, str]], Counter[str]]:
    """Count sentences by '# sent_id', collect (token, tag) of the first sentence and all tags."""
    text = path.read_text(encoding="utf-8")
    n_sent = sum(1 for line in text.splitlines() if line.startswith("# sent_id"))
    first: list[tuple[str, str]] = []
    for line in text.split("\n\n", 1)[0].split("\n"):
        if line and not line.startswith("#"):
            cols = line.split("\t")
            first.append((cols[1], cols[2]))
    tags = Counter(line.split("\t")[2] for line in text.split("\n") if line[:1].isdigit())
    return n_sent, first, tags


def test_uner_da_dev_real_counts_and_first_sentence() -> None:
    path = real_data("uner/da_ddt-ud-dev.iob2")
    n_sent, first, tags = _independent_uner_parse(path)
    sents = read_tagged(path)
    assert len(sents) == n_sent == 564
    assert sents[0].tokens == ("Hvor", "kommer", "julemanden", "fra", "?") == tuple(t for t, _ in first)
    assert sents[0].tags == ("O",) * 5
    assert Counter(t for s in sents for t in s.tags) == tags
    assert set(tags) <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
    assert tags["B-PER"] > 0 and tags["B-LOC"] > 0


def test_uner_en_ewt_test_entity_sentence_matches_file() -> None:
    path = real_data("uner/en_ewt-ud-test.iob2")
    n_sent, first, tags = _independent_uner_parse(path)
    sents = read_tagged(path)
    assert len(sents) == n_sent
    assert list(zip(sents[0].tokens, sents[0].tags)) == first
    assert Counter(t for s in sents for t in s.tags) == tags


def test_pt_train_every_sentence_and_token() -> None:
    """The largest UNER training file (its reading time: ``benchmarks/data_reading.py``)."""
    path = real_data("uner/pt_bosque-ud-train.iob2")
    sents = read_tagged(path)
    n_sent, _, tags = _independent_uner_parse(path)
    assert len(sents) == n_sent == 7018
    assert sum(len(s.tokens) for s in sents) == sum(tags.values()) == 171776


def test_xtreme_udpos_plain_tab_file() -> None:
    path = real_data("xtreme/udpos/dev-de.tsv")
    text = path.read_text(encoding="utf-8")
    blocks = [b for b in text.split("\n\n") if b.strip()]
    sents = read_tagged(path)
    assert len(sents) == len(blocks)
    first = [line.split("\t") for line in blocks[0].split("\n") if line]
    assert sents[0].tokens[:5] == ("Manasse", "ist", "ein", "einzigartiger", "Parfümeur")
    assert list(zip(sents[0].tokens, sents[0].tags)) == [(a, b) for a, b in first]
    assert sents[0].tags[:5] == ("PROPN", "AUX", "DET", "ADJ", "NOUN")


def test_xtreme_udpos_hash_token_kept() -> None:
    path = real_data("xtreme/udpos/dev-en.tsv")
    sents = read_tagged(path)
    text = path.read_text(encoding="utf-8")
    assert len(sents) == len([b for b in text.split("\n\n") if b.strip()])
    n_hash = sum(1 for line in text.split("\n") if line == "#\tSYM")
    assert n_hash > 0
    assert sum(1 for s in sents for tok, tag in zip(s.tokens, s.tags) if (tok, tag) == ("#", "SYM")) == n_hash


def test_conll2003_line_starting_with_number_stays_plain(tmp_path: Path) -> None:
    f = tmp_path / "conll03.txt"
    f.write_text("-DOCSTART- -X- -X- O\n\n1996 CD I-NP O\nBerlin NNP I-NP B-LOC\n\n1996-08-22 CD I-NP O\n",
                 encoding="utf-8")
    assert read_tagged(f) == [TaggedSentence(("1996", "Berlin"), ("O", "B-LOC")),
                              TaggedSentence(("1996-08-22",), ("O",))]
