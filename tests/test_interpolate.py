"""``lfmlf interpolate`` (the WiSE-FT baseline): a finished run's selected checkpoint scored at
theta0 + alpha (theta - theta0) of the encoder, with the run's fine-tuned head at every alpha.

What must hold: the encoder weights are exactly that line (bitwise theta0 at 0, bitwise theta at 1) and the
head is the run's; at alpha = 0 the probe (encoder only) gives exactly theta0's scores; at alpha = 1 every
score is the run's ``best/*`` (1e-5); each point is an MLflow run of method ``interp:<method>`` with param
``alpha`` next to its source run, and a second call logs nothing new. No Ray: the sweep's runs and storage are
laid out as the Tune callback leaves them (as in test_export.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO, tiny_spec

# as in test_export.py: source dev peaks at step 3 of 9, so the selected weights are not the last ones
SELECTED_NOT_LAST = {"lr": 1e-2, "max_steps": 9, "eval_every": 3}


@pytest.fixture(scope="module")
def trained():
    """(spec, per-evaluation metrics, final checkpoint dict) of a tiny MLF run with the forgetting probe."""
    from lfmlf.config import ProbeConfig
    from lfmlf.loop import fit

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        spec = tiny_spec("mlf", train=SELECTED_NOT_LAST).model_copy(update={"probe": ProbeConfig(
            format="synthetic", languages=["de", "fr"], pivot="en", max_pairs=60, batch_size=60, max_length=32)})
        evals = [(e.metrics, e.state()) for e in fit(spec)]
    finally:
        torch.set_num_threads(threads)
    metrics, state = [m for m, _ in evals], evals[-1][1]
    assert metrics[-1]["best/step"] == 3.0 and state["step"] == 9, "the settings no longer select an earlier step"
    return spec, metrics, state


@pytest.fixture(scope="module")
def interpolation(trained):
    from lfmlf.interpolate import Interpolation

    return Interpolation(trained[2], "cpu")


# ------------------------------------------------------------------ the weights
def test_the_encoder_moves_on_the_line_and_the_head_stays_the_runs(trained, interpolation):
    from lfmlf.checkpoints import selected_weights
    from lfmlf.loop import build_model

    _, _, state = trained
    step, theta = selected_weights(state)
    assert step == 3
    _, fresh = build_model(trained[0], torch.device("cpu"))
    theta0 = dict(fresh.named_parameters())
    encoder = [n for n in theta if n.startswith("encoder.")]
    head = [n for n in theta if n.startswith("head.")]
    assert encoder and head and len(encoder) + len(head) == len(theta)
    assert set(interpolation.theta0) == set(encoder)
    for n in encoder:
        assert torch.equal(interpolation.theta0[n], theta0[n].detach())   # theta0 is the model source's

    at0, at1 = interpolation.weights(0.0), interpolation.weights(1.0)
    for n in encoder:
        assert torch.equal(at0[n], theta0[n].detach()) and torch.equal(at1[n], theta[n])
    moved = 0
    for alpha in (0.3, 0.75):
        w = interpolation.weights(alpha)
        for n in encoder:
            t0, t = theta0[n].detach().double(), theta[n].double()
            expected = (t0 + alpha * (t - t0)).float()
            # both computed in float64, then rounded: equal, or one float32 step apart on a rounding boundary
            torch.testing.assert_close(w[n], expected, rtol=2 ** -23, atol=0.0)
            moved += int(not torch.equal(w[n], theta[n]) and not torch.equal(w[n], t0.float()))
        for n in head:
            assert torch.equal(w[n], theta[n])        # the head is the run's at every alpha
    assert moved > 0, "no encoder parameter lies strictly between theta0 and theta"


# ------------------------------------------------------------------ the scores at both ends
def test_alpha_0_gives_theta0s_probe_scores_and_alpha_1_the_runs_selected_scores(trained, interpolation):
    from lfmlf.loop import build_model

    spec, metrics, _ = trained
    at0 = interpolation.scores(0.0)
    _, fresh = build_model(spec, torch.device("cpu"))
    probe, base = interpolation.probe
    measured = probe.measure(fresh.encoder, "cpu")
    for lang in ("de", "fr"):
        assert at0[f"forgetting/retrieval_acc/{lang}"] == measured[lang] == base[lang]
        assert at0[f"forgetting/retrieval_drop/{lang}"] == 0.0
    assert at0["forgetting/retrieval_drop/avg"] == 0.0
    logged = metrics[-1]
    assert logged["best/forgetting/retrieval_drop/avg"] != 0.0   # the run did move the encoder

    at1 = interpolation.scores(1.0)
    best = {k[len("best/"):]: v for k, v in logged.items() if k.startswith("best/") and k != "best/step"}
    assert {"zero_shot/f1/fr", "source/f1/avg", "forgetting/retrieval_drop/avg"} <= set(best)
    for key, value in best.items():
        assert at1[key] == pytest.approx(value, abs=1e-5), key
    assert abs(at1["zero_shot/f1/fr"] - logged["zero_shot/f1/fr"]) > 1e-3   # the last step's would differ
    # alpha = 0 keeps the trained head on theta0's encoder: its task score is not the run's
    assert at0["zero_shot/f1/fr"] != pytest.approx(at1["zero_shot/f1/fr"], abs=1e-3)


def test_point_metrics_use_the_trials_names():
    from lfmlf.interpolate import point_metrics

    out = point_metrics({"zero_shot/f1/fr": 0.5, "source/f1/avg": 0.7, "perf/eval_s": 3.0}, 0.25, 3)
    assert out == {"zero_shot/f1/fr": 0.5, "source/f1/avg": 0.7, "best/zero_shot/f1/fr": 0.5,
                   "best/source/f1/avg": 0.7, "best/step": 3.0, "interp/alpha": 0.25}


@pytest.mark.parametrize("text, error", [("0,x", "'x' is not a number"), ("0,0.5,0.50", "given twice"),
                                         ("0,nan", "not finite")])
def test_a_bad_alpha_grid_is_refused(text, error):
    from lfmlf.errors import UserError
    from lfmlf.interpolate import parse_alphas

    with pytest.raises(UserError, match=error):
        parse_alphas(text)
    assert parse_alphas("0, 0.25,1") == (0.0, 0.25, 1.0)


# ------------------------------------------------------------------ MLflow: points, resume, errors
def _sweep(tmp_path: Path, state: dict, metrics: dict):
    """A sweep file, its parent run and one finished MLF trial run with its Ray folder holding the checkpoint
    (as the Tune callback and Ray leave them); returns (cfg, sweep file, uri, trial run id, parent id)."""
    from lfmlf.checks import load_checked
    from lfmlf.config import TrialSpec
    from lfmlf.tracking import SweepTracker
    from lfmlf.trial_record import record_start

    doc = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    doc["methods"] = {"mlf": {}}
    doc["output_dir"] = str(tmp_path / "run")
    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(doc))
    cfg = load_checked(sweep_file)
    trial = Path(cfg.storage_location) / "ray" / "sweep" / "mlf_abc00001"
    (trial / "checkpoint_000000").mkdir(parents=True)
    torch.save(state, trial / "checkpoint_000000" / "state.pt")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = SweepTracker(uri, "lfmlf")
    parent = tracker.start_sweep("quickstart", cfg.storage_location, {"budget.mlf": "1"}, {}, resume=False)
    spec_params = {"method": "mlf", "source_set": "de+en+es", "train.max_steps": "9"}
    run_id = tracker.trial_run("abc00001", "mlf-abc00001", spec_params,
                               {"lfmlf.trial_dir": str(trial), "lfmlf.method": "mlf", "lfmlf.stopped_early": "false"})
    record_start(tracker, run_id, TrialSpec.model_validate(state["spec"]))   # trial_config.yaml: `lfmlf best` reads it
    tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if "/" in k}, step=9)
    tracker.finish_trial("abc00001", "FINISHED")
    tracker.finish_sweep("FINISHED")
    return cfg, sweep_file, uri, run_id, parent


def _points(uri: str, parent: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lfmlf").experiment_id
    return [r for r in client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
            if r.data.params.get("method", "").startswith("interp:")]


def test_points_are_logged_as_method_interp_and_a_second_call_adds_none(trained, tmp_path, capsys):
    from lfmlf.cli import main
    from lfmlf.commands import best, interpolate

    _, metrics, state = trained
    cfg, sweep_file, uri, run_id, parent = _sweep(tmp_path, state, metrics[-1])
    outcome = interpolate(cfg, uri, alphas=(0.0, 0.5, 1.0), device="cpu")   # default: the method's best trial
    assert len(outcome.logged) == 3 and not outcome.skipped
    points = _points(uri, parent)
    assert sorted(r.data.params["alpha"] for r in points) == ["0", "0.5", "1"]
    for r in points:
        assert r.info.status == "FINISHED"
        assert r.data.params["method"] == "interp:mlf" and r.data.tags["lfmlf.method"] == "interp:mlf"
        assert r.data.tags["lfmlf.interp.source_run"] == run_id and r.data.params["source_set"] == "de+en+es"
        assert r.data.metrics["best/step"] == 3.0 and r.data.tags["lfmlf.stopped_early"] == "false"
    at = {r.data.params["alpha"]: r.data.metrics for r in points}
    for key in ("best/zero_shot/f1/fr", "best/source/f1/avg", "best/forgetting/retrieval_drop/avg"):
        assert at["1"][key] == pytest.approx(metrics[-1][key], abs=1e-5)
    assert at["0"]["best/forgetting/retrieval_drop/avg"] == 0.0

    # the report reads them as trials of their own method; `lfmlf best` still picks the trial itself
    from lfmlf.tracking import RunStore

    records = RunStore(uri, "lfmlf").children(parent)
    assert sorted(r.method for r in records) == ["interp:mlf"] * 3 + ["mlf"]
    written = best(cfg, uri, tmp_path / "best")
    assert yaml.safe_load(written["mlf"].read_text())["selection"]["trial_run_id"] == run_id

    again = interpolate(cfg, uri, alphas=(0.0, 0.5, 1.0), device="cpu")
    assert again.logged == [] and len(again.skipped) == 3 and len(_points(uri, parent)) == 3
    capsys.readouterr()
    assert main(["interpolate", str(sweep_file), "--run", run_id, "--alphas", "0,0.25,1", "--tracking-uri", uri,
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 alphas already logged; skipped" in out and "1 point(s) logged" in out
    assert sorted(r.data.params["alpha"] for r in _points(uri, parent)) == ["0", "0.25", "0.5", "1"]


def test_a_run_without_its_checkpoint_is_named_with_the_fix(trained, tmp_path, capsys):
    from lfmlf.cli import main

    _, metrics, state = trained
    cfg, sweep_file, uri, run_id, parent = _sweep(tmp_path, state, metrics[-1])
    (Path(cfg.storage_location) / "ray").rename(tmp_path / "gone")
    assert main(["interpolate", str(sweep_file), "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err
    assert f"run {run_id} (mlf) has no kept checkpoint" in err and "Fix:" in err
    assert _points(uri, parent) == []    # nothing is logged for a run that cannot be scored
    assert main(["interpolate", str(sweep_file), "--tracking-uri", uri, "--alphas", "0,y"]) == 2
    assert "'y' is not a number" in capsys.readouterr().err
    assert main(["interpolate", str(sweep_file), "--tracking-uri", uri, "--method", "lfmlf"]) == 2
    assert "not a method of sweep" in capsys.readouterr().err
