"""lfmlf.cli: `lfmlf sweep X --check` validates; every bad input exits 2 with one "lfmlf: error:" paragraph
(the ConfigError's message) on stderr and no traceback; `sweep` hands the config to lfmlf.sweep.run.

In-process through ``main(argv)`` for speed, plus one real ``python -m lfmlf.cli`` process (exit code,
stderr, no traceback), started when this module's first test starts so that its ~6 s start-up (torch, Ray)
overlaps the in-process tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lfmlf.checks import load_checked
from lfmlf.cli import build_parser, main
from lfmlf.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "config"
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"


from tests.fixtures.config import cases  # shared with the other config test module


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in cases.UNSET_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module", autouse=True)
def cli_process(tmp_path_factory: pytest.TempPathFactory):
    """`python -m lfmlf.cli sweep <quickstart copy> --check --set train.lrr=1`, running in the background."""
    tmp = tmp_path_factory.mktemp("cli")
    path = cases.build(cases.Case("cli_typo"), tmp)
    proc = subprocess.Popen([sys.executable, "-m", "lfmlf.cli", "sweep", str(path), "--check", "--set",
                             "train.lrr=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp, env={**os.environ, "PYTHONPATH": str(REPO)})   # this checkout, installed or not
    yield SimpleNamespace(proc=proc, path=path, cwd=tmp)
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _argv(path: Path, overrides, *extra: str) -> list[str]:
    argv = ["sweep", str(path), *extra]
    for o in overrides:
        argv += ["--set", o]
    return argv


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", cases.CASES, ids=lambda c: c.id)
def test_bad_input_exits_2_with_one_error_paragraph(case, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    path = cases.build(case, tmp_path)
    with pytest.raises(ConfigError) as ei:
        load_checked(path, list(case.overrides))
    rc = main(_argv(path, case.overrides, "--check"))
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("lfmlf: error:")
    assert err == f"lfmlf: error: {ei.value}\n"     # exactly the loader's message, nothing else
    assert "Traceback" not in err
    assert str(path) in err
    assert out == ""


def test_bad_input_without_check_fails_before_the_sweep_starts(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import lfmlf.sweep

    def must_not_run(*a, **k):
        raise AssertionError("sweep.run called with an invalid config")

    monkeypatch.setattr(lfmlf.sweep, "run", must_not_run)
    rc = main(["sweep", str(QUICKSTART), "--set", "train.lrr=1"])
    assert rc == 2
    assert "unknown key 'train.lrr'" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture) -> None:
    for argv in ([], ["sweep"], ["sweep", "x.yaml", "--bogus"], ["nosuchcommand"]):
        with pytest.raises(SystemExit) as ei:
            main(argv)
        assert ei.value.code == 2
    assert "usage: lfmlf" in capsys.readouterr().err


# ---------------------------------------------------------------- valid input


def test_check_of_a_valid_sweep(capsys: pytest.CaptureFixture, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(QUICKSTART), "--check"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert out.startswith(f"{QUICKSTART}: valid.")
    assert "2 method(s) x 4 trials" in out
    assert "6 candidate source sets" in out
    assert str(tmp_path.resolve() / "runs" / "quickstart") in out
    assert not (tmp_path / "runs").exists()


def test_check_applies_set_overrides(capsys: pytest.CaptureFixture) -> None:
    rc = main(["sweep", str(QUICKSTART), "--check", "--set", "search.num_samples=7",
               "--set", "languages.max_sources=2", "--set", "methods={mlf: {}}"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "1 method(s) x 7 trials" in out
    assert "3 candidate source sets" in out          # de+en, en+es, en+nl


def test_check_rejects_a_space_the_method_would_reject(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # constraint mgda_relative reads the slack as delta in [0, 1): a slack range up to 10 would fail about half
    # the trials at run time, so --check (and the pre-flight of `sweep`) refuses it before Ray starts
    space = tmp_path / "lfmlf_space.yaml"
    space.write_text("slack: {type: float, low: 0.1, high: 10.0, log: true}\n", encoding="utf-8")
    rc = main(["sweep", str(QUICKSTART), "--check", "--set", "methods.lfmlf.params.constraint=mgda_relative",
               "--set", f"methods.lfmlf.space={space}"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith(f"lfmlf: error: {QUICKSTART}: key 'methods.lfmlf.space': the search can pick "
                          "slack=10.0, which method 'lfmlf' rejects: with constraint 'mgda_relative'")
    assert f"Fix: narrow the range(s) in {space}" in err and err.count("\n") == 1
    # the space of that constraint form is accepted
    assert main(["sweep", str(QUICKSTART), "--check", "--set", "methods.lfmlf.params.constraint=mgda_relative",
                 "--set", f"methods.lfmlf.space={REPO / 'search_spaces' / 'lfmlf_mgda_relative.yaml'}"]) == 0


class _FakeRun:
    def __init__(self, result=None, exc: BaseException | None = None) -> None:
        self.calls: list = []
        self.result, self.exc = result, exc

    def __call__(self, cfg, **kwargs):
        self.calls.append((cfg, kwargs))
        if self.exc is not None:
            raise self.exc
        return self.result


@pytest.fixture
def fake_run(monkeypatch: pytest.MonkeyPatch):
    import lfmlf.sweep

    def install(result=None, exc=None) -> _FakeRun:
        fake = _FakeRun(result, exc)
        monkeypatch.setattr(lfmlf.sweep, "run", fake)
        return fake

    return install


def test_sweep_passes_config_and_options_to_run(fake_run) -> None:
    fake = fake_run(SimpleNamespace(ok=True))
    rc = main(["sweep", str(QUICKSTART), "--resume", "--address", "ray://head:10001",
               "--tracking-uri", "http://mlflow:5000", "--set", "train.max_steps=60"])
    assert rc == 0
    [(cfg, kwargs)] = fake.calls
    assert cfg.name == "quickstart" and cfg.train.max_steps == 60
    assert kwargs == {"resume": True, "address": "ray://head:10001", "tracking_uri": "http://mlflow:5000"}


def test_sweep_defaults(fake_run) -> None:
    fake = fake_run(SimpleNamespace(ok=True))
    assert main(["sweep", str(QUICKSTART)]) == 0
    [(_, kwargs)] = fake.calls
    assert kwargs == {"resume": False, "address": None, "tracking_uri": None}


def test_an_incomplete_sweep_exits_3(fake_run) -> None:
    fake_run(SimpleNamespace(ok=False))
    assert main(["sweep", str(QUICKSTART)]) == 3


def test_sweep_error_is_a_user_error(fake_run, capsys: pytest.CaptureFixture) -> None:
    from lfmlf.errors import SweepError

    fake_run(exc=SweepError("runs/quickstart exists. Fix: pass --resume or remove it."))
    assert main(["sweep", str(QUICKSTART)]) == 2
    err = capsys.readouterr().err
    assert err == "lfmlf: error: runs/quickstart exists. Fix: pass --resume or remove it.\n"


def test_interrupt_exits_130_and_mentions_resume(fake_run, capsys: pytest.CaptureFixture) -> None:
    fake_run(exc=KeyboardInterrupt())
    assert main(["sweep", str(QUICKSTART)]) == 130
    err = capsys.readouterr().err
    assert "--resume" in err and "Traceback" not in err


def test_programming_errors_are_not_swallowed(fake_run) -> None:
    fake_run(exc=ZeroDivisionError("bug"))
    with pytest.raises(ZeroDivisionError):        # a bug keeps its traceback
        main(["sweep", str(QUICKSTART)])


def test_user_errors_cover_every_input_error_type() -> None:
    from lfmlf.data.base import DataError
    from lfmlf.errors import USER_ERRORS, SweepError
    from lfmlf.languages import LanguageError
    from lfmlf.models import ModelError

    for cls in (ConfigError, DataError, LanguageError, ModelError, SweepError):
        assert issubclass(cls, USER_ERRORS)


def test_sweep_help_lists_its_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["sweep", "--help"])
    assert ei.value.code == 0
    text = capsys.readouterr().out
    for option in ("--check", "--set", "--resume", "--tracking-uri", "--address"):
        assert option in text
    assert "sweep" in build_parser().format_help()


# ---------------------------------------------------------------- the real entry point (last: ran meanwhile)


def test_subprocess_bad_input_exits_2_without_traceback(cli_process) -> None:
    out, err = cli_process.proc.communicate(timeout=120)
    assert cli_process.proc.returncode == 2, err
    assert err.startswith("lfmlf: error:"), err
    assert "Traceback" not in err
    assert err.count("\n") == 1                        # one line here: one problem, one sentence pair
    assert str(cli_process.path) in err and "'train.lrr'" in err and "Fix: did you mean 'lr'?" in err
    assert out == ""
    assert not (cli_process.cwd / "runs").exists() and not (cli_process.cwd / "mlflow.db").exists()


# ------------------------------------------------------------------ sweep -> paper commands: bad input
def test_paper_commands_refuse_bad_input_with_a_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    repo = Path(__file__).resolve().parents[1]
    sweep = str(repo / "sweeps" / "quickstart.yaml")
    # best / report before the sweep ran: nothing in MLflow
    for command in ("best", "report"):
        assert main([command, sweep, "--set", f"output_dir={tmp_path}/run", "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err
        assert "no sweep run" in err and "Fix:" in err and "lfmlf sweep" in err
    # train / rerun need a one-method configuration
    assert main(["train", sweep, "--tracking-uri", uri]) == 2
    assert "a configuration for train/rerun has exactly one" in capsys.readouterr().err
    assert main(["rerun", sweep, "--seeds", "2", "--tracking-uri", uri]) == 2
    assert "exactly one" in capsys.readouterr().err
    assert main(["rerun", sweep, "--seeds", "0", "--tracking-uri", uri]) == 2
    assert "at least one seed" in capsys.readouterr().err
