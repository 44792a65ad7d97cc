"""Flat gradients of one objective over a parameter list, and writing a flat vector back into ``.grad``.

Gradient-combination methods work on rows of a ``[k, D]`` matrix, one row per objective; these helpers
are the only place that flattens and un-flattens, so the methods hold only their algebra.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

#: row dtypes written through a NumPy view in :class:`GradRows` (NumPy has no bfloat16)
_NUMPY_ROW_DTYPES = (torch.float32, torch.float64)


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
    """The current values of ``params`` as one detached flat vector, a copy (later updates of the parameters
    do not show in it): one copy of their buffer when they share one (see :func:`share_storage`), else a
    copy per parameter. To read them without a copy, use :func:`flat_view`."""
    view = flat_view(params)
    return view.clone() if view is not None else flatten([p.detach() for p in params], params)


def share_storage(params: Sequence[nn.Parameter]) -> Tensor:
    """Move ``params`` into one contiguous buffer (each ``.data`` becomes a view into it) and return the
    buffer. Called once at method setup, before the optimizer sees the parameters; afterwards
    :func:`flat_view` reads all of them as one vector (the l2 forgetting gradient theta - theta0) without
    a copy."""
    buffer = flatten([p.detach() for p in params], params)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = buffer[offset:offset + n].view_as(p)
        offset += n
    return buffer


def flat_view(params: Sequence[nn.Parameter]) -> Tensor | None:
    """A detached 1-D tensor over the memory that ``params`` tile in order (one storage, each contiguous and
    right after the previous one, one dtype), so it shows their current values and later updates; None when
    they do not tile one (then read them with :func:`flat_params`). Checked on the storage itself, not on
    ``.data._base`` (a parameter whose ``.data`` was set to a view does not keep the view's base)."""
    if not params:
        return None
    first = params[0]
    storage = first.untyped_storage()
    expected = first.data_ptr()
    for p in params:
        if (p.dtype != first.dtype or p.data_ptr() != expected or not p.is_contiguous()
                or p.untyped_storage().data_ptr() != storage.data_ptr()):
            return None
        expected += p.numel() * p.element_size()
    view = torch.empty(0, dtype=first.dtype, device=first.device)
    return view.set_(storage, first.storage_offset(), (numel(params),), (1,))


class GradRows:
    """Backward passes whose gradients over ``params`` land straight in a flat row of a caller's buffer.

    Made once per trial in a method's ``setup`` (it registers one post-accumulate hook on each parameter).
    :meth:`backward` runs ``loss.backward`` restricted to ``params`` (+ ``also``): as soon as autograd has
    a parameter's gradient, the hook copies it into that parameter's slice of the row (laid out as
    :func:`flatten`, while it is still in cache) and drops it, so no D-sized gradient is kept, re-read or
    concatenated afterwards. A parameter the loss does not reach gets a zero slice. The gradients over
    ``also`` (the task head: the plain-sum part) accumulate into their ``.grad`` as usual, times ``scale``.
    Outside :meth:`backward` the hooks do nothing, so other backward passes are unaffected.

    On the CPU, a float32/float64 row is written through a NumPy view (a single-threaded ``memcpy`` per
    parameter, the same bytes): a torch ``copy_`` of each of the ~100 gradients of an encoder opens an OpenMP
    parallel region, and with ``OMP_WAIT_POLICY=PASSIVE`` waking the pool costs about as much as the copy
    (e5, 3 rows of 43 MB: about 31 -> 24 ms inside the hooks, ``benchmarks/plumbing_micro.py --pieces hooks
    --backward``). Other dtypes (bfloat16 rows) and devices (CUDA) use ``copy_``.
    """

    def __init__(self, params: Sequence[nn.Parameter]) -> None:
        self.params = list(params)
        self.offsets: list[tuple[int, int]] = []
        offset = 0
        for p in self.params:
            self.offsets.append((offset, offset + p.numel()))
            offset += p.numel()
        self.numel = offset
        self._row: Tensor | None = None
        self._row_np: np.ndarray | None = None   # a NumPy view of the row when it can take a plain memcpy
        self._hit = [False] * len(self.params)
        for i, p in enumerate(self.params):   # for the parameters' lifetime: inactive outside backward()
            p.register_post_accumulate_grad_hook(self._hook(i))

    def _hook(self, i: int):
        """Parameter i's post-accumulate hook: called by autograd in every backward pass that reaches the
        parameter, right after its ``.grad`` was accumulated; stores it only inside :meth:`backward`."""
        def copy_into_row(p: Tensor) -> None:
            if self._row is not None and p.grad is not None:
                self._store(i, p)
        return copy_into_row

    def _store(self, i: int, p: Tensor) -> None:
        """Called by parameter i's hook during :meth:`backward`: its fresh gradient into its slice of the
        active row (NumPy ``memcpy`` or ``copy_``, see the class docstring); its ``.grad`` is dropped."""
        start, end = self.offsets[i]
        assert self._row is not None and p.grad is not None
        grad = p.grad
        if self._row_np is not None and grad.dtype == self._row.dtype and grad.device.type == "cpu":
            self._row_np[start:end] = grad.numpy().reshape(-1)   # same values as copy_, single-threaded
        else:
            self._row[start:end].copy_(grad.reshape(-1))
        p.grad = None
        self._hit[i] = True

    def backward(self, loss: Tensor, row: Tensor, also: Sequence[nn.Parameter] = (), scale: float = 1.0,
                 retain_graph: bool = False) -> None:
        """One backward of ``loss``: its gradient over ``params`` into ``row`` [D]; over ``also`` added to their
        ``.grad`` times ``scale``. The ``.grad`` the ``params`` had before (an earlier micro-batch's update)
        is set aside during the pass and restored, untouched."""
        saved = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None
        handles = [p.register_hook(_scaled(scale)) for p in also] if scale != 1.0 else []
        self._row, self._hit = row, [False] * len(self.params)
        self._row_np = row.numpy() if row.device.type == "cpu" and row.dtype in _NUMPY_ROW_DTYPES else None
        try:
            torch.autograd.backward(loss, inputs=self.params + [p for p in also], retain_graph=retain_graph)
        finally:
            self._row, self._row_np = None, None
            for h in handles:
                h.remove()
            for p, g in zip(self.params, saved):
                p.grad = g
        for (start, end), hit in zip(self.offsets, self._hit):
            if not hit:                         # not reached by this loss: a zero gradient
                row[start:end].zero_()


def _scaled(scale: float):
    return lambda g: g * scale


def set_flat_grad(params: Sequence[nn.Parameter], flat: Tensor, scale: float) -> None:
    """Make ``scale * flat`` (laid out as :func:`flatten`) the parameters' gradient. When their ``.grad`` is
    unset (a step's first micro-batch) each ``.grad`` becomes a view into ``flat`` itself: no copy and no
    D-sized allocation, but ``flat`` must then stay untouched until the optimizer has stepped. Otherwise
    (gradient accumulation) ``scale * flat`` is added to the ``.grad`` already there."""
    if params and params[0].grad is None:
        if scale != 1.0:
            flat.mul_(scale)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p)
            offset += n
        return
    add_flat_to_grad(params, flat, scale)


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
