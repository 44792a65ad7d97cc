"""The selection label: which data a selection metric saw decides what the results may be called."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lfmlf.selection import KINDS, Selection, oracle_metric, selection_label


@pytest.mark.parametrize("metric", ["best/source/f1/avg", "source/acc/avg", "best/source/f1/de", "source/em/en"])
def test_source_dev_keys_are_zero_shot_faithful(metric: str):
    s = selection_label(metric, "test")
    assert s.kind == "source-dev" and s.zero_shot_faithful and not s.is_oracle
    assert s.label == "source-language dev" and s.marker == ""
    assert metric in s.sentence and "zero-shot-faithful" in s.sentence


@pytest.mark.parametrize("metric", ["best/zero_shot/f1/avg", "zero_shot/f1/de", "best/zero_shot/acc/min"])
def test_any_zero_shot_key_is_an_oracle(metric: str):
    dev = selection_label(metric, "dev")
    assert dev.kind == "oracle" and dev.is_oracle and not dev.zero_shot_faithful
    assert dev.label == "target-language dev (oracle)" and dev.marker == "oracle: target dev"
    assert "not zero-shot" in dev.sentence and metric in dev.sentence
    test = selection_label(metric, "test")      # selecting on the test data the table reports: said so
    assert test.kind == "oracle" and test.label == "target-language test (oracle)"
    assert "very test data" in test.sentence and test.marker == "oracle: target test"
    unknown = selection_label(metric)
    assert unknown.kind == "oracle" and unknown.label == "target-language data (oracle)"


@pytest.mark.parametrize("metric", ["train/loss/task/en", "best/forgetting/retrieval_acc/avg", "perf/steps_per_s"])
def test_other_keys_are_named_as_is(metric: str):
    s = selection_label(metric, "dev")
    assert s.kind == "other" and s.label == metric and metric in s.sentence
    assert not s.is_oracle and not s.zero_shot_faithful and s.marker == ""


def test_api_is_stable_and_pure():
    assert KINDS == ("source-dev", "oracle", "other")
    s = selection_label("best/source/f1/avg")
    assert isinstance(s, Selection) and s.metric == "best/source/f1/avg" and s.kind in KINDS
    with pytest.raises(AttributeError):
        s.kind = "oracle"  # type: ignore[misc]   # frozen
    assert oracle_metric("f1") == "best/zero_shot/f1/avg" and selection_label(oracle_metric("acc")).is_oracle
    tree = ast.parse((Path(__file__).resolve().parents[1] / "lfmlf" / "selection.py").read_text())
    imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "dataclasses", "typing"}
