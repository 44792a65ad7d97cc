"""The trainable weights a checkpoint dict keeps (``Evaluation.state()`` of :mod:`lfmlf.loop`): besides the
current ones (``trainable``), those of the *selected* evaluation (best source-dev average, whose scores are the
``best/*`` metrics) and, with ``train.average_last`` = k, those of the last k evaluations (checkpoint averaging,
``avg/*`` metrics), each on the CPU and stored once (``kept``: step -> weights; ``recent``: the last k steps).
The loop keeps them; an export and the tests read them back here. Imports torch only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def cpu_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the trainable weights (what an evaluation keeps for export or averaging)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def average_weights(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The uniform mean of state dicts with the same keys (checkpoint averaging, Schmidt et al. 2023),
    summed in float64 and cast back to each tensor's dtype."""
    if not states:
        raise ValueError("nothing to average")
    keys = states[0].keys()
    if any(s.keys() != keys for s in states):
        raise ValueError("the state dicts to average do not have the same keys")

    def mean(k: str) -> torch.Tensor:
        total = states[0][k].to(torch.float64)
        for s in states[1:]:
            total = total + s[k].to(torch.float64)
        return (total / len(states)).to(states[0][k].dtype)

    return {k: mean(k) for k in keys}


def weights_at(state: Mapping[str, Any], step: int) -> dict[str, torch.Tensor]:
    """The trainable weights of evaluation ``step`` kept in a checkpoint dict (``evaluation.state()``): the
    current ones at the checkpoint's own step, else those kept for the selection or for averaging."""
    if step == state["step"]:
        return {k: v.to("cpu") for k, v in state["trainable"].items()}   # on the GPU in a live state
    kept = state.get("kept") or {}
    if step not in kept:
        raise KeyError(f"the checkpoint at step {state['step']} keeps no weights of step {step} (it keeps "
                       f"{sorted(kept) or 'none'}; checkpoints written before lfmlf kept selected weights have none)")
    return kept[step]


def selected_weights(state: Mapping[str, Any]) -> tuple[int, dict[str, torch.Tensor]]:
    """(step, trainable weights) of the selected evaluation: the best source-dev average so far, whose
    scores are the ``best/*`` metrics."""
    step = int(state["best"]["step"])
    return step, weights_at(state, step)


def averaged_weights(state: Mapping[str, Any]) -> tuple[list[int], dict[str, torch.Tensor]]:
    """(steps, mean trainable weights) of the last ``train.average_last`` evaluations of a checkpoint."""
    steps = [int(s) for s in state.get("recent") or []]
    if not steps:
        raise KeyError(f"the checkpoint at step {state['step']} keeps no evaluations to average (train.average_last "
                       "was 0)")
    return steps, average_weights([weights_at(state, s) for s in steps])
