"""No secrets in what lfmlf writes: a secret-looking variable's value shows as ${NAME}, URIs lose their
user:password part, in the logged sweep, the trial configuration and best files."""
from __future__ import annotations

from lfmlf.redaction import redact_data, redact_text


def test_secret_values_and_uri_credentials_are_redacted(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_abcdefgh123")
    monkeypatch.setenv("MY_API_KEY", "k-987654321")
    monkeypatch.setenv("LFMLF_DATA_DIR", "/data/shared")   # not secret-looking: kept
    data = {"model": {"name_or_path": "org/model?token=hf_abcdefgh123"},
            "tracking": {"uri": "https://alice:s3cr3t@mlflow.lab:5000"},
            "task": {"data_dir": "/data/shared/uner", "files": ["a", "k-987654321"]}, "n": 3}
    out = redact_data(data)
    assert out["model"]["name_or_path"] == "org/model?token=${HF_TOKEN}"
    assert out["tracking"]["uri"] == "https://mlflow.lab:5000"
    assert out["task"] == {"data_dir": "/data/shared/uner", "files": ["a", "${MY_API_KEY}"]}
    assert out["n"] == 3 and data["tracking"]["uri"].startswith("https://alice")   # the input is untouched
    assert redact_text("s3://bucket/x and sqlite:////tmp/m.db") == "s3://bucket/x and sqlite:////tmp/m.db"
