"""Where a sweep's Ray results live: a local or shared folder (NFS, Lustre), or a URI that pyarrow's
filesystems understand (``s3://``, ``gs://``, ``abfs://``, ``hdfs://``).

The location string goes to Ray's ``RunConfig(storage_path=...)`` unchanged, so every node writes its
trials' checkpoints there itself. This module only reads, writes and probes it from the driver (and from
the cluster check's tasks, which import nothing of lfmlf). S3-compatible endpoints and credentials come
from the usual variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``), which pyarrow reads itself.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lfmlf.errors import UserError

#: URI schemes pyarrow.fs.FileSystem.from_uri resolves (``file`` is a local path).
SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")


class StorageError(UserError, RuntimeError):
    """The sweep's storage cannot be used; the message names the location and the fix."""


def is_uri(location: str) -> bool:
    """Whether ``location`` is a remote URI (``s3://...``), as opposed to a path on a mounted filesystem."""
    return "://" in location and not location.startswith("file://")


def redact(uri: str) -> str:
    """``uri`` without a ``user:password@`` part (safe to print and to log)."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def check_scheme(location: str) -> str | None:
    """Why ``location`` cannot be a storage location (None when it can); checked at config load."""
    if not is_uri(location):
        return None
    scheme = location.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        return (f"'{location}' has the scheme '{scheme}', which pyarrow cannot open. Fix: use a shared folder "
                f"path or a URI with one of: {', '.join(s + '://' for s in SCHEMES)}.")
    if not location.split("://", 1)[1].strip("/"):
        return f"'{location}' names no bucket or container. Fix: write it as {scheme}://BUCKET/FOLDER."
    return None


class Storage:
    """A storage location and the few file operations the driver needs on it."""

    def __init__(self, location: str) -> None:
        self.location = location.rstrip("/") if is_uri(location) else str(Path(location).resolve())
        self._fs: Any = None

    @property
    def remote(self) -> bool:
        return is_uri(self.location)

    def uri(self, *parts: str) -> str:
        """The location of ``parts`` below this one (a URI or an absolute path)."""
        return "/".join([self.location, *parts]) if parts else self.location

    def parent(self) -> str:
        """The location one level up (``s3://b/runs/x`` -> ``s3://b/runs``)."""
        return self.location.rsplit("/", 1)[0] if self.remote else str(Path(self.location).parent)

    def _filesystem(self) -> tuple[Any, str]:
        from pyarrow import fs  # lazy: only a URI location needs pyarrow

        if self._fs is None:
            if self.remote:
                try:
                    self._fs, self._root = fs.FileSystem.from_uri(self.location)
                except (OSError, ValueError) as e:
                    raise StorageError(f"storage {redact(self.location)} cannot be opened: {e}. Fix: check the "
                                       "URI, and for S3-compatible stores AWS_ENDPOINT_URL and the credentials "
                                       "in the environment.") from None
            else:
                self._fs, self._root = fs.LocalFileSystem(), self.location
        return self._fs, self._root

    def _path(self, rel: str) -> str:
        fs_, root = self._filesystem()
        return f"{root}/{rel}" if rel else root

    def exists(self, rel: str = "") -> bool:
        from pyarrow import fs  # lazy: only a URI location needs pyarrow

        fs_, _ = self._filesystem()
        try:
            return fs_.get_file_info(self._path(rel)).type != fs.FileType.NotFound
        except OSError as e:
            raise self._error("read", e) from None

    def write_text(self, rel: str, text: str) -> None:
        fs_, _ = self._filesystem()
        path = self._path(rel)
        try:
            if not self.remote:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            with fs_.open_output_stream(path) as f:
                f.write(text.encode("utf-8"))
        except OSError as e:
            raise self._error("write", e) from None

    def read_text(self, rel: str) -> str:
        fs_, _ = self._filesystem()
        try:
            with fs_.open_input_stream(self._path(rel)) as f:
                return f.read().decode("utf-8")
        except OSError as e:
            raise self._error("read", e) from None

    def delete(self, rel: str) -> None:
        fs_, _ = self._filesystem()
        try:
            fs_.delete_file(self._path(rel))
        except (OSError, FileNotFoundError):
            pass

    def check_writable(self) -> None:
        """Write, read back and delete a small file here, so a storage that is unreachable, missing or
        read-only fails now, with a fix, and not at the first trial's first checkpoint. A local location
        is checked without creating it: its nearest existing parent must be a writable folder."""
        if not self.remote:
            probe = Path(self.location)
            while not probe.exists():
                probe = probe.parent
            if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
                raise StorageError(f"output folder {self.location} cannot be created: {probe} is not a writable "
                                   "folder. Fix: set output_dir (or --output-dir) to a folder you can write.")
            return
        rel = f".lfmlf-write-check-{uuid.uuid4().hex[:12]}"
        self.write_text(rel, "lfmlf")
        if self.read_text(rel) != "lfmlf":
            raise StorageError(f"storage {redact(self.location)} did not return what was written to it. Fix: "
                               "check the storage service.")
        self.delete(rel)

    def _error(self, what: str, e: Exception) -> StorageError:
        return StorageError(f"cannot {what} storage {redact(self.location)}: {e}. Fix: check that the location "
                            "exists and is writable from this machine (for S3-compatible stores: the bucket, "
                            "AWS_ENDPOINT_URL and the credentials in the environment).")
