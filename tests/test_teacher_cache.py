"""The distillation teacher-state cache (lfmlf/teacher.py): cached states equal a fresh frozen forward whatever
the padding, hits and misses are counted per row, the memory figure is the bytes held, the cap is respected
and counted, and a distill trial trains identically with the cache on and off."""
from __future__ import annotations

import copy

import pytest
import torch

from lfmlf.forgetting import FORGETTING, DistillForgetting, L2Forgetting
from lfmlf.loop import build_parts, train_step
from lfmlf.methods.base import StepObjectives
from lfmlf.methods.distill import Distill
from lfmlf.models import TaskModel
from lfmlf.tasks.base import collate
from lfmlf.teacher import TeacherStates
from tests.conftest import tiny_spec


class CountingReference(torch.nn.Module):
    """The frozen encoder, counting the rows it is asked to forward."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.rows = 0

    def forward(self, input_ids, attention_mask):
        self.rows += input_ids.shape[0]
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask)


@pytest.fixture(scope="module")
def tiny():
    """(parts of a tiny distill trial at theta0, 12 distinct encoded sentences of different lengths, pad id)."""
    torch.manual_seed(0)
    parts = build_parts(tiny_spec("distill", params={"weight": 1.0}), torch.device("cpu"))
    seen, examples = set(), []
    for e in parts.task.train_examples("de"):
        if tuple(e["input_ids"]) not in seen:
            seen.add(tuple(e["input_ids"]))
            examples.append(e)
    examples = examples[:12]
    assert len({len(e["input_ids"]) for e in examples}) > 2, "the test needs sentences of different lengths"
    return parts, examples, parts.task.pad_id


def _repad(batch: dict, extra: int, pad_id: int) -> dict:
    """The same sentences with ``extra`` more padding columns."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    return {"input_ids": torch.cat([ids, torch.full((ids.shape[0], extra), pad_id)], 1),
            "attention_mask": torch.cat([mask, torch.zeros(mask.shape[0], extra, dtype=mask.dtype)], 1)}


def _fresh(reference, batch) -> torch.Tensor:
    with torch.no_grad():
        return reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state


def _masked_close(a, b, mask, atol=1e-5):
    m = mask.bool()
    assert a.shape == b.shape
    assert torch.allclose(a[m], b[m], atol=atol, rtol=0), float((a[m] - b[m]).abs().max())


def test_cached_states_equal_a_fresh_frozen_forward_with_any_padding_and_are_not_recomputed(tiny):
    parts, ex, pad = tiny
    frozen = parts.model.frozen_encoder_copy()
    ref = CountingReference(frozen)
    teacher = TeacherStates(ref)
    first = collate(ex[:6], pad)
    _masked_close(teacher(first["input_ids"], first["attention_mask"]), _fresh(frozen, first), first["attention_mask"])
    assert ref.rows == 6
    # the same sentences in another order, in a wider sub-batch, with two new ones: only the new ones run
    mixed = _repad(collate([ex[4], ex[6], ex[0], ex[2], ex[7], ex[5]], pad), 7, pad)
    got = teacher(mixed["input_ids"], mixed["attention_mask"])
    _masked_close(got, _fresh(frozen, mixed), mixed["attention_mask"])
    assert ref.rows == 8
    hits = [0, 2, 3, 5]      # rows read from the store: zeros at padded positions (masked by the loss)
    assert (got[hits][~mixed["attention_mask"][hits].bool()] == 0).all()
    # a sub-batch of sentences seen only inside other sub-batches, padded to their own longest: no forward
    alone = collate([ex[7], ex[1]], pad)
    _masked_close(teacher(alone["input_ids"], alone["attention_mask"]), _fresh(frozen, alone),
                  alone["attention_mask"])
    assert ref.rows == 8


def test_hits_and_misses_are_counted_per_row_over_repeated_sub_batches(tiny):
    parts, ex, pad = tiny
    ref = CountingReference(parts.model.frozen_encoder_copy())
    teacher = TeacherStates(ref)
    a, b = collate(ex[:4], pad), collate(ex[2:8], pad)
    expected = [(0, 4), (4, 4), (6, 8), (12, 8)]     # (hits, misses) after a, a, b (2 seen + 4 new), b
    for batch, (hits, misses) in zip([a, a, b, b], expected):
        teacher(batch["input_ids"], batch["attention_mask"])
        r = teacher.report()
        assert (r["teacher_hits"], r["teacher_misses"]) == (hits, misses)
        assert ref.rows == misses
    assert len(teacher.states) == 8 and r["teacher_uncached"] == 0


@pytest.mark.parametrize("dtype, size", [("float32", 4), ("bfloat16", 2), ("float16", 2)])
def test_memory_figure_is_the_bytes_held(tiny, dtype, size):
    parts, ex, pad = tiny
    frozen = parts.model.frozen_encoder_copy()
    hidden = frozen.config.hidden_size
    teacher = TeacherStates(frozen, dtype=dtype)
    batch = collate(ex[:5], pad)
    teacher(batch["input_ids"], batch["attention_mask"])
    teacher(batch["input_ids"], batch["attention_mask"])    # hits add nothing
    tokens = sum(len(e["input_ids"]) for e in ex[:5])
    expected = tokens * hidden * size + tokens * 8          # states + int64 keys
    assert teacher.bytes == expected
    assert teacher.report()["teacher_cache_mb"] == pytest.approx(expected / 2**20, rel=1e-12)
    assert all(s.dtype == getattr(torch, dtype) for s in teacher.states.values())


def test_half_precision_storage_rounds_the_states_and_float32_is_exact(tiny):
    parts, ex, pad = tiny
    frozen = parts.model.frozen_encoder_copy()
    batch = collate(ex[:5], pad)
    exact = _fresh(frozen, batch)
    m = batch["attention_mask"].bool()
    for dtype, tol in [("float32", 0.0), ("bfloat16", 8e-3), ("float16", 1e-3)]:
        teacher = TeacherStates(frozen, dtype=dtype)
        teacher(batch["input_ids"], batch["attention_mask"])
        again = teacher(batch["input_ids"], batch["attention_mask"])     # read back from the store
        err = float(((again[m] - exact[m]).abs() / exact[m].abs().clamp_min(1e-3)).max())
        assert err <= tol, (dtype, err)
        if dtype != "float32":
            assert err > 0, "half precision storage should round"


def test_a_full_store_keeps_what_fits_recomputes_the_rest_and_counts_it(tiny):
    parts, ex, pad = tiny
    frozen = parts.model.frozen_encoder_copy()
    ref = CountingReference(frozen)
    hidden = frozen.config.hidden_size
    room = sum(len(e["input_ids"]) for e in ex[:3]) * (hidden * 4 + 8)     # exactly the first three sentences
    teacher = TeacherStates(ref, max_mb=room / 2**20)
    first, second = collate(ex[:6], pad), collate(ex[1:7], pad)
    for batch in (first, second):
        _masked_close(teacher(batch["input_ids"], batch["attention_mask"]), _fresh(frozen, batch),
                      batch["attention_mask"])
    r = teacher.report()
    assert teacher.bytes == room and len(teacher.states) == 3
    assert (r["teacher_hits"], r["teacher_misses"], r["teacher_uncached"]) == (2, 10, 7)
    assert ref.rows == 10


def test_turned_off_it_runs_the_frozen_forward_every_time_and_stores_nothing(tiny):
    parts, ex, pad = tiny
    frozen = parts.model.frozen_encoder_copy()
    ref = CountingReference(frozen)
    teacher = TeacherStates(ref, cache=False)
    batch = collate(ex[:4], pad)
    for _ in range(3):
        assert torch.equal(teacher(batch["input_ids"], batch["attention_mask"]), _fresh(frozen, batch))
    assert ref.rows == 12 and not teacher.states
    assert teacher.report() == {"teacher_cache_mb": 0.0, "teacher_hits": 0.0, "teacher_misses": 12.0,
                                "teacher_uncached": 0.0, "teacher_loaded": 0.0, "teacher_node_sets": 0.0,
                                "teacher_sets_too_big": 0.0, "teacher_precomputed": 0.0}


def test_bad_options_are_rejected(tiny):
    frozen = tiny[0].model.frozen_encoder_copy()
    with pytest.raises(ValueError, match="dtype"):
        TeacherStates(frozen, dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_mb"):
        TeacherStates(frozen, max_mb=0)
    with pytest.raises(ValueError, match="teacher_dtype"):
        Distill(teacher_dtype="float64")


def _objectives(model: TaskModel, batches: dict) -> StepObjectives:
    hidden = {k: model.encode(b["input_ids"], b["attention_mask"]) for k, b in batches.items()}
    return StepObjectives(task={}, hidden=hidden, batches=batches, sizes={k: 1 for k in batches}, grad_scale=1.0)


def test_distill_forgetting_value_and_gradient_are_the_same_with_the_cache_on_and_off(tiny):
    parts, ex, pad = tiny
    torch.manual_seed(1)
    model = copy.deepcopy(parts.model)     # moved below: the module's fixture stays at theta0
    on, off = DistillForgetting(), DistillForgetting(cache=False)
    on.setup(model)
    off.setup(model)
    with torch.no_grad():    # move off theta0, so that F and its gradient are not zero
        for _, p in model.pretrained_parameters():
            p.add_(1e-2 * torch.randn_like(p))
    model.eval()
    first = {"de": collate(ex[:4], pad), "en": collate(ex[4:8], pad)}
    again = {"de": _repad(collate([ex[3], ex[1], ex[0]], pad), 5, pad), "en": collate(ex[5:9], pad)}
    for batches in (first, again):
        v_on, g_on = on.value_and_grad(model, _objectives(model, batches))
        g_on = g_on.clone()
        v_off, g_off = off.value_and_grad(model, _objectives(model, batches))
        assert v_on > 0 and torch.count_nonzero(g_on) > 0
        assert v_on == pytest.approx(v_off, rel=1e-5)
        assert torch.allclose(g_on, g_off, rtol=1e-4, atol=1e-7)
    r = on.report()
    assert (r["distill/teacher_hits"], r["distill/teacher_misses"]) == (6, 9)
    assert off.report()["distill/teacher_misses"] == 15 and off.report()["distill/teacher_cache_mb"] == 0
    assert L2Forgetting().report() == {} and FORGETTING["distill"] is DistillForgetting


def _train(teacher_cache: bool, steps: int = 4):
    """A distill trial on the tiny model: ``steps`` optimizer steps over the same two micro-batches in turn."""
    spec = tiny_spec("distill", params={"weight": 5.0, "teacher_cache": teacher_cache}, train={"warmup_ratio": 0.0})
    spec = spec.model_copy(update={"sources": ("de", "en")})
    torch.manual_seed(0)
    parts = build_parts(spec, torch.device("cpu"))
    pad = parts.task.pad_id
    micro = [{lang: collate(list(parts.task.train_examples(lang)[i:i + 4]), pad) for lang in ("de", "en")}
             for i in (0, 4)]
    parts.model.train()
    penalties = []
    for step in range(steps):
        signals = train_step(parts, [({"de": 4, "en": 4}, micro[step % 2])], step=step)
        penalties += signals["distill/penalty"]
    return parts, penalties


def test_a_distill_trial_trains_identically_with_the_cache_on_and_off(one_thread):
    """With the cache on, the trial's setup precomputes every training example's frozen states (they fit), so
    no step runs the frozen forward; the states come from differently shaped batches, so the trial equals the
    uncached one to float32 rounding, not bit for bit."""
    on, pen_on = _train(True)
    off, pen_off = _train(False)
    assert pen_on == pytest.approx(pen_off, rel=1e-5) and pen_on[-1] > 0
    for (n, a), (_, b) in zip(on.model.named_parameters(), off.model.named_parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-5), n
    r_on, r_off = on.method.report(), off.method.report()
    assert r_on["distill/teacher_node_sets"] == 2
    assert (r_on["distill/teacher_hits"], r_on["distill/teacher_misses"]) == (32, 0)   # every step reads the store
    assert r_on["distill/teacher_cache_mb"] > 0
    assert (r_off["distill/teacher_hits"], r_off["distill/teacher_misses"], r_off["distill/teacher_cache_mb"]) \
        == (0, 32, 0)


def test_the_per_node_store_is_computed_once_and_read_by_the_next_trial(tiny, tmp_path):
    from lfmlf.teacher import node_states

    parts, ex, pad = tiny
    frozen = parts.model.frozen_encoder_copy()
    subs = [collate(ex[i:i + 4], pad) for i in (0, 4, 8)]

    def batches():
        return ((b["input_ids"], b["attention_mask"]) for b in subs)

    first_ref = CountingReference(frozen)
    first = TeacherStates(first_ref)
    assert node_states(first, batches, "theta0", "data", tmp_path) is False    # built here
    assert first_ref.rows == 12 and first.report()["teacher_misses"] == 12
    second_ref = CountingReference(frozen)
    second = TeacherStates(second_ref)
    assert node_states(second, batches, "theta0", "data", tmp_path) is True    # read from disk
    assert second_ref.rows == 0 and second.loaded == 12 and second.bytes == first.bytes
    mixed = _repad(collate([ex[9], ex[2], ex[5]], pad), 3, pad)
    got = second(mixed["input_ids"], mixed["attention_mask"])
    _masked_close(got, _fresh(frozen, mixed), mixed["attention_mask"])
    assert second_ref.rows == 0 and (second.hits, second.misses) == (3, 0)
    # another model, other data or another storage dtype is another entry; a store turned off reads nothing
    for teacher, keys in [(TeacherStates(frozen), ("theta0'", "data")), (TeacherStates(frozen), ("theta0", "data'")),
                          (TeacherStates(frozen, dtype="bfloat16"), ("theta0", "data"))]:
        assert node_states(teacher, batches, *keys, tmp_path) is False and teacher.loaded == 0
    off = TeacherStates(frozen, cache=False)
    assert node_states(off, batches, "theta0", "data", tmp_path) is False and off.misses == 0


def test_a_distilled_fraction_uses_the_first_rows_of_each_sub_batch_only(tiny):
    from lfmlf.forgetting import distill_loss, distill_objective

    parts, ex, pad = tiny
    torch.manual_seed(2)
    frozen = parts.model.frozen_encoder_copy()
    moved = copy.deepcopy(parts.model).eval()
    with torch.no_grad():
        for _, p in moved.pretrained_parameters():
            p.add_(1e-2 * torch.randn_like(p))
    batches = {"de": collate(ex[:4], pad), "en": collate(ex[4:9], pad)}    # 4 and 5 rows: 2 and 3 distilled
    ref = CountingReference(frozen)
    half = distill_objective(TeacherStates(ref), moved, _objectives(moved, batches), fraction=0.5)
    assert ref.rows == 5
    heads = {"de": collate(ex[:2], pad), "en": collate(ex[4:7], pad)}
    expected = distill_loss(TeacherStates(frozen, cache=False), _objectives(moved, heads).hidden, heads)
    assert half.item() == pytest.approx(expected.item(), rel=1e-5)
    full = distill_objective(TeacherStates(frozen), moved, _objectives(moved, batches))
    assert abs(full.item() - half.item()) > 1e-3 * full.item()   # another objective
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="fraction"):
            DistillForgetting(fraction=bad)
        with pytest.raises(ValueError, match="distill_fraction"):
            Distill(distill_fraction=bad)


def test_a_trial_precomputes_its_training_sets_once_per_node_and_the_next_trial_reads_them(tmp_path, monkeypatch):
    """lfmlf with forgetting 'distill': the first trial's setup computes the frozen states of every source's
    training set (one per-node store per language), the second trial's setup reads them, and its first steps
    run no frozen forward at all; with a store too small for the states nothing is precomputed (counted)."""
    from lfmlf.loop import build
    from tests.conftest import tiny_spec

    monkeypatch.setenv("LFMLF_CACHE_DIR", str(tmp_path / "cache"))
    spec = tiny_spec("lfmlf", params={"forgetting": "distill"}, model={"dropout": 0.0})
    spec = spec.model_copy(update={"task": spec.task.model_copy(update={"cache_dir": None})})
    _, _, first = build(spec, torch.device("cpu"))
    r1 = first.report()
    assert r1["distill/teacher_node_sets"] == len(spec.sources) and r1["distill/teacher_loaded"] == 0
    n_train = len(first.forgetting.teacher.states)
    assert r1["distill/teacher_precomputed"] >= n_train > 0 and r1["distill/teacher_misses"] == 0
    task, model, second = build(spec, torch.device("cpu"))
    r2 = second.report()
    assert r2["distill/teacher_node_sets"] == len(spec.sources) and r2["distill/teacher_precomputed"] == 0
    assert r2["distill/teacher_loaded"] == sum(len(task.train_examples(lang)) for lang in spec.sources)
    batches = {lang: collate(list(task.train_examples(lang)[:4]), task.pad_id) for lang in spec.sources}
    teacher = second.forgetting.teacher
    for b in batches.values():
        teacher(b["input_ids"], b["attention_mask"])
    assert teacher.misses == 0 and teacher.hits == 4 * len(spec.sources)
    small = spec.model_copy(update={"method_params": {"forgetting": "distill", "teacher_cache_max_mb": 1e-4}})
    _, _, tight = build(small, torch.device("cpu"))
    r3 = tight.report()
    assert r3["distill/teacher_node_sets"] == 0 and r3["distill/teacher_sets_too_big"] == len(spec.sources)
