"""Flat gradients of one objective over a parameter list, and writing a flat vector back into ``.grad``.

Gradient-combination methods work on rows of a ``[k, D]`` matrix, one row per objective; these helpers
are the only place that flattens and un-flattens, so the methods hold only their algebra.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def numel(params: Sequence[nn.Parameter]) -> int:
    return sum(p.numel() for p in params)


def flatten(tensors: Sequence[Tensor | None], params: Sequence[nn.Parameter], out: Tensor | None = None) -> Tensor:
    """Concatenate per-parameter tensors (None -> zeros) into one flat vector, into ``out`` if given."""
    if out is None:
        out = torch.empty(numel(params), dtype=params[0].dtype if params else torch.float32,
                          device=params[0].device if params else None)
    offset = 0
    for t, p in zip(tensors, params):
        n = p.numel()
        if t is None:
            out[offset:offset + n].zero_()
        else:
            out[offset:offset + n].copy_(t.reshape(-1))
        offset += n
    return out


def flat_params(params: Sequence[nn.Parameter]) -> Tensor:
    """The current values of ``params`` as one detached flat vector: a free view when they live in one
    buffer (see :func:`share_storage`), else a copy."""
    view = flat_view(params)
    return view.detach() if view is not None else flatten([p.detach() for p in params], params)


def share_storage(params: Sequence[nn.Parameter]) -> Tensor:
    """Move ``params`` into one contiguous buffer (each ``.data`` becomes a view into it) and return the
    buffer. Called once at method setup, before the optimizer sees the parameters; afterwards reading all
    of them as one vector (the l2 forgetting gradient theta - theta0) costs no copy."""
    buffer = flatten([p.detach() for p in params], params)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = buffer[offset:offset + n].view_as(p)
        offset += n
    return buffer


def flat_view(params: Sequence[nn.Parameter]) -> Tensor | None:
    """The 1-D buffer that ``params`` tile in order, or None when they do not share one."""
    if not params:
        return None
    first = params[0]
    base = first.data._base if first.data._base is not None else None
    if base is None or base.dim() != 1 or base.numel() != numel(params):
        return None
    expected = base.data_ptr()
    for p in params:
        if p.data._base is not base or p.data_ptr() != expected or not p.data.is_contiguous():
            return None
        expected += p.numel() * p.element_size()
    return base


def objective_grads(loss: Tensor, flat_over: Sequence[nn.Parameter], summed_over: Sequence[nn.Parameter],
                    out: Tensor, scale: float, retain_graph: bool = False) -> None:
    """One backward of ``loss``: its gradient over ``flat_over`` goes into the flat row ``out``; its gradient
    over ``summed_over`` is added (times ``scale``) to those parameters' ``.grad`` (the plain-sum part)."""
    params = list(flat_over) + list(summed_over)
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    flatten(grads[:len(flat_over)], flat_over, out)
    add_to_grad(summed_over, grads[len(flat_over):], scale)


def add_to_grad(params: Sequence[nn.Parameter], grads: Sequence[Tensor | None], scale: float) -> None:
    """``p.grad += scale * g`` for each pair (creating ``.grad`` where missing; None is skipped)."""
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = (g * scale).to(p.dtype)
        else:
            p.grad.add_(g.to(p.dtype), alpha=scale)


def add_flat_to_grad(params: Sequence[nn.Parameter], flat: Tensor, scale: float) -> None:
    """Add a flat vector (laid out as :func:`flatten`) times ``scale`` to the parameters' ``.grad``."""
    offset = 0
    views = []
    for p in params:
        n = p.numel()
        views.append(flat[offset:offset + n].view_as(p))
        offset += n
    add_to_grad(params, views, scale)


def cosines(gram: Tensor) -> Tensor:
    """Pairwise cosine similarities from a Gram matrix ``G G^T`` ([k, k])."""
    norms = gram.diagonal().clamp_min(1e-300).sqrt()
    return gram / norms[:, None] / norms[None, :]
