"""lfmlf.data.xnli: XNLI TSV reading (no header, header by column names, label spellings), malformed lines
named by file:line with a fix, the premise-grouped split; the real XTREME XNLI dev files."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from lfmlf.data.base import DataError
from lfmlf.data.xnli import NLI_LABELS, NliPair, read_xnli, split_by_premise
from tests.conftest import real_data

FIX = Path(__file__).parent / "fixtures" / "nli"
XNLI_LANGS = ("ar", "de", "el", "en", "es", "fr", "hi", "ru", "th", "vi", "zh")


def test_fixture_without_header():
    pairs = read_xnli(FIX / "sample.tsv")
    assert len(pairs) == 10
    assert pairs[0] == NliPair("The cat sat on the mat.", "A cat was on the mat.", "entailment")
    assert pairs[3].premise == 'She said "no" and left.'       # quotes are not special
    assert pairs[4].label == "contradiction"                   # "contradictory" is XTREME's other spelling
    assert Counter(p.label for p in pairs) == {"entailment": 4, "contradiction": 3, "neutral": 3}


def test_header_names_the_columns_and_crlf_is_fine():
    pairs = read_xnli(FIX / "header.tsv")
    assert pairs == read_xnli(FIX / "sample.tsv")[:4]


@pytest.mark.parametrize(("name", "line", "words"), [
    ("malformed_label.tsv", 2, ("unknown label 'entails'", "entailment, neutral, contradiction")),
    ("malformed_columns.tsv", 3, ("expected 3 tab-separated columns", "got 4")),
])
def test_malformed_lines_name_file_line_and_fix(name, line, words):
    with pytest.raises(DataError) as ei:
        read_xnli(FIX / name)
    msg = str(ei.value)
    assert f"{FIX / name}:{line}:" in msg and "Fix:" in msg
    for w in words:
        assert w in msg


def test_missing_file_and_bad_header(tmp_path: Path):
    with pytest.raises(DataError, match="not found.*Fix:"):
        read_xnli(tmp_path / "nope.tsv")
    (tmp_path / "h.tsv").write_text("text\tlabel\nA\tneutral\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"h\.tsv:1: the header .* premise"):
        read_xnli(tmp_path / "h.tsv")


# ------------------------------------------------------------------------------------------ premise split
def _pairs(n_premises: int, per: int = 3) -> list[NliPair]:
    return [NliPair(f"premise {i}", f"hyp {i}.{j}", NLI_LABELS[j % 3]) for i in range(n_premises)
            for j in range(per)]


def test_split_by_premise_sizes_and_no_shared_premise():
    pairs = _pairs(50)
    rest, held = split_by_premise(pairs, 0.2, seed=0)
    assert len({p.premise for p in held}) == 10 and len({p.premise for p in rest}) == 40
    assert len(held) == 30 and len(rest) == 120
    assert not {p.premise for p in held} & {p.premise for p in rest}
    assert sorted(rest + held, key=pairs.index) == pairs        # a partition, original order kept
    assert rest == sorted(rest, key=pairs.index) and held == sorted(held, key=pairs.index)


def test_split_by_premise_is_deterministic_and_follows_the_seed():
    pairs = _pairs(50)
    assert split_by_premise(pairs, 0.2, seed=0) == split_by_premise(pairs, 0.2, seed=0)
    assert split_by_premise(pairs, 0.2, seed=0)[1] != split_by_premise(pairs, 0.2, seed=1)[1]


def test_split_by_premise_holds_out_the_same_positions_in_parallel_files():
    en = _pairs(30)
    de = [NliPair(p.premise.replace("premise", "Prämisse"), p.hypothesis, p.label) for p in en]
    _, held_en = split_by_premise(en, 0.3, seed=4)
    _, held_de = split_by_premise(de, 0.3, seed=4)
    assert [en.index(p) for p in held_en] == [de.index(p) for p in held_de]


def test_split_by_premise_keeps_both_sides_non_empty():
    rest, held = split_by_premise(_pairs(3), 0.01)
    assert len({p.premise for p in held}) == 1 and len({p.premise for p in rest}) == 2
    rest, held = split_by_premise(_pairs(3), 0.99)
    assert len({p.premise for p in held}) == 2 and len({p.premise for p in rest}) == 1
    with pytest.raises(ValueError):
        split_by_premise(_pairs(3), 1.0)


# ------------------------------------------------------------------------------------------ real files
def _real(lang: str) -> Path:
    return real_data(f"xtreme/xnli/dev-{lang}.tsv")


@pytest.mark.parametrize("lang", XNLI_LANGS)
def test_real_xnli_dev_files(lang):
    pairs = read_xnli(_real(lang))
    assert len(pairs) == 2490                                   # no header line: every line is a pair
    assert Counter(p.label for p in pairs) == {label: 830 for label in NLI_LABELS}


def test_real_xnli_first_line_is_data_and_premise_split_sizes():
    pairs = read_xnli(_real("en"))
    assert pairs[0] == NliPair("And he said, Mama, I'm home.",
                               "He called his mom as soon as the school bus dropped him off.", "neutral")
    assert len({p.premise for p in pairs}) == 830
    rest, held = split_by_premise(pairs, 0.2, seed=0)
    assert len({p.premise for p in held}) == 166 and len(held) == 3 * 166
    assert len(rest) == 2490 - 3 * 166
    assert not {p.premise for p in held} & {p.premise for p in rest}
