"""The training loop: the metrics it reports, determinism, resume from its checkpoint dict, the bf16 and
gradient-accumulation paths, and a clear error when the loss diverges."""
from __future__ import annotations

import math

import pytest
import torch

from lfmlf.data.streams import LanguageStream, allocate, language_weights
from lfmlf.loop import TrainingDiverged, fit
from lfmlf.tasks.ner import NerTask
from tests.conftest import tiny_spec


def _run(spec, state=None):
    return list(fit(spec, state))


def test_reports_every_metric_family_at_every_evaluation():
    evals = _run(tiny_spec("lfmlf"))
    assert [e.step for e in evals] == [3, 6]
    m = evals[-1].metrics
    for key in ["zero_shot/f1/fr", "zero_shot/f1/avg", "zero_shot/f1/min", "source/f1/de", "source/f1/en",
                "source/f1/es", "source/f1/avg", "best/source/f1/avg", "best/zero_shot/f1/fr",
                "train/loss/task/de", "train/realised_dloss/en", "lfmlf/lambda/en", "lfmlf/decrease/es",
                "lfmlf/qp_fallbacks", "perf/steps_per_s", "perf/peak_mem_mb", "eval_step", "step"]:
        assert key in m, key
        assert math.isfinite(m[key]), key
    assert m["eval_step"] == 2 and m["step"] == 6
    assert 0.0 <= m["zero_shot/f1/avg"] <= 1.0
    assert m["zero_shot/f1/min"] <= m["zero_shot/f1/avg"]


def test_same_seed_same_numbers_and_other_seed_other_numbers():
    a = _run(tiny_spec("mlf"))[-1].metrics
    b = _run(tiny_spec("mlf"))[-1].metrics
    c = _run(tiny_spec("mlf", train={"seed": 1}))[-1].metrics
    assert a["train/loss/task/en"] == b["train/loss/task/en"]
    assert a["source/f1/avg"] == b["source/f1/avg"]
    assert a["train/loss/task/en"] != c["train/loss/task/en"]


@pytest.mark.parametrize("method", ["mlf", "lfmlf"])
def test_resume_from_the_checkpoint_dict_reproduces_the_uninterrupted_run(method):
    spec = tiny_spec(method)
    full = _run(spec)
    first = next(iter(fit(spec)))           # stop after the first evaluation, as a killed trial would
    state = first.state()
    resumed = _run(spec, state)
    assert [e.step for e in resumed] == [6]
    for key in ("train/loss/task/de", "source/f1/avg", "zero_shot/f1/avg"):
        assert resumed[0].metrics[key] == pytest.approx(full[-1].metrics[key], rel=1e-6, abs=1e-9), key
    a, b = full[-1].state()["trainable"], resumed[0].state()["trainable"]
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resuming_a_finished_trial_reports_its_last_evaluation_again():
    """A trial killed after its last evaluation but before Tune recorded its end resumes from a checkpoint at
    max_steps: it must report that evaluation again (without training), or the search never gets its score."""
    spec = tiny_spec("mlf")
    final = _run(spec)[-1]
    again = list(fit(spec, final.state()))
    assert [e.step for e in again] == [6]
    assert again[0].metrics == final.metrics


def test_checkpoint_holds_only_trainable_weights_and_what_resume_needs():
    spec = tiny_spec("mlf", model={"freeze_embeddings": True})
    state = next(iter(fit(spec))).state()
    assert not any("word_embeddings" in k for k in state["trainable"])
    assert ({"step", "optimizer", "scheduler", "streams", "batch_rng", "torch_rng", "method", "best", "spec"}
            <= set(state))


def test_bf16_autocast_and_gradient_accumulation_run_on_cpu():
    m = _run(tiny_spec("lfmlf", train={"bf16": True, "grad_accum": 2}))[-1].metrics
    assert math.isfinite(m["train/loss/task/en"]) and m["step"] == 6


def test_nan_loss_is_a_clear_error(monkeypatch):
    real = NerTask.loss

    def poisoned(self, model, batch):
        loss, hidden = real(self, model, batch)
        return loss * float("nan"), hidden

    monkeypatch.setattr(NerTask, "loss", poisoned)
    with pytest.raises(TrainingDiverged,
                       match=r"loss of source language '\w+' is nan at step 0.*lower the learning rate"):
        _run(tiny_spec("mlf"))


def test_freezing_bottom_layers_keeps_them_at_theta0():
    spec = tiny_spec("mlf", model={"freeze_layers": 1, "freeze_embeddings": True})
    state = _run(spec)[-1].state()
    assert not any("layer.0." in k for k in state["trainable"])
    assert any("layer.1." in k for k in state["trainable"])


def test_sampler_weights_and_allocation():
    sizes = {"a": 100, "b": 400}
    assert language_weights(sizes, "uniform", 1.0) == {"a": 0.5, "b": 0.5}
    assert language_weights(sizes, "proportional", 1.0) == {"a": 0.2, "b": 0.8}
    w = language_weights(sizes, "temperature", 2.0)          # sqrt: 10 vs 20
    assert w["a"] == pytest.approx(1 / 3) and w["b"] == pytest.approx(2 / 3)
    g = torch.Generator().manual_seed(0)
    counts = [allocate(10, {"a": 0.1, "b": 0.9}, g) for _ in range(200)]
    assert all(c["a"] >= 1 and c["b"] >= 1 and c["a"] + c["b"] == 10 for c in counts)
    assert sum(c["b"] for c in counts) / sum(c["a"] for c in counts) > 4


def test_language_stream_resumes_mid_epoch():
    examples = [{"input_ids": [i]} for i in range(7)]
    s = LanguageStream(examples, seed=3, lang="en")
    s.take(10)
    t = LanguageStream(examples, seed=3, lang="en")
    t.restore(s.state())
    assert s.take(9) == t.take(9)


def test_data_cache_key_covers_the_data_code(monkeypatch):
    """Entries written by other code are never read: the key includes the hash of lfmlf.tasks and lfmlf.data
    (an older release cached (examples, truncated) where the tagging tasks now cache three values)."""
    from lfmlf.loop import build
    from lfmlf.tasks import base

    spec = tiny_spec("mlf")
    task, _, _ = build(spec, torch.device("cpu"))
    assert task.prep_stats["cache_misses"] + task.prep_stats["cache_hits"] > 0
    hits = build(spec, torch.device("cpu"))[0].prep_stats
    assert hits["cache_misses"] == 0
    base.code_fingerprint.cache_clear()
    monkeypatch.setattr(base, "code_fingerprint", lambda: "other code")
    assert build(spec, torch.device("cpu"))[0].prep_stats["cache_hits"] == 0


def test_peak_memory_is_per_trial_in_a_reused_worker_process():
    """Tune reuses a worker process for the next trial: an earlier trial's peak must not be reported."""
    import sys

    import torch

    from lfmlf.device import peak_memory_mb, reset_peak_memory

    if not sys.platform.startswith("linux"):
        pytest.skip("the per-trial reset of the peak RSS is Linux's /proc/self/clear_refs")
    cpu = torch.device("cpu")
    big = bytearray(400 * 2**20)   # an earlier trial's 400 MB peak
    big[::4096] = b"x" * len(big[::4096])
    del big
    before = peak_memory_mb(cpu)
    reset_peak_memory(cpu)
    after = peak_memory_mb(cpu)
    assert before - after > 300, (before, after)


@pytest.mark.parametrize("method", sorted(__import__("lfmlf.methods", fromlist=["METHODS"]).METHODS))
def test_every_methods_checkpoint_loads_with_weights_only(method, tmp_path):
    """Trials resume with torch.load(weights_only=True): the checkpoint holds tensors and plain data only."""
    import torch

    from lfmlf.loop import fit

    state = list(fit(tiny_spec(method, train={"max_steps": 3, "eval_every": 3})))[-1].state()
    torch.save(state, tmp_path / "state.pt")
    loaded = torch.load(tmp_path / "state.pt", weights_only=True)
    assert loaded["step"] == 3


class _Boom:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['LFMLF_BOOM'], 'w').write('ran')",))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path, monkeypatch):
    import pickle

    import torch

    marker = tmp_path / "ran"
    monkeypatch.setenv("LFMLF_BOOM", str(marker))
    path = tmp_path / "state.pt"
    torch.save({"step": 1, "evil": _Boom()}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()
