"""On-disk cache of tokenised datasets, shared by every trial of a sweep on one machine.

A dataset is cached under a key that hashes everything its encoding depends on: the task, its data
settings and options, the files' paths, sizes and modification times, the language and split, the
tokenizer (its full serialisation) and the maximum length. The first trial on a machine builds it under a
file lock; the others (and a second sweep) read it. A cluster node keeps its own cache on local disk.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from filelock import FileLock

T = TypeVar("T")


def cache_root(configured: str | None) -> Path:
    """``configured``, else ``$LFMLF_CACHE_DIR``, else ``~/.cache/lfmlf``."""
    return Path(configured or os.environ.get("LFMLF_CACHE_DIR") or Path.home() / ".cache" / "lfmlf")


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (anything else is hashed by ``str``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def file_stamp(path: str | Path) -> list[Any]:
    """(path, size, mtime) of a file, so that an edited data file invalidates its cache entries."""
    p = Path(path)
    if not p.exists():
        return [str(p), None]
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Identifies a tokenizer: the stamps of its files when it was read from a local directory (cheap),
    else the hash of its full serialisation (vocabulary, normaliser, templates) without the truncation
    and padding state, which every ``tokenizer(..., truncation=True)`` call changes."""
    folder = Path(getattr(tokenizer, "name_or_path", "") or "")
    files = [folder / f for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "sentencepiece.bpe.model", "vocab.txt")] if folder.is_dir() else []
    stamps = [file_stamp(f) for f in files if f.is_file()]
    if stamps:
        return fingerprint(type(tokenizer).__name__, stamps)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        return fingerprint(state)
    return fingerprint(type(tokenizer).__name__, getattr(tokenizer, "name_or_path", ""), len(tokenizer))


#: Dataclasses the cache may hold, by qualified name: only these are rebuilt when an entry is read, so an
#: entry can name no other class (and run no code). Registered with :func:`cacheable`.
_CACHEABLE: dict[str, type] = {}


def cacheable(cls: type) -> type:
    """Class decorator: allow instances of this dataclass in cached values."""
    _CACHEABLE[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return cls


_SCALARS = (bool, int, float, str)


def _encode(value: Any, arrays: dict[str, Any]) -> Any:
    """A JSON tree for ``value``; tensors and numpy arrays go to ``arrays`` (saved with safetensors)."""
    if value is None or isinstance(value, _SCALARS):
        return value
    if isinstance(value, list):
        if all(type(v) in _SCALARS for v in value):   # token ids, labels: most of a dataset, kept as they are
            return value
        return [_encode(v, arrays) for v in value]
    if isinstance(value, tuple):
        return {"t": [_encode(v, arrays) for v in value]}
    if isinstance(value, dict):
        return {"d": [[_encode(k, arrays), _encode(v, arrays)] for k, v in value.items()]}
    import torch  # lazy: only a trial that caches tensors pays for it (reached for no plain-data value)

    if isinstance(value, (torch.Tensor, np.ndarray)):
        name = str(len(arrays))
        tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
        arrays[name] = tensor.detach().cpu().contiguous().clone()
        return {"a": name, "np": isinstance(value, np.ndarray)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        if kind not in _CACHEABLE:
            raise TypeError(f"{kind} is not registered with lfmlf.data.cache.cacheable")
        return {"c": kind, "f": {f.name: _encode(getattr(value, f.name), arrays) for f in dataclasses.fields(value)}}
    raise TypeError(f"the tokenised-data cache cannot store a {type(value).__name__}")


def _decode(tree: Any, arrays: dict[str, Any]) -> Any:
    if tree is None or isinstance(tree, _SCALARS):
        return tree
    if isinstance(tree, list):
        if all(type(v) in _SCALARS for v in tree):
            return tree
        return [_decode(v, arrays) for v in tree]
    if "t" in tree:
        return tuple(_decode(v, arrays) for v in tree["t"])
    if "d" in tree:
        return {_decode(k, arrays): _decode(v, arrays) for k, v in tree["d"]}
    if "a" in tree:
        tensor = arrays[tree["a"]]
        return tensor.numpy() if tree["np"] else tensor
    cls = _CACHEABLE[tree["c"]]   # KeyError for anything not registered: the entry is rebuilt
    return cls(**{k: _decode(v, arrays) for k, v in tree["f"].items()})


def _write(folder: Path, value: Any) -> None:
    """``folder/tree.json`` + ``folder/arrays.safetensors``, written to a temporary folder and renamed."""
    from safetensors.torch import save_file  # lazy: torch, as above

    arrays: dict[str, Any] = {}
    tree = _encode(value, arrays)
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    (tmp / "tree.json").write_text(json.dumps(tree))
    save_file(arrays, str(tmp / "arrays.safetensors"))
    os.replace(tmp, folder)


def _read(folder: Path) -> Any:
    """The value of an entry; only JSON, tensors and :func:`cacheable` dataclasses, so no code runs."""
    from safetensors.torch import load_file  # lazy: torch, as above

    return _decode(json.loads((folder / "tree.json").read_text()), load_file(str(folder / "arrays.safetensors")))


def cached(root: Path, namespace: str, key: str, build: Callable[[], T]) -> tuple[T, bool]:
    """(value, hit): read the entry ``root/namespace/key/`` or build it once under a file lock (other
    processes asking for the same key wait and then read it). An entry is JSON plus safetensors (no pickle:
    the folder may be shared, and whoever can write there must not be able to run code in every trial);
    it is written to a temporary folder and renamed, so nobody reads half an entry. An unreadable entry is
    rebuilt, with a warning."""
    folder = root / namespace
    folder.mkdir(parents=True, exist_ok=True)
    entry = folder / key
    with FileLock(str(entry) + ".lock", timeout=3600):
        if entry.is_dir():
            try:
                return _read(entry), True
            except Exception as e:
                warnings.warn(f"lfmlf: the cached dataset {entry} is unreadable ({type(e).__name__}: {e}); "
                              "rebuilding it", stacklevel=2)
                shutil.rmtree(entry, ignore_errors=True)
        value = build()
        _write(entry, value)
        return value, False
