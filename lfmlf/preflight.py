"""What can fail before the first trial, outside the sweep file itself, checked before anything is written:
the tracking store (:func:`lfmlf.tracking.check_store`) and whether the model can be loaded at all when the
machine is offline. Called by the sweep and rerun drivers before they start Ray or write a run folder, so a
failed start costs seconds and leaves nothing that blocks the same command from running again."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

from lfmlf.errors import UserError

NETWORK_TIMEOUT_S = 3.0


class ModelUnavailable(UserError):
    """The model is neither a local directory nor in the local Hugging Face cache, and the hub is out of
    reach."""


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def hub_offline_reason(timeout_s: float = NETWORK_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached (an offline switch, or no connection within
    ``timeout_s``), or None when it can."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if _truthy(name):
            return f"{name}={os.environ[name]}"
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        return f"no connection to {host}:{port} ({e.strerror or type(e).__name__})"
    return None


def check_model(name_or_path: str, revision: str | None = None) -> None:
    """Raise :class:`ModelUnavailable` when a hub model id is offline and not cached. ``tiny`` (built in)
    and local directories are always available; an online hub id is left to the loader."""
    if name_or_path == "tiny" or os.path.isdir(name_or_path):
        return
    reason = hub_offline_reason()
    if reason is None:
        return
    # lazy: huggingface_hub (with its HTTP stack) only for a hub model
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name_or_path, "config.json", revision=revision or "main")
    except HFValidationError:
        raise ModelUnavailable(f"model.name_or_path '{name_or_path}' is neither a local directory nor a hub id. "
                               "Fix: give the path of a Hugging Face model directory, or a hub id such as "
                               "intfloat/multilingual-e5-small.") from None
    if not isinstance(cached, str):
        raise ModelUnavailable(
            f"model '{name_or_path}'{f' (revision {revision})' if revision else ''} is not in the local Hugging "
            f"Face cache ({constants.HF_HUB_CACHE}) and the hub cannot be reached: {reason}. Fix: download it "
            f"where there is a network (`hf download {name_or_path}` with the same HF_HOME), or set "
            "model.name_or_path to a local model directory.")
