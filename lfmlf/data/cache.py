"""On-disk cache of tokenised datasets, shared by every trial of a sweep on one machine.

A dataset is cached under a key that hashes everything its encoding depends on: the task, its data
settings and options, the files' paths, sizes and modification times, the language and split, the
tokenizer (its full serialisation) and the maximum length. The first trial on a machine builds it under a
file lock; the others (and a second sweep) read it. A cluster node keeps its own cache on local disk.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, TypeVar

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


def cached(root: Path, namespace: str, key: str, build: Callable[[], T]) -> tuple[T, bool]:
    """(value, hit): read ``root/namespace/key.pkl`` or build it once under a file lock (other processes
    asking for the same key wait and then read it). Writes are atomic (temp file + rename)."""
    from filelock import FileLock

    folder = root / namespace
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.pkl"
    with FileLock(str(path) + ".lock", timeout=3600):
        if path.is_file():
            try:
                with path.open("rb") as f:
                    return pickle.load(f), True
            except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
                warnings.warn(f"lfmlf: the cached dataset {path} is unreadable; rebuilding it")
                path.unlink()
        value = build()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with tmp.open("wb") as f:
            pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return value, False
