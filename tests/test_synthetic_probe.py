"""The quickstart's forgetting probe: the synthetic languages' parallel sentences (no files), so a newcomer's
first sweep answers the README's second question too."""
from __future__ import annotations

import pytest

from lfmlf.config import ProbeConfig
from lfmlf.data.base import DataError
from lfmlf.data.synthetic import language_profile, synthetic_parallel
from lfmlf.probes import data_files, read_pairs


def test_parallel_sentences_share_content_and_differ_in_surface():
    text = synthetic_parallel(["en", "de", "ja"], 50, seed=3)
    assert all(len(v) == 50 for v in text.values())
    assert text == synthetic_parallel(["en", "de", "ja"], 50, seed=3)   # deterministic
    assert text["en"] != text["de"] and len(set(text["en"])) > 40      # other languages, varied sentences
    # the same entity names in sentence i of every language (names are shared, lexicons are not)
    capitalised = [{w for w in s.split() if w[:1].isupper()} for s in text["en"]]
    shared = sum(bool(c) and c <= set(d.split()) | {d.split()[0]} for c, d in zip(capitalised, text["de"]))
    assert shared >= 30
    de_words = set(language_profile("de").lexicon.values())
    assert any(w in de_words for s in text["de"] for w in s.split())   # rendered in German's own lexicon


def test_the_probe_reads_them_as_pairs_with_the_pivot():
    cfg = ProbeConfig(format="synthetic", languages=["de", "fr"], pivot="en", max_pairs=20)
    assert data_files(cfg) == {"de": [], "fr": []}
    pairs = read_pairs(cfg)
    text = synthetic_parallel(["en", "de", "fr"], 20)
    assert pairs["de"] == list(zip(text["de"], text["en"])) and len(pairs["fr"]) == 20


def test_files_with_the_synthetic_format_are_an_error_and_tatoeba_needs_a_folder():
    with pytest.raises(DataError, match="probe.format is synthetic"):
        data_files(ProbeConfig(format="synthetic", languages=["de"], data_dir="/tmp"))
    with pytest.raises(DataError, match="probe.data_dir"):
        data_files(ProbeConfig(format="tatoeba", languages=["de"]))
