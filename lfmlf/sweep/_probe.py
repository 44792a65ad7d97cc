"""The check that runs on every node of a cluster before a sweep starts (one Ray task per node).

This module imports nothing of lfmlf at import time and is shipped to the nodes by value (cloudpickle),
so it runs even on a node where lfmlf is missing or broken, and reports that instead of failing to load.
"""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any


def package_fingerprint(folder: str | Path) -> str:
    """A hash of every ``.py`` file of a package folder (names and contents): two installs with the same
    fingerprint run the same code, whatever their version strings say."""
    root = Path(folder)
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(str(f.relative_to(root)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _see_marker(location: str, text: str) -> str | None:
    """None when the marker file at ``location`` holds ``text``, else what went wrong."""
    try:
        if "://" in location and not location.startswith("file://"):
            from pyarrow import fs

            filesystem, path = fs.FileSystem.from_uri(location)
            with filesystem.open_input_stream(path) as f:
                found = f.read().decode("utf-8")
        else:
            found = Path(location).read_text(encoding="utf-8")
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None if found == text else "the file holds something else (another sweep's check?)"


def check_node(paths: list[str], marker: tuple[str, str] | None, import_code: bool) -> dict[str, Any]:
    """What this node sees: the data and model paths it lacks, whether it reads the storage marker the
    driver wrote, and the lfmlf it imports (its folder and code fingerprint, or the import error)."""
    import ray

    out: dict[str, Any] = {"node_id": ray.get_runtime_context().get_node_id(), "hostname": socket.gethostname(),
                           "missing": [p for p in paths if not os.path.exists(p)], "storage": None,
                           "lfmlf": None, "lfmlf_error": None}
    if marker is not None:
        out["storage"] = _see_marker(*marker)
    try:
        import importlib

        pkg = importlib.import_module("lfmlf")
        if import_code:   # the modules a trial loads: torch, transformers, Ray Tune, the loop
            importlib.import_module("lfmlf.loop")
            importlib.import_module("lfmlf.sweep.trainable")
        if pkg.__file__ is None:   # a namespace package: some folder named lfmlf without its __init__.py
            raise ImportError(f"'lfmlf' imports as a namespace package from {list(pkg.__path__)}")
        folder = Path(pkg.__file__).parent
        out["lfmlf"] = {"folder": str(folder), "fingerprint": package_fingerprint(folder),
                        "version": getattr(pkg, "__version__", "?")}
    except Exception as e:
        out["lfmlf_error"] = f"{type(e).__name__}: {e}"
    return out
