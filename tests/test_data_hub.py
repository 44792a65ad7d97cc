"""lfmlf.data.hub.load_wikiann against a LOCAL stand-in dataset repo (no network on test machines).

The stand-in is a folder laid out like a hub dataset repo: a README.md whose YAML header declares one
config per language (`configs:` with `data_files` per split) and `dataset_info` features, and parquet
files written with proper `Features` (`ner_tags` a sequence of ClassLabel).  `load_wikiann(..., path=folder)`
then goes through exactly the `datasets.load_dataset(path, lang, split=...)` call that hits the hub.
Its sentences come from the real Universal NER files of the shared data folder (read at test time).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.conll import read_tagged
from lfmlf.data.hub import WIKIANN_TAGS, load_wikiann
from tests.conftest import real_data

datasets = pytest.importorskip("datasets")

README = """---
configs:
- config_name: da
  data_files:
  - split: train
    path: da/train.parquet
  - split: validation
    path: da/validation.parquet
  - split: test
    path: da/test.parquet
- config_name: sv
  data_files:
  - split: validation
    path: sv/validation.parquet
dataset_info:
- config_name: da
  features:
  - name: tokens
    sequence: string
  - name: ner_tags
    sequence:
      class_label:
        names:
          '0': O
          '1': B-PER
          '2': I-PER
          '3': B-ORG
          '4': I-ORG
          '5': B-LOC
          '6': I-LOC
  - name: langs
    sequence: string
---
# WikiAnn stand-in for offline tests
"""


def _uner(name: str) -> list[TaggedSentence]:
    return read_tagged(real_data(f"uner/{name}"))


def _with_entities(sents: list[TaggedSentence], k: int) -> list[TaggedSentence]:
    """The first k sentences that hold an entity, plus one without (to cover all-O rows)."""
    ents = [s for s in sents if any(t != "O" for t in s.tags)][:k]
    plain = [s for s in sents if all(t == "O" for t in s.tags)][:1]
    return ents + plain


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    # datasets / huggingface_hub read these at import time: patch the module constants as well.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.fixture()
def standin(tmp_path: Path) -> tuple[Path, dict[str, list[TaggedSentence]]]:
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    da_train = _with_entities(_uner("da_ddt-ud-train.iob2"), 6)
    da_dev = _with_entities(_uner("da_ddt-ud-dev.iob2"), 4)
    da_test = _with_entities(_uner("da_ddt-ud-test.iob2"), 3)
    sv_dev = _with_entities(_uner("sv_talbanken-ud-dev.iob2"), 3)
    names = list(WIKIANN_TAGS)
    repo = tmp_path / "wikiann_standin"
    labelled = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names)),
                         "langs": Sequence(Value("string"))})
    # sv: plain integer ids without ClassLabel names -> load_wikiann must fall back to WikiAnn's order.
    bare = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(Value("int64")),
                     "langs": Sequence(Value("string"))})

    def write(sents: list[TaggedSentence], lang: str, split: str, features: Features) -> None:
        rows = {"tokens": [list(s.tokens) for s in sents],
                "ner_tags": [[names.index(t) for t in s.tags] for s in sents],
                "langs": [[lang] * len(s.tokens) for s in sents]}
        (repo / lang).mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(rows, features=features).to_parquet(str(repo / lang / f"{split}.parquet"))

    write(da_train, "da", "train", labelled)
    write(da_dev, "da", "validation", labelled)
    write(da_test, "da", "test", labelled)
    write(sv_dev, "sv", "validation", bare)
    (repo / "README.md").write_text(README, encoding="utf-8")
    return repo, {"train": da_train, "validation": da_dev, "test": da_test, "sv": sv_dev}


def test_round_trip_all_splits(offline: None, standin, tmp_path: Path) -> None:
    repo, expected = standin
    cache = str(tmp_path / "hf_cache")
    for split in ("train", "validation", "test"):
        got = load_wikiann("da", split, path=str(repo), cache_dir=cache)
        assert got == expected[split], split
    # "dev" is an alias of "validation"
    dev = load_wikiann("da", "dev", path=str(repo), cache_dir=cache)
    assert dev == expected["validation"]
    assert len(dev) == 5
    assert any(t.startswith("B-") for s in dev for t in s.tags)
    assert all(isinstance(s, TaggedSentence) for s in dev)
    # a datasets slice suffix passes through
    assert load_wikiann("da", "train[:2]", path=str(repo), cache_dir=cache) == expected["train"][:2]


def test_int_tags_without_classlabel_use_wikiann_order(offline: None, standin, tmp_path: Path) -> None:
    repo, expected = standin
    got = load_wikiann("sv", "validation", path=str(repo), cache_dir=str(tmp_path / "c"))
    assert got == expected["sv"]


def test_unknown_config_raises_dataerror(offline: None, standin, tmp_path: Path) -> None:
    repo, _ = standin
    with pytest.raises(DataError) as ei:
        load_wikiann("xx", "test", path=str(repo), cache_dir=str(tmp_path / "c"))
    msg = str(ei.value)
    assert "'xx'" in msg and "'test'" in msg and str(repo) in msg
    assert "format: conll" in msg


def test_missing_split_raises_dataerror(offline: None, standin, tmp_path: Path) -> None:
    repo, _ = standin
    with pytest.raises(DataError, match="language 'sv', split 'train'"):
        load_wikiann("sv", "train", path=str(repo), cache_dir=str(tmp_path / "c"))


def test_bad_split_name_rejected_before_loading() -> None:
    with pytest.raises(DataError, match="unknown WikiAnn split 'training'"):
        load_wikiann("da", "training")


def test_hub_unreachable_offline_gives_local_files_hint(offline: None, tmp_path: Path) -> None:
    with pytest.raises(DataError) as ei:
        load_wikiann("da", "validation", cache_dir=str(tmp_path / "c"))  # default unimelb-nlp/wikiann
    msg = str(ei.value)
    assert "unimelb-nlp/wikiann" in msg and "'da'" in msg and "format: conll" in msg
