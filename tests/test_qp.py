"""Tests for lfmlf.qp: the LF-MLF dual box QP, and the constrained direction built from its pieces
(``tests.oracles.constrained_direction``: gram, solve_box_qp, combine)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lfmlf.qp import _CHUNK, gram, gram_matrix, solve_box_qp
from tests.oracles import constrained_direction

torch.set_default_dtype(torch.float32)


def _f64(*xs):
    return [torch.as_tensor(x, dtype=torch.float64) for x in xs]


def _objective(Q: np.ndarray, b: np.ndarray, lam: np.ndarray) -> float:
    return float(0.5 * lam @ Q @ lam + b @ lam)


def _projected_gradient(Q: np.ndarray, b: np.ndarray, upper: float, iters: int = 5000) -> np.ndarray:
    """Brute-force reference: accelerated projected gradient (FISTA, adaptive restart), step 1/L."""
    L = max(np.linalg.eigvalsh(Q).max(), 1e-12)
    x = y = np.zeros_like(b)
    t = 1.0
    for _ in range(iters):
        x_new = np.clip(y - (Q @ y + b) / L, 0.0, upper)
        if (Q @ y + b) @ (x_new - x) > 0:  # momentum points uphill: restart
            t = 1.0
        t_new = 0.5 * (1 + math.sqrt(1 + 4 * t * t))
        y = x_new + (t - 1) / t_new * (x_new - x)
        if np.abs(x_new - x).max() <= 1e-15 * (1 + np.abs(x).max()):
            return x_new
        x, t = x_new, t_new
    return x


@pytest.mark.parametrize("eps_val,C", [(0.5, 100.0), (0.0, 100.0), (3.0, 0.2), (0.0, 1e-3)])
def test_one_source_closed_form(eps_val: float, C: float) -> None:
    g, gF = _f64([1.0, 2.0, -1.0], [0.3, -0.5, 0.2])
    out = constrained_direction(g[None], gF, torch.tensor([eps_val], dtype=torch.float64), C)
    lam = min(max((eps_val - float(g @ gF)) / float(g @ g), 0.0), C)
    assert out.qp.ok
    assert out.qp.lam.item() == pytest.approx(lam, abs=1e-12)
    torch.testing.assert_close(out.d, -(gF + lam * g), atol=1e-12, rtol=0)
    if eps_val == 0.5 and C == 100.0:  # interior multiplier: the constraint is active
        assert lam > 0 and float(g @ out.d) == pytest.approx(-eps_val, abs=1e-12)


def test_orthogonal_gradients_independent_multipliers() -> None:
    G = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 3.0]], dtype=torch.float64)
    gF = torch.tensor([-0.5, -0.5, 0.1, 0.2], dtype=torch.float64)
    eps = torch.tensor([0.1, 2.0, 0.0], dtype=torch.float64)
    C = 0.8
    out = constrained_direction(G, gF, eps, C)
    lam = [min(max((float(e) - float(g @ gF)) / float(g @ g), 0.0), C) for g, e in zip(G, eps)]
    assert lam[0] > 0 and lam[1] == C and lam[2] == 0.0  # one interior, one at the bound, one inactive
    assert out.qp.ok
    torch.testing.assert_close(out.qp.lam, torch.tensor(lam, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.d, -(gF + G.T @ torch.tensor(lam, dtype=torch.float64)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("eps", [(0.5, 0.4), (0.5, 3.0), (0.0, 0.0)])
def test_aligned_gradients_singular_q(eps: tuple[float, float]) -> None:
    g1, gF = _f64([1.0, -1.0, 2.0], [0.5, 0.5, -0.25])
    G = torch.stack([g1, 2 * g1])
    out = constrained_direction(G, gF, torch.tensor(eps, dtype=torch.float64), 1e6)
    assert out.qp.ok
    # Both constraints are <g1, d> <= -m with m = max(eps1, eps2 / 2): one binding half-space.
    m = max(eps[0], eps[1] / 2)
    mu = max((m - float(g1 @ gF)) / float(g1 @ g1), 0.0)
    torch.testing.assert_close(out.d, -(gF + mu * g1), atol=1e-9, rtol=0)
    assert float(G[0] @ out.d) <= -eps[0] + 1e-9 and float(G[1] @ out.d) <= -eps[1] + 1e-9


@pytest.mark.parametrize("C", [0.5, 7.0])
def test_opposed_gradients_hit_bound(C: float) -> None:
    g1, gF = _f64([1.0, 2.0, 0.0, -1.0], [0.1, 0.0, 0.3, 0.1])
    G = torch.stack([g1, -g1])
    eps = torch.tensor([0.4, 0.3], dtype=torch.float64)  # <g1,d> <= -0.4 and >= 0.3: infeasible
    out = constrained_direction(G, gF, eps, C)
    assert out.qp.ok
    torch.testing.assert_close(out.qp.lam, torch.tensor([C, C], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.d, -gF, atol=1e-12, rtol=0)  # the pulls cancel: bounded step


def test_random_problems_kkt_optimality_and_feasibility() -> None:
    rng = np.random.default_rng(0)
    for trial in range(32):
        K, D = int(rng.integers(1, 9)), 50
        G = rng.standard_normal((K, D))
        if trial % 4 == 1 and K > 1:  # duplicated / scaled rows -> singular Q
            G[-1] = -1.5 * G[0] if trial % 8 == 1 else 2.0 * G[0]
        gF = rng.standard_normal(D)
        eps = rng.uniform(0.0, 2.0, K)
        C = float(rng.choice([0.05, 1.0, 1e6]))
        Gt, gFt, epst = _f64(G, gF, eps)
        out = constrained_direction(Gt, gFt, epst, C)
        Q, b = G @ G.T, G @ gF - eps
        lam = out.qp.lam.numpy()
        assert out.qp.ok, (trial, out.qp)
        assert out.qp.kkt_residual <= 1e-9 * (1 + abs(Q).max() + abs(b).max())
        assert (lam >= 0).all() and (lam <= C).all()
        if C <= 1.0 or np.linalg.matrix_rank(G) == K:  # else PG crawls along a null ray towards C
            ref, obj = _projected_gradient(Q, b, C), _objective(Q, b, lam)
            assert obj <= _objective(Q, b, ref) + 1e-9 * (1 + abs(obj))
            assert _objective(Q, b, ref) == pytest.approx(obj, abs=1e-7 * (1 + abs(obj)))  # ref converged
        np.testing.assert_allclose(out.d.numpy(), -(gF + G.T @ lam), atol=1e-10)
        if C == 1e6 and np.linalg.matrix_rank(G) == K:  # feasible and unbounded box in effect
            assert (lam < C).all()
            assert (G @ out.d.numpy() <= -eps + 1e-6).all(), trial


def test_zero_gradient_and_zero_slack_never_moves() -> None:
    G = torch.randn(3, 20, generator=torch.Generator().manual_seed(1))
    out = constrained_direction(G, torch.zeros(20), torch.zeros(3), 10.0)
    assert out.qp.ok and out.d.dtype == torch.float32
    assert torch.equal(out.qp.lam, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(out.d, torch.zeros(20))


def test_zero_gradients_all_zero_q() -> None:
    res = solve_box_qp(torch.zeros(3, 3), torch.tensor([-1.0, 0.0, 2.0]), 4.0)
    assert res.ok
    torch.testing.assert_close(res.lam, torch.tensor([4.0, 0.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("where", ["G", "g_f", "eps"])
def test_nan_input_reports_nonfinite(where: str) -> None:
    G, gF, eps = torch.randn(2, 8), torch.randn(8), torch.tensor([0.1, 0.2])
    {"G": G[0], "g_f": gF, "eps": eps}[where][1] = float("nan")
    out = constrained_direction(G, gF, eps, 1.0)
    assert out.qp.status == "nonfinite" and not out.qp.ok
    assert torch.equal(out.qp.lam, torch.zeros(2, dtype=torch.float64))
    res = solve_box_qp(torch.tensor([[1.0, math.inf], [math.inf, 1.0]]), torch.zeros(2), 1.0)
    assert res.status == "nonfinite"


def test_bf16_gradients_return_float32_direction() -> None:
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(3, 64, generator=gen).to(torch.bfloat16)
    gF = torch.randn(64, generator=gen)
    eps = torch.tensor([0.1, 0.5, 0.0])
    out = constrained_direction(G, gF, eps, 1e3)
    assert out.qp.ok and out.d.dtype == torch.float32 and out.d.shape == (64,)
    ref = constrained_direction(G.double(), gF.double(), eps.double(), 1e3)  # same bf16 values, in f64
    # float32 gradients are multiplied in float32 BLAS (chunk sums in float64): lam agrees to ~1e-6
    torch.testing.assert_close(out.qp.lam, ref.qp.lam, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.d, ref.d.float(), atol=1e-5, rtol=0)
    assert (G.double() @ out.d.double() <= -eps.double() + 1e-4).all()


@pytest.mark.parametrize("upper", [0.0, -1.0, math.inf, math.nan])
def test_invalid_upper_raises(upper: float) -> None:
    with pytest.raises(ValueError):
        solve_box_qp(torch.eye(2), torch.zeros(2), upper)
    with pytest.raises(ValueError):
        constrained_direction(torch.eye(2), torch.zeros(2), torch.zeros(2), upper)


def test_iteration_cap_reports_max_iter() -> None:
    Q, b = torch.eye(3, dtype=torch.float64), torch.tensor([-1.0, -2.0, -3.0], dtype=torch.float64)
    assert solve_box_qp(Q, b, 10.0).ok
    capped = solve_box_qp(Q, b, 10.0, max_iter=2)  # needs one release + one step per index
    assert capped.status == "max_iter" and not capped.ok and capped.kkt_residual > 0.5


def _chunk_loop_gram(G: torch.Tensor, g_f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked Gram as ``gram`` computed it before the batched matmuls: one chunk of columns at a time,
    multiplied in the inputs' precision (at least float32), the products summed in float64 in chunk order."""
    K, D = G.shape
    dtype = torch.promote_types(torch.promote_types(G.dtype, g_f.dtype), torch.float32)
    Q = torch.zeros(K, K, dtype=torch.float64)
    Gg = torch.zeros(K, dtype=torch.float64)
    for s in range(0, D, _CHUNK):
        Gc = G[:, s : s + _CHUNK].to(dtype)
        Q += (Gc @ Gc.T).double()
        Gg += (Gc @ g_f[s : s + _CHUNK].to(dtype)).double()
    return Q, Gg


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("K,D", [(1, 2 * _CHUNK + 777), (3, 1000), (3, 3 * _CHUNK), (3, 3 * _CHUNK + 1),
                                 (5, 2 * _CHUNK + 12345)])
def test_gram_is_bit_for_bit_the_chunk_loop(dtype: torch.dtype, K: int, D: int) -> None:
    """gram's batched matmuls over views of G give exactly the chunk loop's Q and G g_F (the same BLAS kernel per
    chunk, float64 sums in chunk order): D below one chunk, a multiple of it, and a partial last chunk; rows
    of a larger buffer (the methods pass G[:k]); bfloat16 rows with a float32 g_F (the chunk loop itself)."""
    gen = torch.Generator().manual_seed(K * 7 + D % 97)
    big = (torch.randn(K + 2, D, generator=gen) * torch.rand(K + 2, 1, generator=gen) * 10).to(dtype)
    G = big[1 : K + 1]                                       # a row slice, as the methods' G[:len(langs)]
    g_f = torch.randn(D, generator=gen, dtype=torch.float32 if dtype == torch.bfloat16 else dtype)
    Q, Gg = gram(G, g_f)
    Q_ref, Gg_ref = _chunk_loop_gram(G, g_f)
    assert Q.dtype == Gg.dtype == torch.float64 and Q.shape == (K, K) and Gg.shape == (K,)
    assert torch.equal(Q, Q_ref) and torch.equal(Gg, Gg_ref)
    assert torch.equal(gram_matrix(G), Q_ref)


def test_gram_of_nonfinite_rows_is_nonfinite() -> None:
    """An inf gradient entry makes Q (and so the QP) non-finite, which the methods count as a fallback."""
    G, g_f = torch.ones(3, _CHUNK + 5), torch.ones(_CHUNK + 5)
    G[1, 7] = math.inf
    Q, Gg = gram(G, g_f)
    assert not bool(torch.isfinite(Q).all()) and not bool(torch.isfinite(Gg).all())
    assert solve_box_qp(Q, Gg, 1.0).status == "nonfinite"
