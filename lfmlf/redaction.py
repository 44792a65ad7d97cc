"""Nothing secret in what lfmlf writes or logs: the resolved sweep (``sweep.yaml``, ``trial_config.yaml``,
``best`` files) shows the value of a secret-looking environment variable as ``${NAME}``, and every URI
without its ``user:password@`` part. Called on every configuration before it is written or logged."""
from __future__ import annotations

import os
import re
from typing import Any

from lfmlf.storage import redact

_SECRET_NAME = re.compile(r"TOKEN|KEY|PASSWORD|PASSWD|SECRET|CREDENTIAL", re.IGNORECASE)
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")


def secret_values() -> dict[str, str]:
    """value -> ``${NAME}`` for every environment variable whose name suggests a secret (long values only,
    so that a short value such as ``1`` is never replaced by accident)."""
    return {v: f"${{{k}}}" for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}


def redact_text(text: str, secrets: dict[str, str] | None = None) -> str:
    """``text`` with secret values replaced by their ``${NAME}`` and credentials stripped from URIs."""
    for value, ref in sorted((secrets if secrets is not None else secret_values()).items(), key=lambda x: -len(x[0])):
        text = text.replace(value, ref)
    return _URI.sub(lambda m: redact(m.group(0)), text)


def redact_data(data: Any, secrets: dict[str, str] | None = None) -> Any:
    """A copy of a JSON-like structure with every string passed through :func:`redact_text`."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(data, dict):
        return {k: redact_data(v, secrets) for k, v in data.items()}
    if isinstance(data, list):
        return [redact_data(v, secrets) for v in data]
    if isinstance(data, str):
        return redact_text(data, secrets)
    return data
