"""LF-MLF inside a training step: the QP direction lands in .grad, slack 0 at theta0 never moves the
encoder, every source loss decreases to first order, and a QP that cannot solve is counted, not hidden."""
from __future__ import annotations

import math

import pytest
import torch

from lfmlf.grads import flat_params
from lfmlf.loop import build, build_unlabelled
from lfmlf.methods import METHODS
from lfmlf.methods.base import StepObjectives
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec


def _objectives(task, model, sources, n=4, scale=1.0, unlabelled=None):
    batches = {lang: collate(list(task.train_examples(lang)[:n]), task.pad_id) for lang in sources}
    outs = {lang: task.loss(model, b) for lang, b in batches.items()}
    return StepObjectives(task={k: o[0] for k, o in outs.items()}, hidden={k: o[1] for k, o in outs.items()},
                          batches=batches, sizes={k: n for k in sources}, grad_scale=scale,
                          unlabelled=None if unlabelled is None else unlabelled.batch(torch.device("cpu")))


def _setup(params, **kw):
    spec = tiny_spec("lfmlf", params=params, model={"dropout": 0.0}, **kw)
    task, model, method = build(spec, torch.device("cpu"))
    return spec, task, model, method


def test_slack_zero_at_theta0_with_l2_gives_zero_step_on_the_encoder():
    spec, task, model, method = _setup({"slack": 0.0, "forgetting": "l2"}, train={"weight_decay": 0.0})
    before = flat_params([p for _, p in model.pretrained_parameters()])
    model.zero_grad()
    method.backward(_objectives(task, model, spec.sources))
    enc_grads = torch.cat([p.grad.reshape(-1) for _, p in model.pretrained_parameters()])
    assert torch.count_nonzero(enc_grads) == 0
    head_grads = torch.cat([p.grad.reshape(-1) for _, p in model.head_parameters()])
    assert head_grads.abs().sum() > 0  # the new head still learns from the plain sum
    torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0).step()
    assert torch.equal(before, flat_params([p for _, p in model.pretrained_parameters()]))


def _task_grads(task, model, sources, params):
    obj = _objectives(task, model, sources)
    rows = []
    for lang in sources:
        g = torch.autograd.grad(obj.task[lang], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(g, params)]))
    return torch.stack(rows)


@pytest.mark.parametrize("forgetting", ["l2", "distill", "mlm"])
def test_every_source_loss_decreases_to_first_order(forgetting):
    spec, task, model, method = _setup({"slack": 0.5, "forgetting": forgetting, "max_multiplier": 1e6})
    # move away from theta0 so that the forgetting gradient is not zero
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(0.02 * torch.randn_like(p))
    params = [p for _, p in model.pretrained_parameters()]
    G = _task_grads(task, model, spec.sources, params)
    model.zero_grad()
    signals = method.backward(_objectives(task, model, spec.sources, unlabelled=build_unlabelled(spec, task, method)))
    update = -torch.cat([p.grad.reshape(-1) for p in params])     # the step direction d
    eps = 0.5 * G.double().square().sum(1)
    decrease = G.double() @ update.double()
    assert (decrease <= -eps * (1 - 1e-3)).all(), (decrease, -eps)
    assert signals["lfmlf/qp_ok"] == 1.0
    assert all(signals[f"lfmlf/lambda/{lang}"] >= 0 for lang in spec.sources)
    assert method.report()["lfmlf/qp_fallbacks"] == 0


def test_direction_matches_closed_form_for_one_source():
    """One source, l2 forgetting: lam = max(0, (eps - <g, g_F>) / ||g||^2), d = -(g_F + lam g)."""
    spec = tiny_spec("lfmlf", params={"slack": 0.3}, model={"dropout": 0.0})
    spec = spec.model_copy(update={"sources": ("en",)})
    task, model, method = build(spec, torch.device("cpu"))
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(0.01 * torch.randn_like(p))
    params = [p for _, p in model.pretrained_parameters()]
    g = _task_grads(task, model, ("en",), params)[0].double()
    g_f = (flat_params(params) - method.forgetting.theta0).double()
    lam = max(0.0, float((0.3 * g @ g - g @ g_f) / (g @ g)))
    model.zero_grad()
    signals = method.backward(_objectives(task, model, ("en",)))
    got = torch.cat([p.grad.reshape(-1) for p in params]).double()
    assert signals["lfmlf/lambda/en"] == pytest.approx(lam, rel=1e-4)
    assert torch.allclose(got, g_f + lam * g, rtol=1e-4, atol=1e-7)


def test_qp_failure_falls_back_to_the_plain_sum_and_is_counted(monkeypatch):
    from lfmlf.methods import lfmlf as mod
    from lfmlf.qp import QPResult

    spec, task, model, method = _setup({"slack": 0.5})

    def broken(Q, b, upper):
        return QPResult(torch.zeros(Q.shape[0], dtype=torch.float64), "max_iter", 500, math.inf)

    monkeypatch.setattr(mod, "solve_box_qp", broken)
    params = [p for _, p in model.pretrained_parameters()]
    G = _task_grads(task, model, spec.sources, params)
    model.zero_grad()
    signals = method.backward(_objectives(task, model, spec.sources))
    assert signals["lfmlf/qp_ok"] == 0.0
    assert method.report()["lfmlf/qp_fallbacks"] == 1.0
    got = torch.cat([p.grad.reshape(-1) for p in params])
    assert torch.allclose(got, G.sum(0), rtol=1e-4, atol=1e-6)


def test_grad_scale_and_bf16_gradients():
    spec, task, model, method = _setup({"slack": 0.5, "grad_dtype": "bfloat16"})
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.zero_grad()
    method.backward(_objectives(task, model, spec.sources, scale=0.5))
    half = torch.cat([p.grad.reshape(-1) for _, p in model.pretrained_parameters()]).clone()
    model.zero_grad()
    method.backward(_objectives(task, model, spec.sources, scale=1.0))
    full = torch.cat([p.grad.reshape(-1) for _, p in model.pretrained_parameters()])
    assert torch.isfinite(full).all() and full.abs().sum() > 0
    assert torch.allclose(half * 2, full, rtol=1e-3, atol=1e-6)


def test_embeddings_outside_the_qp_get_the_plain_sum():
    spec, task, model, method = _setup({"slack": 0.5, "embeddings_in_qp": False})
    emb = model.encoder.get_input_embeddings().weight
    assert all(p is not emb for p in method.qp_params)
    assert any(p is emb for p in method.sum_params)
    G = _task_grads(task, model, spec.sources, [emb])
    model.zero_grad()
    method.backward(_objectives(task, model, spec.sources))
    assert torch.allclose(emb.grad.reshape(-1), G.sum(0), rtol=1e-4, atol=1e-7)


def test_unknown_hyper_parameter_is_an_error():
    with pytest.raises(Exception, match="slak"):
        METHODS["lfmlf"](slak=1.0)
    with pytest.raises(ValueError, match="did you mean 'slack'"):
        METHODS["lfmlf"].validate_params({"slak": 1.0})


def test_mgda_relative_constraint_falls_at_least_1_minus_delta_times_as_fast_as_mgda():
    from lfmlf.methods.mgda import min_norm_weights

    spec, task, model, method = _setup({"constraint": "mgda_relative", "slack": 0.3, "forgetting": "l2",
                                        "max_multiplier": 1e6})
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(0.02 * torch.randn_like(p))
    params = [p for _, p in model.pretrained_parameters()]
    G = _task_grads(task, model, spec.sources, params).double()
    alpha = min_norm_weights(G @ G.T)
    mgda_rate = G @ (G.T @ alpha)                  # -<g_k, d_mgda> for d_mgda = -G^T alpha
    model.zero_grad()
    method.backward(_objectives(task, model, spec.sources))
    d = -torch.cat([p.grad.reshape(-1) for p in params]).double()
    assert (-(G @ d) >= 0.7 * mgda_rate * (1 - 1e-3)).all()
    assert (mgda_rate > 0).all()


def test_mgda_relative_needs_delta_below_one():
    with pytest.raises(ValueError, match=r"delta in \[0, 1\)"):
        METHODS["lfmlf"].validate_params({"constraint": "mgda_relative", "slack": 1.5})
