"""The device a trial trains on, and the peak memory it used (``perf/peak_mem_mb``). Imports torch only."""
from __future__ import annotations

import resource
from pathlib import Path

import torch


def pick_device(name: str) -> torch.device:
    """``auto`` -> the GPU Ray assigned to this trial (it is cuda:0 under CUDA_VISIBLE_DEVICES), else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def reset_peak_memory(device: torch.device) -> None:
    """Called at the start of every trial: Tune reuses a worker process for the next trial, and a trial's
    peak memory must not be an earlier trial's. Linux resets the process's peak RSS (VmHWM) on request."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass   # elsewhere the figure is the process's peak since it started (ru_maxrss)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this trial so far: allocated CUDA memory, else the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024   # KiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
