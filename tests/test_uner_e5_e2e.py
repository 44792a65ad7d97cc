"""A reduced version of sweeps/uner_e5.yaml in CI: real UNER data, the real 6-layer multilingual encoder
(frozen word embeddings), MLF and LF-MLF, through `lfmlf sweep`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, real_data

pytestmark = pytest.mark.slow


def test_reduced_uner_e5_sweep(tmp_path, data_dir, encoder_dir):
    from mlflow.tracking import MlflowClient

    real_data("uner")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "LFMLF_ENCODER_DIR": str(encoder_dir), "LFMLF_DATA_DIR": str(data_dir)}
    reduced = ["search.num_samples=1", "train.max_steps=30", "train.eval_every=15", "train.batch_size=12",
               "task.max_train_sentences=300", "task.max_eval_sentences=80", "task.max_length=64",
               "search.scheduler.name=none", f"output_dir={tmp_path}/run"]
    cmd = [sys.executable, "-m", "lfmlf.cli", "sweep", "sweeps/uner_e5.yaml", "--tracking-uri", uri]
    for item in reduced:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lfmlf")
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'")
    trials = [r for r in runs if "lfmlf.tune_trial_id" in r.data.tags]
    assert sorted(r.data.params["method"] for r in trials) == ["lfmlf", "mlf"]
    for run in trials:
        m = run.data.metrics
        assert run.data.params["freeze_embeddings"] == "True"
        for lang in ("de", "ru"):
            assert 0.0 <= m[f"zero_shot/f1/{lang}"] <= 1.0
        for lang in run.data.params["source_set"].split("+"):
            assert lang in {"da", "en", "pt", "sv"}
            assert f"source/f1/{lang}" in m
        assert m["perf/steps_per_s"] > 0
