"""Reference implementations that only the tests use: plain, dense and slow on purpose, so that the
package's optimised algebra (Gram matrices, chunked products, K x K weights) is checked against the
textbook formula on small inputs."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lfmlf.qp import QPResult, combine, gram, solve_box_qp


@dataclass(frozen=True)
class Direction:
    """Update direction d (dtype of g_f) and the dual solve that produced it."""

    d: Tensor
    qp: QPResult


def constrained_direction(G: Tensor, g_f: Tensor, eps: Tensor, upper: float) -> Direction:
    """LF-MLF direction d = -(g_f + G^T lam) with lam the dual box-QP solution, from the package's own pieces
    (``gram``, ``solve_box_qp``, ``combine``) in the order the method uses them.

    G is [K, D] in any float dtype, g_f is [D], eps is [K] (>= 0), upper > 0 bounds the multipliers. Q and b
    are accumulated in float64; d is returned in g_f's dtype, also when the QP is not ok."""
    if G.dim() != 2 or g_f.shape != (G.shape[1],) or eps.numel() != G.shape[0]:
        raise ValueError(f"shape mismatch: G {tuple(G.shape)}, g_f {tuple(g_f.shape)}, eps {tuple(eps.shape)}")
    G, g_f = G.detach(), g_f.detach()
    Q, Gg = gram(G, g_f)
    b = Gg - eps.detach().to(device=G.device, dtype=torch.float64).reshape(-1)
    qp = solve_box_qp(Q.cpu(), b.cpu(), upper)
    return Direction(combine(G, g_f, qp.lam).neg_(), qp)


def agem_project(g: Tensor, g_ref: Tensor) -> Tensor:
    """A-GEM's projection (Chaudhry et al. 2019) on plain vectors, in float64: g - (<g, g_ref> / ||g_ref||^2)
    g_ref when <g, g_ref> < 0 (and g_ref != 0), else g."""
    g, g_ref = g.double(), g_ref.double()
    dot, ref_sq = float(g @ g_ref), float(g_ref @ g_ref)
    return g - (dot / ref_sq) * g_ref if dot < 0 and ref_sq > 0 else g


def pcgrad(G: Tensor, orders: list[list[int]]) -> Tensor:
    """PCGrad (Yu et al. 2020) on a small dense G [K, D], vector by vector: each h_i starts at g_i and is
    projected onto the normal plane of every g_j it conflicts with, in the order ``orders[i]``. Returns the
    rows h_i (float64)."""
    G = G.double()
    H = G.clone()
    for i, order in enumerate(orders):
        for j in order:
            dot, sq = float(H[i] @ G[j]), float(G[j] @ G[j])
            if dot < 0 and sq > 0:
                H[i] = H[i] - (dot / sq) * G[j]
    return H
