"""From sweep to paper, end to end through the CLI on the offline quickstart: the README's quickstart sweep
(checked as the README promises) -> best -> rerun (2 seeds) -> report, and train. The report's numbers are
recomputed from MLflow's runs; its plots must exist and not be blank; a failed trial in the sweep is left
out and said so."""
from __future__ import annotations

import csv
import math
import statistics
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO
from tests.test_sweep_e2e import check_quickstart_tracking

pytestmark = pytest.mark.slow


def _cli(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lfmlf.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_sweep_best_rerun_report_and_train(tmp_path):
    from mlflow.tracking import MlflowClient

    from lfmlf.plots import is_blank

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    sweep = ["sweeps/quickstart.yaml", "--set", f"output_dir={tmp_path}/run", "--tracking-uri", uri]
    check_quickstart_tracking(uri, _cli(["sweep", *sweep]).stdout)   # the README's quickstart, as it is
    short = ["--set", "train.max_steps=40", "--set", "train.eval_every=20"]   # reruns and train: shorter
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lfmlf").experiment_id
    parent = client.search_runs([exp], "tags.`lfmlf.role` = 'sweep'")[0]
    trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    # a trial that failed, as Tune's callback leaves it in MLflow: it must be left out, and said so
    failed = client.create_run(exp, run_name="mlf-failed", tags={
        "mlflow.parentRunId": parent.info.run_id, "lfmlf.method": "mlf", "lfmlf.tune_trial_id": "failed0"})
    client.log_param(failed.info.run_id, "method", "mlf")
    client.log_param(failed.info.run_id, "source_set", "de+en")
    client.log_metric(failed.info.run_id, "best/source/f1/avg", 0.99)   # would win if it were not FAILED
    client.set_terminated(failed.info.run_id, status="FAILED")

    # best: one file per method, the argmax of the selection metric over that method's eligible trials
    # (FINISHED and not stopped early by ASHA)
    _cli(["best", *sweep])
    for method in ("mlf", "lfmlf"):
        cfg = yaml.safe_load((tmp_path / "run" / "best" / f"{method}.yaml").read_text())
        mine = [t for t in trials if t.data.params["method"] == method and t.info.status == "FINISHED"
                and t.data.tags.get("lfmlf.stopped_early") != "true"]
        top = max(mine, key=lambda t: t.data.metrics["best/source/f1/avg"])
        assert cfg["selection"]["trial_run_id"] == top.info.run_id
        assert cfg["selection"]["budget"] == 4 and "best/source/f1/avg" in cfg["selection"]["rule"]
        assert cfg["selection"]["kind"] == "source-dev" and "source-language dev" in cfg["selection"]["rule"]
        assert list(cfg["methods"]) == [method]
        assert "+".join(sorted(cfg["languages"]["sources"])) == top.data.params["source_set"]
        assert cfg["train"]["lr"] == pytest.approx(float(top.data.params["lr"]))

    # rerun: both configurations x 2 seeds under one parent run
    best = [str(tmp_path / "run" / "best" / f"{m}.yaml") for m in ("mlf", "lfmlf")]
    _cli(["rerun", *best, "--seeds", "2", "--output-dir", str(tmp_path / "rerun"), "--tracking-uri", uri, *short])
    rerun = client.search_runs([exp], "tags.`lfmlf.role` = 'rerun'")
    assert len(rerun) == 1 and rerun[0].data.tags["lfmlf.sweep_run_id"] == parent.info.run_id
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{rerun[0].info.run_id}'")
    assert sorted((r.data.tags["lfmlf.method"], r.data.tags["lfmlf.seed"]) for r in runs if
                  r.info.status == "FINISHED") == [("lfmlf", "0"), ("lfmlf", "1"), ("mlf", "0"), ("mlf", "1")]

    # report: the CSV's means and stds are what MLflow's rerun runs give
    out = _cli(["report", *sweep]).stdout
    report = tmp_path / "run" / "report"
    rows = list(csv.DictReader((report / "report.csv").open()))
    keys = {"fr": "best/zero_shot/f1/fr", "it": "best/zero_shot/f1/it", "target avg": "best/zero_shot/f1/avg",
            "source avg": "best/source/f1/avg",
            "forgetting": "best/forgetting/retrieval_drop/avg"}   # the quickstart's probe: lower is better
    checked = 0
    for row in rows:
        values = [r.data.metrics[keys[row["column"]]] for r in runs if r.data.tags["lfmlf.method"] == row["row"]]
        assert len(values) == int(row["n"]) == 2
        assert float(row["mean"]) == pytest.approx(statistics.mean(values), abs=1e-12)
        assert float(row["std"]) == pytest.approx(statistics.stdev(values), abs=1e-12)
        checked += 1
    assert checked == 10   # 2 methods x (fr, it, target avg, source avg, forgetting)
    md = (report / "report.md").read_text()
    assert "Wilcoxon" in md and "budget" in md.lower() and "best/source/f1/avg" in md
    assert failed.info.run_id in md and "FAILED" in out
    # provenance: the command that made the page and the code the sweep ran
    assert "- report: `lfmlf report sweeps/quickstart.yaml --set" in md
    assert f"code at git {parent.data.tags['lfmlf.git_sha']}" in md and parent.data.tags["lfmlf.git_sha"] != "unknown"
    for png in ("languages.png", "source_sets.png", "lfmlf_multipliers.png", "forgetting_vs_zero_shot.png"):
        assert (report / png).is_file() and not is_blank(report / png), png
    logged = {a.path for a in client.list_artifacts(rerun[0].info.run_id, "report")}
    assert {"report/report.md", "report/report.tex", "report/report.csv", "report/languages.png"} <= logged
    assert "fANOVA" in md and "COMPLETE trial(s)" in md                  # importances: evaluator and n
    # --oracle: each method's target-dev pick beside the rerun rows, marked
    _cli(["report", *sweep, "--oracle", "--out", str(tmp_path / "oracle")])
    md = (tmp_path / "oracle" / "report.md").read_text()
    assert "*(oracle: target test)*" in md and "Oracle selection, not zero-shot" in md

    # train: one configuration in-process, tracked like a trial
    _cli(["train", best[0], "--seed", "7", "--tracking-uri", uri, *short])
    (run,) = client.search_runs([exp], "tags.`lfmlf.role` = 'train'")
    assert run.info.status == "FINISHED" and run.data.tags["lfmlf.seed"] == "7"
    assert math.isfinite(run.data.metrics["zero_shot/f1/avg"])
