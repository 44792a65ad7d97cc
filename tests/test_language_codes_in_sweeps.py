"""Language codes in sweep files: any valid ISO 639-1/2/3 code or BCP-47 tag is accepted and normalised to its
shortest form everywhere a code appears (languages.*, task.files keys, probe languages, unlabelled files),
each normalisation is announced once, and the data files keep their own names (issue 14, item 5)."""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from lfmlf.checks import load_checked
from lfmlf.cli import main
from lfmlf.config import ConfigError
from lfmlf.config.loading import LanguageCodeNormalised

REPO = Path(__file__).resolve().parents[1]
CONLL = Path(__file__).resolve().parent / "fixtures" / "config" / "conll"
EVERY_LANGUAGE = ["languages.targets=[quy, cni, fon, yor]",
                  "probe.languages=[deu, es, nl, quy, yor]"]


def _quickstart(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "search_spaces", tmp_path / "search_spaces")
    (tmp_path / "sweeps").mkdir()
    path = tmp_path / "sweeps" / "every_language.yaml"
    shutil.copyfile(REPO / "sweeps" / "quickstart.yaml", path)
    return path


def _conll(tmp_path: Path) -> Path:
    shutil.copytree(CONLL, tmp_path / "exp")
    return tmp_path / "exp" / "sweep.yaml"


def _normalised(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, LanguageCodeNormalised)]


def test_americas_nli_and_masakhaner_codes_load_and_yor_becomes_yo(tmp_path: Path) -> None:
    path = _quickstart(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        cfg = load_checked(path, EVERY_LANGUAGE)
    assert cfg.languages.targets == ["quy", "cni", "fon", "yo"]
    assert cfg.probe is not None and cfg.probe.languages == ["de", "es", "nl", "quy", "yo"]
    messages = _normalised(record)
    # once per code, each naming every key it was found in; quy, cni, fon are already in their shortest form
    assert len(messages) == 2
    yor = next(m for m in messages if "yor -> yo" in m)
    assert "languages.targets" in yor and "probe.languages" in yor
    assert any("deu -> de" in m and "probe.languages" in m for m in messages)


def test_sources_are_normalised_before_the_source_sets_are_built(tmp_path: Path) -> None:
    path = _quickstart(tmp_path)
    with pytest.warns(LanguageCodeNormalised, match="nld -> nl"):
        cfg = load_checked(path, ["languages.sources=[de, en, es, nld]"])
    assert cfg.languages.sources == ["de", "en", "es", "nl"]
    assert "de+en+nl" in cfg.source_sets()
    assert not any("nld" in s for s in cfg.source_sets())


def test_shortest_codes_give_no_warning(tmp_path: Path) -> None:
    path = _quickstart(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        load_checked(path, ["languages.targets=[quy, cni, fon, yo]"])
    assert _normalised(record) == []


def test_two_spellings_of_one_language_are_a_duplicate(tmp_path: Path) -> None:
    path = _quickstart(tmp_path)
    with pytest.raises(ConfigError) as ei, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_checked(path, ["languages.sources=[de, deu, en]", "languages.min_sources=1"])
    msg = str(ei.value)
    assert "languages.sources" in msg and "['de']" in msg and "more than once" in msg


@pytest.mark.parametrize(("targets", "fragment"), [
    ("[fr, qqq]", "private-use"), ("[fr, und]", "undetermined"), ("[fr, xx]", "ISO 639"),
])
def test_codes_of_no_particular_language_are_config_errors(tmp_path: Path, targets: str, fragment: str) -> None:
    path = _quickstart(tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_checked(path, [f"languages.targets={targets}"])
    msg = str(ei.value)
    assert "languages.targets" in msg and fragment in msg and "Fix:" in msg


def test_a_data_file_keyed_by_a_long_code_keeps_its_file(tmp_path: Path) -> None:
    path = _conll(tmp_path)
    text = path.read_text(encoding="utf-8").replace("    fr: {test: fr.iob2}", "    fra: {test: fr.iob2}")
    text = text.replace("targets: [fr]", "targets: [fre]")
    path.write_text(text, encoding="utf-8")
    with pytest.warns(LanguageCodeNormalised) as record:
        cfg = load_checked(path)
    assert cfg.languages.targets == ["fr"]
    assert "fr" in cfg.task.files and "fra" not in cfg.task.files
    assert cfg.task.files["fr"].test == "fr.iob2"          # the file keeps its own name
    messages = [str(w.message) for w in record]
    assert any("fra -> fr" in m and "task.files.fra" in m for m in messages)
    assert any("fre -> fr" in m and "languages.targets" in m for m in messages)


def test_one_language_keyed_twice_in_task_files_is_an_error(tmp_path: Path) -> None:
    path = _conll(tmp_path)
    text = path.read_text(encoding="utf-8").replace("    fr: {test: fr.iob2}",
                                                   "    fr: {test: fr.iob2}\n    fra: {test: fr.iob2}")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as ei, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_checked(path)
    msg = str(ei.value)
    assert "task.files" in msg and "'fr' twice" in msg and "['fr', 'fra']" in msg


def test_unlabelled_file_keys_are_normalised(tmp_path: Path) -> None:
    path = _quickstart(tmp_path)
    (path.parent / "wiki.txt").write_text("Ein Satz.\n", encoding="utf-8")
    with pytest.warns(LanguageCodeNormalised, match="deu -> de"):
        cfg = load_checked(path, ["unlabelled.files={deu: wiki.txt}"])
    assert list(cfg.unlabelled.files) == ["de"]
    assert cfg.unlabelled.files["de"].endswith("wiki.txt")


def test_cli_check_accepts_every_language(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = _quickstart(tmp_path)
    text = path.read_text(encoding="utf-8").replace("targets: [fr, it]", "targets: [quy, cni, fon, yor]")
    path.write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(LanguageCodeNormalised, match="yor -> yo"):
        rc = main(["sweep", str(path), "--check"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert out.startswith(f"{path}: valid.")
