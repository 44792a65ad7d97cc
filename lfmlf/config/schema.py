"""Sweep YAML -> validated, frozen config objects.

Every problem is raised as one :class:`ConfigError` whose message names the file, the key and the fix,
before Ray starts. Relative paths inside a YAML file (data, model directory, search-space files) are
resolved against that file's folder; ``${VAR}`` and ``${VAR:-default}`` expand environment variables, so
no machine's path needs to be baked into a sweep.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from lfmlf.languages import LanguageError, check_language, enumerate_sets
from lfmlf.storage import check_scheme, is_uri


class ConfigError(ValueError):
    """A sweep or search-space file is wrong; the message says where and how to fix it."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------- sections
class SplitFiles(_Frozen):
    """Files of one language, relative to ``task.data_dir``."""

    train: str | None = None
    dev: str | None = None
    test: str | None = None


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
    max_length: int = Field(128, ge=8, le=4096)
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

    format: Literal["tatoeba", "pud"] = "tatoeba"
    data_dir: str                                          # relative to the sweep file
    languages: list[str] = Field(min_length=1)
    pivot: str = "en"
    files: dict[str, str] = Field(default_factory=dict)   # pud: language -> .conllu file (pivot included)
    layer: int = -1                                        # hidden layer to pool; -1 = last, 0 = embeddings
    center: bool = False   # subtract each language's mean embedding before the cosine (not XTREME's protocol)
    max_pairs: int | None = Field(1000, ge=1)
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=8, le=4096)
    cache_dir: str | None = None                           # theta0 scores; default as task.cache_dir


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
    dropout: float = Field(0.1, ge=0.0, lt=1.0)


class LanguageConfig(_Frozen):
    sources: list[str]
    min_sources: int = Field(1, ge=1)
    max_sources: int | None = Field(None, ge=1)
    must_include: list[str] = Field(default_factory=list)
    targets: list[str] = Field(min_length=1)


class TrainConfig(_Frozen):
    lr: float = Field(5e-5, gt=0)
    max_steps: int = Field(200, ge=1)
    eval_every: int = Field(50, ge=1)
    batch_size: int = Field(16, ge=1)
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
    space: str | dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class SchedulerConfig(_Frozen):
    name: Literal["asha", "none"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)


class SearchConfig(_Frozen):
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    metric: str = "best/source/{metric}/avg"
    mode: Literal["max", "min"] = "max"
    scheduler: SchedulerConfig = SchedulerConfig()
    n_startup_trials: int = Field(4, ge=1)
    max_failed_share: float = Field(0.25, ge=0.0, le=1.0)   # above it (or a method with no finished trial) exit 3


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
    method: str
    method_params: dict[str, Any] = Field(default_factory=dict)
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    pool: tuple[str, ...]          # every language of the sweep (the tiny model's tokenizer sees them all)
    train: TrainConfig
    task: TaskConfig
    model: ModelConfig
    unlabelled: UnlabelledConfig = UnlabelledConfig()
    probe: ProbeConfig | None = None
    cpus: float = 1.0              # CPUs reserved per trial (torch uses that many threads)

    def flat_params(self) -> dict[str, str]:
        """The flat param view logged to MLflow: sampled values plus every fixed setting."""
        out = {"method": self.method, "source_set": "+".join(sorted(self.sources)), "task": self.task.name,
               "model": self.model.name_or_path, "targets": "+".join(self.targets)}
        out.update({k: str(v) for k, v in self.method_params.items()})
        out.update({f"train.{k}" if k != "lr" else k: str(v) for k, v in self.train.model_dump().items()})
        out.update({"freeze_embeddings": str(self.model.freeze_embeddings),
                    "freeze_layers": str(self.model.freeze_layers)})
        return out


def trial_spec(cfg: "SweepConfig", sampled: Mapping[str, Any]) -> TrialSpec:
    """Combine the sweep with one trial's sampled values (``method``, ``source_set``, train fields such as
    ``lr``, and method hyper-parameters such as ``slack``)."""
    from lfmlf.languages import decode_set

    values = dict(sampled)
    method = values.pop("method")
    sources = decode_set(values.pop("source_set")) if "source_set" in values else tuple(sorted(cfg.languages.sources))
    train_updates = {k: values.pop(k) for k in list(values) if k in TrainConfig.model_fields}
    train = TrainConfig.model_validate({**cfg.train.model_dump(), **train_updates})
    params = {**cfg.methods[method].params, **values}
    pool = tuple(sorted(set(cfg.languages.sources) | set(cfg.languages.targets)))
    return TrialSpec(sweep=cfg.name, method=method, method_params=params, sources=sources,
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


# --------------------------------------------------------------------------------------------- loading
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, where: str, file: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else str(k), file) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", file) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise ConfigError(f"{file}: key '{where}' uses ${{{name}}}, which is not set. "
                              f"Fix: export {name}=... or write ${{{name}:-default}}.")
        return default

    return _ENV.sub(sub, value)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Parse a YAML mapping; a missing file or bad syntax is a ConfigError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such file. Fix: check the path (it is relative to the working directory "
                          f"{Path.cwd()}).")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}. Fix: correct the YAML syntax there "
                          "(indentation, a missing ':' or an unclosed bracket or quote).") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys, not {type(data).__name__}. Fix: write "
                          "'key: value' lines at the top level (see sweeps/quickstart.yaml).")
    return data


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, str] | list[str], file: str) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to a raw config mapping."""
    items = overrides.items() if isinstance(overrides, Mapping) else [_split_override(o, file) for o in overrides]
    for key, raw in items:
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{file}: override '{key}': '{part}' is not a section. Fix: override "
                                  f"'{'.'.join(parts[:parts.index(part) + 1])}' itself, or check the key path.")
            node = child
        node[parts[-1]] = yaml.safe_load(raw) if isinstance(raw, str) else raw
    return data


def _split_override(text: str, file: str) -> tuple[str, str]:
    if "=" not in text:
        raise ConfigError(f"{file}: override '{text}' has no '='. Fix: write it as key.path=value, "
                          "e.g. --set train.max_steps=20.")
    key, value = text.split("=", 1)
    return key.strip(), value


def _explain(e: ValidationError, model: type[BaseModel], file: str) -> ConfigError:
    lines: list[str] = []
    seen: set[str] = set()
    for err in e.errors():
        loc = _field_path(model, [str(x) for x in err["loc"]])
        key = ".".join(loc)
        if key in seen:
            continue
        seen.add(key)
        if err["type"] == "extra_forbidden":
            valid = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(loc[-1], valid, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"valid keys here: {', '.join(sorted(valid))}."
            lines.append(f"{file}: unknown key '{key}'. Fix: {hint}")
        elif err["type"] == "missing":
            lines.append(f"{file}: key '{key}' is required but missing. Fix: add it.")
        else:
            got = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            fix = "" if "Fix:" in msg else " Fix: correct the value."
            lines.append(f"{file}: key '{key}': {msg} (got {got!r}).{fix}")
    return ConfigError("\n".join(lines))


def _field_path(model: type[BaseModel], loc: list[str]) -> list[str]:
    """``loc`` without pydantic's union-member steps (``space.str``, ``space.dict[str,any]``)."""
    out: list[str] = []
    current: Any = model
    skip_key = False
    for part in loc:
        if skip_key:
            out.append(part)
            skip_key = False
            continue
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            out.append(part)
            current, skip_key = _unwrap(current.model_fields[part].annotation)
        elif current is None or not (isinstance(current, type) and issubclass(current, BaseModel)):
            if part.isdigit():
                out.append(part)  # a list index
            # anything else is a union member name or a type tag: not part of the key
        else:
            out.append(part)
    return out


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """Field names of the nested model that ``loc`` points into ([] when it leaves the models)."""
    current: Any = model
    skip_key = False
    for part in loc:
        if skip_key:  # the key of a dict of models, e.g. task.files.<lang>
            skip_key = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return []
        current, skip_key = _unwrap(current.model_fields[part].annotation)
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def _unwrap(ann: Any) -> tuple[Any, bool]:
    """(model class inside an annotation, whether it sits behind a dict key)."""
    if get_origin(ann) is dict:
        return _unwrap(get_args(ann)[1])[0], True
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann, False
    for arg in get_args(ann):
        found, _ = _unwrap(arg)
        if found is not None:
            return found, False
    return None, False


def load_sweep(path: str | Path, overrides: list[str] | Mapping[str, str] = ()) -> SweepConfig:
    """Read, expand, validate and cross-check a sweep YAML. Raises ConfigError on any problem."""
    file = str(path)
    raw = apply_overrides(read_yaml(path), overrides, file)
    raw = _expand(raw, "", file)
    base = Path(path).resolve().parent
    try:
        cfg = SweepConfig.model_validate({**raw, "source": str(Path(path).resolve())})
    except ValidationError as e:
        raise _explain(e, SweepConfig, file) from None
    cfg = _resolve_paths(cfg, base)
    _cross_check(cfg, file)
    return cfg


def _resolve(base: Path, value: str) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p).resolve())


def _looks_local(name: str, base: Path | None = None) -> bool:
    return name.startswith((".", "/", "~")) or (base is not None and (base / name).is_dir())


def _resolve_paths(cfg: SweepConfig, base: Path) -> SweepConfig:
    task = cfg.task
    for key in ("data_dir", "cache_dir"):
        if getattr(task, key) is not None:
            task = task.model_copy(update={key: _resolve(base, getattr(task, key))})
    unlabelled = cfg.unlabelled.model_copy(
        update={"files": {lang: _resolve(base, f) for lang, f in cfg.unlabelled.files.items()}})
    probe = cfg.probe
    if probe is not None:
        probe = probe.model_copy(update={"data_dir": _resolve(base, probe.data_dir),
                                         "cache_dir": probe.cache_dir and _resolve(base, probe.cache_dir)})
    model = cfg.model
    if model.name_or_path != "tiny" and _looks_local(model.name_or_path, base):
        model = model.model_copy(update={"name_or_path": _resolve(base, model.name_or_path)})
    methods = {m: e.model_copy(update={"space": _resolve(base, e.space)}) if isinstance(e.space, str) else e
               for m, e in cfg.methods.items()}
    return cfg.model_copy(update={"task": task, "model": model, "methods": methods, "unlabelled": unlabelled,
                                  "probe": probe})


def _cross_check(cfg: SweepConfig, file: str) -> None:
    """Checks that span sections: languages, data files, methods, search spaces."""
    from lfmlf.methods import METHODS
    from lfmlf.search import SpaceError, load_space
    from lfmlf.tasks import TASKS

    lc = cfg.languages
    if not lc.sources:
        raise ConfigError(f"{file}: key 'languages.sources': the source-language pool is empty. Fix: list at "
                          "least one source language, e.g. sources: [en].")
    for key, codes in (("languages.sources", lc.sources), ("languages.targets", lc.targets),
                       ("languages.must_include", lc.must_include)):
        for code in codes:
            try:
                check_language(code)
            except LanguageError as e:
                raise ConfigError(f"{file}: key '{key}': {e} Fix: replace '{code}' in {key}.") from None
        duplicated = sorted({c for c in codes if codes.count(c) > 1})
        if duplicated:
            raise ConfigError(f"{file}: key '{key}' lists {duplicated} more than once. Fix: list each language once.")
    overlap = sorted(set(lc.sources) & set(lc.targets))
    if overlap:
        raise ConfigError(f"{file}: target language(s) {overlap} are also in languages.sources, so a source set "
                          "could contain a target and the zero-shot score would not be zero-shot. Fix: remove "
                          "them from one of the two lists.")
    if lc.max_sources is not None and lc.max_sources < lc.min_sources:
        raise ConfigError(f"{file}: languages.max_sources ({lc.max_sources}) < languages.min_sources "
                          f"({lc.min_sources}). Fix: raise max_sources.")
    try:
        cfg.source_sets()
    except LanguageError as e:
        raise ConfigError(f"{file}: key 'languages': {e}. Fix: widen the pool or relax the constraints.") from None

    largest = min(lc.max_sources or len(lc.sources), len(lc.sources))
    micro = cfg.train.batch_size // cfg.train.grad_accum
    if micro < largest:
        raise ConfigError(f"{file}: key 'train.batch_size': a micro-batch of {micro} examples cannot hold one "
                          f"example of each of up to {largest} source languages. Fix: raise train.batch_size "
                          "or lower train.grad_accum / languages.max_sources.")
    if cfg.task.name not in TASKS:
        raise ConfigError(f"{file}: key 'task.name': unknown task '{cfg.task.name}'. "
                          f"Fix: use one of {', '.join(sorted(TASKS))}.")
    task_cls = TASKS[cfg.task.name]
    if cfg.task.format not in task_cls.formats:
        raise ConfigError(f"{file}: key 'task.format': task '{cfg.task.name}' cannot read format "
                          f"'{cfg.task.format}'. Fix: use one of {', '.join(task_cls.formats)}.")
    try:
        task_cls.validate_options(cfg.task.options)
    except ValueError as e:
        raise ConfigError(f"{file}: key 'task.options': {e}") from None
    try:
        TASKS[cfg.task.name].check_data(cfg.task, lc.sources, lc.targets)
    except ValueError as e:
        raise ConfigError(f"{file}: {e}") from None

    if cfg.model.name_or_path != "tiny" and _looks_local(cfg.model.name_or_path):
        if not (Path(cfg.model.name_or_path) / "config.json").is_file():
            raise ConfigError(
                f"{file}: key 'model.name_or_path': {cfg.model.name_or_path} is not a Hugging Face model "
                "directory (no config.json). Fix: build it (e.g. `python ../shared/tools/build_encoder.py "
                f"{cfg.model.name_or_path} --layers 6`) or point the key at a hub id such as xlm-roberta-base.")

    for name, entry in cfg.methods.items():
        if name not in METHODS:
            raise ConfigError(f"{file}: key 'methods.{name}': unknown method. "
                              f"Fix: use one of {', '.join(sorted(METHODS))}.")
        try:
            METHODS[name].validate_params(entry.params)
        except ValueError as e:
            raise ConfigError(f"{file}: key 'methods.{name}.params': {e}") from None
        try:
            load_space(name, entry.space, cfg)
        except SpaceError as e:
            raise ConfigError(f"{file}: key 'methods.{name}.space': {e}") from None
    _check_mlm_head(cfg, file)
    _check_unlabelled(cfg, file)
    _check_probe(cfg, file)


def _configurations(cfg: SweepConfig, name: str) -> list[dict[str, Any]]:
    """A method's fixed parameters, and each categorical choice its search space can make on top."""
    from lfmlf.search import load_space

    fixed = dict(cfg.methods[name].params)
    out = [fixed]
    for pname, spec in load_space(name, cfg.methods[name].space, cfg).items():
        if spec.type == "categorical" and spec.choices:
            out += [{**fixed, pname: c} for c in spec.choices]
    return out


def _method_needs(cfg: SweepConfig) -> dict[str, Any]:
    """method name -> the union of what its configurations need (an MLM head, unlabelled text)."""
    from lfmlf.methods import METHODS

    out = {}
    for name in cfg.methods:
        needs = []
        for params in _configurations(cfg, name):
            try:
                needs.append(METHODS[name](**params).needs())
            except ValueError:
                continue   # a value only the search could pick and the parameters reject: checked elsewhere
        out[name] = needs
    return out


def _check_mlm_head(cfg: SweepConfig, file: str) -> None:
    from lfmlf.methods import without_mlm_head
    from lfmlf.models import has_mlm_head

    wanting = [m for m, needs in _method_needs(cfg).items() if any(n.mlm_head for n in needs)]
    if wanting and has_mlm_head(cfg.model.name_or_path) is False:
        raise ConfigError(f"{file}: key 'methods': {', '.join(wanting)} need(s) a masked-LM head (masked-LM "
                          f"training or forgetting), but model '{cfg.model.name_or_path}' has none. "
                          f"Fix: {without_mlm_head()}")


def _check_unlabelled(cfg: SweepConfig, file: str) -> None:
    for lang, path in cfg.unlabelled.files.items():
        key = f"unlabelled.files.{lang}"
        try:
            check_language(lang)
        except LanguageError as e:
            raise ConfigError(f"{file}: key '{key}': {e} Fix: use an ISO 639-1 code as the key.") from None
        if not Path(path).is_file():
            raise ConfigError(f"{file}: key '{key}': file {path} does not exist. Fix: check the path (relative "
                              "to the sweep file).")


def _check_probe(cfg: SweepConfig, file: str) -> None:
    if cfg.probe is None:
        return
    from lfmlf.data.base import DataError
    from lfmlf.probes import data_files

    for key, codes in (("probe.languages", cfg.probe.languages), ("probe.pivot", [cfg.probe.pivot])):
        for code in codes:
            try:
                check_language(code)
            except LanguageError as e:
                raise ConfigError(f"{file}: key '{key}': {e} Fix: replace '{code}'.") from None
    try:
        data_files(cfg.probe)
    except DataError as e:
        raise ConfigError(f"{file}: key 'probe': {e}") from None
