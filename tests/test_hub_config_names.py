"""lfmlf.data.hub.hub_config_name: our shortest language codes -> the config names of hub datasets that spell
languages otherwise (MasakhaNER's ISO 639-3, AmericasNLI's aym, WikiAnn's Wikipedia names)."""
from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any

import pytest

from lfmlf.data.base import DataError
from lfmlf.data.hub import hub_config_name, load_wikiann, load_xnli_hub
from lfmlf.languages import normalize_language


@pytest.mark.parametrize(("path", "written", "config"), [
    ("masakhane/masakhaner2", "yor", "yor"), ("masakhane/masakhaner2", "swa", "swa"),
    ("masakhane/masakhaner2", "hau", "hau"), ("masakhane/masakhaner2", "pcm", "pcm"),
    ("masakhane/masakhaner2", "bam", "bam"), ("/data/masakhaner/", "zul", "zul"),
    ("americas_nli", "aym", "aym"), ("nala-cub/americas_nli", "gn", "gn"), ("americas_nli", "quy", "quy"),
    ("unimelb-nlp/wikiann", "yue", "zh-yue"), ("unimelb-nlp/wikiann", "zh-min-nan", "zh-min-nan"),
    ("unimelb-nlp/wikiann", "gsw", "als"), ("unimelb-nlp/wikiann", "yor", "yo"),
    ("facebook/xnli", "swa", "sw"), ("google/xquad", "deu", "de"),
])
def test_a_written_code_reaches_the_dataset_config(path: str, written: str, config: str) -> None:
    # the loader sees the normalised code (yor -> yo), the dataset gets its own name back
    assert hub_config_name(path, normalize_language(written)) == config


def test_wikiann_als_is_refused_because_it_is_not_tosk_albanian() -> None:
    with pytest.raises(DataError, match="gsw"):
        hub_config_name("unimelb-nlp/wikiann", "als")


class _Rows(dict):
    column_names = ["tokens", "ner_tags", "premise", "hypothesis", "label"]
    features = None


def test_loaders_ask_datasets_for_the_mapped_config(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []

    def load_dataset(path: str, config: Any, **kwargs: Any) -> _Rows:
        calls.append((path, config))
        return _Rows(tokens=[["Ade"]], ner_tags=[[1]], premise=["p"], hypothesis=["h"], label=[0])

    monkeypatch.setitem(sys.modules, "datasets", SimpleNamespace(load_dataset=load_dataset))
    sents = load_wikiann("yo", "train", path="masakhane/masakhaner2")
    assert sents[0].tags == ("B-PER",)
    load_xnli_hub("ay", "test", path="americas_nli")
    assert calls == [("masakhane/masakhaner2", "yor"), ("americas_nli", "aym")]
