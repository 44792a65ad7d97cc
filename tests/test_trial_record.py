"""One piece of trial bookkeeping for swept trials, rerun seeds and `lfmlf train`: the same tags, the same
configuration and data inputs, and the same final metrics (forgetting included) whoever runs the trial."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from lfmlf.config import load_sweep, trial_spec
from lfmlf.tracking import SweepTracker
from lfmlf.trial_record import record_end, record_evaluation, record_start, run_tags

CONLL = Path(__file__).resolve().parent / "fixtures" / "config" / "conll" / "sweep.yaml"


def test_a_run_records_config_data_metrics_and_final_scores(tmp_path):
    cfg = load_sweep(CONLL)
    spec = trial_spec(cfg, {"method": next(iter(cfg.methods))})
    tracker = SweepTracker(f"sqlite:///{tmp_path}/mlflow.db", "record")
    run_id = tracker.create_parent("t", "train", spec.flat_params(), run_tags(spec))
    record_start(tracker, run_id, spec)
    scores = {"step": 20, "zero_shot/f1/fr": 0.4, "forgetting/retrieval_drop/fr": 0.1, "best/zero_shot/f1/avg": 0.4,
              "avg/zero_shot/f1/avg": 0.41, "perf/steps_per_s": 3.0, "trial_id": "x", "lr": 1e-3}
    record_evaluation(tracker, run_id, scores, step=20)
    record_end(tracker, run_id, scores, max_steps=40)

    run = tracker.client.get_run(run_id)
    tags = run.data.tags
    assert tags["lfmlf.method"] == spec.method and tags["lfmlf.source_set"] == "+".join(spec.sources)
    assert all(tags[f"lfmlf.source.{s}"] == "true" for s in spec.sources)
    assert tags["lfmlf.stopped_early"] == "true"   # step 20 of 40
    assert set(run.data.metrics) == {"zero_shot/f1/fr", "forgetting/retrieval_drop/fr", "best/zero_shot/f1/avg",
                                     "avg/zero_shot/f1/avg", "perf/steps_per_s"}   # slashed keys only
    folder = Path(tracker.client.download_artifacts(run_id, "", str(tmp_path / "dl")))
    final = json.loads((folder / "final_metrics.json").read_text())
    assert final == {"zero_shot/f1/fr": 0.4, "forgetting/retrieval_drop/fr": 0.1, "best/zero_shot/f1/avg": 0.4,
                     "avg/zero_shot/f1/avg": 0.41}
    assert yaml.safe_load((folder / "trial_config.yaml").read_text())["method"] == spec.method
    assert {d.dataset.name for d in run.inputs.dataset_inputs}   # the data files it read
