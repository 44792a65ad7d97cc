"""PCGrad (Yu et al. 2020): project away the conflicting components between per-source gradients.

For each source i, in a random order of the other sources j (``torch.randperm`` on the global generator,
so a seeded run is reproducible), with h_i starting at g_i:

    if <h_i, g_j> < 0:   h_i <- h_i - (<h_i, g_j> / ||g_j||^2) g_j        (projection onto g_j's normal plane)
    update = sum_i h_i        (goes into ``.grad``; the step is -update)

Every h_i is a combination of the rows of G, h_i = sum_j W_ij g_j, and <h_i, g_j> = (W Q)_ij with
Q = G G^T, so the whole procedure runs on the K x K Gram matrix in float64 and the update is one pass
G^T (W^T 1): no D-sized float64 or O(K^2 D) temporaries. ``pcgrad/conflict_rate`` is the fraction of the
K (K - 1) ordered pairs (i, j) for which a projection happened (conflict at the time of the projection).
No forgetting objective.
"""
from __future__ import annotations

import torch
from torch import Tensor

from lfmlf.methods.gradient import GradientMethod, GradientParams
from lfmlf.qp import combine, gram_matrix


class PcgradParams(GradientParams):
    """PCGrad has no hyper-parameters of its own beyond the shared gradient plumbing."""


def pcgrad_weights(Q: Tensor, orders: list[list[int]] | None = None) -> tuple[Tensor, int]:
    """W [K, K] (float64) with h_i = sum_j W_ij g_j after PCGrad's projections, and the number of
    projections. ``orders[i]`` is the order in which source i visits the others (random if None)."""
    Q = Q.detach().double().cpu()
    K = Q.shape[0]
    W = torch.eye(K, dtype=torch.float64)
    projections = 0
    for i in range(K):
        others = [j for j in range(K) if j != i]
        order = orders[i] if orders is not None else [others[int(t)] for t in torch.randperm(len(others))]
        for j in order:
            dot = float(W[i] @ Q[:, j])               # <h_i, g_j>
            if dot < 0 and float(Q[j, j]) > 0:
                W[i, j] -= dot / float(Q[j, j])
                projections += 1
    return W, projections


class Pcgrad(GradientMethod[PcgradParams]):
    name = "pcgrad"

    def combine(self, G: Tensor, g_f: Tensor | None, langs: list[str]) -> tuple[Tensor | None, dict[str, float]]:
        Q = gram_matrix(G)                           # G G^T in float64
        if not bool(torch.isfinite(Q).all()):
            return None, {}
        W, projections = pcgrad_weights(Q)
        update = combine(G, self.update.zero_(), W.sum(dim=0), out=self.update)
        K = len(langs)
        return update, {"pcgrad/conflict_rate": projections / (K * (K - 1)) if K > 1 else 0.0}
