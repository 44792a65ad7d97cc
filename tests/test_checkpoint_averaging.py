"""Checkpoint averaging (Schmidt et al., ACL 2023): ``train.average_last`` = k averages the trainable weights
of a run's last k evaluations at its last step and logs the averaged model's scores as ``avg/*``."""
from __future__ import annotations

import io
import math

import pytest
import torch

from lfmlf.checkpoints import average_weights, averaged_weights, weights_at
from lfmlf.loop import fit
from tests.conftest import tiny_spec

AVERAGING = {"lr": 1e-2, "max_steps": 9, "eval_every": 3, "average_last": 2}


def test_average_weights_is_the_elementwise_mean():
    g = torch.Generator().manual_seed(0)
    states = [{"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)} for _ in range(3)]
    mean = average_weights(states)
    for k in ("a", "b"):
        assert torch.allclose(mean[k], (states[0][k] + states[1][k] + states[2][k]) / 3, atol=1e-7)
        assert mean[k].dtype == torch.float32
    half = average_weights([{"w": torch.ones(2, dtype=torch.bfloat16)}, {"w": torch.zeros(2, dtype=torch.bfloat16)}])
    assert half["w"].dtype == torch.bfloat16 and half["w"].tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="same keys"):
        average_weights([{"a": torch.ones(1)}, {"b": torch.ones(1)}])


def _saved(state: dict) -> dict:
    """A checkpoint dict as Tune keeps it: written when reported (training goes on changing the optimizer's
    tensors that ``state()`` refers to)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.fixture(scope="module")
def run():
    """Per evaluation: (metrics, checkpoint dict saved when the evaluation was reported)."""
    return [(e.metrics, _saved(e.state())) for e in fit(tiny_spec("mlf", train=AVERAGING))]


def test_averaged_weights_are_the_mean_of_the_saved_checkpoints(run):
    """The checkpoints saved at steps 6 and 9 (as Tune saves them) average to what the loop evaluated."""
    (_, s3), (_, s6), (_, s9) = run
    assert s9["recent"] == [6, 9]
    steps, mean = averaged_weights(s9)
    assert steps == [6, 9]
    saved = [s6["trainable"], s9["trainable"]]
    for k in mean:
        assert torch.allclose(mean[k], ((saved[0][k].double() + saved[1][k].double()) / 2).float(), atol=1e-7), k
    assert torch.equal(weights_at(s9, 6)["encoder.embeddings.word_embeddings.weight"],
                       s6["trainable"]["encoder.embeddings.word_embeddings.weight"].cpu())


def test_the_averaged_model_is_evaluated_once_at_the_last_step(run):
    (m3, _), (m6, _), (m9, s9) = run
    assert not any(k.startswith("avg/") for k in {**m3, **m6})
    assert m9["avg/checkpoints"] == 2 and m9["avg/first_step"] == 6
    for key in ("avg/zero_shot/f1/fr", "avg/zero_shot/f1/avg", "avg/source/f1/avg", "avg/source/f1/en"):
        assert math.isfinite(m9[key]) and 0.0 <= m9[key] <= 1.0, key
    assert not any(k.startswith("best/avg") for k in m9)   # no selection over the average
    # the averaged model's scores are those of the mean weights (evaluated here again, independently)
    from lfmlf.loop import build_model, evaluate

    spec = tiny_spec("mlf", train=AVERAGING)
    task, model = build_model(spec, torch.device("cpu"))
    model.load_state_dict(averaged_weights(s9)[1], strict=False)
    again = evaluate(task, model, spec, torch.device("cpu"))
    assert again["zero_shot/f1/fr"] == pytest.approx(m9["avg/zero_shot/f1/fr"], abs=1e-9)
    assert again["source/f1/avg"] == pytest.approx(m9["avg/source/f1/avg"], abs=1e-9)
    # the run's own weights were put back after the averaged evaluation
    assert torch.equal(s9["trainable"]["head.1.weight"].cpu(), weights_at(s9, 9)["head.1.weight"].cpu())


def test_resume_keeps_averaging_exact(run):
    """The last k evaluations' weights travel in the checkpoint, so a resumed run averages the same ones."""
    spec = tiny_spec("mlf", train=AVERAGING)
    for metrics, state in run[:2]:
        resumed = list(fit(spec, state))[-1].metrics
        for key in ("avg/zero_shot/f1/fr", "avg/source/f1/avg", "zero_shot/f1/fr", "best/zero_shot/f1/fr"):
            assert resumed[key] == pytest.approx(run[-1][0][key], abs=1e-9), (metrics["step"], key)


def test_the_checkpoint_keeps_each_evaluation_once(run):
    """Only the weights the selection and the average need, none twice: the current ones are "trainable"."""
    (_, s3), (_, s6), (_, s9) = run
    assert s3["best"]["step"] == 3 and set(s3["kept"]) == set()
    assert set(s6["kept"]) == {3}                 # the selected step 3; step 6 is the current one
    assert set(s9["kept"]) == {3, 6}              # the selected step 3 and step 6 for the average


def test_without_averaging_nothing_more_is_kept():
    evals = [(e.metrics, e.state()) for e in fit(tiny_spec("mlf"))]
    metrics, state = evals[-1]
    assert not any(k.startswith("avg/") for k in metrics)
    assert state["recent"] == [] and set(state["kept"]) <= {int(metrics["best/step"])} - {state["step"]}


def test_average_last_of_one_is_refused():
    from pydantic import ValidationError

    from lfmlf.config import TrainConfig

    with pytest.raises(ValidationError, match="average_last=1 averages the last checkpoint with nothing"):
        TrainConfig(average_last=1)
    assert TrainConfig(average_last=3).average_last == 3
