"""Smoke test of tests/cluster_harness.py: a real two-node Ray cluster in a loopback-only namespace."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from cluster_harness import NamespaceCluster, namespaces_available

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

BUCKET = "lfmlf-test"

# Runs inside the namespace: one task pinned to each alive node reports what that node sees, writes an
# object to S3 with pyarrow and calls the MLflow server; the driver itself writes and reads an S3 object.
DRIVER = r"""
import json, os, socket, sys, urllib.request
import pyarrow.fs as pafs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

address, marker, bucket, tracking = sys.argv[1:5]
ray.init(address=address, logging_level="ERROR", log_to_driver=False)

@ray.remote(num_cpus=1, max_retries=0)
def probe(marker, uri, tracking):
    import pyarrow.fs as pafs
    node = ray.get_runtime_context().get_node_id()
    fs, path = pafs.FileSystem.from_uri(uri)
    with fs.open_output_stream(f"{path}/{node}.txt") as out:
        out.write(node.encode())
    with urllib.request.urlopen(f"{tracking}/health", timeout=10) as resp:
        health = resp.status
    return {"node_id": node, "hostname": socket.gethostname(), "sees_marker": os.path.exists(marker),
            "mlflow_health": health, "aws_endpoint": os.environ.get("AWS_ENDPOINT_URL"),
            "auth_mode": os.environ.get("RAY_AUTH_MODE")}

alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        .remote(marker, f"s3://{bucket}/probe", tracking) for node in alive]
tasks = ray.get(refs, timeout=180)

fs, path = pafs.FileSystem.from_uri(f"s3://{bucket}/driver")
with fs.open_output_stream(f"{path}/hello.txt") as out:
    out.write(b"hello from the driver")
with fs.open_input_stream(f"{path}/hello.txt") as inp:
    hello = inp.read().decode()
listed = sorted(info.path for info in fs.get_file_info(pafs.FileSelector(f"{bucket}/probe")))
print("@@harness-json@@" + json.dumps({"tasks": tasks, "hello": hello, "listed": listed,
                                       "region": getattr(fs, "region", None)}))
"""


def test_namespace_cluster(tmp_path: Path) -> None:
    reason = namespaces_available()
    if reason:
        pytest.skip(reason)
    private = tmp_path / "head-run"
    private.mkdir()
    marker = private / "written-by-the-head.txt"
    marker.write_text("only the head machine has this file")

    started = time.monotonic()
    with NamespaceCluster(tmp_path, private_paths=[private]) as cluster:
        assert cluster.interfaces() == ["lo"]
        endpoint = cluster.start_s3(buckets=[BUCKET])
        assert endpoint.startswith("http://127.0.0.1:")
        tracking = cluster.start_mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}",
                                               str(tmp_path / "artifacts"))
        cluster.start_head()
        cluster.start_worker()
        nodes = cluster.wait_for_alive_nodes(2)
        head = next(n for n in nodes if n.is_head)
        worker = next(n for n in nodes if not n.is_head)
        assert head.resources["CPU"] == 2 and worker.resources["CPU"] == 2

        out = cluster.run_python(DRIVER, cluster.address, str(marker), BUCKET, tracking, timeout=240)
        by_node = {t["node_id"]: t for t in out["tasks"]}
        assert set(by_node) == {head.node_id, worker.node_id}
        assert by_node[head.node_id]["sees_marker"] is True
        assert by_node[worker.node_id]["sees_marker"] is False, "the worker must not see the head's files"
        assert by_node[head.node_id]["hostname"] != by_node[worker.node_id]["hostname"]
        for task in out["tasks"]:
            assert task["mlflow_health"] == 200
            assert task["aws_endpoint"] == endpoint and task["auth_mode"] == "token"
        assert out["hello"] == "hello from the driver"
        assert out["listed"] == sorted(f"{BUCKET}/probe/{node}.txt" for node in by_node)

        listeners = cluster.listening()
        ports = {lst.port for lst in listeners}
        assert {6379, int(endpoint.rsplit(":", 1)[1]), int(tracking.rsplit(":", 1)[1])} <= ports
        assert [lst for lst in listeners if not lst.loopback] == [], listeners

        processes = cluster.processes()
        raylet = cluster.worker_raylet_pid()
        assert raylet in {p.pid for p in cluster.worker_processes()}
        killed_at = time.monotonic()
        assert cluster.kill_worker_raylet() == raylet
        after = cluster.wait_for_alive_nodes(1, timeout=90)
        death_s = time.monotonic() - killed_at
        assert [n.node_id for n in after if n.alive] == [head.node_id]
        assert any(n.node_id == worker.node_id and not n.alive for n in after)
        processes += cluster.processes()
        ray_tmp = cluster.ray_tmp
    assert ray_tmp is not None and not ray_tmp.exists()
    assert [p for p in processes if p.alive()] == []
    print(f"worker node dead {death_s:.1f}s after its raylet was killed; "
          f"whole test {time.monotonic() - started:.1f}s")
