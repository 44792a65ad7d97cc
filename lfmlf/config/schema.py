"""The sweep schema: frozen, validated sections of a sweep file, and what one trial runs (:class:`TrialSpec`).

The ground floor of the package: every layer reads these objects, and this module imports nothing of
lfmlf's but the leaves ``languages``, ``storage`` (what a location string means) and ``errors``.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from lfmlf.errors import UserError
from lfmlf.languages import decode_set, enumerate_sets
from lfmlf.storage import check_scheme, is_uri


class ConfigError(UserError, ValueError):
    """A sweep or search-space file is wrong; the message says where and how to fix it."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- sections
_ROWS = re.compile(r"^(?P<path>.+?)\[(?P<start>\d*):(?P<stop>\d*)\]$")


class SplitFiles(_Frozen):
    """Files of one language, relative to ``task.data_dir``. An entry may end in a slice of the file's items
    (sentences, pairs, questions), Hugging Face ``datasets`` style: ``dev-de.tsv[:500]`` is its first 500,
    ``dev-de.tsv[500:]`` the rest, so one file can give a source language both its dev and its training set."""

    train: str | None = None
    dev: str | None = None
    test: str | None = None

    @field_validator("train", "dev", "test")
    @classmethod
    def _slice_is_valid(cls, value: str | None) -> str | None:
        if value is not None and value.endswith("]"):
            m = _ROWS.match(value)
            if m is None or not (m["start"] or m["stop"]):
                raise ValueError(f"{value!r}: a file may end in a slice of its items, [start:stop] with "
                                 "whole numbers, e.g. 'dev-de.tsv[:500]' or 'dev-de.tsv[500:]'")
            if m["start"] and m["stop"] and int(m["stop"]) <= int(m["start"]):
                raise ValueError(f"{value!r}: the slice is empty (stop <= start)")
        return value

    def path(self, split: str) -> str | None:
        """The file of a split, without its slice."""
        value: str | None = getattr(self, split)
        m = _ROWS.match(value) if value is not None else None
        return m["path"] if m else value

    def rows(self, split: str) -> slice | None:
        """The slice of the file's items a split takes (``[500:]`` -> ``slice(500, None)``), None for all."""
        value: str | None = getattr(self, split)
        m = _ROWS.match(value) if value is not None else None
        if m is None:
            return None
        return slice(int(m["start"]) if m["start"] else None, int(m["stop"]) if m["stop"] else None)


class SyntheticData(_Frozen):
    """Sizes of the project's own synthetic data (sentences per language)."""

    train: int = Field(600, ge=1)
    dev: int = Field(150, ge=1)
    test: int = Field(200, ge=1)


class TaskConfig(_Frozen):
    name: str = "ner"
    format: str = "conll"          # one of the task's ``formats`` (checked against the task at load)
    data_dir: str | None = None
    files: dict[str, SplitFiles] = Field(default_factory=dict)
    hub_path: str | None = None    # hub dataset id for format 'hub' (each task has a default)
    hub_revision: str | None = None   # a commit, tag or branch of the hub dataset (logged with every run)
    options: dict[str, Any] = Field(default_factory=dict)   # the task's own typed options (Task.Options)
    cache_dir: str | None = None   # tokenised-data cache; default $LFMLF_CACHE_DIR or ~/.cache/lfmlf
    synthetic: SyntheticData = SyntheticData()
    target_split: Literal["dev", "test"] = "test"
    max_length: int = Field(128, ge=8, le=4096)       # tokens per training sequence (and evaluation, by default)
    eval_max_length: int | None = Field(None, ge=8, le=4096)   # tokens per dev/test sequence; None = max_length
    max_train_sentences: int | None = Field(None, ge=1)
    max_eval_sentences: int | None = Field(None, ge=1)


class UnlabelledConfig(_Frozen):
    """Unlabelled text for the masked-LM objectives (and distillation): by default the task's own
    source-language text; with ``files``, plain-text files (one sentence or paragraph per line)."""

    files: dict[str, str] = Field(default_factory=dict)   # language -> file, relative to the sweep file
    batch_size: int = Field(8, ge=1)                       # sequences per micro-batch
    max_length: int = Field(128, ge=8, le=4096)
    max_lines: int | None = Field(20000, ge=1)             # per language
    mlm_probability: float = Field(0.15, gt=0.0, lt=1.0)


class ProbeConfig(_Frozen):
    """Forgetting probe: top-1 cross-lingual sentence retrieval (each language against ``pivot``) with
    mean-pooled hidden states of ``layer``; measured at theta0 (cached per model) and at every evaluation."""

    # synthetic: the quickstart's generated languages, parallel by construction (no files; data_dir unused)
    format: Literal["tatoeba", "pud", "synthetic"] = "tatoeba"
    data_dir: str = ""                                     # relative to the sweep file; tatoeba and pud need it
    languages: list[str] = Field(min_length=1)
    pivot: str = "en"
    files: dict[str, str] = Field(default_factory=dict)   # pud: language -> .conllu file (pivot included)
    layer: int = -1                                        # hidden layer to pool; -1 = last, 0 = embeddings
    center: bool = False   # subtract each language's mean embedding before the cosine (not XTREME's protocol)
    max_pairs: int | None = Field(1000, ge=1)
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=8, le=4096)
    # prepended to every sentence of both sides before tokenisation (multilingual-e5 expects "query: ")
    prefix: str = ""
    # xx-en: each language's sentences retrieve among the pivot's (today's metrics); en-xx: the pivot's
    # sentences retrieve among the language's ("en" stands for probe.pivot)
    directions: list[Literal["xx-en", "en-xx"]] = Field(["xx-en"], min_length=1)
    # cosine, or margin: the ratio margin of Artetxe & Schwenk (2019) over 4 nearest neighbours both ways
    scoring: Literal["cosine", "margin"] = "cosine"
    cache_dir: str | None = None                           # theta0 scores; default as task.cache_dir

    @field_validator("directions")
    @classmethod
    def _each_direction_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"probe.directions lists a direction twice ({value}). Fix: list each of xx-en and "
                             "en-xx at most once")
        return value


class TinyModel(_Frozen):
    """A small randomly initialised encoder with a tokenizer trained on the run's own text. It can also take
    a real model's shape with random weights, for speed and memory checks without the hub; xlm-roberta-base:
    ``{architecture: xlm-roberta, hidden_size: 768, layers: 12, heads: 12, min_embedding_rows: 250002}``
    (the feed-forward width is always 4 x hidden_size)."""

    hidden_size: int = Field(64, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    vocab_size: int = Field(2000, ge=100)        # of the BPE tokenizer trained on the run's text
    architecture: Literal["bert", "xlm-roberta"] = "bert"   # BertModel or XLMRobertaModel (and its MLM head)
    # word-embedding rows: at least this many (XLM-R has 250002), however small the tokenizer; rows past the
    # tokenizer's vocabulary are never looked up but are trained, decayed and kept in the QP like real ones
    min_embedding_rows: int = Field(0, ge=0)
    seed: int = 0


class ModelConfig(_Frozen):
    name_or_path: str = "tiny"
    revision: str | None = None    # a commit, tag or branch of a hub model (logged with every run)
    tiny: TinyModel = TinyModel()
    freeze_embeddings: bool = False
    freeze_layers: int = Field(0, ge=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)              # the encoder's (hidden and attention) dropout
    head_dropout: float | None = Field(None, ge=0.0, lt=1.0)  # the task head's; None = ``dropout``

    @property
    def task_head_dropout(self) -> float:
        """The dropout probability of the task head: ``head_dropout``, else the encoder's ``dropout``."""
        return self.dropout if self.head_dropout is None else self.head_dropout


class LanguageConfig(_Frozen):
    sources: list[str]
    min_sources: int = Field(1, ge=1)
    max_sources: int | None = Field(None, ge=1)
    must_include: list[str] = Field(default_factory=list)
    targets: list[str] = Field(min_length=1)


#: ``train.target_eval: auto`` evaluates the targets at every evaluation up to this many targets (above:
#: ``selected``).
TARGET_EVAL_AUTO_MAX = 3


class TrainConfig(_Frozen):
    lr: float = Field(5e-5, gt=0)
    max_steps: int = Field(200, ge=1)
    eval_every: int = Field(50, ge=1)
    batch_size: int = Field(16, ge=1)
    # exactly this many examples of each source language in every micro-batch (instead of one each plus a
    # draw by ``sampler``); batch_size is then derived: per_source_batch x sources x grad_accum
    per_source_batch: int | None = Field(None, ge=1)
    eval_batch_size: int = Field(64, ge=1)
    grad_accum: int = Field(1, ge=1)
    warmup_ratio: float = Field(0.1, ge=0.0, le=1.0)
    weight_decay: float = Field(0.01, ge=0.0)
    grad_clip: float | None = Field(1.0, gt=0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    bf16: bool = False
    sampler: Literal["uniform", "proportional", "temperature"] = "uniform"
    temperature: float = Field(5.0, gt=0)
    device: str = "auto"
    seed: int = 0
    # checkpoint averaging (Schmidt et al., ACL 2023): at the last step, also evaluate the uniform mean of
    # the trainable weights of the last ``average_last`` evaluations (logged as avg/...); 0 = off
    average_last: int = Field(0, ge=0)
    # when the target languages are evaluated: "every" evaluation (full zero-shot curves), or only where the
    # source dev score improves (the evaluations best/* can select) and at the last step ("improved");
    # "auto" = "improved" above TARGET_EVAL_AUTO_MAX targets, else "every". Selection, ASHA and the search
    # read source scores only, so "improved" changes no number they see.
    target_eval: Literal["auto", "every", "improved", "selected"] = "auto"

    @field_validator("average_last")
    @classmethod
    def _average_of_several(cls, value: int) -> int:
        if value == 1:
            raise ValueError("average_last=1 averages the last checkpoint with nothing. Fix: 0 (off), or 2 or "
                             "more evaluation checkpoints")
        return value

    @field_validator("eval_every")
    @classmethod
    def _eval_fits(cls, value: int, info: ValidationInfo) -> int:
        max_steps = info.data.get("max_steps")
        if max_steps is not None and value > max_steps:
            raise ValueError(f"eval_every ({value}) is larger than max_steps ({max_steps}), so no evaluation "
                             "would run. Fix: lower train.eval_every or raise train.max_steps")
        return value


class MethodEntry(_Frozen):
    """One entry of ``methods:``. Its key names the method in every run, table and plot; ``method`` says
    which registered method it runs when the key is not one (default: the key itself), so one sweep can run
    a method twice with different fixed ``params``, e.g. ``lfmlf_l2: {method: lfmlf, params: {forgetting:
    l2}}`` beside ``lfmlf_distill: {method: lfmlf, params: {forgetting: distill}}``."""

    method: str | None = None
    space: str | dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class SchedulerConfig(_Frozen):
    name: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class Objective(_Frozen):
    """One objective of a multi-objective search: a reported metric (``{metric}`` = the task's metric) and
    whether to maximise or minimise it."""

    metric: str
    mode: Literal["max", "min"]


class SearchConfig(_Frozen):
    """``search:``. With ``objectives`` (two or more) each method's Optuna study is multi-objective; the first
    objective is also ``metric`` / ``mode`` (what Tune's table shows and ``lfmlf best`` selects on), so a file
    that gives ``metric`` or ``mode`` as well must give the first objective's."""

    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    metric: str = "best/source/{metric}/avg"
    mode: Literal["max", "min"] = "max"
    objectives: list[Objective] | None = None
    scheduler: SchedulerConfig = SchedulerConfig()
    n_startup_trials: int = Field(4, ge=1)
    max_failed_share: float = Field(0.25, ge=0.0, le=1.0)   # above it (or a method with no finished trial) exit 3

    @model_validator(mode="before")
    @classmethod
    def _objectives(cls, data: Any) -> Any:
        """Checks ``objectives`` (two or more, distinct, only the ``{metric}`` placeholder) and makes the
        first one ``metric`` / ``mode``; called when a sweep file (or a dump of one) is validated."""
        if not isinstance(data, dict) or data.get("objectives") is None:
            return data
        objectives = data["objectives"]
        if not isinstance(objectives, list) or len(objectives) < 2:
            raise ValueError("search.objectives needs two or more entries {metric: ..., mode: max|min}. Fix: list "
                             "at least two, or remove search.objectives and use search.metric / search.mode for "
                             "a single objective")
        metrics = [o.get("metric") if isinstance(o, dict) else getattr(o, "metric", None) for o in objectives]
        modes = [o.get("mode") if isinstance(o, dict) else getattr(o, "mode", None) for o in objectives]
        for m in metrics:
            if not isinstance(m, str):
                continue   # the Objective model reports it
            try:
                m.format(metric="METRIC")
            except (KeyError, IndexError, ValueError):
                raise ValueError(f"search.objectives: metric '{m}' has a placeholder other than {{metric}} (the "
                                 "task's metric). Fix: write the metric's name, e.g. best/source/{metric}/avg"
                                 ) from None
        dupes = sorted({m for m in metrics if isinstance(m, str) and metrics.count(m) > 1})
        if dupes:
            raise ValueError(f"search.objectives lists {dupes} more than once. Fix: give each metric once")
        for key, first in (("metric", metrics[0]), ("mode", modes[0])):
            if key in data and data[key] != first:
                raise ValueError(f"search.{key} ({data[key]!r}) differs from the first objective's ({first!r}); with "
                                 f"search.objectives the first objective is the one Tune shows and lfmlf best "
                                 f"selects on. Fix: remove search.{key}, or put that objective first")
        return {**data, "metric": metrics[0], "mode": modes[0]} if isinstance(metrics[0], str) else data


class ResourceConfig(_Frozen):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class TrackingConfig(_Frozen):
    uri: str | None = None
    experiment: str = "lfmlf"


class RayConfig(_Frozen):
    address: str | None = None     # an existing cluster (HOST:PORT or ray://...); --address wins
    num_cpus: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0)


class SweepConfig(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    output_dir: str | None = None
    task: TaskConfig
    model: ModelConfig = ModelConfig()
    languages: LanguageConfig
    train: TrainConfig = TrainConfig()
    unlabelled: UnlabelledConfig = UnlabelledConfig()
    probe: ProbeConfig | None = None
    methods: dict[str, MethodEntry] = Field(min_length=1)
    search: SearchConfig = SearchConfig()
    resources: ResourceConfig = ResourceConfig()
    tracking: TrackingConfig = TrackingConfig()
    ray: RayConfig = RayConfig()
    selection: dict[str, Any] | None = None   # provenance of a configuration written by `lfmlf best`
    source: str = ""  # the YAML file this came from (set by the loader)

    @field_validator("train")
    @classmethod
    def _per_source_batch(cls, value: TrainConfig, info: ValidationInfo) -> TrainConfig:
        """With ``train.per_source_batch``, ``batch_size`` is derived for the largest source set the sweep may
        pick (a trial's own is set by :func:`trial_spec`); a ``batch_size`` the file gives must agree."""
        languages = info.data.get("languages")
        if value.per_source_batch is None or not isinstance(languages, LanguageConfig):
            return value
        largest = min(languages.max_sources or len(languages.sources), len(languages.sources))
        derived = value.per_source_batch * max(largest, 1) * value.grad_accum
        if "batch_size" not in value.model_fields_set:
            return value.model_copy(update={"batch_size": derived})
        if value.batch_size != derived:
            raise ValueError(
                f"train.batch_size ({value.batch_size}) disagrees with train.per_source_batch "
                f"({value.per_source_batch}) x {largest} source languages (the largest source set) x train.grad_accum "
                f"({value.grad_accum}) = {derived}. Fix: remove train.batch_size (it is derived), set it to {derived}, "
                "or remove train.per_source_batch")
        return value

    @field_validator("output_dir")
    @classmethod
    def _storage_scheme(cls, value: str | None) -> str | None:
        problem = value and check_scheme(value)
        if problem:
            raise ValueError(problem)
        return value

    def source_sets(self) -> list[str]:
        """Every source set the search may pick, canonical spelling."""
        lc = self.languages
        return enumerate_sets(lc.sources, lc.min_sources, lc.max_sources or len(lc.sources), lc.must_include)

    @property
    def run_dir(self) -> Path:
        """The driver's local folder of this sweep: the resolved sweep file, Ray's temp files of a local
        instance, ``best/`` and ``report/`` (and the Optuna studies when MLflow is a server). It is
        ``output_dir`` when that is a path, else ``runs/<name>`` in the working directory."""
        if self.output_dir and not is_uri(self.output_dir):
            return Path(self.output_dir).expanduser().resolve()
        return (Path("runs") / self.name).resolve()

    @property
    def storage_location(self) -> str:
        """Where Ray writes trial results and checkpoints (``<location>/ray``): ``output_dir`` as given
        when it is a URI (``s3://...``), else the local or shared folder :attr:`run_dir`. It also identifies
        the sweep in MLflow (tag ``lfmlf.sweep_dir``)."""
        if self.output_dir and is_uri(self.output_dir):
            return self.output_dir.rstrip("/")
        return str(self.run_dir)


class TrialSpec(_Frozen):
    """Everything one training run needs: the sweep's fixed settings with one trial's sampled values."""

    sweep: str
    method: str                    # the sweep's name for the method (its key under ``methods:``)
    method_params: dict[str, Any] = Field(default_factory=dict)
    algorithm: str | None = None   # the registered method it runs, when ``method`` is not one (see MethodEntry)
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    pool: tuple[str, ...]          # every language of the sweep (the tiny model's tokenizer sees them all)
    train: TrainConfig
    task: TaskConfig
    model: ModelConfig
    unlabelled: UnlabelledConfig = UnlabelledConfig()
    probe: ProbeConfig | None = None
    cpus: float = 1.0              # CPUs reserved per trial (torch uses that many threads)

    @property
    def registered(self) -> str:
        """The name of the method in ``lfmlf.methods.METHODS`` that this trial runs."""
        return self.algorithm or self.method

    @property
    def target_eval_mode(self) -> Literal["every", "improved", "selected"]:
        """``train.target_eval`` resolved (``auto``: ``every`` up to TARGET_EVAL_AUTO_MAX targets, else
        ``selected``)."""
        mode = self.train.target_eval
        if mode == "auto":
            return "every" if len(self.targets) <= TARGET_EVAL_AUTO_MAX else "selected"
        return mode

    def flat_params(self) -> dict[str, str]:
        """The flat param view logged to MLflow: sampled values plus every fixed setting."""
        out = {"method": self.method, **({"algorithm": self.algorithm} if self.algorithm else {}),
               "source_set": "+".join(sorted(self.sources)), "task": self.task.name,
               "model": self.model.name_or_path, "targets": "+".join(self.targets)}
        out.update({k: str(v) for k, v in self.method_params.items()})
        out.update({f"train.{k}" if k != "lr" else k: str(v) for k, v in self.train.model_dump().items()})
        out.update({"freeze_embeddings": str(self.model.freeze_embeddings),
                    "freeze_layers": str(self.model.freeze_layers), "dropout": str(self.model.dropout),
                    "head_dropout": str(self.model.task_head_dropout), "task.max_length": str(self.task.max_length),
                    "task.eval_max_length": str(self.task.eval_max_length or self.task.max_length)})
        if self.probe is not None:   # the protocol behind the forgetting numbers
            out.update({"probe.prefix": repr(self.probe.prefix), "probe.directions": "+".join(self.probe.directions),
                        "probe.scoring": self.probe.scoring, "probe.max_pairs": str(self.probe.max_pairs)})
        return out


def trial_spec(cfg: SweepConfig, sampled: Mapping[str, Any]) -> TrialSpec:
    """Combine the sweep with one trial's sampled values (``method``, ``source_set``, train fields such as
    ``lr``, and method hyper-parameters such as ``slack``)."""
    values = dict(sampled)
    method = values.pop("method")
    sources = decode_set(values.pop("source_set")) if "source_set" in values else tuple(sorted(cfg.languages.sources))
    train_updates = {k: values.pop(k) for k in list(values) if k in TrainConfig.model_fields}
    train = TrainConfig.model_validate({**cfg.train.model_dump(), **train_updates})
    if train.per_source_batch is not None:   # the trial's own batch: per_source_batch of each of its sources
        if "batch_size" in train_updates:
            raise ConfigError(f"the search samples train.batch_size ({train_updates['batch_size']}), but "
                              f"train.per_source_batch ({train.per_source_batch}) fixes the batch. Fix: sample "
                              "per_source_batch instead, or remove train.per_source_batch")
        train = train.model_copy(update={"batch_size": train.per_source_batch * len(sources) * train.grad_accum})
    params = {**cfg.methods[method].params, **values}
    pool = tuple(sorted(set(cfg.languages.sources) | set(cfg.languages.targets)))
    return TrialSpec(sweep=cfg.name, method=method, method_params=params, algorithm=cfg.methods[method].method,
                     sources=sources,
                     targets=tuple(cfg.languages.targets), pool=pool, train=train, task=cfg.task, model=cfg.model,
                     unlabelled=cfg.unlabelled, probe=cfg.probe, cpus=cfg.resources.cpu)


def check_fields(model: type[BaseModel], values: Mapping[str, Any], kind: str, owner: str) -> None:
    """Validate ``values`` against a typed model of ``kind``s (a method's parameters, a task's options);
    raise ValueError naming every bad or unknown one and the valid ones."""
    try:
        model(**values)
    except ValidationError as e:
        valid = list(model.model_fields)
        problems = []
        for err in e.errors():
            key = ".".join(map(str, err["loc"]))
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(key, valid, n=1)
                problems.append(f"unknown {kind} '{key}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            else:
                problems.append(f"'{key}': {err['msg']} (got {err.get('input')!r})")
        raise ValueError(f"{'; '.join(problems)}. Fix: use the valid {kind}s of {owner}: "
                         f"{', '.join(valid) or 'none'}") from None
