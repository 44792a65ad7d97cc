"""One contract for every registered task (``lfmlf.tasks.TASKS``), on its synthetic data and the tiny random
model, as ``test_method_contract.py`` does for methods: the registry entry names the documented metrics,
the task encodes its examples within the model's vocabulary and ``max_length``, its head over a tiny encoder
gives a finite loss whose gradients reach head and encoder, ``evaluate`` returns exactly the documented
scores in [0, 1] without touching the model (weights, train/eval flags), and the loss and the scores agree:
a model trained to a low loss on a split scores (nearly) perfectly on that split."""
from __future__ import annotations

import math

import pytest
import torch

from lfmlf.config import ModelConfig, SyntheticData, TaskConfig, TrainConfig, TrialSpec
from lfmlf.loop import build_model
from lfmlf.tasks import TASKS

CPU = torch.device("cpu")
SOURCES, TARGETS = ("de", "en"), ("fr",)
# the scores each task's evaluate() returns, as the README ("What gets logged") documents them
DOCUMENTED = {"ner": {"f1"}, "pos": {"acc"}, "nli": {"acc"}, "qa": {"f1", "em"}}
OPTIONS = {"qa": {"doc_stride": 32}}           # short windows over the synthetic paragraphs


pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(name: str, dropout: float = 0.1) -> TrialSpec:
    task = TaskConfig(name=name, format="synthetic", synthetic=SyntheticData(train=16, dev=8, test=8),
                      max_length=96 if name == "qa" else 48, options=OPTIONS.get(name, {}))
    return TrialSpec(sweep="contract", method="mlf", sources=SOURCES, targets=TARGETS,
                     pool=tuple(sorted(SOURCES + TARGETS)), train=TrainConfig(seed=0), task=task,
                     model=ModelConfig(name_or_path="tiny", dropout=dropout))


def _build(name: str, dropout: float = 0.1):
    """The task prepared with the tiny model's tokenizer (trained on the task's own text), and the model."""
    return build_model(_spec(name, dropout), CPU)


def test_every_registered_task_is_under_contract():
    assert set(TASKS) == set(DOCUMENTED), "document the new task's scores in DOCUMENTED (and the README)"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_registry_entry(name):
    cls = TASKS[name]
    assert cls.name == name
    assert cls.metric in DOCUMENTED[name]
    assert "synthetic" in cls.formats, "every task has offline synthetic data (its quickstart)"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_examples_are_encoded_within_the_vocabulary_and_max_length(name):
    task, model = _build(name)
    vocab = model.encoder.get_input_embeddings().num_embeddings
    assert task.pad_id == task.tokenizer.pad_token_id
    for lang in SOURCES:
        examples = task.train_examples(lang)
        assert len(examples) >= 16                 # QA may split a paragraph into more windows than questions
        for ex in examples:
            assert 0 < len(ex["input_ids"]) <= task.cfg.max_length
            assert all(0 <= i < vocab for i in ex["input_ids"])
        batch = task.collate(examples[:5])
        width = max(len(ex["input_ids"]) for ex in examples[:5])
        assert batch["input_ids"].shape == batch["attention_mask"].shape == (5, width)
        assert batch["attention_mask"].sum(1).tolist() == [len(ex["input_ids"]) for ex in examples[:5]]
    texts = list(task.texts(["de"]))
    assert texts and all(isinstance(t, str) and t.strip() for t in texts)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_loss_is_finite_and_its_gradients_reach_head_and_encoder(name):
    task, model = _build(name)
    head = task.build_head(model.encoder.config.hidden_size, 0.1)
    assert isinstance(head, torch.nn.Module) and any(p.requires_grad for p in head.parameters())
    batch = task.collate(task.train_examples("en")[:6])
    model.train()
    loss, hidden = task.loss(model, batch)
    assert loss.dim() == 0 and torch.isfinite(loss) and loss.item() > 0
    assert hidden.shape == (*batch["input_ids"].shape, model.encoder.config.hidden_size)
    loss.backward()
    for part in (model.head, model.encoder):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert all(g is None or torch.isfinite(g).all() for g in grads)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"no gradient reaches the {type(part)}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_evaluate_returns_the_documented_scores_and_leaves_the_model_as_it_was(name):
    task, model = _build(name, dropout=0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    model.head.eval()                          # a mixed state: evaluate must give every module its own back
    for lang, split in (("de", "dev"), ("fr", "test")):
        scores = task.evaluate(model, lang, split, 4, CPU)
        assert set(scores) == DOCUMENTED[name] and task.metric in scores
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in scores.values()), scores
        assert task.evaluate(model, lang, split, 3, CPU) == scores   # no dropout, batch size does not matter
    assert model.training and model.encoder.training and not model.head.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_model_trained_to_a_low_loss_on_a_split_scores_high_on_it(name):
    """The loss and the evaluation read the same labels (alignment, label ids, answer spans): what the model
    learned from the loss is what evaluate() credits."""
    task, model = _build(name, dropout=0.0)
    torch.manual_seed(0)
    batch = task.collate(task.train_examples("de"))
    untrained = task.evaluate(model, "de", "train", 8, CPU)[task.metric]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    first = last = math.nan
    for step in range(60):
        optimizer.zero_grad()
        loss = task.loss(model, batch)[0]
        loss.backward()
        optimizer.step()
        first, last = (loss.item() if step == 0 else first), loss.item()
    assert last < 0.1 * first, (first, last)
    trained = task.evaluate(model, "de", "train", 8, CPU)
    assert trained[task.metric] >= 0.9 and trained[task.metric] > untrained, (untrained, trained)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_the_evaluation_batch_size_does_not_change_the_scores(name):
    """Evaluation batches are grouped by length (each padded only to its own longest example); the scores
    must be those of one example at a time, in the examples' own order."""
    task, model = _build(name)
    one = task.evaluate(model, "fr", "test", 1, CPU)
    assert task.evaluate(model, "fr", "test", 3, CPU) == pytest.approx(one, abs=1e-9)
    assert task.evaluate(model, "fr", "test", 64, CPU) == pytest.approx(one, abs=1e-9)


def test_batches_by_length_cover_every_example_once():
    from lfmlf.tasks.base import by_length

    examples = [{"input_ids": [0] * n} for n in (5, 1, 9, 3, 3, 7, 2)]
    batches = by_length(examples, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [len(examples[i]["input_ids"]) for b in batches for i in b] == [1, 2, 3, 3, 5, 7, 9]
    assert [len(b) for b in batches] == [3, 3, 1]
