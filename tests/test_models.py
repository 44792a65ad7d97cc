"""lfmlf.models.eval_mode: evaluation inside training gives every module its own train/eval flag back."""
from __future__ import annotations

import pytest
from torch import nn

from lfmlf.models import eval_mode


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 1)))


def test_eval_mode_runs_the_block_in_eval_mode_and_restores_every_flag():
    net = _net().train()
    net[2].eval()                                       # a mixed state, as a frozen sub-model has
    before = [m.training for m in net.modules()]
    with eval_mode(net) as inside:
        assert inside is net and not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before


def test_eval_mode_restores_the_flags_when_the_block_fails():
    net = _net().train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert all(m.training for m in net.modules())
