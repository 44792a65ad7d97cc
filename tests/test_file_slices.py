"""A ``task.files`` entry may take a slice of its file's items (``dev-de.tsv[:500]``, Hugging Face datasets
style), so one file gives a source language both its dev set and its training set."""
from __future__ import annotations

import pytest

from lfmlf.config import SplitFiles, TaskConfig
from lfmlf.tasks.pos import PosTask

SENTENCES = [("Ich", "PRON"), ("Du", "PRON"), ("Er", "PRON"), ("Sie", "PRON"), ("Es", "PRON")]


def _udpos(tmp_path):
    path = tmp_path / "dev-de.tsv"   # five one-word sentences, in order
    path.write_text("".join(f"{w}\t{t}\n\n" for w, t in SENTENCES), encoding="utf-8")
    return path


def test_slice_syntax_parses_to_path_and_rows():
    f = SplitFiles(train="x/dev-de.tsv[500:]", dev="x/dev-de.tsv[:500]", test="x/t.conllu")
    assert (f.path("train"), f.rows("train")) == ("x/dev-de.tsv", slice(500, None))
    assert (f.path("dev"), f.rows("dev")) == ("x/dev-de.tsv", slice(None, 500))
    assert (f.path("test"), f.rows("test")) == ("x/t.conllu", None)
    assert SplitFiles(dev="a[10:20]").rows("dev") == slice(10, 20)


@pytest.mark.parametrize("bad, why", [("a.tsv[x:5]", "whole numbers"), ("a.tsv[:]", "whole numbers"),
                                      ("a.tsv[5:2]", "empty"), ("a.tsv[3]", "whole numbers")])
def test_a_bad_slice_is_refused_with_the_syntax(bad, why):
    with pytest.raises(ValueError, match=why):
        SplitFiles(dev=bad)


def test_one_file_gives_disjoint_dev_and_train(tmp_path):
    _udpos(tmp_path)
    cfg = TaskConfig(name="pos", format="udpos", data_dir=str(tmp_path),
                     files={"de": SplitFiles(train="dev-de.tsv[2:]", dev="dev-de.tsv[:2]")})
    task = PosTask(cfg)
    assert [s.tokens[0] for s in task.load("de", "dev")] == ["Ich", "Du"]
    assert [s.tokens[0] for s in task.load("de", "train")] == ["Er", "Sie", "Es"]
    assert task.data_files("de", "train") == [tmp_path / "dev-de.tsv"]   # the file, not the slice
    assert task._slice_spec("de", "train") != task._slice_spec("de", "dev")   # distinct data-cache keys


def test_caps_apply_after_the_slice(tmp_path):
    _udpos(tmp_path)
    cfg = TaskConfig(name="pos", format="udpos", data_dir=str(tmp_path), max_train_sentences=2,
                     files={"de": SplitFiles(train="dev-de.tsv[1:]", dev="dev-de.tsv[:1]")})
    assert [s.tokens[0] for s in PosTask(cfg).load("de", "train")] == ["Du", "Er"]


def test_a_sliced_entry_names_a_missing_file_without_its_slice(tmp_path):
    from lfmlf.tasks.base import check_split_files

    cfg = TaskConfig(name="pos", format="udpos", data_dir=str(tmp_path),
                     files={"de": SplitFiles(train="nope.tsv[2:]")})
    with pytest.raises(ValueError, match=r"task.files.de.train': file .*nope.tsv does not exist"):
        check_split_files(cfg, [("de", "train")])
