"""A real multi-node Ray cluster on one machine, sealed in a loopback-only network namespace.

Tests that must see how ``lfmlf sweep --address ...`` behaves on a *cluster* (a worker node that cannot
read the head's local files, a raylet that dies mid-trial, a driver that is killed and resumed) use
:class:`NamespaceCluster`::

    reason = namespaces_available()
    if reason:
        pytest.skip(reason)
    with NamespaceCluster(tmp_path, private_paths=[tmp_path / "run"]) as cluster:
        endpoint = cluster.start_s3()          # before the nodes, so that they inherit the S3 variables
        tracking = cluster.start_mlflow_server(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "artifacts"))
        cluster.start_head()
        cluster.start_worker()
        cluster.wait_for_alive_nodes(2)
        proc = cluster.popen(["lfmlf", "sweep", "--address", cluster.address, ...])
        ...
        cluster.kill_worker_raylet()           # SIGKILL, like a machine that vanishes
        cluster.wait_for_alive_nodes(1)
        cluster.start_worker()                 # a fresh worker node ("the machine came back")

How it is built
---------------
* **Network.** One *holder* process is started with ``unshare --net``: a small Python watchdog that brings
  ``lo`` up (an ioctl, so ``iproute2`` is not needed), prints its namespace and then sleeps.  Every command
  of the harness runs inside that namespace through ``nsenter --net=/proc/<holder>/ns/net``.  The namespace
  has no interface but ``lo``, so even a server that binds ``0.0.0.0`` is reachable from this namespace only,
  never from the machine's network (with ``--node-ip-address=127.0.0.1`` Ray 2.60 binds its servers to
  127.0.0.1 / ``::ffff:127.0.0.1`` anyway).  Fixed ports (6379 ...)
  are therefore safe: nothing else lives in the namespace.  :meth:`NamespaceCluster.listening` lists the
  listening sockets in it and :meth:`NamespaceCluster.interfaces` its interfaces, for a test to assert on.
* **Worker node = another machine.** The worker's ``ray start`` runs in a mount namespace of its own
  (``unshare --mount``, mounts private) in which a fresh tmpfs is mounted over each of ``private_paths``
  (for example the head's run folder), and in a UTS namespace of its own with another host name.  The repo,
  site-packages, ``/tmp`` (Ray's sockets and temp dirs) and every other path stay shared.  Every process
  the worker's raylet starts (Ray workers, Tune trials) inherits these namespaces and the environment of
  ``ray start``.
* **Processes.** Everything is started with ``start_new_session=True``.  Cleanup (on ``__exit__``, on
  :meth:`close` and through ``atexit``) SIGKILLs the process groups it started and then every process that
  is still inside the private network namespace; nothing else on the machine is touched (no ``ray stop``,
  no ``pkill``).  The holder also does that sweep by itself and exits when the process that created it dies
  (even by SIGKILL) or when ``max_lifetime_s`` has passed, so a crashed test run leaves nothing behind for
  long.  Every wait has a timeout.
* **Ray temp dirs** live under a short ``/tmp/lfc-*`` folder (AF_UNIX socket paths must stay < 107 bytes),
  one per node, and are removed on cleanup.

Token authentication (Ray 2.60)
-------------------------------
Ray 2.60 reads ``RAY_AUTH_MODE`` (``token`` / ``disabled``) and the token from ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``.  ``ray start --head`` enables token auth by itself only
when the mode is unset *and* a token already exists; ``ray start --address`` (a worker) and
``ray.init(address=...)`` with an explicit address never enable it by themselves, they need
``RAY_AUTH_MODE=token``.  A *local* ``ray.init()`` (no address) enables token auth by default and writes
``~/.ray/auth_token`` if it is missing, which then silently switches later ``ray start --head`` runs of that
user to token auth.  The harness therefore generates a token per cluster and puts ``RAY_AUTH_MODE=token``
and ``RAY_AUTH_TOKEN`` into :attr:`NamespaceCluster.env`, which it passes to the head, the worker and every
command it launches; nothing is written under ``~/.ray``.  Callers that launch drivers themselves must pass
``{**os.environ, **cluster.env}``.

S3 (moto)
---------
:meth:`NamespaceCluster.start_s3` runs moto's standalone server (needs ``moto[server]``: flask, flask-cors)
through a tiny WSGI wrapper.  moto 5.2.x (checked up to 5.2.5; 5.1.x is fine) answers CompleteMultipartUpload
with a ``<CompleteMultipartUploadResponse>`` root element instead of S3's ``<CompleteMultipartUploadResult>``.
pyarrow (which Ray Tune uses for ``storage_path="s3://..."``) treats any other root element as "an error
embedded in a 200 OK response", retries 10 times and fails the write with ``OSError ... INTERNAL_FAILURE
during CompleteMultipartUpload`` -- though only when it gets to parse the whole body at once, which
happened in one run here and could not be reproduced in ~100 later writes.  The wrapper renames that root
element to what real S3 sends; nothing else is changed (``start_s3(fix_moto=False)`` runs plain moto).
pyarrow 25's S3 filesystem honours ``AWS_ENDPOINT_URL`` (and ``AWS_ENDPOINT_URL_S3``; an ``http://`` URL
selects plain HTTP), ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``; against moto the region variables
are optional (see :meth:`NamespaceCluster.s3_env` for what the harness sets).

Environment of Ray workers
--------------------------
A Ray worker process (a task, a Tune trial) gets the environment of the ``ray start`` of *its node* plus
the job's ``runtime_env["env_vars"]``; the driver's own environment reaches no worker, not even on the head.
So :attr:`NamespaceCluster.env` must be complete before :meth:`~NamespaceCluster.start_head` /
:meth:`~NamespaceCluster.start_worker` (call :meth:`~NamespaceCluster.start_s3` first, pass other variables
as ``env=``).  A killed raylet is reported dead by the GCS after ~15 s (Ray's health check: 5 failures x
3 s); ``env={"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}`` shortens it.
"""
from __future__ import annotations

import atexit
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["Listener", "NamespaceCluster", "NodeInfo", "Proc", "namespaces_available"]

_BIN = Path(sys.executable).parent
_JSON_MARK = "@@harness-json@@"

# The holder: lives in the new network namespace, brings `lo` up, prints "ready <netns> <interfaces>", then
# waits until its creator dies, it receives SIGTERM, or its lifetime is over; then it SIGKILLs every other
# process of its network namespace (and only those), removes the Ray temp folder and exits.
_HOLDER = r"""
import fcntl, os, shutil, signal, socket, struct, sys, time
creator, deadline, ray_tmp = int(sys.argv[1]), time.monotonic() + float(sys.argv[2]), sys.argv[3]
me = os.readlink("/proc/self/ns/net")
if me == os.readlink(f"/proc/{creator}/ns/net"):
    print("error: not in a new network namespace", flush=True)
    sys.exit(3)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
flags = struct.unpack("16sh", fcntl.ioctl(sock, 0x8913, struct.pack("16sh22x", b"lo", 0))[:18])[1]
fcntl.ioctl(sock, 0x8914, struct.pack("16sh22x", b"lo", flags | 1))  # SIOCSIFFLAGS |= IFF_UP
sock.close()

def members():
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") == me:
                    out.append(int(entry))
            except OSError:
                pass
    return out

def sweep(*_):
    for _ in range(100):
        pids = members()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.1)
    if ray_tmp.startswith("/tmp/lfc-"):
        shutil.rmtree(ray_tmp, ignore_errors=True)
    os._exit(0)

signal.signal(signal.SIGTERM, sweep)
signal.signal(signal.SIGINT, sweep)
print("ready", me, ",".join(name for _, name in socket.if_nameindex()), flush=True)
while os.getppid() == creator and time.monotonic() < deadline:
    time.sleep(0.5)
sweep()
"""

# Runs as the first program of the worker's new mount + UTS namespace: tmpfs over the private paths, a host
# name of its own, then exec of the real command (same PID).
_WORKER_LAUNCHER = r"""
import json, os, socket, subprocess, sys
spec = json.loads(sys.argv[1])
for path in spec["private"]:
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=" + spec["size"], "lfmlf-private", path],
                   check=True)
if spec["hostname"]:
    socket.sethostname(spec["hostname"])
os.execvp(spec["argv"][0], spec["argv"])
"""

# moto's standalone server with one fix (see the module docstring).
_MOTO_SERVER = r"""
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

inner = DomainDispatcherApplication(create_backend_app)

def app(environ, start_response):
    if environ.get("REQUEST_METHOD") != "POST" or "uploadId=" not in environ.get("QUERY_STRING", ""):
        return inner(environ, start_response)
    seen = {}
    def capture(status, headers, exc_info=None):
        seen["args"] = (status, headers, exc_info)
        return lambda data: None
    result = inner(environ, capture)
    try:
        body = b"".join(result)
    finally:
        getattr(result, "close", lambda: None)()
    body = body.replace(b"<CompleteMultipartUploadResponse", b"<CompleteMultipartUploadResult")
    body = body.replace(b"</CompleteMultipartUploadResponse>", b"</CompleteMultipartUploadResult>")
    status, headers, exc_info = seen["args"]
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(status, headers, exc_info)
    return [body]

run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=True)
"""

# Polls a URL from inside the namespace until it answers (any HTTP status, or 200 with --ok) or time is up.
_WAIT_HTTP = r"""
import sys, time, urllib.error, urllib.request
url, deadline, need_ok = sys.argv[1], time.monotonic() + float(sys.argv[2]), sys.argv[3] == "1"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200 or not need_ok:
                sys.exit(0)
    except urllib.error.HTTPError as err:
        if not need_ok:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.3)
sys.exit(1)
"""

# Lists listening TCP sockets and bound, unconnected UDP sockets of the namespace it runs in (from /proc, so
# neither `ss` nor psutil is needed), with the PID and name of a process that holds each.
_LISTENING = r"""
import json, os, socket
me = os.readlink("/proc/self/ns/net")
owner = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        if os.readlink(f"/proc/{pid}/ns/net") != me:
            continue
        name = open(f"/proc/{pid}/comm").read().strip()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                owner.setdefault(link[8:-1], (int(pid), name))
    except OSError:
        pass

def ip(hexaddr):
    raw = bytes.fromhex(hexaddr)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)

out = []
for table, state in (("tcp", "0A"), ("tcp6", "0A"), ("udp", "07"), ("udp6", "07")):
    with open(f"/proc/net/{table}") as fh:
        for line in fh.readlines()[1:]:
            cols = line.split()
            local, remote, st, inode = cols[1], cols[2], cols[3], cols[9]
            if st != state or (table.startswith("udp") and int(remote.split(":")[1], 16)):
                continue
            addr, port = local.split(":")
            pid, name = owner.get(inode, (None, ""))
            out.append({"proto": table[:3], "ip": ip(addr), "port": int(port, 16), "pid": pid,
                        "process": name})
print("@@harness-json@@" + json.dumps(out))
"""

# Connects a driver, polls ray.nodes() until the number of alive nodes is the wanted one (or just once).
_NODES = r"""
import json, sys, time
import ray
address, want, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
ray.init(address=address, logging_level="ERROR", log_to_driver=False)
while True:
    nodes = ray.nodes()
    alive = sum(1 for n in nodes if n["Alive"])
    if want < 0 or alive == want or time.monotonic() > deadline:
        break
    time.sleep(0.5)
out = [{"node_id": n["NodeID"], "alive": bool(n["Alive"]), "hostname": n.get("NodeManagerHostname", ""),
        "address": n.get("NodeManagerAddress", ""), "is_head": bool(n.get("Resources", {}).get(
            "node:__internal_head__")), "resources": n.get("Resources", {})} for n in nodes]
print("@@harness-json@@" + json.dumps(out))
"""


@dataclass(frozen=True)
class NodeInfo:
    """One Ray node as the GCS reports it."""

    node_id: str
    alive: bool
    hostname: str
    address: str
    is_head: bool
    resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Listener:
    """A listening TCP socket (or a bound UDP socket) inside the cluster's network namespace."""

    proto: str
    ip: str
    port: int
    pid: int | None
    process: str

    @property
    def loopback(self) -> bool:
        """True for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z (a wildcard address does *not* count)."""
        addr = ipaddress.ip_address(self.ip)
        mapped = getattr(addr, "ipv4_mapped", None)
        return (mapped or addr).is_loopback


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """(name, state, ppid, start time in clock ticks) from /proc/PID/stat, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            raw = fh.read()
    except OSError:
        return None
    head, _, rest = raw.rpartition(")")
    fields = rest.split()
    return head.partition("(")[2], fields[0], int(fields[1]), int(fields[19])


@dataclass(frozen=True)
class Proc:
    """A process seen at some moment; ``start`` (boot-relative start time) tells a reused PID apart."""

    pid: int
    start: int
    name: str

    @classmethod
    def of(cls, pid: int) -> Proc | None:
        """The process `pid` now, or None when there is none (or only a zombie)."""
        stat = _stat(pid)
        if stat is None or stat[1] in ("Z", "X"):
            return None
        return cls(pid, stat[3], stat[0])

    def alive(self) -> bool:
        """True while this very process (same PID and start time) runs and is not a zombie."""
        now = Proc.of(self.pid)
        return now is not None and now.start == self.start

    def children(self) -> list[Proc]:
        """All live descendants of this process."""
        kids: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(int(entry))) is not None:
                kids.setdefault(stat[2], []).append(int(entry))
        out, todo = [], list(kids.get(self.pid, []))
        while todo:
            pid = todo.pop()
            if (proc := Proc.of(pid)) is not None:
                out.append(proc)
            todo.extend(kids.get(pid, []))
        return out

    def kill(self) -> None:
        """SIGKILL it, if it is still this process."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass


def namespaces_available() -> str | None:
    """None when this machine can build the cluster, else the reason why not (for ``pytest.skip``)."""
    if not sys.platform.startswith("linux"):
        return "network/mount namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network and mount namespaces needs root"
    for tool in ("unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` (util-linux) is not installed"
    if not (_BIN / "ray").exists() and shutil.which("ray") is None:
        return "the `ray` command is not installed"
    try:
        probe = subprocess.run(["unshare", "--net", "--mount", "--uts", "--", "true"],
                               check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare failed: {err}"
    if probe.returncode != 0:
        return f"unshare --net --mount --uts failed: {probe.stderr.strip() or probe.returncode}"
    return None


def _script(name: str) -> str:
    """The console script `name` of this Python environment (pyenv shims may not list it)."""
    local = _BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"`{name}` is not installed next to {sys.executable} nor on PATH")
    return found


def _json_from(stdout: str) -> Any:
    for line in reversed(stdout.splitlines()):
        if line.startswith(_JSON_MARK):
            return json.loads(line[len(_JSON_MARK):])
    raise ValueError(f"no JSON result in the output:\n{stdout[-4000:]}")


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


class NamespaceCluster:
    """A head and a worker Ray node (plus optional MLflow and S3 servers) in a loopback-only netns.

    Args:
        tmp_path: a folder for logs (``tmp_path / "cluster-logs"``); Ray's temp dirs go under ``/tmp``.
        head_cpus / worker_cpus: ``--num-cpus`` of the two nodes (``head_cpus=0`` keeps trials off the head).
        private_paths: folders the worker node must not see: each gets an empty tmpfs over it in the
            worker's mount namespace.  They are created if missing.
        env: extra environment variables for every node and command (merged into :attr:`env`).
        gcs_port / ray_client_port: head ports (the Ray Client server, which needs ``ray[client]``, only
            when a port is given); the other ports of the nodes are derived from ``port_base``: head
            ``port_base + 0..5``, worker ``+ 100..105``, their Ray workers ``+ 1000..1999`` and
            ``+ 2000..2999``.
        object_store_mb: ``--object-store-memory`` of each node.
        worker_hostname: host name of the worker's UTS namespace (None: keep the machine's).
        max_lifetime_s: the holder (and so every process in the namespace) is killed after this long.
    """

    def __init__(self, tmp_path: str | os.PathLike[str], *, head_cpus: int = 2, worker_cpus: int = 2,
                 private_paths: Iterable[str | os.PathLike[str]] = (), env: Mapping[str, str] | None = None,
                 gcs_port: int = 6379, ray_client_port: int | None = None, port_base: int = 20000,
                 object_store_mb: int = 256, worker_hostname: str | None = "lfmlf-worker",
                 max_lifetime_s: float = 1800.0) -> None:
        self.tmp_path = Path(tmp_path)
        self.log_dir = self.tmp_path / "cluster-logs"
        self.head_cpus, self.worker_cpus = head_cpus, worker_cpus
        self.private_paths = [Path(p).resolve() for p in private_paths]
        self.gcs_port, self.ray_client_port, self.port_base = gcs_port, ray_client_port, port_base
        self.object_store_mb = object_store_mb
        self.worker_hostname = worker_hostname
        self.max_lifetime_s = max_lifetime_s
        #: Variables every node and command gets on top of os.environ (Ray auth token, S3 endpoint, ...).
        self.env: dict[str, str] = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "RAY_USAGE_STATS_ENABLED": "0",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.address = f"127.0.0.1:{gcs_port}"
        self.log_paths: dict[int, Path] = {}
        self.ray_tmp: Path | None = None
        self.head: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self._holder: subprocess.Popen[str] | None = None
        self._netns = ""
        self._procs: list[subprocess.Popen[Any]] = []
        self._logs: list[Any] = []
        self._worker_starts = 0
        self._worker_mnt = ""  # mount namespace of the current worker node: how its processes are found
        self._closed = False

    # ----------------------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, timeout: float = 30.0) -> None:
        """Create the network namespace (the holder) and the temp folders; cleans up if that fails."""
        reason = namespaces_available()
        if reason:
            raise RuntimeError(f"cannot build a namespace cluster: {reason}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)
        try:
            self.ray_tmp = Path(tempfile.mkdtemp(prefix="lfc-", dir="/tmp"))
            for path in self.private_paths:
                if self.ray_tmp.is_relative_to(path) or _BIN.is_relative_to(path) or path == Path("/tmp"):
                    raise ValueError(f"private path {path} would hide Ray's temp dir or the Python "
                                     "environment")
                path.mkdir(parents=True, exist_ok=True)
            self._holder = subprocess.Popen(
                ["unshare", "--net", "--", sys.executable, "-c", _HOLDER, str(os.getpid()),
                 str(self.max_lifetime_s), str(self.ray_tmp)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
            assert self._holder.stdout is not None
            ready, _, _ = select.select([self._holder.stdout], [], [], timeout)
            line = self._holder.stdout.readline().strip() if ready else ""
            if not line.startswith("ready "):
                raise RuntimeError(f"the namespace holder did not start: {line!r}")
            _, netns, interfaces = line.split(" ", 2)
            if netns == os.readlink("/proc/self/ns/net") or interfaces.split(",") != ["lo"]:
                raise RuntimeError(f"unexpected network namespace {netns} with interfaces {interfaces}")
            self._netns = netns
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Kill everything the harness started (by process group, then by netns membership); idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        if self._netns:
            self._sweep_netns(timeout=20.0)
        if self._holder is not None:
            if self._holder.poll() is None:
                self._holder.terminate()  # it sweeps once more, then exits
                try:
                    self._holder.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self._holder.kill()
                    self._holder.wait(timeout=5)
            if self._holder.stdout is not None:
                self._holder.stdout.close()
        for proc in self._procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for log in self._logs:
            log.close()
        if self.ray_tmp is not None:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)

    def _sweep_netns(self, timeout: float) -> None:
        """SIGKILL every process of the netns until none is left, then wait until all of them are gone
        (a killed process leaves the netns before it has finished exiting)."""
        deadline = time.monotonic() + timeout
        seen: dict[int, Proc] = {}
        while time.monotonic() < deadline:
            procs = self.processes()
            seen.update((p.pid, p) for p in procs)
            for proc in procs:
                proc.kill()
            if not procs and not any(p.alive() for p in seen.values()):
                return
            time.sleep(0.05)

    def _netns_of(self, pid: int) -> str:
        try:
            return os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            return ""

    def processes(self) -> list[Proc]:
        """Every live process in the cluster's network namespace, except the holder."""
        out = []
        holder = self._holder.pid if self._holder is not None else -1
        if not self._netns:
            return out
        for entry in os.listdir("/proc"):
            if (entry.isdigit() and int(entry) != holder and self._netns_of(int(entry)) == self._netns
                    and (proc := Proc.of(int(entry))) is not None):
                out.append(proc)
        return out

    # ---------------------------------------------------------------------------------- running commands
    def netns_cmd(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed so that it runs inside the cluster's network namespace."""
        if self._holder is None or self._closed or self._holder.poll() is not None:
            raise RuntimeError("the cluster's network namespace is gone (not opened, closed, or its lifetime "
                               "is over)")
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--", *argv]

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        merged.update(self.env)
        merged.update(env or {})
        return merged

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, *, log_name: str | None = None,
              **kwargs: Any) -> subprocess.Popen[Any]:
        """Start `argv` in the netns, in a new session, tracked for cleanup.

        Output goes to ``log_dir/<log_name>.log`` (see :attr:`log_paths`) unless ``stdout`` is given.
        """
        return self._spawn(self.netns_cmd(argv), env, log_name or Path(argv[0]).name, **kwargs)

    def _spawn(self, cmd: list[str], env: Mapping[str, str] | None, log_name: str,
               **kwargs: Any) -> subprocess.Popen[Any]:
        log_path = None
        if "stdout" not in kwargs:
            log_path = self.log_dir / f"{log_name}-{len(self._procs)}.log"
            log = open(log_path, "wb")
            self._logs.append(log)
            kwargs["stdout"] = log
            kwargs.setdefault("stderr", subprocess.STDOUT)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(cmd, env=self._env(env), start_new_session=True, **kwargs)
        self._procs.append(proc)
        if log_path is not None:
            self.log_paths[proc.pid] = log_path
        return proc

    def kill(self, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        """SIGKILL the process group of `proc` (started by :meth:`popen`, e.g. a driver) and reap it."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        proc.wait(timeout=timeout)

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 120.0,
            check: bool = False, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run `argv` in the netns to completion (text output captured); its process group dies on timeout."""
        proc = subprocess.Popen(self.netns_cmd(argv), env=self._env(env), start_new_session=True, text=True,
                                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._procs.append(proc)
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=10)
            raise subprocess.TimeoutExpired(list(argv), timeout, out, err) from None
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(result.returncode, list(argv), out, err)
        return result

    def run_python(self, code: str, *args: str, env: Mapping[str, str] | None = None,
                   timeout: float = 120.0) -> Any:
        """Run ``python -c code args...`` in the netns and return the JSON it printed as
        ``print("@@harness-json@@" + json.dumps(obj))`` (its last such line); raises on failure."""
        result = self.run([sys.executable, "-c", code, *args], env=env, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"python exited with {result.returncode}:\n{result.stdout[-3000:]}\n"
                               f"{result.stderr[-6000:]}")
        return _json_from(result.stdout)

    def worker_cmd(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed so that it runs in the current worker node's namespaces (its view of the files)."""
        if self.worker is None or self.worker.poll() is not None:
            raise RuntimeError("no worker node is running")
        pid = self.worker.pid
        return ["nsenter", f"--net=/proc/{pid}/ns/net", f"--mount=/proc/{pid}/ns/mnt",
                f"--uts=/proc/{pid}/ns/uts", "--", *argv]

    # ------------------------------------------------------------------------------------------ Ray nodes
    def _node_args(self, offset: int, cpus: int) -> list[str]:
        """Flags shared by both nodes: node ports at ``port_base + offset + 0..5`` and the Ray workers' ports
        in ``port_base + 1000 + 10 * offset`` + 0..999 (head 1000.., worker 2000..: no overlap)."""
        base = self.port_base + offset
        workers = self.port_base + 1000 + 10 * offset
        return ["--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", "--num-gpus=0",
                f"--object-store-memory={self.object_store_mb * 1024 * 1024}", "--disable-usage-stats",
                f"--node-manager-port={base}", f"--object-manager-port={base + 1}",
                f"--dashboard-agent-listen-port={base + 2}", f"--dashboard-agent-grpc-port={base + 3}",
                f"--runtime-env-agent-port={base + 4}", f"--metrics-export-port={base + 5}",
                f"--min-worker-port={workers}", f"--max-worker-port={workers + 999}"]

    def _wait_started(self, proc: subprocess.Popen[Any], what: str, timeout: float) -> None:
        log = self.log_paths[proc.pid]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "Ray runtime started" in _tail(log, 100_000):
                return
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
            time.sleep(0.2)
        raise TimeoutError(f"{what} did not start within {timeout}s:\n{_tail(log)}")

    def start_head(self, timeout: float = 90.0) -> subprocess.Popen[Any]:
        """``ray start --head --block`` in the netns (GCS on :attr:`address`); returns once it is up."""
        if self.head is not None and self.head.poll() is None:
            raise RuntimeError("the head node is already running")
        assert self.ray_tmp is not None
        argv = [_script("ray"), "start", "--head", f"--port={self.gcs_port}", "--include-dashboard=false",
                f"--temp-dir={self.ray_tmp / 'h'}", *self._node_args(0, self.head_cpus)]
        if self.ray_client_port is not None:  # needs ray[client]; `ray start` skips it by itself without
            argv.append(f"--ray-client-server-port={self.ray_client_port}")
        self.head = self.popen(argv, log_name="ray-head")
        self._wait_started(self.head, "the head node", timeout)
        return self.head

    def start_worker(self, timeout: float = 90.0) -> subprocess.Popen[Any]:
        """``ray start --address ... --block`` in its own mount + UTS namespace, with a tmpfs over every
        private path.  A previous worker node is killed first (all its processes), as after a reboot."""
        if self.head is None:
            raise RuntimeError("start the head node first")
        self.stop_worker()
        assert self.ray_tmp is not None
        self._worker_starts += 1
        ray_argv = [_script("ray"), "start", f"--address={self.address}",
                    f"--temp-dir={self.ray_tmp / f'w{self._worker_starts}'}",
                    *self._node_args(100, self.worker_cpus)]
        spec = {"private": [str(p) for p in self.private_paths], "size": "256m",
                "hostname": self.worker_hostname, "argv": ray_argv}
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if self.worker_hostname:
            unshare.append("--uts")
        argv = [*unshare, "--", sys.executable, "-c", _WORKER_LAUNCHER, json.dumps(spec)]
        self.worker = self.popen(argv, log_name="ray-worker")
        self._wait_started(self.worker, "the worker node", timeout)
        self._worker_mnt = os.readlink(f"/proc/{self.worker.pid}/ns/mnt")
        return self.worker

    def worker_processes(self) -> list[Proc]:
        """Every live process of the current worker node (those in its mount namespace)."""
        out = []
        for proc in self.processes():
            try:
                if self._worker_mnt and os.readlink(f"/proc/{proc.pid}/ns/mnt") == self._worker_mnt:
                    out.append(proc)
            except OSError:
                pass
        return out

    def stop_worker(self, timeout: float = 20.0) -> None:
        """SIGKILL every process of the worker node (a machine that loses power); no-op without one."""
        if self.worker is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            procs = self.worker_processes()
            if self.worker.poll() is None:
                try:
                    os.killpg(self.worker.pid, signal.SIGKILL)
                except OSError:
                    pass
            if not procs and self.worker.poll() is not None:
                break
            for proc in procs:
                proc.kill()
            time.sleep(0.1)
        else:
            raise TimeoutError(f"the worker node's processes survived SIGKILL for {timeout}s")
        self.worker = None
        self._worker_mnt = ""

    def worker_raylet_pid(self) -> int:
        """PID of the current worker node's raylet (a child of its ``ray start --block``)."""
        if self.worker is None or self.worker.poll() is not None:
            raise RuntimeError("no worker node is running")
        for proc in Proc(self.worker.pid, 0, "").children():
            if proc.name == "raylet":
                return proc.pid
        raise RuntimeError("the worker node has no raylet process")

    def kill_worker_raylet(self) -> int:
        """SIGKILL the worker node's raylet (its other processes are left to notice); returns its PID."""
        pid = self.worker_raylet_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def nodes(self, timeout: float = 120.0) -> list[NodeInfo]:
        """All nodes the GCS knows (alive and dead), via a short driver inside the netns."""
        return self._nodes(-1, 0.0, timeout)

    def alive_nodes(self, timeout: float = 120.0) -> list[NodeInfo]:
        """The alive nodes, via a short driver inside the netns."""
        return [n for n in self.nodes(timeout) if n.alive]

    def wait_for_alive_nodes(self, count: int, timeout: float = 90.0) -> list[NodeInfo]:
        """Poll (one driver) until exactly `count` nodes are alive; returns all nodes; TimeoutError if not."""
        nodes = self._nodes(count, timeout, timeout + 60.0)
        alive = [n for n in nodes if n.alive]
        if len(alive) != count:
            raise TimeoutError(f"{len(alive)} alive nodes instead of {count} after {timeout}s: {nodes}")
        return nodes

    def _nodes(self, want: int, wait_s: float, timeout: float) -> list[NodeInfo]:
        rows = self.run_python(_NODES, self.address, str(want), str(wait_s), timeout=timeout)
        return [NodeInfo(**row) for row in rows]

    # ---------------------------------------------------------------------------------------- other servers
    def wait_http(self, url: str, timeout: float = 60.0, need_ok: bool = False,
                  proc: subprocess.Popen[Any] | None = None) -> None:
        """Wait (from inside the netns) until `url` answers; with `need_ok` only a 200 counts."""
        result = self.run([sys.executable, "-c", _WAIT_HTTP, url, str(timeout), "1" if need_ok else "0"],
                          timeout=timeout + 30)
        if result.returncode != 0:
            log = _tail(self.log_paths[proc.pid]) if proc is not None and proc.pid in self.log_paths else ""
            exited = proc is not None and proc.poll() is not None
            state = f" (the server exited with {proc.returncode})" if proc is not None and exited else ""
            raise TimeoutError(f"{url} did not answer within {timeout}s{state}:\n{log}")

    def start_mlflow_server(self, backend_store_uri: str, artifacts_destination: str, port: int = 5000,
                            timeout: float = 120.0) -> str:
        """``mlflow server`` on 127.0.0.1:`port` (proxied artifacts, one worker); returns its URL once
        ``/health`` answers 200.  It gets :attr:`env` (so S3 variables, when start_s3 ran first)."""
        argv = [_script("mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination]
        proc = self.popen(argv, log_name="mlflow-server")
        url = f"http://127.0.0.1:{port}"
        self.wait_http(f"{url}/health", timeout=timeout, need_ok=True, proc=proc)
        return url

    def start_s3(self, buckets: Sequence[str] = ("lfmlf",), port: int = 9000, timeout: float = 60.0,
                 fix_moto: bool = True) -> str:
        """moto's S3 server on 127.0.0.1:`port` with `buckets` created; returns the endpoint URL and adds the
        S3 variables (:meth:`s3_env`) to :attr:`env`, so call it before starting the nodes that need them.
        `fix_moto`: serve through the wrapper that fixes CompleteMultipartUpload (module docstring)."""
        endpoint = f"http://127.0.0.1:{port}"
        self.env.update(self.s3_env(endpoint))
        argv = ([sys.executable, "-c", _MOTO_SERVER, "127.0.0.1", str(port)] if fix_moto
                else [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)])
        proc = self.popen(argv, log_name="moto-server")
        self.wait_http(f"{endpoint}/moto-api/", timeout=timeout, proc=proc)
        code = ("import boto3, json, sys\ns3 = boto3.client('s3')\n"
                "for b in sys.argv[1:]: s3.create_bucket(Bucket=b)\n"
                "print('@@harness-json@@' + json.dumps([b['Name'] for b in s3.list_buckets()['Buckets']]))")
        made = self.run_python(code, *buckets, timeout=timeout)
        if not set(buckets) <= set(made):
            raise RuntimeError(f"buckets {buckets} were not created: {made}")
        return endpoint

    @staticmethod
    def s3_env(endpoint: str) -> dict[str, str]:
        """Variables that point boto3, pyarrow (so Ray Tune's storage_path) and MLflow at `endpoint`."""
        return {"AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    # ---------------------------------------------------------------------------------------- inspection
    def listening(self) -> list[Listener]:
        """Listening TCP sockets and bound UDP sockets in the cluster's network namespace."""
        return [Listener(**row) for row in self.run_python(_LISTENING, timeout=60)]

    def interfaces(self) -> list[str]:
        """Network interfaces of the namespace (should be just ``lo``)."""
        code = ("import json, socket\n"
                "print('@@harness-json@@' + json.dumps([name for _, name in socket.if_nameindex()]))")
        return list(self.run_python(code, timeout=30))
