"""Small box-constrained QP used by LF-MLF to pick each step's update direction.

Primal:  d = argmin_d <g_F, d> + 1/2 ||d||^2   s.t.  <g_k, d> <= -eps_k  (k = 1..K)
Dual:    lam = argmin_{0 <= lam <= C} 1/2 lam^T Q lam + b^T lam,  Q = G G^T,  b = G g_F - eps
         d = -(g_F + G^T lam)
The upper bound C makes the constraints soft, so conflicting sources still give a bounded step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_CHUNK = 1 << 18  # columns of G handled at a time (bounds the temporaries; fits in cache-friendly sizes)


@dataclass(frozen=True)
class QPResult:
    """Solution of the box QP: multipliers, status, iteration count and KKT residual."""

    lam: Tensor  # [K] float64
    status: str  # "optimal" | "max_iter" | "nonfinite"
    iterations: int
    kkt_residual: float  # max violation of the box-QP KKT conditions at lam

    @property
    def ok(self) -> bool:
        return self.status == "optimal"


def _kkt_residual(lam: Tensor, r: Tensor, upper: float) -> float:
    """Max KKT violation: r >= 0 at lam = 0, r <= 0 at lam = upper, r = 0 in between."""
    viol = torch.where(lam <= 0, (-r).clamp(min=0), torch.where(lam >= upper, r.clamp(min=0), r.abs()))
    return float(viol.max()) if viol.numel() else 0.0


def _subspace_step(Qff: Tensor, rf: Tensor, tol: float) -> tuple[Tensor, bool]:
    """Minimiser step p of 1/2 p^T Qff p + rf^T p; (descent ray, True) if the subproblem is unbounded."""
    w, V = torch.linalg.eigh(Qff)
    null = w <= max(float(w.max()), 0.0) * 1e-12 * len(w) + 1e-300
    Vn, Vr = V[:, null], V[:, ~null]
    n = Vn @ (Vn.T @ rf)  # part of the gradient the curvature cannot cancel -> linear descent ray
    if float(n.abs().max()) > tol:
        return -n, True
    return -(Vr @ ((Vr.T @ rf) / w[~null])), False


def solve_box_qp(Q: Tensor, b: Tensor, upper: float, *, tol: float = 1e-9, max_iter: int = 500) -> QPResult:
    """min_{0<=lam<=upper} 1/2 lam^T Q lam + b^T lam for symmetric PSD Q (K x K), in float64.

    Primal active-set method: the working set W holds the indices fixed at a bound; each
    iteration minimises over the free indices (eigen-decomposition, so singular Q is fine: an
    unbounded free subproblem gives a descent ray that must hit the box), steps until a bound
    blocks, and releases the bound with the most wrong-signed gradient once the subproblem is
    solved. Non-finite Q or b give status "nonfinite" with lam = 0 instead of raising.
    """
    if not math.isfinite(upper) or upper <= 0:
        raise ValueError(f"upper must be finite and > 0, got {upper}")
    Q = torch.as_tensor(Q).detach().to(torch.float64)
    b = torch.as_tensor(b).detach().to(torch.float64).reshape(-1)
    K = b.numel()
    if Q.shape != (K, K):
        raise ValueError(f"Q must be [{K}, {K}] to match b, got {tuple(Q.shape)}")
    lam = torch.zeros(K, dtype=torch.float64)
    if K == 0:
        return QPResult(lam, "optimal", 0, 0.0)
    if not (torch.isfinite(Q).all() and torch.isfinite(b).all()):
        return QPResult(lam, "nonfinite", 0, math.inf)
    Q = 0.5 * (Q + Q.T)
    tol_s = tol * (1.0 + float(Q.abs().max()) + float(b.abs().max()))
    fixed = torch.ones(K, dtype=torch.bool)  # start at lam = 0 with every index on its lower bound
    solved = False
    for it in range(1, max_iter + 1):
        r = Q @ lam + b
        free = ~fixed
        if not solved and bool(free.any()):
            idx = free.nonzero().flatten()
            p, ray = _subspace_step(Q[idx][:, idx], r[idx], tol_s)
            lf = lam[idx]
            room = torch.where(p > 0, (upper - lf) / p, torch.where(p < 0, -lf / p, math.inf))
            j = int(room.argmin())
            if ray or float(room[j]) < 1.0:  # a bound blocks: move there and fix it
                lam[idx] = (lf + float(room[j]) * p).clamp(0.0, upper)
                lam[idx[j]] = upper if p[j] > 0 else 0.0
                fixed[idx[j]] = True
            else:
                lam[idx] = (lf + p).clamp(0.0, upper)
                solved = True
            continue
        res = _kkt_residual(lam, r, upper)
        if res <= tol_s:
            return QPResult(lam, "optimal", it, res)
        wrong = torch.where(lam >= upper, r, -r).masked_fill(~fixed, -math.inf)
        j = int(wrong.argmax())
        if float(wrong[j]) > tol_s:
            fixed[j] = False  # release the most violated bound
        solved = False  # re-solve the free subproblem (release or numerical refinement)
    r = Q @ lam + b
    return QPResult(lam, "max_iter", max_iter, _kkt_residual(lam, r, upper))


def gram(G: Tensor, g_f: Tensor) -> tuple[Tensor, Tensor]:
    """(Q = G G^T, G g_f) in float64: each chunk of ``_CHUNK`` columns is multiplied in the inputs' precision
    (float32 BLAS for float32/bf16 gradients, float64 for float64 inputs) and the chunk products are summed
    in float64, in chunk order.

    When G and g_f share a float32/float64 dtype on the CPU (the methods' case), all chunk products come from
    two batched matmuls over views of G and g_f (no copy): :func:`gram_matrix` for Q, and
    ``[n, 1, C] @ [n, C, K]`` for G g_f. Each chunk gets the BLAS kernel a matmul of that one chunk gets
    (K x C times C x K; 1 x C times C x K rounds like the K x C matrix-vector product), so the result is
    bit-for-bit the chunk loop's (``tests/test_qp.py``) from 2 kernel calls instead of 6 per chunk, each of
    which could wake the OpenMP pool (e5, K = 3: 46 -> 23 ms at a load of 1.5, no gain at 4.5;
    ``benchmarks/plumbing_micro.py``). A [K + 1]-row ``bmm`` of [G; g_f] would be one pass over G, but its
    products round differently (MKL takes another kernel for K + 1 rows). Other dtypes (a bfloat16 G) and
    CUDA loop over the chunks, upcasting one at a time (``_gram_chunk_loop``)."""
    K, D = G.shape
    dtype = torch.promote_types(torch.promote_types(G.dtype, g_f.dtype), torch.float32)
    if not (_batched(G) and g_f.dtype == G.dtype and g_f.device == G.device and g_f.stride(0) == 1):
        return _gram_chunk_loop(G, g_f, dtype)
    n, full = D // _CHUNK, (D // _CHUNK) * _CHUNK
    Q = gram_matrix(G)
    Gg = torch.zeros(K, dtype=torch.float64, device=G.device)
    if n:
        Gg = torch.bmm(g_f[:full].view(n, 1, _CHUNK), _chunks(G).transpose(1, 2)).double().cumsum(0)[-1, 0]
    if full < D:
        Gg = Gg + (G[:, full:] @ g_f[full:]).double()
    return Q, Gg


def gram_matrix(G: Tensor) -> Tensor:
    """Q = G G^T [K, K] in float64, chunked as :func:`gram` (its Q, bit for bit): the full chunks' K x K
    products in one ``bmm`` over a view of G, summed in float64 in chunk order (``cumsum``: left to right
    like ``Q += chunk`` from zeros), then the last, partial chunk."""
    K, D = G.shape
    if not _batched(G):
        return _gram_chunk_loop(G, G[0], torch.promote_types(G.dtype, torch.float32))[0]
    n, full = D // _CHUNK, (D // _CHUNK) * _CHUNK
    Q = torch.zeros(K, K, dtype=torch.float64, device=G.device)
    if n:
        chunks = _chunks(G)
        Q = torch.bmm(chunks, chunks.transpose(1, 2)).double().cumsum(0)[-1]
    if full < D:
        tail = G[:, full:]
        Q = Q + (tail @ tail.T).double()
    return Q


def _batched(G: Tensor) -> bool:
    """Whether :func:`gram` and :func:`gram_matrix` take G's chunks in batched matmuls: float32/float64 rows
    with unit stride, on the CPU (where that is checked to give the chunk loop's bits; CUDA keeps the loop)."""
    return G.device.type == "cpu" and G.dtype in (torch.float32, torch.float64) and G.stride(-1) == 1


def _chunks(G: Tensor) -> Tensor:
    """The full ``_CHUNK``-column chunks of G [K, D] as a view [n, K, _CHUNK] (chunk-major, no copy)."""
    n = G.shape[1] // _CHUNK
    return G[:, : n * _CHUNK].unflatten(1, (n, _CHUNK)).transpose(0, 1)


def _gram_chunk_loop(G: Tensor, g_f: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """:func:`gram` one chunk at a time, each upcast to ``dtype`` (no copy when already in it)."""
    K, D = G.shape
    Q = torch.zeros(K, K, dtype=torch.float64, device=G.device)
    Gg = torch.zeros(K, dtype=torch.float64, device=G.device)
    for s in range(0, D, _CHUNK):
        Gc = G[:, s : s + _CHUNK].to(dtype)
        Q += (Gc @ Gc.T).double()
        Gg += (Gc @ g_f[s : s + _CHUNK].to(dtype)).double()
    return Q, Gg


def combine(G: Tensor, g_f: Tensor, lam: Tensor, out: Tensor | None = None) -> Tensor:
    """g_f + G^T lam (= -d: what goes into ``.grad``), in g_f's dtype, into ``out`` if given. One BLAS
    gemv without temporaries when G and g_f share a float32/float64 dtype; else a chunk at a time."""
    dtype = torch.promote_types(torch.promote_types(G.dtype, g_f.dtype), torch.float32)
    lam_c = lam.to(device=G.device, dtype=dtype)
    out = torch.empty_like(g_f) if out is None else out
    if G.dtype == g_f.dtype == dtype:
        return torch.addmv(g_f, G.T, lam_c, out=out)
    for s in range(0, G.shape[1], _CHUNK):
        out[s : s + _CHUNK] = g_f[s : s + _CHUNK].to(dtype) + lam_c @ G[:, s : s + _CHUNK].to(dtype)
    return out
