"""Sweep YAML -> a validated, frozen :class:`SweepConfig`.

Every problem is raised as one :class:`ConfigError` whose message names the file, the key and the fix,
before Ray starts. Relative paths inside a YAML file (data, model directory, search-space files) are
resolved against that file's folder; ``${VAR}`` and ``${VAR:-default}`` expand environment variables, so
no machine's path needs to be baked into a sweep.
"""
from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from lfmlf.config.schema import ConfigError, SweepConfig
from lfmlf.languages import LanguageError, normalize_language

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


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, str] | Sequence[str], file: str) -> dict[str, Any]:
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


def load_sweep(path: str | Path, overrides: Sequence[str] | Mapping[str, str] = ()) -> SweepConfig:
    """Read, expand and validate a sweep YAML, resolve its relative paths, and check what spans sections
    and needs no registry: languages (normalised, :func:`_normalise_languages`), batch size, model folder,
    unlabelled text files.
    Raises ConfigError on any problem. The checks against the registries (task, methods, search spaces,
    data) are :func:`lfmlf.checks.check_sweep`; a command loads with :func:`lfmlf.checks.load_checked`."""
    file = str(path)
    raw = apply_overrides(read_yaml(path), overrides, file)
    raw = _expand(raw, "", file)
    base = Path(path).resolve().parent
    try:
        cfg = SweepConfig.model_validate({**raw, "source": str(Path(path).resolve())})
    except ValidationError as e:
        raise _explain(e, SweepConfig, file) from None
    cfg = _resolve_paths(cfg, base)
    cfg = _normalise_languages(cfg, file)
    _check_languages(cfg, file)
    _check_batch(cfg, file)
    _check_objectives(cfg, file)
    _check_model_dir(cfg, file)
    _check_unlabelled(cfg, file)
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
        probe = probe.model_copy(update={"data_dir": probe.data_dir and _resolve(base, probe.data_dir),
                                         "cache_dir": probe.cache_dir and _resolve(base, probe.cache_dir)})
    model = cfg.model
    if model.name_or_path != "tiny" and _looks_local(model.name_or_path, base):
        model = model.model_copy(update={"name_or_path": _resolve(base, model.name_or_path)})
    methods = {m: e.model_copy(update={"space": _resolve(base, e.space)}) if isinstance(e.space, str) else e
               for m, e in cfg.methods.items()}
    return cfg.model_copy(update={"task": task, "model": model, "methods": methods, "unlabelled": unlabelled,
                                  "probe": probe})


class LanguageCodeNormalised(UserWarning):
    """A sweep file wrote a language code in a longer form than its shortest one (``yor`` for ``yo``)."""


_NORMALISED_REGISTRY: dict[Any, Any] = {}


def _line_naming(file: str, code: str) -> int:
    """The first line (1-based) of the sweep file that names ``code`` as a word, else 0."""
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0
    word = re.compile(rf"(?<![\w-]){re.escape(code)}(?![\w-])")
    return next((i for i, line in enumerate(lines, 1) if word.search(line.split("#")[0])), 0)


def _normalise_languages(cfg: SweepConfig, file: str) -> SweepConfig:
    """Every language code of the sweep file in its shortest form (:func:`lfmlf.languages.normalize_language`):
    ``languages.*``, the keys of ``task.files``, ``task.options.treebanks`` and ``unlabelled.files``, and the
    probe's languages, pivot and file keys. Called once per load, before the language checks; each code that
    changes is announced once, as a :class:`LanguageCodeNormalised` warning naming the keys it appears in.
    The files keep their own names: a ``task.files`` entry keyed ``yor`` is still the file it names."""
    seen: dict[str, tuple[str, list[str]]] = {}

    def norm(key: str, code: str) -> str:
        try:
            short = normalize_language(code)
        except LanguageError as e:
            raise ConfigError(f"{file}: key '{key}': {e} Fix: replace '{code}' in {key}.") from None
        if short != code:
            seen.setdefault(code, (short, []))[1].append(key)
        return short

    def norm_keys(key: str, mapping: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for code, value in mapping.items():
            short = norm(f"{key}.{code}", code)
            if short in out:
                raise ConfigError(f"{file}: key '{key}' names the language '{short}' twice (as "
                                  f"{sorted(c for c in mapping if norm(key, c) == short)}). Fix: keep one entry.")
            out[short] = value
        return out

    lc = cfg.languages
    languages = lc.model_copy(update={name: [norm(f"languages.{name}", c) for c in getattr(lc, name)]
                                      for name in ("sources", "targets", "must_include")})
    task = cfg.task
    options = dict(task.options)
    if isinstance(options.get("treebanks"), Mapping):
        options["treebanks"] = norm_keys("task.options.treebanks", options["treebanks"])
    task = task.model_copy(update={"files": norm_keys("task.files", task.files), "options": options})
    unlabelled = cfg.unlabelled.model_copy(update={"files": norm_keys("unlabelled.files", cfg.unlabelled.files)})
    probe = cfg.probe
    if probe is not None:
        probe = probe.model_copy(update={"languages": [norm("probe.languages", c) for c in probe.languages],
                                         "pivot": norm("probe.pivot", probe.pivot),
                                         "files": norm_keys("probe.files", probe.files)})
    for code, (short, keys) in seen.items():
        where = ", ".join(dict.fromkeys(keys))
        # reported at the sweep file's line that names the code (0, no line shown, when --set wrote it), once
        # per process and code like any warning
        warnings.warn_explicit(f"lfmlf: language code normalised: {code} -> {short} (its shortest form, used in "
                               f"results, source sets and MLflow params), in {where}", LanguageCodeNormalised,
                               file, _line_naming(file, code), registry=_NORMALISED_REGISTRY)
    return cfg.model_copy(update={"languages": languages, "task": task, "unlabelled": unlabelled, "probe": probe})


def _check_languages(cfg: SweepConfig, file: str) -> None:
    lc = cfg.languages
    if not lc.sources:
        raise ConfigError(f"{file}: key 'languages.sources': the source-language pool is empty. Fix: list at "
                          "least one source language, e.g. sources: [en].")
    for key, codes in (("languages.sources", lc.sources), ("languages.targets", lc.targets),
                       ("languages.must_include", lc.must_include)):
        duplicated = sorted({c for c in codes if codes.count(c) > 1})
        if duplicated:
            raise ConfigError(f"{file}: key '{key}' lists {duplicated} more than once (codes are compared in their "
                              "shortest form: yor is yo). Fix: list each language once.")
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


def _check_batch(cfg: SweepConfig, file: str) -> None:
    lc = cfg.languages
    largest = min(lc.max_sources or len(lc.sources), len(lc.sources))
    micro = cfg.train.batch_size // cfg.train.grad_accum
    if micro < largest:
        raise ConfigError(f"{file}: key 'train.batch_size': a micro-batch of {micro} examples cannot hold one "
                          f"example of each of up to {largest} source languages. Fix: raise train.batch_size "
                          "or lower train.grad_accum / languages.max_sources.")


def _check_objectives(cfg: SweepConfig, file: str) -> None:
    """A forgetting objective needs the forgetting probe, which is what reports ``forgetting/...``."""
    for i, objective in enumerate(cfg.search.objectives or ()):
        if "forgetting/" in objective.metric and cfg.probe is None:
            raise ConfigError(f"{file}: key 'search.objectives.{i}.metric': '{objective.metric}' is reported by the "
                              "forgetting probe, and the sweep has no 'probe:' section. Fix: add one (README, "
                              "'Forgetting probe'), or drop that objective.")


def _check_model_dir(cfg: SweepConfig, file: str) -> None:
    name = cfg.model.name_or_path
    if name != "tiny" and _looks_local(name) and not (Path(name) / "config.json").is_file():
        raise ConfigError(
            f"{file}: key 'model.name_or_path': {name} is not a Hugging Face model directory (no config.json). "
            f"Fix: build it (e.g. `python ../shared/tools/build_encoder.py {name} --layers 6`) or point the "
            "key at a hub id such as xlm-roberta-base.")


def _check_unlabelled(cfg: SweepConfig, file: str) -> None:
    for lang, path in cfg.unlabelled.files.items():
        key = f"unlabelled.files.{lang}"
        if not Path(path).is_file():
            raise ConfigError(f"{file}: key '{key}': file {path} does not exist. Fix: check the path (relative "
                              "to the sweep file).")


