"""A trial whose loss turns NaN is a result, not a crash: it ends at once without a retry, its MLflow run is
FAILED with the reason (tag lfmlf.diverged), its Optuna trial is PRUNED (so TPE learns the region is bad),
and the sweep exits 3 because the method has no finished trial."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_a_diverging_trial_is_recorded_not_retried(tmp_path):
    cfg = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    cfg.update(name="diverge", output_dir=str(tmp_path / "run"))
    cfg["methods"] = {"mlf": {"space": {"lr": {"type": "float", "low": 1e6, "high": 2e6}}}}
    cfg["train"].update(optimizer="sgd", grad_clip=None, warmup_ratio=0.0, max_steps=30, eval_every=10)
    cfg["search"].update(num_samples=1, scheduler={"name": "none"})
    cfg["ray"] = {"max_failures": 2}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run([sys.executable, "-m", "lfmlf.cli", "sweep", str(tmp_path / "sweep.yaml"),
                           "--tracking-uri", uri], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 3, out[-4000:]
    assert "no finished trial (1 failed" in out and "is nan" in out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lfmlf")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("lfmlf.tune_trial_id")]
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["lfmlf.diverged"] == "true" and "nan" in runs[0].data.tags["lfmlf.error"]
    trial_dirs = list((tmp_path / "run" / "ray" / "sweep").glob("mlf_*"))
    assert len(trial_dirs) == 1 and not list(trial_dirs[0].glob("error*"))   # no crash, so no retry

    import optuna

    parent = client.search_runs([exp.experiment_id], "tags.`lfmlf.role` = 'sweep'")[0]
    study = optuna.load_study(study_name=parent.data.tags["lfmlf.optuna_study.mlf"],
                              storage=parent.data.tags["lfmlf.optuna_storage"])
    assert [t.state.name for t in study.trials] == ["PRUNED"]
