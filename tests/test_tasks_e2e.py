"""Every task through `lfmlf sweep` end to end (reduced sizes): the POS, NLI and QA quickstarts, one MLF
and one LF-MLF trial each, tracked in MLflow with each task's own metric keys per target language; the POS
sweep also runs the forgetting probe (PUD sentences aligned by sent_id)."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.conftest import DATA, REPO

pytestmark = pytest.mark.slow

CASES = {"pos": ("acc",), "nli": ("acc",), "qa": ("f1", "em")}


@pytest.mark.parametrize("task", sorted(CASES))
def test_task_quickstart_runs_through_the_sweep(task, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = [sys.executable, "-m", "lfmlf.cli", "sweep", f"sweeps/{task}_quickstart.yaml",
            "--set", f"output_dir={tmp_path}/run", "--tracking-uri", uri, "--set", "search.num_samples=1",
            "--set", "train.max_steps=30", "--set", "train.eval_every=15", "--set", "search.scheduler.name=none",
            "--set", "task.synthetic.train=200", "--set", "task.synthetic.dev=60", "--set", "task.synthetic.test=60"]
    probe = task == "pos" and (DATA / "ud_pud").is_dir()
    if probe:
        args += ["--set", f"probe={{format: pud, data_dir: {DATA / 'ud_pud'}, languages: [de, fr], max_pairs: 60}}"]
    proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lfmlf").experiment_id
    runs = [r for r in client.search_runs([exp], "attributes.status = 'FINISHED'")
            if "lfmlf.tune_trial_id" in r.data.tags]
    assert sorted(r.data.params["method"] for r in runs) == ["lfmlf", "mlf"]
    for run in runs:
        m = run.data.metrics
        assert run.data.params["task"] == task
        for name in CASES[task]:
            for lang in ("fr", "it", "avg"):
                assert 0.0 <= m[f"zero_shot/{name}/{lang}"] <= 1.0, (name, lang)
            assert math.isfinite(m[f"best/source/{name}/avg"])
        if probe:
            for lang in ("de", "fr", "avg"):
                assert 0.0 <= m[f"forgetting/retrieval_acc/{lang}"] <= 1.0
            assert math.isfinite(m["forgetting/retrieval_drop/avg"])
            assert "best/forgetting/retrieval_drop/avg" in m
        assert m["perf/data_prepare_s"] > 0
