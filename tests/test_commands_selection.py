"""``lfmlf best`` and ``lfmlf report`` over a hand-made sweep in a real MLflow store and Optuna study (no Ray):
a trial that ASHA stopped never wins even with the best score, every method is shown, the selection label
follows the metric (an oracle is said so in the best file and in both captions), ``report --oracle`` adds the
oracle rows, and the importances name their evaluator and count only COMPLETE, unstopped trials."""
from __future__ import annotations

import csv
import math
import re

import pytest
import yaml

from lfmlf.cli import main

SWEEP = """\
name: seltest
task: {name: ner, format: synthetic, synthetic: {train: 60, dev: 20, test: 20}, max_length: 32,
       target_split: dev}
model: {name_or_path: tiny}
languages: {sources: [de, en, es], must_include: [en], targets: [fr, it]}
train: {max_steps: 120, eval_every: 30}
methods:
  mlf: {space: {lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}, source_set: {type: source_set}}}
  lfmlf: {space: {lr: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}}, params: {forgetting: l2}}
  ewc: {}
search: {num_samples: 3}
"""

# (name, method, source set, lr, source dev, fr, it, status, stopped at step)
TRIALS = [
    ("m_faithful", "mlf", "de+en", 1e-4, 0.80, 0.60, 0.50, "FINISHED", None),
    ("m_oracle", "mlf", "en+es", 3e-4, 0.78, 0.70, 0.62, "FINISHED", None),
    ("m_stopped", "mlf", "en", 1e-3, 0.95, 0.90, 0.90, "FINISHED", 60),      # best on everything, cut by ASHA
    ("l_faithful", "lfmlf", "de+en+es", 2e-4, 0.82, 0.64, 0.58, "FINISHED", None),
    ("l_failed", "lfmlf", "de+en+es", 5e-4, 0.99, 0.99, 0.99, "FAILED", None),
    ("l_stopped", "lfmlf", "de+en+es", 9e-4, 0.97, 0.97, 0.97, "FINISHED", 30),
    ("e_stopped", "ewc", "de+en+es", 1e-4, 0.90, 0.80, 0.80, "FINISHED", 30),
    ("e_failed", "ewc", "de+en+es", 1e-4, 0.91, 0.80, 0.80, "FAILED", None),
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict:
    """A finished sweep as the driver records it: MLflow parent + trial runs, an Optuna study per method."""
    import time

    import optuna
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from lfmlf.config import load_sweep, trial_spec
    from lfmlf.search import study_name
    from lfmlf.tracking import SweepTracker

    tmp = tmp_path_factory.mktemp("selection")
    (tmp / "sweep.yaml").write_text(SWEEP)
    uri = f"sqlite:///{tmp}/mlflow.db"
    args = [str(tmp / "sweep.yaml"), "--set", f"output_dir={tmp}/run", "--tracking-uri", uri]
    cfg = load_sweep(tmp / "sweep.yaml", [f"output_dir={tmp}/run"])
    tracker = SweepTracker(uri, "lfmlf")            # the sweep run as the driver creates it
    parent = tracker.start_sweep("seltest", cfg.storage_location, {f"budget.{m}": "3" for m in cfg.methods}, {},
                                 resume=False)
    client = MlflowClient(tracking_uri=uri)
    exp = tracker.experiment_id
    optuna_url = f"sqlite:///{tmp}/optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {m: optuna.create_study(study_name=study_name("seltest", m, parent), storage=optuna_url,
                                      direction="maximize") for m in cfg.methods}
    client.set_tag(parent, "lfmlf.optuna_storage", optuna_url)
    for m in cfg.methods:
        client.set_tag(parent, f"lfmlf.optuna_study.{m}", studies[m].study_name)
    ids = {}
    for name, method, sset, lr, src, fr, it, status, stop in TRIALS:
        sampled = {"method": method, "lr": lr, **({"source_set": sset} if method == "mlf" else {})}
        spec = trial_spec(cfg, sampled)
        # the study: a stopped trial is COMPLETE as in sweeps recorded before stopped trials became PRUNED
        dist = {"lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
        params = {"lr": lr}
        if method == "mlf":
            dist["source_set"] = optuna.distributions.CategoricalDistribution(cfg.source_sets())
            params["source_set"] = sset
        state = optuna.trial.TrialState.FAIL if status == "FAILED" else optuna.trial.TrialState.COMPLETE
        studies[method].add_trial(optuna.trial.create_trial(params=params, distributions=dist, state=state,
                                                            value=src if state.name == "COMPLETE" else None))
        number = len(studies[method].trials) - 1
        run = client.create_run(exp, run_name=name, tags={
            "mlflow.parentRunId": parent, "lfmlf.method": method, "lfmlf.tune_trial_id": name,
            "lfmlf.optuna_trial": str(number), "lfmlf.stopped_early": str(stop is not None).lower()})
        rid = run.info.run_id
        ids[name] = rid
        client.log_text(rid, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "trial_config.yaml")
        now = int(time.time() * 1000)
        final = {"best/source/f1/avg": src, "best/zero_shot/f1/fr": fr, "best/zero_shot/f1/it": it,
                 "best/zero_shot/f1/avg": (fr + it) / 2}
        client.log_batch(rid, params=[Param(k, v) for k, v in spec.flat_params().items()],
                         metrics=[Metric("perf/steps_per_s", 10.0, now, step)
                                  for step in range(30, (stop or 120) + 1, 30)]
                         + [Metric(k, v, now, stop or 120) for k, v in final.items()])
        client.set_terminated(rid, status=status)
    # an Optuna-side PRUNED lfmlf trial with no MLflow run: never COMPLETE, never counted
    studies["lfmlf"].add_trial(optuna.trial.create_trial(
        params={"lr": 1e-5}, distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)},
        state=optuna.trial.TrialState.PRUNED, intermediate_values={1: 0.1}))
    client.set_terminated(parent, status="FINISHED")
    return {"tmp": tmp, "args": args, "ids": ids, "uri": uri, "client": client}


def test_a_stopped_trial_with_the_best_score_never_wins_best(sweep, capsys):
    assert main(["best", *sweep["args"]]) == 0
    out = capsys.readouterr().out
    best = sweep["tmp"] / "run" / "best"
    mlf = yaml.safe_load((best / "mlf.yaml").read_text())
    assert mlf["selection"]["trial_run_id"] == sweep["ids"]["m_faithful"]       # not m_stopped (0.95)
    lfmlf = yaml.safe_load((best / "lfmlf.yaml").read_text())
    assert lfmlf["selection"]["trial_run_id"] == sweep["ids"]["l_faithful"]     # not l_failed, l_stopped
    assert mlf["selection"]["kind"] == "source-dev" and mlf["selection"]["label"] == "source-language dev"
    assert "source-language dev" in mlf["selection"]["rule"] and "2 eligible of 3 trials" in mlf["selection"]["rule"]
    assert "ORACLE" not in (best / "mlf.yaml").read_text()
    # the method with no eligible trial is named, with its reasons, and gets no file
    assert not (best / "ewc.yaml").exists()
    assert "ewc      no eligible trial (1 stopped early by ASHA, 1 FAILED); nothing written" in out
    assert f"run {sweep['ids']['m_stopped']} (mlf, en): stopped early by ASHA (at step 60 of 120)" in out
    assert f"run {sweep['ids']['l_failed']} (lfmlf, de+en+es): FAILED" in out


def test_best_on_target_dev_is_labelled_as_the_oracle(sweep, capsys):
    out_dir = sweep["tmp"] / "best-oracle"
    assert main(["best", *sweep["args"], "--metric", "best/zero_shot/f1/avg", "--out", str(out_dir)]) == 0
    assert "WARNING: an oracle selection" in capsys.readouterr().out
    text = (out_dir / "mlf.yaml").read_text()
    mlf = yaml.safe_load(text)
    assert mlf["selection"]["trial_run_id"] == sweep["ids"]["m_oracle"]          # not m_stopped (0.90)
    assert mlf["selection"]["kind"] == "oracle"
    assert mlf["selection"]["label"] == "target-language dev (oracle)"
    assert "target-language dev (oracle)" in mlf["selection"]["rule"]
    assert "source-language dev" not in mlf["selection"]["rule"]
    assert "# ORACLE: selected on target-language data" in text


def test_report_shows_every_method_and_one_left_out_list(sweep, capsys):
    out_dir = sweep["tmp"] / "report"
    assert main(["report", *sweep["args"], "--out", str(out_dir)]) == 0
    printed = capsys.readouterr().out
    md = (out_dir / "report.md").read_text()
    assert re.search(r"^\| \[mlf\]\(.*\) \| de\+en \| 1 \|", md, re.MULTILINE)              # the faithful pick
    assert re.search(r"^\| \[lfmlf\]\(.*\) \| de\+en\+es \| 1 \|", md, re.MULTILINE)
    assert "| ewc | no eligible trial (1 stopped early by ASHA, 1 FAILED) | 0 |" in md
    assert "ewc: no eligible trial (1 stopped early by ASHA, 1 FAILED)" in printed
    assert md.count("Left out (") == 1 and "Sweep trials left out" not in md
    assert f"run {sweep['ids']['m_stopped']} (mlf, en): stopped early by ASHA (at step 60 of 120)" in md
    assert f"run {sweep['ids']['e_failed']} (ewc, de+en+es): FAILED" in md
    assert "Selection: each method's best eligible trial by best/source/f1/avg (source-language dev)" in md
    assert "oracle" not in md.split("Notes:")[0].lower()
    rows = list(csv.DictReader((out_dir / "report.csv").open()))
    assert {r["row"] for r in rows} == {"mlf", "lfmlf", "ewc"}
    tex = (out_dir / "report.tex").read_text()
    caption = next(line for line in tex.splitlines() if line.startswith("\\caption{"))
    assert not any(rid in caption for rid in sweep["ids"].values()) and "MLflow run" not in caption
    assert f"% runs of mlf: {sweep['ids']['m_faithful']}" in tex and "% provenance: sweep 'seltest': MLflow run" in tex
    # importances: fANOVA, named, over COMPLETE trials that were not stopped
    section = md[md.index("## Parameter importance"):]
    assert "fANOVA (optuna.importance.FanovaImportanceEvaluator" in section
    mlf_part = section[section.index("### mlf"):]
    assert "n = 2 COMPLETE trial(s) (left out: 1 complete but stopped early (MLflow tag))" in mlf_part
    assert "**Caveat:** indicative only: 2 COMPLETE trials" in mlf_part
    assert re.search(r"\| (lr|source_set) \| \d\.\d\d \|", mlf_part)
    lfmlf_part = section[section.index("### lfmlf"):section.index("### mlf")]
    assert "n = 1 COMPLETE trial(s)" in lfmlf_part and "1 pruned (stopped early)" in lfmlf_part
    assert "1 failed" in lfmlf_part and "Not computed" in lfmlf_part
    png = out_dir / "source_sets.png"
    assert png.is_file()


def test_report_oracle_rows_and_oracle_selection_captions(sweep, capsys):
    out_dir = sweep["tmp"] / "report-oracle"
    assert main(["report", *sweep["args"], "--out", str(out_dir), "--oracle"]) == 0
    md = (out_dir / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| [mlf](") and "oracle" in line)
    assert "*(oracle: target dev)*" in row and "| en+es | 1 |" in row                  # m_oracle, not m_stopped
    assert "66.0" in row and "**66.0" not in row                                        # (0.70 + 0.62) / 2, no bold
    assert md.startswith("# Results\n\n> **Oracle selection, not zero-shot:**")
    assert "selection costs 11.0" in md                                                 # 66.0 - 55.0
    tex = (out_dir / "report.tex").read_text()
    assert "mlf (oracle: target dev) & en+es & 1" in tex
    assert "Rows marked (oracle: target dev)" in next(line for line in tex.splitlines()
                                                       if line.startswith("\\caption{"))

    out_dir = sweep["tmp"] / "report-on-target"
    assert main(["report", *sweep["args"], "--out", str(out_dir), "--metric", "best/zero_shot/f1/avg"]) == 0
    md = (out_dir / "report.md").read_text()
    caption = next(line for line in md.splitlines() if line.startswith("*") and "Selection:" in line)
    assert caption.startswith("*ORACLE SELECTION, NOT ZERO-SHOT") and "target-language dev (oracle)" in caption
    assert re.search(r"^\| \[mlf\]\(.*\) \*\(oracle: target dev\)\* \| en\+es \|", md, re.MULTILINE)
    tex = (out_dir / "report.tex").read_text()
    tex_caption = next(line for line in tex.splitlines() if line.startswith("\\caption{"))
    assert "ORACLE SELECTION, NOT ZERO-SHOT" in tex_caption and "target-language dev (oracle)" in tex_caption
    assert "mlf (oracle: target dev) & en+es" in tex
    assert "ORACLE" in capsys.readouterr().out
    rows = {(r["row"], r["column"]): r for r in csv.DictReader((out_dir / "report.csv").open())}
    assert math.isclose(float(rows[("mlf", "target avg")]["mean"]), 0.66)


def test_best_with_a_misspelt_metric_names_it_and_suggests_the_closest(tmp_path, monkeypatch):
    from lfmlf.commands import _check_metric_exists
    from lfmlf.errors import SweepError
    from lfmlf.report import RunRecord

    runs = [RunRecord(run_id="r", status="FINISHED", method="mlf", source_set="en", seed=None,
                      metrics={"best/source/f1/avg": 0.5, "best/zero_shot/f1/avg": 0.4, "train/lr": 1e-3})]
    _check_metric_exists("best/source/f1/avg", runs)
    with pytest.raises(SweepError) as e:
        _check_metric_exists("best/source/f1/avgg", runs)
    msg = str(e.value)
    assert "'best/source/f1/avgg'" in msg and "did you mean 'best/source/f1/avg'" in msg
    assert "best/zero_shot/f1/avg" in msg and "Fix:" in msg
