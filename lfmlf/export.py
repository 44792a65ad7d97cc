"""``lfmlf export`` and ``lfmlf train --save``: the model behind a run's numbers as a Hugging Face directory.

A trial's latest checkpoint (``evaluation.state()`` of :mod:`lfmlf.loop`, in the trial's folder of the
sweep's storage) holds the trainable weights of its *selected* evaluation (best source-dev average: the
``best/*`` metrics) and, with ``train.average_last``, those of its last k evaluations. An export rebuilds
the trial's model at theta0 (the frozen weights and, for the tiny model, the tokenizer come from the model
source again; the tokenizer is checked against the checkpoint's digest), loads the kept weights and writes::

    DIR/config.json, model.safetensors   the encoder (``save_pretrained``; AutoModel.from_pretrained reads it)
    DIR/tokenizer.json, ...              the tokenizer the run used (``save_pretrained``; AutoTokenizer)
    DIR/head.safetensors                 the task head: ``weight`` [outputs, hidden] and ``bias`` [outputs]
    DIR/lfmlf.json                       labels, head input (every token / first token), the configuration
                                         (TrialSpec), the selection record and the scores logged for it

and logs the directory to the trial's MLflow run under ``model/`` (``model_averaged/`` for the average).
:func:`load_exported` reads it back with torch, transformers and safetensors only.
"""
from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import nn

from lfmlf.checkpoints import averaged_weights, selected_weights
from lfmlf.config import TrialSpec
from lfmlf.errors import SweepError
from lfmlf.loop import build_model
from lfmlf.models import ModelError, eval_mode, tokenizer_digest
from lfmlf.storage import is_uri, redact
from lfmlf.tasks import TASKS
from lfmlf.tracking import RunStore, resolve_uri

if TYPE_CHECKING:
    from transformers import PreTrainedModel

EXPORT_FILE = "lfmlf.json"
HEAD_FILE = "head.safetensors"
CHECKPOINT_FILE = "state.pt"       # lfmlf.sweep.trainable writes each checkpoint's state under this name
FORMAT = "lfmlf-export/1"


# ------------------------------------------------------------------------------------ loading (no lfmlf)
class ExportedModel(nn.Module):
    """An exported model read back with torch/transformers only: ``forward`` returns the task logits
    ([B, T, outputs] over every token, or [B, outputs] from the first token). ``labels`` name the outputs,
    ``meta`` is ``lfmlf.json``, ``tokenizer`` the run's tokenizer."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, first_token: bool, tokenizer: Any,
                 meta: dict[str, Any]) -> None:
        super().__init__()
        self.encoder, self.head, self.first_token = encoder, head, first_token
        self.tokenizer, self.meta, self.labels = tokenizer, meta, list(meta["labels"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden[:, 0] if self.first_token else hidden)


def load_exported(path: str | Path, device: str | torch.device = "cpu") -> ExportedModel:
    """Load an export (:func:`write_model`) with ``AutoModel``, ``AutoTokenizer`` and a plain linear head.
    Depends on torch, transformers and safetensors only: copy it next to your own code if you like."""
    from safetensors.torch import load_file  # here, so that this function can be copied on its own
    from transformers import AutoModel, AutoTokenizer

    folder = Path(path)
    meta = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    try:
        encoder = AutoModel.from_pretrained(folder, add_pooling_layer=False, dtype=torch.float32)
    except TypeError:   # an architecture without a pooling layer option
        encoder = AutoModel.from_pretrained(folder, dtype=torch.float32)
    weights = load_file(str(folder / meta["head"]["file"]))
    head = nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
    head.load_state_dict(weights)
    model = ExportedModel(encoder, head, meta["head"]["input"] == "first_token",
                          AutoTokenizer.from_pretrained(folder), meta)
    return model.to(device).eval()


# ------------------------------------------------------------------------------------ writing
def describe_head(head: nn.Module, hidden_size: int) -> tuple[nn.Linear, str]:
    """(the head's linear layer, its input: ``every_token`` or ``first_token``). Every task head of lfmlf is
    dropout + one linear layer over every token's or the first token's hidden state; this checks it by
    running the head (in eval mode) on random states, so a head of another shape is refused, not misread."""
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
    others = [n for n, m in head.named_modules() if not isinstance(m, (nn.Linear, nn.Dropout))
              and any(True for _ in m.parameters(recurse=False))]
    if len(linears) != 1 or others:
        raise ModelError(f"the task head {type(head).__name__} is not one linear layer (with dropout); export "
                         "writes heads of that form only")
    lin = linears[0]
    x = torch.randn(2, 3, hidden_size, generator=torch.Generator().manual_seed(0)).to(lin.weight)
    with eval_mode(head), torch.no_grad():
        out = head(x)
    with torch.no_grad():
        if out.shape == (2, 3, lin.out_features) and torch.allclose(out, lin(x), atol=1e-6):
            return lin, "every_token"
        if out.shape == (2, lin.out_features) and torch.allclose(out, lin(x[:, 0]), atol=1e-6):
            return lin, "first_token"
    raise ModelError(f"the task head {type(head).__name__} is a linear layer over neither every token nor the "
                     "first token; export cannot describe it")


def _labels(task: Any, outputs: int) -> list[str]:
    labels = [str(x) for x in getattr(task, "labels", None) or []]
    if len(labels) == outputs:
        return labels
    if task.name == "qa" and outputs == 2:
        return ["start", "end"]
    return [str(i) for i in range(outputs)]


def check_out(out: str | Path) -> Path:
    """An export folder may be new, empty or an earlier export (replaced); anything else is refused."""
    folder = Path(out)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / EXPORT_FILE).is_file())):
        raise SweepError(f"the export folder {folder} exists and holds something other than an lfmlf export. Fix: "
                         "pass a new or empty folder.")
    return folder


def write_model(out: str | Path, state: Mapping[str, Any], *, averaged: bool = False,
                provenance: Mapping[str, Any] | None = None) -> Path:
    """Write the selected (or, with ``averaged``, the averaged) model of a checkpoint dict to ``out``.

    ``provenance`` (run ids, tracking URI, checkpoint location, the ``best`` file's selection block) goes
    into ``lfmlf.json`` under ``run`` / ``selection``. Rebuilds the trial's model from its spec (on the CPU),
    so the data and model paths in the spec must exist here; a rebuilt tokenizer other than the one the
    checkpoint was trained with is an error."""
    provenance = dict(provenance or {})
    spec = TrialSpec.model_validate(state["spec"])
    metric = TASKS[spec.task.name].metric
    steps, weights = kept_weights(state, averaged)
    folder = check_out(out)

    task, model = build_model(spec, torch.device("cpu"))
    digest = load_kept_weights(model, task.tokenizer, weights, state, spec.model.name_or_path)
    lin, head_input = describe_head(model.head, model.encoder.config.hidden_size)
    _save_files(folder, model.encoder, task.tokenizer, lin, digest)

    scores, rule = _scores_and_rule(state, steps, averaged, metric, spec.train.average_last)
    meta = {
        "format": FORMAT,
        "task": spec.task.name, "metric": metric, "labels": _labels(task, lin.out_features),
        "head": {"file": HEAD_FILE, "type": "linear", "input": head_input, "outputs": lin.out_features,
                 "hidden_size": lin.in_features},
        "max_length": spec.task.eval_max_length or spec.task.max_length,   # what inference sees: eval length
        "weights": "averaged" if averaged else "selected",
        "step": steps[-1] if not averaged else None, "steps": steps,
        "checkpoint": {"rule": rule, "step": int(state["step"]), "metric": f"source/{metric}/avg",
                       "value": state["best"].get("score"), "tokenizer": digest,
                       **({"location": provenance.pop("checkpoint")} if "checkpoint" in provenance else {})},
        "selection": provenance.pop("selection", None),
        "run": provenance,
        "scores": {k: float(v) for k, v in sorted(scores.items())},
        "spec": spec.model_dump(mode="json"),
    }
    (folder / EXPORT_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False, default=str) + "\n",
                                      encoding="utf-8")
    return folder


def kept_weights(state: Mapping[str, Any], averaged: bool) -> tuple[list[int], dict[str, Any]]:
    """(the steps, the trainable weights) a checkpoint keeps: its selected evaluation's, or with ``averaged``
    the average of its last evaluations'; a checkpoint without them is a SweepError naming the fix."""
    try:
        if averaged:
            steps, weights = averaged_weights(state)
        else:
            step, weights = selected_weights(state)
            steps = [step]
    except KeyError as e:
        raise SweepError(f"cannot export: {e.args[0]}. Fix: "
                         + ("set train.average_last (2 or more) and run the trial again." if averaged else
                            "re-run the trial with this lfmlf version.")) from None
    return steps, weights


def load_kept_weights(model: nn.Module, tokenizer: Any, weights: Mapping[str, Any], state: Mapping[str, Any],
                       source: str) -> str:
    """Load ``weights`` into the rebuilt ``model`` (then in eval mode) after checking that the rebuilt
    tokenizer is the one the checkpoint was trained with and that the weights are exactly the model's
    trainable parameters; returns the tokenizer's digest."""
    digest = tokenizer_digest(tokenizer)
    if state.get("tokenizer") and state["tokenizer"] != digest:
        raise SweepError(f"the tokenizer rebuilt for {source} is not the one the run trained "
                         f"with (digest {digest}, checkpoint {state['tokenizer']}): the model source or the tiny "
                         "model's text changed since, or another tokenizers version trains it differently. Fix: "
                         "export with the data, model directory and package versions of the run.")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    if set(weights) != trainable:
        raise SweepError(f"the checkpoint's weights do not fit the rebuilt model (missing: "
                         f"{sorted(trainable - set(weights))[:3]}, unexpected: "
                         f"{sorted(set(weights) - trainable)[:3]}). "
                         "Fix: export with the lfmlf version and model source the run used.")
    model.load_state_dict(weights, strict=False)
    model.eval()
    return digest


def _save_files(folder: Path, encoder: PreTrainedModel, tokenizer: Any, lin: nn.Linear, digest: str) -> None:
    """(Re)create ``folder`` with the encoder and the tokenizer (``save_pretrained``; the tokenizer must read
    back through AutoTokenizer with the same ``digest``) and the head's weight and bias."""
    from safetensors.torch import save_file  # lazy: only writing a model needs safetensors

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    encoder.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    from transformers import AutoTokenizer  # lazy: transformers is slow to import

    if tokenizer_digest(AutoTokenizer.from_pretrained(folder)) != digest:
        raise SweepError(f"AutoTokenizer does not read back from {folder} the tokenizer that was saved there "
                         f"({type(tokenizer).__name__}). Fix: report this with your transformers version.")
    save_file({"weight": lin.weight.detach().contiguous().cpu(), "bias": lin.bias.detach().contiguous().cpu()},
              str(folder / HEAD_FILE))


def _scores_and_rule(state: Mapping[str, Any], steps: list[int], averaged: bool, metric: str,
                     average_last: Any) -> tuple[dict[str, Any], str]:
    """The scores logged for the exported weights (``avg/*``, or ``best/*`` and ``best/step``) and the rule
    that picked them, in words."""
    last = state.get("metrics") or {}
    if averaged:
        scores = {k: v for k, v in last.items() if k.startswith("avg/")}
        rule = (f"uniform mean of the trainable weights of the last {len(steps)} evaluations (steps "
                f"{', '.join(map(str, steps))}; train.average_last = {average_last}); no selection")
    else:
        scores = {f"best/{k}": v for k, v in state["best"]["metrics"].items()}
        scores["best/step"] = float(steps[0])
        rule = (f"the evaluation with the best source-language dev average (source/{metric}/avg = "
                f"{state['best']['score']:.6g}) among the trial's evaluations up to step {state['step']}")
    return scores, rule


def log_model(store: Any, run_id: str, folder: Path, averaged: bool = False) -> str:
    """Log an export's files to a run (``model/``, or ``model_averaged/``) through a
    :class:`lfmlf.tracking.RunStore`; returns the artifact folder."""
    name = "model_averaged" if averaged else "model"
    store.log_files(run_id, sorted(p for p in Path(folder).iterdir() if p.is_file()), name)
    return name


# ------------------------------------------------------------------------------------ finding a checkpoint
def _filesystem(location: str) -> tuple[Any, str]:
    from pyarrow import fs  # lazy: only a URI location needs pyarrow

    if is_uri(location):
        return fs.FileSystem.from_uri(location)
    return fs.LocalFileSystem(), str(Path(location.removeprefix("file://")).resolve())


def _children(filesystem: Any, path: str) -> list[Any]:
    from pyarrow import fs  # lazy: as above

    try:
        return filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []


def trial_folders(tags: Mapping[str, str], storage: str | None) -> list[str]:
    """Where a trial's Ray folder may be, best guess first: its ``lfmlf.trial_dir`` tag when that is a URI
    or an absolute path, then its folder name (or ``*_<tune trial id>``) below the storage's
    ``ray/sweep`` and ``ray/rerun`` (Ray's trial path on S3 carries no scheme; the storage location does)."""
    tagged = tags.get("lfmlf.trial_dir", "").rstrip("/")
    out = [tagged] if tagged and (is_uri(tagged) or Path(tagged).is_absolute()) else []
    if storage:
        name = tagged.rsplit("/", 1)[-1] if tagged else ""
        trial_id = tags.get("lfmlf.tune_trial_id", "")
        for experiment in ("sweep", "rerun"):
            base = f"{storage.rstrip('/')}/ray/{experiment}"
            if name:
                out.append(f"{base}/{name}")
            elif trial_id:
                filesystem, path = _filesystem(base)
                out += [f"{base}/{info.base_name}" for info in _children(filesystem, path)
                        if info.base_name.endswith(f"_{trial_id}")]
    return list(dict.fromkeys(out))


def read_checkpoint(trial_folder: str) -> tuple[dict[str, Any], str] | None:
    """The newest checkpoint dict in a trial's Ray folder (a path or a URI) and its location, or None."""
    filesystem, path = _filesystem(trial_folder)
    found = sorted((i.base_name for i in _children(filesystem, path)
                    if i.base_name.startswith("checkpoint_") and i.type.name == "Directory"), reverse=True)
    for name in found:
        file = f"{path}/{name}/{CHECKPOINT_FILE}"
        try:
            with filesystem.open_input_stream(file) as f:
                data = f.read()
        except (OSError, FileNotFoundError):
            continue   # a checkpoint Ray is still writing or deleting
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)   # runs no code
        return state, f"{trial_folder.rstrip('/')}/{name}"
    return None


def check_against_run(state: Mapping[str, Any], logged: Mapping[str, float], run_id: str) -> None:
    """The checkpoint must be the one behind the run's numbers: same selected step, same best/* scores."""
    step = logged.get("best/step")
    if step is not None and int(step) != int(state["best"]["step"]):
        raise SweepError(f"the newest checkpoint of run {run_id} (step {state['step']}) selected step "
                         f"{state['best']['step']}, but the run logged best/step {int(step)}: the checkpoint is not "
                         "the one behind the run's numbers (the trial is still running, or its folder was "
                         "replaced). Fix: export once the trial has finished.")
    for key, value in state["best"]["metrics"].items():
        seen = logged.get(f"best/{key}")
        if seen is not None and not math.isclose(seen, value, rel_tol=1e-9, abs_tol=1e-12):
            raise SweepError(f"run {run_id} logged best/{key} = {seen}, its checkpoint holds {value}. Fix: export "
                             "once the trial has finished, from the storage it wrote to (--output-dir).")


def export(source: str, out: str | Path | None = None, tracking_uri: str | None = None, *,
           averaged: bool = False, log: bool = True) -> Path:
    """``lfmlf export``: ``source`` is a trial's MLflow run id or a configuration file written by
    ``lfmlf best`` (its ``selection.trial_run_id``). Finds the trial's newest checkpoint in the sweep's
    storage, writes the selected (or averaged) model to ``out`` and logs it to the trial's run."""
    selection, experiment, yaml_uri = None, "lfmlf", None
    path = Path(source)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise SweepError(f"{source}: no such file. Fix: pass a file written by `lfmlf best`, or a run id.")
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        selection = doc.get("selection") or {}
        if not selection.get("trial_run_id"):
            raise SweepError(f"{source}: has no selection.trial_run_id, so it names no trial. Fix: pass a file "
                             "written by `lfmlf best`, or the trial's MLflow run id.")
        run_id = str(selection["trial_run_id"])
        experiment = (doc.get("tracking") or {}).get("experiment") or experiment
        yaml_uri = selection.get("tracking_uri") or (doc.get("tracking") or {}).get("uri")
        default_out = path.resolve().parent.parent / "models" / path.stem
    else:
        run_id = source
        default_out = Path("models") / run_id
    uri = resolve_uri(tracking_uri, yaml_uri)
    store = RunStore(uri, experiment)
    try:
        tags = store.tags(run_id)
    except Exception as e:
        raise SweepError(f"no run {run_id} in MLflow store {redact(uri)} ({type(e).__name__}). Fix: pass the "
                         "trial's run id and the --tracking-uri its sweep used.") from None
    if tags.get("lfmlf.role") == "train":
        raise SweepError(f"run {run_id} is an `lfmlf train` run, which keeps no checkpoint. Fix: run `lfmlf train "
                         "CONFIG.yaml --save DIR`, which writes the same export.")
    parent = tags.get("mlflow.parentRunId")
    storage = store.tags(parent).get("lfmlf.sweep_dir") if parent else None
    folders = trial_folders(tags, storage)
    found = None
    for trial_folder in folders:
        found = read_checkpoint(trial_folder)
        if found is not None:
            break
    if found is None:
        raise SweepError(f"no checkpoint of run {run_id} (Tune trial {tags.get('lfmlf.tune_trial_id', '?')}) in "
                         f"{', '.join(map(redact, folders)) or 'its storage (the run has no lfmlf.trial_dir tag)'}. "
                         "Fix: export from a machine that sees the sweep's storage (--output-dir of the sweep), "
                         "with the credentials it needs.")
    state, location = found
    logged = {k: v for k, v in store.client.get_run(run_id).data.metrics.items()}
    check_against_run(state, logged, run_id)
    provenance = {"run_id": run_id, "tracking_uri": redact(uri), "checkpoint": redact(location),
                  "tune_trial_id": tags.get("lfmlf.tune_trial_id", ""), "sweep_run_id": parent or "",
                  "selection": selection}
    folder = write_model(Path(out) if out else default_out, state, averaged=averaged, provenance=provenance)
    if log:
        name = log_model(store, run_id, folder, averaged)
        print(f"Logged to MLflow run {run_id} under {name}/ ({redact(uri)})")
    _print_written(folder)
    return folder


def _print_written(folder: Path) -> None:
    meta = json.loads((folder / EXPORT_FILE).read_text(encoding="utf-8"))
    what = (f"the selected evaluation (step {meta['step']})" if meta["weights"] == "selected"
            else f"the mean of steps {', '.join(map(str, meta['steps']))}")
    shown = "  ".join(f"{k} {v:.4f}" for k, v in meta["scores"].items() if k.endswith("/avg"))
    print(f"Exported {what} of {meta['spec']['method']} to {folder}\n  {shown}\n"
          f"  load: AutoModel.from_pretrained('{folder}') + head.safetensors, or "
          f"lfmlf.export.load_exported('{folder}')")
