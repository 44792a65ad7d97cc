"""One contract for every registered method: a step on a tiny model with two source languages runs,
changes the trainable parameters and only those, returns finite signals, and is deterministic."""
from __future__ import annotations

import math

import pytest
import torch

from lfmlf.loop import build, build_optimizer, build_unlabelled
from lfmlf.methods import METHODS
from lfmlf.methods.base import StepObjectives
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec


def _one_step(name: str, seed: int = 0):
    spec = tiny_spec(name, model={"freeze_embeddings": True, "freeze_layers": 1})
    spec = spec.model_copy(update={"sources": ("de", "en")})
    torch.manual_seed(seed)
    task, model, method = build(spec, torch.device("cpu"))
    unlabelled = build_unlabelled(spec, task, method)
    optimizer = build_optimizer(model, spec)
    # move off theta0 a little, so that forgetting gradients are not zero
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(1e-3 * torch.randn_like(p))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    batches = {lang: collate(list(task.train_examples(lang)[:4]), task.pad_id) for lang in spec.sources}
    outs = {lang: task.loss(model, b) for lang, b in batches.items()}
    optimizer.zero_grad(set_to_none=True)
    signals = method.backward(StepObjectives(task={k: o[0] for k, o in outs.items()},
                                             hidden={k: o[1] for k, o in outs.items()}, batches=batches,
                                             sizes={k: 4 for k in spec.sources}, grad_scale=1.0,
                                             unlabelled=unlabelled and unlabelled.batch(torch.device("cpu"))))
    optimizer.step()
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return before, after, trainable, signals, method.report()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_changes_only_trainable_parameters_and_reports_finite_signals(name):
    before, after, trainable, signals, report = _one_step(name)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "the step changed nothing"
    assert changed <= trainable, f"frozen parameters moved: {sorted(changed - trainable)[:3]}"
    assert any(n.startswith("head.") for n in changed)
    assert any(n.startswith("encoder.") for n in changed), "the encoder never moved"
    assert all(math.isfinite(v) for v in {**signals, **report}.values()), {**signals, **report}
    assert all(not torch.isnan(t).any() for t in after.values())


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_is_deterministic_under_a_seed(name):
    _, a, _, sa, _ = _one_step(name, seed=1)
    _, b, _, sb, _ = _one_step(name, seed=1)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert sa == sb


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_hyper_parameter_is_documented(name):
    fields = METHODS[name].Params.model_fields
    assert all(f.description for f in fields.values()), [k for k, f in fields.items() if not f.description]
