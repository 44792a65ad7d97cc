"""The gradient plumbing of the gradient-combination methods (``lfmlf.grads.GradRows``, ``set_flat_grad``): the
per-source rows land in G without a flatten pass and the update becomes ``.grad`` without a copy, and none of
it changes a result: the direction equals the old plumbing's (autograd.grad, flatten, Gram, QP, add into
.grad) on the same batch to 1e-6, with and without gradient accumulation, for every gradient method."""
from __future__ import annotations

import pytest
import torch

import lfmlf.forgetting as forgetting
import lfmlf.grads as grads
from lfmlf.grads import GradRows, flat_params, flat_view, flatten, set_flat_grad, share_storage
from lfmlf.loop import build
from lfmlf.methods import METHODS
from lfmlf.methods.base import StepObjectives
from lfmlf.methods.gradient import GradientMethod
from lfmlf.qp import gram
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec
from tests.oracles import constrained_direction


def _objectives(task, model, sources, n=4, scale=1.0, offset=0):
    batches = {lang: collate(list(task.train_examples(lang)[offset:offset + n]), task.pad_id) for lang in sources}
    outs = {lang: task.loss(model, b) for lang, b in batches.items()}
    return StepObjectives(task={k: o[0] for k, o in outs.items()}, hidden={k: o[1] for k, o in outs.items()},
                          batches=batches, sizes={k: n + i for i, k in enumerate(sources)}, grad_scale=scale)


def _moved(method: str, params: dict):
    """A tiny trial's model moved away from theta0 (so g_F != 0), its task and method."""
    spec = tiny_spec(method, params=params, model={"dropout": 0.0})
    task, model, m = build(spec, torch.device("cpu"))
    torch.manual_seed(3)
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(0.02 * torch.randn_like(p))
    return spec, task, model, m


def _old_rows(task, model, sources, params, head):
    """The old plumbing: one autograd.grad per source, flattened into a row; the head's grads summed."""
    obj = _objectives(task, model, sources)
    rows, head_sum = [], [torch.zeros_like(p) for p in head]
    for lang in sources:
        g = torch.autograd.grad(obj.task[lang], params + head, retain_graph=True, allow_unused=True)
        rows.append(flatten(g[:len(params)], params))
        for acc, x in zip(head_sum, g[len(params):]):
            if x is not None:
                acc += x
    return torch.stack(rows), head_sum


def test_lfmlf_direction_equals_the_old_plumbing_to_1e6():
    spec, task, model, method = _moved("lfmlf", {"slack": 0.5, "forgetting": "l2", "max_multiplier": 1e6})
    params = [p for _, p in model.pretrained_parameters()]
    head = [p for _, p in model.head_parameters()]
    G_old, head_old = _old_rows(task, model, list(spec.sources), params, head)
    theta0 = method.forgetting.theta0
    g_f = flat_params(params) - theta0
    old = constrained_direction(G_old, g_f, 0.5 * gram(G_old, g_f)[0].diagonal(), 1e6)   # eps as the method has it
    model.zero_grad(set_to_none=True)
    method.backward(_objectives(task, model, spec.sources))
    new = torch.cat([p.grad.reshape(-1) for p in params])
    assert torch.allclose(-new, old.d, rtol=0, atol=1e-6 * float(old.d.abs().max())), float((new + old.d).abs().max())
    assert torch.equal(method.G[:len(spec.sources)], G_old)          # the rows themselves are bit-identical
    for p, h in zip(head, head_old):
        assert torch.allclose(p.grad, h, atol=1e-7)                # default head_reduction: the sum


@pytest.mark.parametrize("name", sorted(n for n, c in METHODS.items() if issubclass(c, GradientMethod)))
def test_every_gradient_method_gives_the_same_update_as_the_old_plumbing(name):
    """The whole method (its combine included) against itself fed the old plumbing's G: same .grad to 1e-6."""
    spec, task, model, method = _moved(name, {})
    params = [p for _, p in model.pretrained_parameters()]
    head = [p for _, p in model.head_parameters()]
    G_old, head_old = _old_rows(task, model, list(spec.sources), params, head)
    torch.manual_seed(11)
    model.zero_grad(set_to_none=True)
    method.backward(_objectives(task, model, spec.sources))
    new = torch.cat([p.grad.reshape(-1) for p in params])
    # the old path: the same method, built and moved the same way, its combine fed the old rows
    _, _, ref_model, ref = _moved(name, {})
    torch.manual_seed(11)
    obj = _objectives(task, ref_model, spec.sources)
    g_f = None
    if ref.forgetting is not None:
        _, g_f = ref.forgetting.value_and_grad(ref_model, obj)
    update, _ = ref.combine(G_old.clone(), g_f, list(spec.sources))
    if update is None:
        update = G_old.sum(0)
    assert torch.allclose(new, update, rtol=0, atol=1e-6 * max(float(update.abs().max()), 1e-12))
    for p, h in zip(head, head_old):
        assert torch.allclose(p.grad, h, atol=1e-7)


def test_gradient_accumulation_adds_each_micro_batch_scaled():
    """Two micro-batches at grad_scale 0.5: .grad is the mean of the two single-batch updates (the first one's
    buffer must not be overwritten by the second's combine)."""
    spec, task, model, method = _moved("lfmlf", {"slack": 0.5, "forgetting": "l2"})
    params = [p for _, p in model.pretrained_parameters()]
    singles = []
    for offset in (0, 4):
        model.zero_grad(set_to_none=True)
        method.backward(_objectives(task, model, spec.sources, offset=offset))
        singles.append(torch.cat([p.grad.reshape(-1) for p in params]).clone())
    model.zero_grad(set_to_none=True)
    for offset in (0, 4):
        method.backward(_objectives(task, model, spec.sources, scale=0.5, offset=offset))
    both = torch.cat([p.grad.reshape(-1) for p in params])
    assert torch.allclose(both, 0.5 * (singles[0] + singles[1]), atol=1e-6 * float(both.abs().max()))


@pytest.mark.parametrize("reduction", ["mean", "size"])
def test_head_reduction_gives_the_head_what_mlf_gives_it(reduction):
    """head_reduction 'mean'/'size': the head's .grad equals MLF's with the same reduction (K=3: the old 'sum'
    was 3 times MLF's mean)."""
    spec, task, model, method = _moved("lfmlf", {"slack": 0.5, "forgetting": "l2", "head_reduction": reduction})
    _, _, mlf_model, _ = _moved("mlf", {})
    mlf = METHODS["mlf"](reduction=reduction)
    mlf.setup(mlf_model, spec.sources)
    model.zero_grad(set_to_none=True)
    method.backward(_objectives(task, model, spec.sources))
    mlf_model.zero_grad(set_to_none=True)
    mlf.backward(_objectives(task, mlf_model, spec.sources))
    for (_, p), (_, q) in zip(model.head_parameters(), mlf_model.head_parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-7)
    _, _, s_model, summed = _moved("lfmlf", {"slack": 0.5, "forgetting": "l2"})   # head_reduction 'sum'
    s_model.zero_grad(set_to_none=True)
    summed.backward(_objectives(task, s_model, spec.sources))
    ratio = [float(p.grad.norm() / q.grad.norm()) for (_, p), (_, q) in zip(s_model.head_parameters(),
                                                                             mlf_model.head_parameters())]
    if reduction == "mean":
        assert ratio == pytest.approx([3.0] * len(ratio), rel=1e-5)


def test_grad_rows_zero_unreached_parameters_and_leave_other_backward_passes_alone():
    lin, unused, extra = torch.nn.Linear(3, 2), torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(2))
    params = list(lin.parameters()) + [unused]
    rows = GradRows(params)
    row = torch.full((rows.numel,), 7.0)
    x = torch.ones(5, 3)
    rows.backward((lin(x) * extra).sum(), row, also=[extra], scale=0.25)
    assert torch.equal(row[-4:], torch.zeros(4))                       # not reached: zero, not stale 7s
    assert torch.equal(row[:6], torch.full((6,), 5.0))                 # d/dW of sum(W x) over 5 rows of ones
    assert all(p.grad is None for p in params)                          # copied into the row, nothing kept
    assert extra.grad is not None and torch.allclose(extra.grad, 0.25 * lin(x).sum(0).detach())
    (lin(x).sum()).backward()                                           # outside GradRows: plain autograd
    assert lin.weight.grad is not None and torch.equal(row[:6], torch.full((6,), 5.0))


def test_grad_rows_set_aside_an_existing_grad_and_write_bfloat16_rows():
    lin = torch.nn.Linear(3, 2)
    rows = GradRows(list(lin.parameters()))
    kept = torch.full_like(lin.weight, 2.0)
    lin.weight.grad = kept
    row = torch.empty(rows.numel, dtype=torch.bfloat16)
    rows.backward(lin(torch.ones(1, 3)).sum(), row)
    assert lin.weight.grad is kept and torch.equal(kept, torch.full_like(kept, 2.0))
    assert row.dtype == torch.bfloat16 and torch.equal(row.float(), torch.ones(8))


def test_set_flat_grad_views_first_then_adds():
    a, b = torch.nn.Parameter(torch.zeros(2, 2)), torch.nn.Parameter(torch.zeros(3))
    flat = torch.arange(7, dtype=torch.float32)
    set_flat_grad([a, b], flat, 1.0)
    assert a.grad.data_ptr() == flat.data_ptr()                         # a view: no copy
    set_flat_grad([a, b], torch.ones(7), 0.5)
    assert torch.equal(torch.cat([a.grad.reshape(-1), b.grad]), torch.arange(7) + 0.5)


def test_flat_view_reads_shared_parameters_without_a_copy_and_flat_params_copies():
    lin = torch.nn.Linear(3, 2)
    params = list(lin.parameters())
    assert flat_view(params) is None                                    # two storages: no view
    buffer = share_storage(params)
    view = flat_view(params)
    assert view is not None and view.data_ptr() == buffer.data_ptr() and not view.requires_grad
    copy = flat_params(params)
    assert torch.equal(view, copy) and copy.data_ptr() != view.data_ptr()
    with torch.no_grad():
        lin.bias.add_(1.0)                                              # an optimizer step, say
    assert torch.equal(view[-2:], lin.bias.detach()) and not torch.equal(copy[-2:], lin.bias.detach())
    assert flat_view(params[::-1]) is None                              # not in the buffer's order


@pytest.mark.parametrize("shared", [True, False])
def test_l2_gradient_reads_theta_in_place_when_shared(shared, monkeypatch):
    """theta - theta0 and 1/2 ||theta - theta0||^2, without flattening theta when the parameters share one
    buffer (as the gradient methods' setup makes them), by a flatten otherwise: the same values."""
    lin = torch.nn.Linear(4, 3)
    params = list(lin.parameters())
    if shared:
        share_storage(params)

    class Model:
        def pretrained_parameters(self):
            return [(str(i), p) for i, p in enumerate(params)]

    l2 = forgetting.L2Forgetting()
    l2.setup(Model())  # type: ignore[arg-type]
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p))
    expected = flatten([p.detach() for p in params], params) - l2.theta0
    if shared:
        def no_flatten(*args, **kwargs):
            raise AssertionError("theta was flattened although its parameters share one buffer")
        monkeypatch.setattr(forgetting, "flatten", no_flatten)
        monkeypatch.setattr(grads, "flatten", no_flatten)               # nor through flat_params
    value, g = l2.value_and_grad(Model(), None)  # type: ignore[arg-type]
    assert torch.equal(g, expected) and value == pytest.approx(0.5 * float(expected @ expected), rel=1e-6)


def test_grad_rows_write_float64_rows_through_numpy_and_other_rows_through_copy():
    """The NumPy path (float32/float64 CPU rows) and copy_ (anything else) give the same values as autograd."""
    lin = torch.nn.Linear(3, 2).double()
    rows = GradRows(list(lin.parameters()))
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    expected = flatten(torch.autograd.grad(lin(x).square().sum(), list(lin.parameters())), list(lin.parameters()))
    for dtype in (torch.float64, torch.float32):                        # float32 row of float64 grads: copy_
        row = torch.full((rows.numel,), 7.0, dtype=dtype)
        rows.backward(lin(x).square().sum(), row)
        assert torch.equal(row, expected.to(dtype))


def test_a_nonfinite_gradient_falls_back_to_the_plain_sum_and_is_counted():
    spec, task, model, method = _moved("lfmlf", {"slack": 0.5, "forgetting": "l2"})
    params = [p for _, p in model.pretrained_parameters()]
    handle = params[-1].register_hook(lambda g: torch.full_like(g, float("inf")))
    model.zero_grad(set_to_none=True)
    method.backward(_objectives(task, model, spec.sources))
    handle.remove()
    assert method.report()["lfmlf/qp_fallbacks"] == 1.0
    G = method.G[:len(spec.sources)]
    assert torch.equal(torch.cat([p.grad.reshape(-1) for p in params]), G.sum(0))   # the plain sum, inf included
