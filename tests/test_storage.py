"""lfmlf.storage and output_dir: a shared folder or a pyarrow URI, passed on unchanged; checked writable
before anything is written; `--check` with an s3:// output creates no local folder; an unreachable or
unwritable location is a clear error; credentials never appear in what is printed."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml

from lfmlf.cli import main
from lfmlf.config import ConfigError, load_sweep
from lfmlf.storage import Storage, StorageError, check_scheme, is_uri, redact

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "sweeps" / "quickstart.yaml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A real S3-compatible server (moto) on 127.0.0.1 with a bucket 'lfmlf'; stopped at the end."""
    pytest.importorskip("flask", reason="moto[server] is not installed")
    import boto3
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="lfmlf")
    yield endpoint
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_uri_and_path_are_told_apart_and_credentials_are_redacted():
    assert is_uri("s3://b/x") and is_uri("gs://b/x") and not is_uri("/nfs/runs") and not is_uri("runs/x")
    assert redact("http://user:secret@host:5000/x") == "http://host:5000/x"
    assert redact("s3://bucket/x") == "s3://bucket/x"
    assert check_scheme("/nfs/x") is None and check_scheme("s3://b/x") is None
    assert "ftp" in check_scheme("ftp://b/x") and "Fix:" in check_scheme("ftp://b/x")
    assert "bucket" in check_scheme("s3://") and "Fix:" in check_scheme("s3://")


def test_a_uri_output_dir_is_kept_as_is_and_the_driver_folder_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_sweep(QUICKSTART, ["output_dir=s3://bucket/sweeps/qs/"])
    assert cfg.storage_location == "s3://bucket/sweeps/qs"
    assert cfg.run_dir == tmp_path / "runs" / "quickstart"
    local = load_sweep(QUICKSTART, [f"output_dir={tmp_path / 'shared'}"])
    assert local.storage_location == str(tmp_path / "shared") == str(local.run_dir)


def test_an_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="output_dir.*ftp.*Fix:"):
        load_sweep(QUICKSTART, ["output_dir=ftp://host/x"])


def test_local_storage_round_trip_and_an_unwritable_folder(tmp_path):
    st = Storage(str(tmp_path / "a" / "b"))
    st.check_writable()
    assert not (tmp_path / "a").exists()          # checking creates nothing
    st.write_text("x/y.txt", "hello")
    assert st.exists("x/y.txt") and st.read_text("x/y.txt") == "hello"
    st.delete("x/y.txt")
    assert not st.exists("x/y.txt")
    assert Storage("s3://b/runs/x").parent() == "s3://b/runs" and st.parent() == str(tmp_path / "a")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="not a writable folder.*Fix:"):
        Storage(str(blocker / "sub")).check_writable()


def test_s3_storage_round_trip_through_aws_endpoint_url(s3):
    st = Storage("s3://lfmlf/sweeps/x")
    st.check_writable()
    st.write_text("ray/marker", "m")
    assert st.exists("ray") and st.read_text("ray/marker") == "m"
    assert not Storage("s3://lfmlf/other").exists("ray")


def test_check_with_s3_output_creates_no_local_folder(s3, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(QUICKSTART), "--check", "--output-dir", "s3://lfmlf/sweeps/qs"]) == 0
    assert "s3://lfmlf/sweeps/qs" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []
    assert not any(Path(".").glob("s3*"))


def test_a_missing_bucket_is_a_clear_error(s3, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(QUICKSTART), "--check", "--output-dir", "s3://no-such-bucket/x"]) == 2
    err = capsys.readouterr().err
    assert "no-such-bucket" in err and "Fix:" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_endpoint_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")   # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    assert main(["sweep", str(QUICKSTART), "--check", "--output-dir", "s3://bucket/x"]) == 2
    err = capsys.readouterr().err
    assert "s3://bucket/x" in err and "AWS_ENDPOINT_URL" in err and "Traceback" not in err


def test_best_files_point_reruns_at_the_sweeps_storage(tmp_path):
    from lfmlf.commands import configuration
    from lfmlf.config import trial_spec

    cfg = load_sweep(QUICKSTART, ["output_dir=s3://lfmlf/sweeps/qs"])
    spec = trial_spec(cfg, {"method": "mlf", "lr": 1e-3, "source_set": "de+en"})
    written = configuration(cfg, spec, {"rule": "r"})
    assert written["output_dir"] == "s3://lfmlf/sweeps/qs"
    path = tmp_path / "mlf.yaml"
    path.write_text(yaml.safe_dump(written))
    again = load_sweep(path)
    assert Storage(again.storage_location).parent() == "s3://lfmlf/sweeps"   # rerun-<name> goes beside it
