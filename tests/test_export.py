"""Exporting the model behind a run's numbers (``lfmlf export``, ``lfmlf train --save``): the exported
directory, read back with transformers, safetensors and torch only (no lfmlf model or training code),
reproduces the run's logged ``best/zero_shot/*`` scores; the exported weights are the selected evaluation's
(best source dev), not the latest; a trial's checkpoint is found from its MLflow run in the sweep's storage."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import REPO, tiny_spec

# lr 1e-2 on the tiny spec for 9 steps: source dev peaks at step 3 and the zero-shot score of the last
# step (9) differs from the selected one, so exporting the latest checkpoint would be caught
SELECTED_NOT_LAST = {"lr": 1e-2, "max_steps": 9, "eval_every": 3}


# ------------------------------------------------------------------ scoring without lfmlf's model code
def score_ner(folder: Path, sentences: list, max_length: int, batch_size: int = 64) -> float:
    """Entity F1 of an exported NER model on (tokens, tags) sentences, with transformers + safetensors + torch
    only: AutoModel, AutoTokenizer, the head as a plain linear layer, each word's label read at its first
    piece that is not a bare '▁' (how lfmlf labels words), words cut off by max_length predicted 'O'."""
    from safetensors.torch import load_file
    from seqeval.metrics import f1_score
    from transformers import AutoModel, AutoTokenizer

    meta = json.loads((folder / "lfmlf.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    head = load_file(str(folder / meta["head"]["file"]))
    assert meta["head"]["input"] == "every_token"
    labels = meta["labels"]
    gold, pred = [], []
    with torch.no_grad():
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            enc = tokenizer([list(s.tokens) for s in chunk], is_split_into_words=True, truncation=True,
                            max_length=max_length, padding=True, return_tensors="pt")
            hidden = encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            best = (hidden @ head["weight"].T + head["bias"]).argmax(-1)
            for row, s in enumerate(chunk):
                pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"][row])
                positions: dict[int, list[int]] = {}
                for pos, w in enumerate(enc.word_ids(row)):
                    if w is not None:
                        positions.setdefault(w, []).append(pos)
                first = {w: next((p for p in ps if pieces[p] != "\u2581"), ps[0]) for w, ps in positions.items()}
                words = [labels[int(best[row, first[w]])] if w in first else "O" for w in range(len(s.tokens))]
                pred.append(words)
                gold.append(list(s.tags))
    return float(f1_score(gold, pred, zero_division=0))


def target_sentences(spec_json: dict, lang: str) -> list:
    """The target language's evaluation sentences of a synthetic-NER spec, as the task reads them."""
    from lfmlf.data.synthetic import synthetic_ner

    task = spec_json["task"]
    split = task["target_split"]
    sents = synthetic_ner([lang], split, task["synthetic"][split])[lang]
    return sents[:task["max_eval_sentences"]] if task["max_eval_sentences"] else sents


# ------------------------------------------------------------------ in-process: fit -> export -> reload
@pytest.fixture(scope="module")
def trained():
    """(spec, per-step metrics, final checkpoint dict) of a tiny run whose selected step is not its last."""
    from lfmlf.loop import fit

    spec = tiny_spec("mlf", train=SELECTED_NOT_LAST)
    evals = [(e.metrics, e.state()) for e in fit(spec)]
    return spec, [m for m, _ in evals], evals[-1][1]


def test_the_checkpoint_holds_the_selected_weights_once(trained):
    _, metrics, state = trained
    assert metrics[-1]["best/step"] == 3.0 and state["step"] == 9
    assert set(state["kept"]) == {3}                  # the selected evaluation's; the current ones are "trainable"
    assert state["kept"][3].keys() == state["trainable"].keys()
    assert not torch.equal(state["kept"][3]["head.1.weight"], state["trainable"]["head.1.weight"].cpu())


def test_export_reproduces_the_selected_scores_without_lfmlf(trained, tmp_path):
    from lfmlf.export import write_model

    spec, metrics, state = trained
    folder = write_model(tmp_path / "model", state)
    assert {"config.json", "model.safetensors", "tokenizer.json", "head.safetensors", "lfmlf.json"} <= {
        p.name for p in folder.iterdir()}
    meta = json.loads((folder / "lfmlf.json").read_text())
    assert meta["step"] == 3 and meta["weights"] == "selected" and meta["checkpoint"]["step"] == 9
    assert meta["labels"][0] == "O" and meta["spec"]["method"] == "mlf"
    assert meta["scores"]["best/zero_shot/f1/fr"] == metrics[-1]["best/zero_shot/f1/fr"]
    f1 = score_ner(folder, target_sentences(meta["spec"], "fr"), spec.task.max_length)
    assert f1 == pytest.approx(metrics[-1]["best/zero_shot/f1/fr"], abs=1e-5)
    assert abs(f1 - metrics[-1]["zero_shot/f1/fr"]) > 1e-3   # the latest checkpoint would score otherwise


def test_load_exported_gives_the_training_logits(trained, tmp_path):
    """lfmlf.export.load_exported (torch + transformers only) computes what the trained TaskModel computed."""
    from lfmlf.checkpoints import selected_weights
    from lfmlf.export import load_exported, write_model
    from lfmlf.loop import build_model

    spec, _, state = trained
    folder = write_model(tmp_path / "model", state)
    exported = load_exported(folder)
    task, model = build_model(spec, torch.device("cpu"))
    model.load_state_dict(selected_weights(state)[1], strict=False)
    model.eval()
    enc = exported.tokenizer(["Marie Curie wohnt in Paris", "en Madrid"], padding=True, return_tensors="pt")
    ours = model(enc["input_ids"], enc["attention_mask"]).logits
    theirs = exported(enc["input_ids"], enc["attention_mask"])
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert exported.labels == task.labels


def test_an_export_folder_holding_other_files_is_refused(trained, tmp_path):
    from lfmlf.errors import SweepError
    from lfmlf.export import write_model

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="something other than an lfmlf export"):
        write_model(tmp_path, trained[2])


def test_a_different_tokenizer_is_refused(trained, tmp_path):
    from lfmlf.errors import SweepError
    from lfmlf.export import write_model

    with pytest.raises(SweepError, match="tokenizer rebuilt .* is not the one the run trained with"):
        write_model(tmp_path / "m", {**trained[2], "tokenizer": "0123456789abcdef"})


@pytest.mark.parametrize("task, head_input, labels",
                         [("nli", "first_token", 3), ("qa", "every_token", ["start", "end"])])
def test_heads_of_every_task_are_described(task, head_input, labels):
    from lfmlf.config import TaskConfig
    from lfmlf.export import _labels, describe_head
    from lfmlf.tasks import TASKS

    t = TASKS[task](TaskConfig(name=task, format="synthetic"))
    if task == "nli":
        t.labels = ["entailment", "neutral", "contradiction"]
    head = t.build_head(16, 0.1)
    lin, how = describe_head(head, 16)
    assert how == head_input and head.training   # checked in eval mode, mode restored
    got = _labels(t, lin.out_features)
    assert got == (labels if isinstance(labels, list) else t.labels)


def test_a_head_that_is_not_one_linear_layer_is_refused():
    from lfmlf.export import describe_head
    from lfmlf.models import ModelError

    with pytest.raises(ModelError, match="not one linear layer"):
        describe_head(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)), 8)


# ------------------------------------------------------------------ export from a trial's run and storage
def _tracked_trial(tmp_path: Path, state: dict, metrics: dict, trial_dir_tag: str | None = None):
    """A sweep parent and a trial run as the Tune callback leaves them, and the trial's Ray folder with two
    checkpoints (an older one and the newest) in the sweep's storage; no Ray."""
    from mlflow.tracking import MlflowClient

    from lfmlf.tracking import SweepTracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    storage = tmp_path / "storage"
    trial = storage / "ray" / "sweep" / "mlf_abc00001"
    for i, s in enumerate(({**state, "step": 6, "best": {**state["best"], "step": 6}}, state)):
        (trial / f"checkpoint_00000{i}").mkdir(parents=True)
        torch.save(s, trial / f"checkpoint_00000{i}" / "state.pt")
    tracker = SweepTracker(uri, "lfmlf")
    parent = tracker.start_sweep("test", str(storage), {}, {}, resume=False)
    run_id = tracker.trial_run("abc00001", "mlf-abc00001", {"method": "mlf"},
                               {"lfmlf.trial_dir": trial_dir_tag if trial_dir_tag is not None else str(trial)})
    tracker.log_metrics(run_id, {k: v for k, v in metrics.items() if "/" in k}, step=9)
    tracker.finish_trial("abc00001", "FINISHED")
    tracker.finish_sweep("FINISHED")
    return uri, run_id, parent, MlflowClient(tracking_uri=uri)


@pytest.mark.parametrize("tag", ["absolute", "schemeless"])
def test_export_finds_the_newest_checkpoint_of_a_trial_run_and_logs_the_model(trained, tmp_path, tag):
    """The trial's lfmlf.trial_dir tag is an absolute path on a shared folder; on S3 Ray's trial path has no
    scheme ("bucket/x/ray/sweep/<trial>"), and the folder is found below the sweep's storage by its name."""
    from lfmlf.export import export

    _, metrics, state = trained
    uri, run_id, parent, client = _tracked_trial(
        tmp_path, state, metrics[-1], None if tag == "absolute" else "bucket/somewhere/ray/sweep/mlf_abc00001")
    folder = export(run_id, tmp_path / "out", uri)
    meta = json.loads((folder / "lfmlf.json").read_text())
    assert meta["step"] == 3 and meta["checkpoint"]["location"].endswith("checkpoint_000001")
    assert meta["run"]["run_id"] == run_id and meta["run"]["sweep_run_id"] == parent
    assert meta["run"]["tune_trial_id"] == "abc00001" and meta["selection"] is None
    logged = {a.path for a in client.list_artifacts(run_id, "model")}
    assert {"model/lfmlf.json", "model/head.safetensors", "model/model.safetensors", "model/tokenizer.json"} <= logged


def test_export_from_a_best_file(trained, tmp_path, capsys):
    from lfmlf.cli import main

    spec, metrics, state = trained
    uri, run_id, parent, _ = _tracked_trial(tmp_path, state, metrics[-1])
    best = tmp_path / "run" / "best" / "mlf.yaml"
    best.parent.mkdir(parents=True)
    selection = {"rule": "max of best/source/f1/avg", "trial_run_id": run_id, "sweep_run_id": parent,
                 "tracking_uri": uri}
    best.write_text(yaml.safe_dump({"name": "x-mlf", "selection": selection}))
    assert main(["export", str(best), "--no-mlflow"]) == 0
    folder = tmp_path / "run" / "models" / "mlf"                # default: next to best/
    meta = json.loads((folder / "lfmlf.json").read_text())
    assert meta["selection"] == selection and meta["step"] == 3
    assert "Exported the selected evaluation (step 3)" in capsys.readouterr().out


def test_a_checkpoint_that_is_not_the_runs_is_refused(trained, tmp_path):
    from lfmlf.errors import SweepError
    from lfmlf.export import export

    _, metrics, state = trained
    uri, run_id, _, _ = _tracked_trial(tmp_path, state, {**metrics[-1], "best/step": 6.0})
    with pytest.raises(SweepError, match="logged best/step 6: the checkpoint is not the one behind"):
        export(run_id, tmp_path / "out", uri, log=False)


def test_export_errors_say_what_to_do(trained, tmp_path, capsys):
    from lfmlf.cli import main
    from lfmlf.tracking import start_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["export", "0123456789abcdef", "--tracking-uri", uri]) == 2
    assert "no run 0123456789abcdef" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err
    train_run = start_run(uri, "lfmlf", "train-x", "train", {}, {}).parent_id
    assert main(["export", train_run, "--tracking-uri", uri]) == 2
    assert "--save DIR" in capsys.readouterr().err
    _, metrics, state = trained
    uri2, run_id, _, _ = _tracked_trial(tmp_path / "b", state, metrics[-1], "/nowhere/mlf_zzz")
    (tmp_path / "b" / "storage" / "ray" / "sweep" / "mlf_abc00001").rename(tmp_path / "b" / "gone")
    assert main(["export", run_id, "--tracking-uri", uri2]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint of run" in err and "Fix:" in err


def test_export_help_lists_its_options(capsys):
    from lfmlf.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = capsys.readouterr().out
    for option in ("--out", "--averaged", "--tracking-uri", "--no-mlflow"):
        assert option in text


# ------------------------------------------------------------------ lfmlf train --save
def test_train_save_writes_and_logs_the_selected_model(tmp_path):
    from mlflow.tracking import MlflowClient

    from lfmlf.commands import load_configuration, train

    config = tmp_path / "one.yaml"
    cfg = yaml.safe_load((REPO / "sweeps" / "quickstart.yaml").read_text())
    cfg["methods"] = {"mlf": {}}
    cfg["task"]["synthetic"] = {"train": 60, "dev": 20, "test": 20}
    cfg["train"].update({"max_steps": 6, "eval_every": 3, "lr": 1e-2, "average_last": 2})
    config.write_text(yaml.safe_dump(cfg))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    metrics = train(load_configuration(config, [f"output_dir={tmp_path}/run"]), uri, save=tmp_path / "model")
    client = MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("lfmlf").experiment_id])[0]
    meta = json.loads((tmp_path / "model" / "lfmlf.json").read_text())
    assert meta["run"]["run_id"] == run.info.run_id and meta["step"] == int(metrics["best/step"])
    for lang in ("fr", "it"):
        f1 = score_ner(tmp_path / "model", target_sentences(meta["spec"], lang), cfg["task"]["max_length"])
        assert f1 == pytest.approx(run.data.metrics[f"best/zero_shot/f1/{lang}"], abs=1e-5)
    averaged = json.loads((tmp_path / "model-averaged" / "lfmlf.json").read_text())
    assert averaged["weights"] == "averaged" and averaged["steps"] == [3, 6]
    f1 = score_ner(tmp_path / "model-averaged", target_sentences(meta["spec"], "fr"), cfg["task"]["max_length"])
    assert f1 == pytest.approx(run.data.metrics["avg/zero_shot/f1/fr"], abs=1e-5)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert "model/lfmlf.json" in logged and "model/head.safetensors" in logged
    assert {a.path for a in client.list_artifacts(run.info.run_id, "model_averaged")}


# ------------------------------------------------------------------ the acceptance test: a real Ray sweep
ONE_TRIAL = {
    # the quickstart (same languages, hence the same tokenizer) with one MLF trial on de+en at a fixed
    # learning rate whose source dev score peaks at step 40 of 60: the selected checkpoint is not the latest
    "name": "export", "task": {"name": "ner", "format": "synthetic",
                               "synthetic": {"train": 600, "dev": 150, "test": 200}, "max_length": 64},
    "model": {"name_or_path": "tiny", "tiny": {"hidden_size": 64, "layers": 2, "heads": 2, "vocab_size": 2000}},
    "languages": {"sources": ["de", "en", "es", "nl"], "min_sources": 2, "max_sources": 2,
                  "must_include": ["de", "en"], "targets": ["fr", "it"]},
    "train": {"max_steps": 60, "eval_every": 20, "batch_size": 24, "eval_batch_size": 128, "lr": 0.015},
    "methods": {"mlf": {"space": {"source_set": {"type": "source_set"}}}},
    "search": {"num_samples": 1, "max_concurrent": 1, "scheduler": {"name": "none"}},
    "resources": {"cpu": 1, "gpu": 0},
}


def _cli(args: list[str], timeout: int = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", "lfmlf.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_a_sweep_trials_selected_checkpoint_is_exported_and_reproduces_its_scores(tmp_path):
    """The acceptance test: a real Ray sweep (one quickstart trial), `lfmlf best`, `lfmlf export BEST.yaml`;
    the export, read back without lfmlf, reproduces the trial's logged best/zero_shot/* scores, and it is the
    best-source-dev checkpoint (step 40), not the latest (60). The run-id form is the same path after the
    file is read (tested above without Ray)."""
    from mlflow.tracking import MlflowClient

    from lfmlf.cli import main

    sweep = tmp_path / "export.yaml"
    sweep.write_text(yaml.safe_dump(ONE_TRIAL))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    common = ["--set", f"output_dir={tmp_path}/run", "--tracking-uri", uri]
    _cli(["sweep", str(sweep), *common])
    assert main(["best", str(sweep), *common]) == 0
    best = tmp_path / "run" / "best" / "mlf.yaml"
    run_id = yaml.safe_load(best.read_text())["selection"]["trial_run_id"]
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(run_id).data.metrics
    assert logged["best/step"] == 40.0, "the settings no longer make the selected step differ from the last"
    assert logged["zero_shot/f1/fr"] != logged["best/zero_shot/f1/fr"]

    assert main(["export", str(best), "--out", str(tmp_path / "model")]) == 0
    meta = json.loads((tmp_path / "model" / "lfmlf.json").read_text())
    assert meta["step"] == 40 and meta["checkpoint"]["step"] == 60
    assert meta["checkpoint"]["location"].startswith(str(tmp_path / "run" / "ray" / "sweep"))
    assert meta["selection"]["trial_run_id"] == run_id and meta["run"]["run_id"] == run_id
    for lang in ("fr", "it"):
        f1 = score_ner(tmp_path / "model", target_sentences(meta["spec"], lang), 64)
        assert f1 == pytest.approx(logged[f"best/zero_shot/f1/{lang}"], abs=1e-5), lang
    artifacts = {a.path for a in client.list_artifacts(run_id, "model")}
    assert {"model/lfmlf.json", "model/model.safetensors", "model/head.safetensors"} <= artifacts
