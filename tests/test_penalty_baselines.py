"""Penalty baselines (L2-SP, EWC, distill) and freezing: penalty gradients against closed forms on toy
parameters, zero penalty at theta0, the EWC Fisher estimate, MLF's reduction reused exactly, and one real
step of each method on the tiny model."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lfmlf.loop import build, build_optimizer
from lfmlf.methods.base import StepObjectives
from lfmlf.methods.distill import Distill
from lfmlf.methods.ewc import Ewc, EwcError, SetupData
from lfmlf.methods.freeze import Freeze
from lfmlf.methods.l2sp import L2sp
from lfmlf.methods.mlf import Mlf
from lfmlf.models import TaskModel, _layers
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec


# ----------------------------------------------------------------------------------------------- toy model
def _toy() -> TaskModel:
    torch.manual_seed(0)
    return TaskModel(nn.Linear(3, 2), nn.Linear(2, 2))


def _const_objectives(model: TaskModel, scale: float = 1.0) -> StepObjectives:
    """Task losses that depend on the parameters but have zero gradient: only the penalty moves them."""
    zero = sum((p * 0).sum() for p in model.parameters())
    return StepObjectives(task={"en": zero + 1.0, "de": zero + 2.0}, hidden={}, batches={},
                          sizes={"en": 1, "de": 3}, grad_scale=scale)


def _perturb(params, std=0.1):
    with torch.no_grad():
        for p in params:
            p.add_(std * torch.randn_like(p))


def _enc(model):
    return [p for _, p in model.pretrained_parameters()]


def test_l2sp_gradient_is_weight_times_displacement_and_head_is_untouched():
    model = _toy()
    method = L2sp(weight=0.3)
    method.setup(model, ("en", "de"))
    theta0 = [p.detach().clone() for p in _enc(model)]
    assert method.penalty(_const_objectives(model)).item() == 0.0
    _perturb(model.parameters())
    model.zero_grad()
    signals = method.backward(_const_objectives(model, scale=0.5))
    for p, p0 in zip(_enc(model), theta0):
        assert torch.allclose(p.grad, 0.5 * 0.3 * (p.detach() - p0), atol=1e-7)
    for _, p in model.head_parameters():
        assert torch.count_nonzero(p.grad) == 0
    expected = 0.5 * sum((p.detach() - p0).square().sum() for p, p0 in zip(_enc(model), theta0))
    assert signals["l2sp/penalty"] == pytest.approx(expected.item(), rel=1e-5)


def test_ewc_gradient_is_weight_times_fisher_times_displacement():
    model = _toy()
    method = Ewc(weight=2.0)
    batches = lambda n: iter([{"en": {"x": torch.randn(4, 3)}} for _ in range(n)])  # noqa: E731
    method.setup(model, ("en",), data=SetupData(batches, lambda m, b: (m.encoder(b["x"]).square().mean(), None)))
    theta0 = [p.detach().clone() for p in _enc(model)]
    method.fisher = [torch.rand_like(p) * 3 for p in _enc(model)]          # hand-set Fisher
    assert method.penalty(_const_objectives(model)).item() == 0.0
    _perturb(model.parameters())
    model.zero_grad()
    signals = method.backward(_const_objectives(model))
    for p, p0, f in zip(_enc(model), theta0, method.fisher):
        assert torch.allclose(p.grad, 2.0 * f * (p.detach() - p0), atol=1e-6)
    expected = 0.5 * sum((f * (p.detach() - p0).square()).sum() for p, p0, f in zip(_enc(model), theta0, method.fisher))
    assert signals["ewc/penalty"] == pytest.approx(expected.item(), rel=1e-5)


def test_ewc_fisher_estimate_shape_nonnegative_normalised_and_side_effect_free():
    model = _toy()
    model.train()
    xs = [torch.randn(4, 3) for _ in range(5)]
    loss = lambda m, b: (m.head(m.encoder(b["x"])).square().mean(), None)  # noqa: E731
    before = [p.detach().clone() for p in model.parameters()]
    fisher = Ewc.estimate_fisher(model, [{"en": {"x": x}, "de": {"x": -x}} for x in xs], loss)
    assert [f.shape for f in fisher] == [p.shape for p in _enc(model)]
    assert all((f >= 0).all() and torch.isfinite(f).all() for f in fisher)
    flat = torch.cat([f.reshape(-1) for f in fisher])
    assert flat.mean().item() == pytest.approx(1.0, rel=1e-5)
    # against a direct computation: mean of squared sub-batch gradients, divided by its mean
    raw = [torch.zeros_like(p) for p in _enc(model)]
    for x in xs:
        for sub in (x, -x):
            for r, g in zip(raw, torch.autograd.grad(loss(model, {"x": sub})[0], _enc(model))):
                r.add_(g.square() / 10)
    mean = torch.cat([r.reshape(-1) for r in raw]).mean()
    assert all(torch.allclose(f, r / mean, rtol=1e-5) for f, r in zip(fisher, raw))
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_ewc_without_data_is_a_clear_error():
    with pytest.raises(EwcError, match="data"):
        Ewc().setup(_toy(), ("en",))


@pytest.mark.parametrize("reduction", ["mean", "sum", "size"])
def test_task_part_is_exactly_mlf(reduction):
    model = _toy()
    x = torch.randn(5, 3)

    def objectives():
        out = model.head(model.encoder(x))
        return StepObjectives(task={"en": out[:, 0].square().mean(), "de": out[:, 1].exp().mean(),
                                    "es": out.sum()}, hidden={}, batches={},
                              sizes={"en": 2, "de": 5, "es": 1}, grad_scale=0.25)

    model.zero_grad()
    Mlf(reduction=reduction).backward(objectives())
    want = [p.grad.clone() for p in model.parameters()]
    method = L2sp(reduction=reduction, weight=0.0)
    method.setup(model, ("en", "de", "es"))
    model.zero_grad()
    method.backward(objectives())
    assert all(torch.allclose(p.grad, w, rtol=1e-6, atol=1e-8) for p, w in zip(model.parameters(), want))


def test_weight_must_be_non_negative_and_unknown_params_rejected():
    with pytest.raises(ValueError, match="weight"):
        L2sp.validate_params({"weight": -1.0})
    with pytest.raises(ValueError, match="did you mean 'fisher_batches'"):
        Ewc.validate_params({"fisher_batch": 3})
    assert L2sp().params.weight == 0.01 and Distill().params.weight == 1.0 and Ewc().params.fisher_batches == 8
    assert Freeze().params.freeze_layers == 2 and Freeze().params.freeze_embeddings


# ----------------------------------------------------------------------------------------------- tiny model
@pytest.fixture(scope="module")
def tiny():
    spec = tiny_spec("mlf", model={"dropout": 0.0})
    task, model, _ = build(spec, torch.device("cpu"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return spec, task, model, state


@pytest.fixture
def fresh(tiny):
    """The tiny model back at theta0, everything trainable again."""
    spec, task, model, state = tiny
    model.load_state_dict(state)
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    model.train()
    return spec, task, model


def _objectives(task, model, sources, n=4, offset=0):
    batches = {lang: collate(list(task.train_examples(lang)[offset:offset + n]), task.pad_id) for lang in sources}
    outs = {lang: task.loss(model, b) for lang, b in batches.items()}
    return StepObjectives(task={k: o[0] for k, o in outs.items()}, hidden={k: o[1] for k, o in outs.items()},
                          batches=batches, sizes={k: n for k in sources}, grad_scale=1.0)


def _setup_data(task, sources, n=2):
    def batches(k):
        for i in range(k):
            yield {lang: collate(list(task.train_examples(lang)[i * n:(i + 1) * n]), task.pad_id) for lang in sources}
    return SetupData(batches=batches, loss=task.loss)


def test_distill_penalty_zero_at_theta0_positive_after_perturbing(fresh):
    spec, task, model = fresh
    method = Distill()
    method.setup(model, spec.sources)
    assert method.penalty(_objectives(task, model, spec.sources)).item() == pytest.approx(0.0, abs=1e-10)
    _perturb(_enc(model), 0.02)
    assert method.penalty(_objectives(task, model, spec.sources)).item() > 1e-6


def test_l2sp_and_ewc_penalty_zero_at_theta0_on_tiny_model(fresh):
    spec, task, model = fresh
    for method, kw in ((L2sp(), {}), (Ewc(fisher_batches=2), {"data": _setup_data(task, spec.sources)})):
        method.setup(model, spec.sources, **kw)
        assert method.penalty(_objectives(task, model, spec.sources)).item() == 0.0


def test_freeze_sets_requires_grad_and_a_step_leaves_frozen_weights_unchanged(fresh):
    spec, task, model = fresh
    method = Freeze(freeze_layers=1)
    method.setup(model, spec.sources)
    emb = model.encoder.get_input_embeddings().weight
    frozen = [emb, *_layers(model.encoder)[0].parameters()]
    assert not any(p.requires_grad for p in frozen)
    assert all(p.requires_grad for p in _layers(model.encoder)[1].parameters())
    assert all(p is not emb for _, p in model.pretrained_parameters())
    before = [p.detach().clone() for p in frozen]
    trainable_before = [p.detach().clone() for _, p in model.pretrained_parameters()]
    optimizer = build_optimizer(model, spec)                    # the loop builds it after setup
    signals = method.backward(_objectives(task, model, spec.sources))
    optimizer.step()
    assert signals == {}
    assert all(torch.equal(a, b) for a, b in zip(before, frozen))
    assert not all(torch.equal(a, p) for a, (_, p) in zip(trainable_before, model.pretrained_parameters()))


@pytest.mark.parametrize("name", ["l2sp", "ewc", "distill", "freeze"])
def test_one_real_step_on_the_tiny_model(fresh, name):
    spec, task, model = fresh
    method = {"l2sp": L2sp, "ewc": Ewc, "distill": Distill, "freeze": Freeze}[name](
        **{"ewc": {"fisher_batches": 2}, "freeze": {"freeze_layers": 1}}.get(name, {}))
    method.setup(model, spec.sources, **({"data": _setup_data(task, spec.sources)} if name == "ewc" else {}))
    optimizer = build_optimizer(model, spec)
    # one step away from theta0 so that the parameter penalties are non-zero too
    method.backward(_objectives(task, model, spec.sources))
    optimizer.step()
    model.zero_grad(set_to_none=True)
    signals = method.backward(_objectives(task, model, spec.sources, offset=4))
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    assert all(math.isfinite(v) for v in signals.values())
    if name != "freeze":
        assert signals[f"{name}/penalty"] > 0
