"""`lfmlf sweep --check` reads the data files with the trials' readers: a malformed line, a two-column
line or latin-1 bytes are reported as file:line with a fix before Ray starts, with exit status 2."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lfmlf.cli import main

CONLL = Path(__file__).resolve().parent / "fixtures" / "config" / "conll"


@pytest.fixture
def sweep(tmp_path):
    shutil.copytree(CONLL, tmp_path / "conll")
    return tmp_path / "conll" / "sweep.yaml"


def test_good_files_pass(sweep, capsys):
    assert main(["sweep", str(sweep), "--check"]) == 0


def test_a_two_column_line_is_named_with_its_file_and_line(sweep, capsys):
    data = sweep.parent / "data" / "de.iob2"
    lines = data.read_text(encoding="utf-8").rstrip("\n").split("\n")
    data.write_text("\n".join(lines) + "\n\n1\tAna\n", encoding="utf-8")
    assert main(["sweep", str(sweep), "--check"]) == 2
    err = capsys.readouterr().err
    assert f"de.iob2, line {len(lines) + 2}" in err and "Fix:" in err and "Traceback" not in err


def test_latin1_bytes_are_named(sweep, capsys):
    data = sweep.parent / "data" / "de.iob2"
    data.write_bytes(data.read_bytes() + "\n\n1\tMünchen\tB-LOC\n".encode("latin-1"))
    assert main(["sweep", str(sweep), "--check"]) == 2
    err = capsys.readouterr().err
    assert "de.iob2, line" in err and "UTF-8" in err and "Fix:" in err and "Traceback" not in err


def test_nli_split_dev_sources_are_read_from_their_pool(capsys, monkeypatch, encoder_dir):
    """Under split_dev a source's train and dev are carved from its dev file: the check must read them that
    way (it used to ask for the unset train file and crash)."""
    from tests.conftest import REPO, real_data

    real_data("xtreme/xnli")   # skips without the shared data
    monkeypatch.setenv("LFMLF_ENCODER_DIR", str(encoder_dir))
    assert main(["sweep", str(REPO / "sweeps" / "nli_e5.yaml"), "--check"]) == 0
    assert "valid" in capsys.readouterr().out
