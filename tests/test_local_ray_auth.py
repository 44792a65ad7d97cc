"""A local sweep's Ray instance keeps token authentication: a process without the sweep's token, or with a
made-up one, cannot attach; the token lives in the run folder, readable by its owner only."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOLD = """
import sys, time
from lfmlf.config import load_sweep
from lfmlf.sweep.cluster import start_ray
import ray
cfg = load_sweep(sys.argv[1], [f"output_dir={sys.argv[2]}", "ray.num_cpus=1"])
start_ray(cfg, None)
print("ADDRESS", ray.get_runtime_context().gcs_address, flush=True)
time.sleep(float(sys.argv[3]))
"""
ATTACH = "import ray, sys; ray.init(address=sys.argv[1], logging_level='ERROR'); print('ATTACHED')"


@pytest.mark.slow
def test_a_client_without_the_sweeps_token_cannot_attach(tmp_path):
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(REPO / "sweeps" / "quickstart.yaml"), str(run), "120"],
                              stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        deadline, address = time.time() + 120, None
        while time.time() < deadline and address is None:
            line = holder.stdout.readline()
            if line.startswith("ADDRESS"):
                address = line.split()[1]
        assert address and address.startswith("127.0.0.1:")
        token = (run / "ray_auth_token").read_text().strip()
        assert stat.S_IMODE((run / "ray_auth_token").stat().st_mode) == 0o600 and len(token) == 64

        def attach(extra) -> str:
            """What a separate process printed after trying to attach ("" when it gave up or hung)."""
            try:
                # the flag lets a second process join a loopback-only instance: only the token differs below
                client = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", **extra}
                return subprocess.run([sys.executable, "-c", ATTACH, address], env=client,
                                      capture_output=True, text=True, timeout=60).stdout
            except subprocess.TimeoutExpired:
                return ""

        assert "ATTACHED" in attach({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
        assert "ATTACHED" not in attach({})                                                 # no token
        assert "ATTACHED" not in attach({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64})   # made up
    finally:
        os.killpg(holder.pid, 9)
        holder.wait(timeout=30)
