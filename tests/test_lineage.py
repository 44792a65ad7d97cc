"""Lineage: the data files a trial read (path, size, sha256) reach MLflow as dataset inputs, and hub
revisions pass through to the loaders."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lfmlf.config import load_sweep, trial_spec
from lfmlf.lineage import trial_files
from lfmlf.tracking import SweepTracker

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONLL = FIXTURES / "config" / "conll" / "sweep.yaml"


def _spec():
    cfg = load_sweep(CONLL)
    method = next(iter(cfg.methods))
    return cfg, trial_spec(cfg, {"method": method})


def test_trial_files_are_the_sources_train_and_dev_and_the_targets_eval_files():
    cfg, spec = _spec()
    files = {f.name: f for f in trial_files(spec)}
    expected = {f"task/{lang}/{split}" for lang in spec.sources for split in ("train", "dev")}
    expected |= {f"task/{lang}/{cfg.task.target_split}" for lang in spec.targets}
    assert set(files) == expected
    one = next(iter(files.values()))
    data = Path(one.path).read_bytes()
    assert one.size == len(data) and one.sha256 == hashlib.sha256(data).hexdigest()
    assert {f.context for f in files.values()} <= {"train", "dev", "test"}


def test_data_files_are_logged_as_mlflow_dataset_inputs(tmp_path):
    _, spec = _spec()
    tracker = SweepTracker(f"sqlite:///{tmp_path}/mlflow.db", "lineage")
    run_id = tracker.create_parent("t", "train", {}, {})
    files = trial_files(spec)
    tracker.log_data_files(run_id, files)
    inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
    logged = {d.dataset.name: d for d in inputs}
    assert set(logged) == {f.name for f in files}
    for f in files:
        d = logged[f.name]
        assert d.dataset.digest == f.sha256[:16]
        assert json.loads(d.dataset.source)["uri"] == f.path
        assert json.loads(d.dataset.profile) == {"size_bytes": f.size, "sha256": f.sha256}
        assert {t.key: t.value for t in d.tags}["mlflow.data.context"] == f.context


def test_hub_revisions_reach_the_loaders(monkeypatch):
    import datasets

    from lfmlf.data import hub

    seen = {}

    def fake_load_dataset(path, config, split, cache_dir=None, revision=None):
        seen[path] = revision
        raise RuntimeError("offline")

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    for call in (lambda: hub.load_wikiann("de", "train", path="w", revision="abc123"),
                 lambda: hub.load_ud("de_gsd", "train", path="u", revision="v2.13"),
                 lambda: hub.load_xnli_hub("de", "test", path="x", revision="main")):
        try:
            call()
        except Exception:
            pass
    assert seen == {"w": "abc123", "u": "v2.13", "x": "main"}
