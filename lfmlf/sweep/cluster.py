"""Getting onto Ray: a local instance bound to loopback, or an existing cluster, checked node by node.

On a cluster (``--address`` or ``ray.address``), before any trial starts, one small task runs on every
alive node (:func:`lfmlf.sweep._probe.check_node`) and checks that the node

- reads a marker file the driver wrote into the sweep's storage (so its trials can checkpoint there),
- sees the data files, probe files, unlabelled-text files and model directory the sweep names,
- imports the same lfmlf code as the driver, with torch, transformers and Ray Tune.

When a node runs other lfmlf code (or none), the driver's package is shipped to the job in its
``runtime_env`` (``py_modules``), and the import is checked again. The job's ``runtime_env`` also carries
the ``LFMLF_*`` variables and the non-secret Hugging Face and S3 endpoint settings of the driver's
environment (:data:`SHIPPED_ENV`). Credentials are not shipped: each node brings its own (instance role,
its environment), as Ray's storage layer expects. The parsed sweep and its search spaces reach the trials
by value, inside the trainable, so no YAML file needs to exist on a worker.
"""
from __future__ import annotations

import logging
import os
import secrets
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

import lfmlf
from lfmlf.config import SweepConfig
from lfmlf.errors import SweepError
from lfmlf.probes import data_files
from lfmlf.storage import Storage, is_uri
from lfmlf.sweep import _probe

#: Variables copied from the driver's environment into every Ray worker of a cluster sweep.
SHIPPED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_ENDPOINT", "HF_HOME",
               "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION",
               "TUNE_FUNCTION_THREAD_TIMEOUT_S")
PROBE_TIMEOUT_S = 180.0


def ray_env() -> None:
    """Settings that must be in the environment before Ray and Tune read them."""
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "2")   # experiment snapshots: a killed driver loses ~2 s
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")   # the compact CLIReporter table
    # reuse_actors: a reused trial actor first waits for the previous trial's training thread to end; Tune's
    # 2 s default can run out on a loaded node, and the new trial then fails ("reset_config() ... return
    # True"). Read in the trial actors: inherited locally, shipped to a cluster's workers (SHIPPED_ENV).
    os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "60")


def shipped_env() -> dict[str, str]:
    """The driver's ``LFMLF_*`` variables and :data:`SHIPPED_ENV`, for the job's ``runtime_env``."""
    return {k: v for k, v in os.environ.items() if k.startswith("LFMLF_") or k in SHIPPED_ENV}


def start_ray(cfg: SweepConfig, address: str | None) -> None:
    """Join ``address`` and check every node (:func:`check_cluster`), else start a local instance that binds
    every server to 127.0.0.1, has no dashboard, requires the sweep's own auth token (:func:`local_token`)
    and keeps its temp files in the run folder."""
    ray_env()
    if ray.is_initialized():
        return
    if address:
        connect_cluster(cfg, address)
        return
    # Ray binds to the node IP; with "clusters" disabled the node IP is 127.0.0.1. The constant is read when
    # ray is imported, so set it in this process too; the processes Ray starts inherit the variable.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ["RAY_AUTH_MODE"] = "token"   # loopback keeps other machines out, the token other local users
    os.environ["RAY_AUTH_TOKEN"] = local_token(cfg.run_dir)
    ray._raylet.Config.initialize("")  # type: ignore[attr-defined]  # ray/_raylet.pyi omits the Cython class Config
    temp = cfg.run_dir / "ray_tmp"
    if len(str(temp)) > 43:  # Ray's AF_UNIX socket paths under it must stay below 107 bytes
        temp = Path(tempfile.gettempdir()) / f"lfmlf-{zlib.crc32(str(cfg.run_dir).encode()):08x}"  # same on resume
        link = cfg.run_dir / "ray_tmp"
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(temp, target_is_directory=True)
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(num_cpus=cfg.ray.num_cpus, include_dashboard=False, _temp_dir=str(temp),
             logging_level=logging.WARNING, log_to_driver=True)


def local_token(run_dir: Path) -> str:
    """The Ray auth token of a local sweep: made once per run folder (so ``--resume`` uses the same) and
    kept in ``<run folder>/ray_auth_token``, readable by its owner only. Nothing is written to ``~/.ray``."""
    path = run_dir / "ray_auth_token"
    if path.is_file():
        return path.read_text().strip()
    run_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def connect_cluster(cfg: SweepConfig, address: str) -> None:
    """Connect to the cluster at ``address``, check every alive node, and ship lfmlf when a node runs
    other code. Raises SweepError (naming each failing node, the path and the fix) before any trial."""
    env = {"env_vars": shipped_env()}
    try:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=env)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise SweepError(f"cannot connect to the Ray cluster at {address}: {e}. Fix: check the address (the "
                         "head's `ray start --head` prints it) and, on a cluster with token authentication, "
                         "RAY_AUTH_MODE=token with RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH.") from None
    mine = _probe.package_fingerprint(Path(lfmlf.__file__).parent)
    reports = check_cluster(cfg, import_code=False)
    if any((r["lfmlf"] or {}).get("fingerprint") != mine for r in reports):
        # some node runs other lfmlf code (or none): ship the driver's package to every worker of this job
        ray.shutdown()
        ray.init(address=address, logging_level=logging.WARNING,
                 runtime_env={**env, "py_modules": [str(Path(lfmlf.__file__).parent)]})
        print(f"lfmlf: shipping lfmlf {lfmlf.__version__} ({mine}) to the cluster's workers "
              f"(runtime_env py_modules): {_differing(reports, mine)}.", flush=True)
    reports = check_cluster(cfg, import_code=True)
    bad = [r for r in reports if (r["lfmlf"] or {}).get("fingerprint") != mine]
    if bad:
        raise SweepError(_paragraph([f"node {_name(r)} cannot import lfmlf with its dependencies: "
                                     f"{r['lfmlf_error'] or 'it imports other lfmlf code'}" for r in bad],
                                    "install the same Python environment on every node (torch, transformers, "
                                    "ray[tune], the versions of constraints/tested.txt)"))
    print(f"lfmlf: cluster at {address}: {len(reports)} node(s) checked (storage, data, model, code).", flush=True)


def check_cluster(cfg: SweepConfig, import_code: bool) -> list[dict[str, Any]]:
    """Run :func:`_probe.check_node` once on every alive node; raise SweepError when a node lacks the
    storage, a data file or the model directory, or does not answer in time."""
    ray.cloudpickle.register_pickle_by_value(_probe)   # runs even where lfmlf cannot be imported
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    storage = Storage(cfg.storage_location)
    marker_rel = f".lfmlf-node-check-{uuid.uuid4().hex[:12]}"
    marker_text = f"lfmlf node check {uuid.uuid4().hex}"
    storage.write_text(marker_rel, marker_text)   # the driver checked the storage writable already (_open_storage)
    check = ray.remote(num_cpus=0, max_retries=0)(_probe.check_node)
    paths = node_paths(cfg)
    try:
        refs = {n["NodeID"]: check.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(paths, (storage.uri(marker_rel), marker_text), import_code) for n in nodes}
        ready, late = ray.wait(list(refs.values()), num_returns=len(refs), timeout=PROBE_TIMEOUT_S)
        reports, gone = [], []
        for n in nodes:
            if refs[n["NodeID"]] in ready:
                try:
                    reports.append(ray.get(refs[n["NodeID"]]))
                except (ray.exceptions.TaskUnschedulableError, ray.exceptions.NodeDiedError):
                    gone.append(n)   # listed alive, but dead by now (the GCS notices a lost node late)
    finally:
        storage.delete(marker_rel)
    if gone:
        print(f"lfmlf: node(s) {', '.join(n['NodeID'][:8] for n in gone)} left the cluster during the check; "
              "the sweep runs on the others.", flush=True)
    problems: list[str] = []
    if late:
        names = [f"{n['NodeID'][:8]} ({n.get('NodeManagerAddress', '?')})" for n in nodes
                 if refs[n["NodeID"]] in late]
        problems.append(f"node(s) {', '.join(names)} did not run the check within {PROBE_TIMEOUT_S:.0f} s")
    for r in reports:
        if r["storage"] is not None:
            local = "" if is_uri(storage.location) else (
                " (a folder on the driver's own disk is not a cluster storage: use a shared filesystem "
                "mounted at the same path on every node, or an s3:// / gs:// URI)")
            problems.append(f"node {_name(r)} cannot read the storage check file {storage.uri(marker_rel)}: "
                            f"{r['storage']}{local}")
        if r["missing"]:
            problems.append(f"node {_name(r)} does not see {len(r['missing'])} path(s) the sweep reads, e.g. "
                            f"{r['missing'][0]}")
    if problems:
        raise SweepError(_paragraph(problems, "set output_dir (or --output-dir) to storage every node reaches, "
                                    "and put the data and model at the same path on every node (a shared "
                                    "filesystem, or a copy per node); then run the same command again"))
    return reports


def node_paths(cfg: SweepConfig) -> list[str]:
    """Every local path a trial reads: data files, probe files, unlabelled-text files, the model folder."""
    task = cfg.task
    paths: list[str] = []
    for lang in [*cfg.languages.sources, *cfg.languages.targets]:
        files = task.files.get(lang)
        for name in (files.path(s) for s in ("train", "dev", "test")) if files is not None else ():
            if name:
                paths.append(str(Path(task.data_dir or ".") / name))
    if cfg.probe is not None:
        paths += [str(p) for files in data_files(cfg.probe).values() for p in files]
    paths += list(cfg.unlabelled.files.values())
    if Path(cfg.model.name_or_path).is_absolute():
        paths.append(cfg.model.name_or_path)
    return sorted(set(paths))


def _name(report: dict[str, Any]) -> str:
    return f"{report['node_id'][:8]} ({report['hostname']})"


def _differing(reports: list[dict[str, Any]], mine: str) -> str:
    return ", ".join(f"{_name(r)} has {(r['lfmlf'] or {}).get('fingerprint') or 'none'}" for r in reports
                     if (r["lfmlf"] or {}).get("fingerprint") != mine)


def _paragraph(problems: list[str], fix: str) -> str:
    return "the cluster is not ready for this sweep, and no trial was started: " + "; ".join(problems) + \
        f". Fix: {fix}."
