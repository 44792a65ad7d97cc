"""One contract for every registered method: a step on a tiny model with two source languages runs,
changes the trainable parameters and only those, returns finite signals, and is deterministic. The step
is the loop's own :func:`lfmlf.loop.train_step`."""
from __future__ import annotations

import math

import pytest
import torch

from lfmlf.loop import build_parts, train_step
from lfmlf.methods import METHODS
from lfmlf.tasks.base import collate
from tests.conftest import tiny_spec


def _one_step(name: str, seed: int = 0):
    spec = tiny_spec(name, model={"freeze_embeddings": True, "freeze_layers": 1},
                     train={"warmup_ratio": 0.0})   # no warm-up: the first step has the full learning rate
    spec = spec.model_copy(update={"sources": ("de", "en")})
    torch.manual_seed(seed)
    parts = build_parts(spec, torch.device("cpu"))
    model = parts.model
    # move off theta0 a little, so that forgetting gradients are not zero
    with torch.no_grad():
        for _, p in model.pretrained_parameters():
            p.add_(1e-3 * torch.randn_like(p))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    batches = {lang: collate(list(parts.task.train_examples(lang)[:4]), parts.task.pad_id) for lang in spec.sources}
    model.train()
    signals = train_step(parts, [({k: 4 for k in spec.sources}, batches)], step=0, measure_realised=True)
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    return before, after, trainable, signals, parts.method.report()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_one_step_changes_only_trainable_parameters_and_reports_finite_signals(name):
    before, after, trainable, signals, report = _one_step(name)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed, "the step changed nothing"
    assert changed <= trainable, f"frozen parameters moved: {sorted(changed - trainable)[:3]}"
    assert any(n.startswith("head.") for n in changed)
    assert any(n.startswith("encoder.") for n in changed), "the encoder never moved"
    assert {f"train/loss/task/{k}" for k in ("de", "en")} | {f"train/realised_dloss/{k}" for k in ("de", "en")} \
        | {"train/grad_norm"} <= set(signals)
    values = [v for vs in signals.values() for v in vs] + list(report.values())
    assert all(math.isfinite(v) for v in values), {**signals, **report}
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
