"""The entry points: ``python -m lfmlf``, ``lfmlf --version``, and what importing the CLI loads (``--help``
must answer without torch, Ray or MLflow). Each in a fresh interpreter, whose ``sys.modules`` is read back."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"
HEAVY = ("torch", "ray", "mlflow")


def _python(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def _heavy_loaded_by(code: str, cwd: Path) -> list[str]:
    """The heavy packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = (f"{code}\nimport json, sys\n"
             f"print('LOADED=' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = _python(["-c", probe], cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.rsplit("LOADED=", 1)[1])


def test_importing_the_cli_loads_no_torch_ray_or_mlflow(tmp_path: Path) -> None:
    assert _heavy_loaded_by("import lfmlf.cli", tmp_path) == []
    assert _heavy_loaded_by("import lfmlf", tmp_path) == []


def test_help_loads_no_torch_ray_or_mlflow(tmp_path: Path) -> None:
    code = ("from lfmlf.cli import main\nfor argv in (['--help'], ['sweep', '--help'], ['--version']):\n"
            "    try:\n        main(argv)\n    except SystemExit as e:\n        assert e.code == 0\n")
    assert _heavy_loaded_by(code, tmp_path) == []


@pytest.mark.xfail(strict=True, reason="the task registry's modules (lfmlf.tasks.*), lfmlf.models and "
                   "lfmlf.probes import torch at module level; --check needs their metadata and data checks")
def test_check_loads_no_torch(tmp_path: Path) -> None:
    code = f"from lfmlf.cli import main\nassert main(['sweep', {str(QUICKSTART)!r}, '--check']) == 0\n"
    assert "torch" not in _heavy_loaded_by(code, tmp_path)


def test_check_loads_no_ray_or_mlflow(tmp_path: Path) -> None:
    code = f"from lfmlf.cli import main\nassert main(['sweep', {str(QUICKSTART)!r}, '--check']) == 0\n"
    assert [m for m in _heavy_loaded_by(code, tmp_path) if m != "torch"] == []


def test_python_dash_m_lfmlf_and_version(tmp_path: Path) -> None:
    done = _python(["-m", "lfmlf", "--version"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"lfmlf {version('lfmlf')}\n"
    done = _python(["-m", "lfmlf", "sweep", str(tmp_path / "nope.yaml"), "--check"], tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("lfmlf: error:") and "no such file" in done.stderr

