"""The gradient-combination baselines (A-GEM, GEM, MGDA, PCGrad): closed forms of their algebra on toy
vectors, and one real step of each on the tiny model (finite gradients and signals)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from lfmlf.loop import build
from lfmlf.methods.agem import Agem
from lfmlf.methods.base import StepObjectives
from lfmlf.methods.gem import Gem, gem_dual
from lfmlf.methods.mgda import Mgda, min_norm_weights
from lfmlf.methods.pcgrad import Pcgrad, pcgrad_weights
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec
from tests.oracles import agem_project, pcgrad

D64 = torch.float64


def _t(*x):
    return torch.tensor(x, dtype=D64)


# ---------------------------------------------------------------- A-GEM

def _method_on(cls, D, dtype=torch.float32, **params):
    m = cls(**params)
    m.update = torch.empty(D, dtype=dtype)
    return m


def test_agem_projects_a_conflicting_pair_exactly():
    g, g_ref = _t(1.0, -2.0, 0.0), _t(0.0, 1.0, 1.0)      # <g, g_ref> = -2, ||g_ref||^2 = 2
    got, signals = _method_on(Agem, 3, D64).combine(g[None], g_ref, ["de"])
    assert torch.allclose(got, _t(1.0, -1.0, 1.0)) and signals["agem/projected"] == 1.0
    assert float(got @ g_ref) == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(agem_project(g, g_ref), got)     # the oracle agrees on the hand-computed case


def test_agem_leaves_an_agreeing_pair_unchanged():
    g, g_ref = _t(1.0, 2.0, 0.0), _t(0.0, 1.0, 1.0)
    for ref in (g_ref, torch.zeros(3, dtype=D64)):           # g_F = 0: l2 at theta0
        got, signals = _method_on(Agem, 3, D64).combine(g[None], ref, ["de"])
        assert torch.equal(got, g) and signals["agem/projected"] == 0.0


def test_agem_combine_matches_the_dense_projection_on_random_rows():
    gen = torch.Generator().manual_seed(0)
    projected = 0
    for _ in range(20):
        G, g_f = torch.randn(3, 7, generator=gen, dtype=D64), torch.randn(7, generator=gen, dtype=D64)
        got, signals = _method_on(Agem, 7, D64).combine(G, g_f, ["de", "en", "es"])
        assert torch.allclose(got, agem_project(G.sum(0), g_f), atol=1e-12)
        projected += signals["agem/projected"]
    assert 0 < projected < 20                                  # both branches were taken


def test_agem_combine_on_toy_rows():
    m = _method_on(Agem, 3)
    G = torch.tensor([[1.0, -1.0, 0.0], [0.0, -1.0, 0.0]])   # sum (1, -2, 0)
    u, s = m.combine(G, torch.tensor([0.0, 1.0, 1.0]), ["de", "en"])
    assert torch.allclose(u, torch.tensor([1.0, -1.0, 1.0]))
    assert s["agem/projected"] == 1.0
    u, s = m.combine(-G, torch.tensor([0.0, 1.0, 1.0]), ["de", "en"])
    assert torch.allclose(u, torch.tensor([-1.0, 2.0, 0.0])) and s["agem/projected"] == 0.0


# ---------------------------------------------------------------- GEM

@pytest.mark.parametrize("margin", [0.0, 0.5, 3.0])
def test_gem_dual_matches_the_closed_form_for_one_memory_gradient(margin):
    g, g_ref = _t(1.0, -2.0, 0.0), _t(0.0, 1.0, 1.0)
    Q, b = (g_ref @ g_ref).reshape(1, 1), (g_ref @ g).reshape(1)
    qp = gem_dual(Q, b, margin)
    v = max(margin, -float(b) / float(Q))                     # = max(margin, 1)
    assert qp is not None and qp.ok
    assert float(qp.lam[0]) == pytest.approx(v, rel=1e-9)
    u = g + qp.lam[0] * g_ref
    assert float(u @ g_ref) >= -1e-12                         # the constraint holds
    assert gem_dual(Q, -b, margin) is None                     # agreeing: no projection


def test_gem_dual_is_scale_free():
    """A tiny memory gradient (distill near theta0) still gets the exact multiplier."""
    g, g_ref = _t(1.0, -2.0, 0.0), _t(0.0, 1e-7, 1e-7)
    qp = gem_dual((g_ref @ g_ref).reshape(1, 1), (g_ref @ g).reshape(1), 0.5)
    assert qp.ok and float(qp.lam[0]) == pytest.approx(1e7, rel=1e-9)


def test_gem_dual_several_memories_satisfies_the_constraints():
    torch.manual_seed(0)
    M, g = torch.randn(3, 6, dtype=D64), torch.randn(6, dtype=D64)
    g = g - 3 * M[0]                                           # make sure a constraint is violated
    qp = gem_dual(M @ M.T, M @ g, 0.2)
    assert qp.ok and (qp.lam >= 0.2 - 1e-12).all()
    assert (M @ (g + M.T @ qp.lam) >= -1e-9).all()


def test_gem_combine_on_toy_rows():
    m = _method_on(Gem, 3, margin=2.0)
    G = torch.tensor([[1.0, -1.0, 0.0], [0.0, -1.0, 0.0]])
    u, s = m.combine(G, torch.tensor([0.0, 1.0, 1.0]), ["de", "en"])
    assert torch.allclose(u, torch.tensor([1.0, 0.0, 2.0]))  # v = max(2, 1) = 2
    assert s["gem/projected"] == 1.0 and s["gem/multiplier"] == pytest.approx(2.0)


# ---------------------------------------------------------------- MGDA

def _brute_min_norm(Q):
    """Min over every support of the affine min-norm point, feasible ones only."""
    K, best = Q.shape[0], (math.inf, None)
    for r in range(1, K + 1):
        for S in itertools.combinations(range(K), r):
            idx = list(S)
            A = torch.zeros(r + 1, r + 1, dtype=D64)
            A[:r, :r], A[:r, r], A[r, :r] = Q[idx][:, idx], 1.0, 1.0
            rhs = torch.zeros(r + 1, dtype=D64)
            rhs[r] = 1.0
            try:
                a = torch.linalg.solve(A, rhs)[:r]
            except RuntimeError:
                continue
            if (a >= -1e-12).all():
                alpha = torch.zeros(K, dtype=D64)
                alpha[idx] = a
                val = float(alpha @ Q @ alpha)
                if val < best[0]:
                    best = (val, alpha)
    return best


def test_mgda_two_gradients_closed_form_and_min_norm():
    g1, g2 = _t(1.0, 0.0, 0.5), _t(-0.3, 2.0, 0.0)
    G = torch.stack([g1, g2])
    alpha = min_norm_weights(G @ G.T)
    a = min(1.0, max(0.0, float((g2 - g1) @ g2) / float((g1 - g2) @ (g1 - g2))))
    assert float(alpha[0]) == pytest.approx(a, rel=1e-12) and float(alpha.sum()) == pytest.approx(1.0)
    x = alpha @ G
    for t in torch.linspace(0, 1, 101, dtype=D64):            # no point of the segment is shorter
        assert float(x @ x) <= float((t * g1 + (1 - t) * g2).square().sum()) + 1e-12
    for g in (g1, g2):                                         # every source loss decreases to first order
        assert float(g @ x) >= float(x @ x) - 1e-12


def test_mgda_orthogonal_equal_norms_give_one_half():
    G = _t(2.0, 0.0, 0.0, 0.0, 2.0, 0.0).reshape(2, 3)
    assert torch.allclose(min_norm_weights(G @ G.T), _t(0.5, 0.5))


def test_mgda_clips_when_one_gradient_is_inside():
    G = _t(1.0, 0.0, 3.0, 0.0).reshape(2, 2)                    # g1 is the min-norm point
    assert torch.allclose(min_norm_weights(G @ G.T), _t(1.0, 0.0))


@pytest.mark.parametrize("seed", range(5))
def test_mgda_box_dual_path_matches_brute_force(seed):
    torch.manual_seed(seed)
    G = torch.randn(4, 6, dtype=D64) + (0.5 if seed % 2 else 0.0)
    Q = G @ G.T
    alpha = min_norm_weights(Q)
    best, _ = _brute_min_norm(Q)
    assert alpha is not None and (alpha >= 0).all() and float(alpha.sum()) == pytest.approx(1.0)
    assert float(alpha @ Q @ alpha) == pytest.approx(best, rel=1e-6, abs=1e-9)


def test_mgda_pareto_stationary_gives_a_zero_update():
    g = _t(1.0, 2.0, 0.0)
    G = torch.stack([g, -2 * g, _t(0.0, 0.0, 1.0)])            # 0 = (2 g1 + g2) / 3 is in the hull
    alpha = min_norm_weights(G @ G.T)
    assert alpha is not None
    assert float((alpha @ G).norm()) <= 1e-4 * float(G.norm(dim=1).max())


def test_mgda_combine_scales_by_k():
    G = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    u, s = _method_on(Mgda, 2).combine(G, None, ["de", "en"])
    assert torch.allclose(u, torch.tensor([2.0, 2.0])) and s["mgda/weight/de"] == pytest.approx(0.5)
    u, _ = _method_on(Mgda, 2, scale_by_k=False).combine(G, None, ["de", "en"])
    assert torch.allclose(u, torch.tensor([1.0, 1.0]))


# ---------------------------------------------------------------- PCGrad

def _pcgrad_rows(G, orders):
    """The package's projected rows: W (from the Gram matrix) times G."""
    return pcgrad_weights(G @ G.T, orders)[0] @ G


def test_pcgrad_conflicting_pair_exact_projections():
    g1, g2 = _t(1.0, 0.0), _t(-1.0, 1.0)                       # <g1, g2> = -1
    H = _pcgrad_rows(torch.stack([g1, g2]), orders=[[1], [0]])
    assert torch.allclose(H[0], _t(0.5, 0.5))                  # g1 - (-1/2) g2
    assert torch.allclose(H[1], _t(0.0, 1.0))                  # g2 - (-1/1) g1
    assert float(H[0] @ g2) == pytest.approx(0.0, abs=1e-12)
    assert float(H[1] @ g1) == pytest.approx(0.0, abs=1e-12)


def test_pcgrad_both_orders_with_three_sources():
    g1, g2, g3 = _t(1.0, 0.0), _t(-1.0, 1.0), _t(-1.0, -1.0)
    G = torch.stack([g1, g2, g3])
    # g1 first against g2: h = (0.5, 0.5); then <h, g3> = -1 -> h - (-1/2) g3 = (0, 0)
    assert torch.allclose(_pcgrad_rows(G, orders=[[1, 2], [0, 2], [0, 1]])[0], _t(0.0, 0.0))
    # g1 first against g3: h = (0.5, -0.5); then <h, g2> = -1 -> h + g2 / 2 = (0, 0)
    assert torch.allclose(_pcgrad_rows(G, orders=[[2, 1], [0, 2], [0, 1]])[0], _t(0.0, 0.0))
    # g2 against g1 then g3: h = (0, 1); <h, g3> = -1 -> (0, 1) + (-1, -1)/2 = (-0.5, 0.5)
    assert torch.allclose(_pcgrad_rows(G, orders=[[1, 2], [0, 2], [0, 1]])[1], _t(-0.5, 0.5))
    # g2 against g3 then g1: <g2, g3> = 0, no projection; <g2, g1> = -1 -> (0, 1)
    assert torch.allclose(_pcgrad_rows(G, orders=[[1, 2], [2, 0], [0, 1]])[1], _t(0.0, 1.0))


def test_pcgrad_weights_match_the_dense_projections_on_random_rows():
    gen = torch.Generator().manual_seed(0)
    projected = 0
    for K in (2, 3, 5):
        for _ in range(5):
            G = torch.randn(K, 6, generator=gen, dtype=D64)
            orders = [[j for j in torch.randperm(K, generator=gen).tolist() if j != i] for i in range(K)]
            W, projections = pcgrad_weights(G @ G.T, orders)
            assert torch.allclose(W @ G, pcgrad(G, orders), atol=1e-10)
            projected += projections
    assert projected > 0                                       # conflicts occurred: not only W = I


def test_pcgrad_non_conflicting_pair_is_unchanged():
    G = torch.stack([_t(1.0, 0.2), _t(0.5, 1.0)])
    W, n = pcgrad_weights(G @ G.T)
    assert n == 0 and torch.equal(W, torch.eye(2, dtype=D64))


def test_pcgrad_random_order_is_reproducible_under_the_seed():
    G = torch.randn(5, 4, dtype=D64)
    torch.manual_seed(3)
    a = pcgrad_weights(G @ G.T)[0]
    torch.manual_seed(3)
    assert torch.equal(a, pcgrad_weights(G @ G.T)[0])


def test_pcgrad_combine_sums_projected_rows():
    G = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    u, s = _method_on(Pcgrad, 2).combine(G, None, ["de", "en"])
    assert torch.allclose(u, torch.tensor([0.5, 1.5]))
    assert s["pcgrad/conflict_rate"] == 1.0


# ---------------------------------------------------------------- one real step on the tiny model

def _objectives(task, model, sources, n=4, scale=1.0):
    batches = {lang: collate(list(task.train_examples(lang)[:n]), task.pad_id) for lang in sources}
    outs = {lang: task.loss(model, b) for lang, b in batches.items()}
    return StepObjectives(task={k: o[0] for k, o in outs.items()}, hidden={k: o[1] for k, o in outs.items()},
                          batches=batches, sizes={k: n for k in sources}, grad_scale=scale)


@pytest.mark.parametrize("cls,params", [(Agem, {}), (Agem, {"forgetting": "l2"}), (Gem, {}),
                                        (Gem, {"forgetting": "l2", "grad_dtype": "bfloat16"}),
                                        (Mgda, {}), (Pcgrad, {"embeddings_in_qp": False})])
def test_one_real_step_on_the_tiny_model(cls, params):
    spec = tiny_spec("mlf", model={"dropout": 0.0})
    task, model, _ = build(spec, torch.device("cpu"))
    method = cls(**params)
    method.setup(model, spec.sources)
    with torch.no_grad():                                      # away from theta0: g_F != 0
        for _, p in model.pretrained_parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.zero_grad()
    signals = method.backward(_objectives(task, model, spec.sources))
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert signals and all(math.isfinite(v) for v in signals.values())
    assert all(k.startswith(f"{cls.name}/") for k in signals)
    assert method.report()[f"{cls.name}/fallbacks"] == 0.0
