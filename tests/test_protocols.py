"""Exact reference protocols (issue 14, item 4): a fixed number of examples per source language in every
micro-batch, separate training and evaluation lengths, head dropout apart from the encoder's, and the
retrieval probe's input prefix, directions (xx-en, en-xx) and margin scoring."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lfmlf.config import (
    ConfigError,
    ModelConfig,
    ProbeConfig,
    SyntheticData,
    TaskConfig,
    TinyModel,
    TrainConfig,
    TrialSpec,
    trial_spec,
)
from lfmlf.config.loading import load_sweep
from lfmlf.data.streams import LanguageStream, allocate
from lfmlf.loop import _draw, build_model
from lfmlf.models import train_tokenizer
from lfmlf.probes import RetrievalProbe, accuracy, metrics, ratio_margin, reverse_accuracy, similarity, top1
from lfmlf.probes.retrieval import _build
from lfmlf.tasks import TASKS
from tests.test_probes import FakeEncoder, WordTokenizer, tatoeba_cfg

QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"


# ------------------------------------------------------------------------------------ per-source batches
def test_allocate_gives_exactly_n_of_each_source_and_leaves_the_generator_alone():
    g = torch.Generator().manual_seed(3)
    before = g.get_state().clone()
    counts = allocate(999, {"de": 0.9, "en": 0.05, "es": 0.05}, g, per_source=5)
    assert counts == {"de": 5, "en": 5, "es": 5}
    assert torch.equal(g.get_state(), before)
    drawn = allocate(12, {"de": 0.9, "en": 0.05, "es": 0.05}, g)           # today's: 1 each + a draw
    assert sum(drawn.values()) == 12 and min(drawn.values()) >= 1


class _Collating:
    """The one Task method ``_draw`` calls."""

    @staticmethod
    def collate(examples):
        return {"input_ids": torch.tensor([[e["id"]] for e in examples])}


def test_draw_takes_per_source_batch_examples_of_each_source_every_micro_batch():
    train = TrainConfig(per_source_batch=3, batch_size=12, grad_accum=2)
    spec = TrialSpec(sweep="s", method="mlf", sources=("de", "en"), targets=("fr",), pool=("de", "en", "fr"),
                     train=train, task=TaskConfig(), model=ModelConfig())
    streams = {lang: LanguageStream([{"id": i} for i in range(10)], 0, lang) for lang in ("de", "en")}
    rng = torch.Generator().manual_seed(0)
    for _ in range(4):
        sizes, batches = _draw(_Collating(), spec, streams, {"de": 0.99, "en": 0.01}, rng, torch.device("cpu"))
        assert sizes == {"de": 3, "en": 3}
        assert {lang: b["input_ids"].shape[0] for lang, b in batches.items()} == {"de": 3, "en": 3}
    assert streams["de"].state() == (1, 2)    # 4 x 3 = 12 examples of 10: one pass and 2


def test_per_source_batch_derives_batch_size_from_the_largest_source_set():
    cfg = load_sweep(QUICKSTART, ["train.per_source_batch=8"])       # 8 x 3 sources x 1 = 24: agrees
    assert cfg.train.batch_size == 24
    spec = trial_spec(cfg, {"method": "mlf", "source_set": "de+en", "lr": 1e-3})
    assert spec.train.batch_size == 16 and spec.train.per_source_batch == 8    # the trial's own: 8 x 2


def test_per_source_batch_without_batch_size_is_derived(tmp_path):
    text = QUICKSTART.read_text().replace("  batch_size: 24\n", "  per_source_batch: 4\n  grad_accum: 2\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(text.replace("../search_spaces/", str(QUICKSTART.parents[1] / "search_spaces") + "/"))
    cfg = load_sweep(path)
    assert cfg.train.batch_size == 4 * 3 * 2
    again = load_sweep(path, [f"train.batch_size={cfg.train.batch_size}"])   # a written-out config reloads
    assert again.train == cfg.train


def test_a_batch_size_that_disagrees_with_per_source_batch_names_both_and_the_fix():
    with pytest.raises(ConfigError) as ei:
        load_sweep(QUICKSTART, ["train.per_source_batch=4"])                 # 4 x 3 x 1 = 12, not 24
    msg = str(ei.value)
    assert "train.batch_size (24)" in msg and "train.per_source_batch (4)" in msg and "= 12" in msg
    assert "Fix: remove train.batch_size" in msg and "set it to 12" in msg


def test_a_search_that_samples_batch_size_cannot_override_per_source_batch():
    cfg = load_sweep(QUICKSTART, ["train.per_source_batch=8"])
    with pytest.raises(ConfigError, match="sample per_source_batch instead"):
        trial_spec(cfg, {"method": "mlf", "source_set": "de+en", "batch_size": 32})
    spec = trial_spec(cfg, {"method": "mlf", "source_set": "de+en+es", "per_source_batch": 2})
    assert spec.train.batch_size == 6


# ------------------------------------------------------------------------------------ lengths and dropout
def _ner(tmp_path: Path, **kw) -> TaskConfig:
    return TaskConfig(name="ner", format="synthetic", synthetic=SyntheticData(train=30, dev=30, test=30),
                      cache_dir=str(tmp_path / "cache"), **kw)


def test_eval_splits_truncate_at_eval_max_length_and_training_at_max_length(tmp_path):
    def lengths(cfg: TaskConfig) -> tuple[object, dict[str, int]]:
        task = TASKS["ner"](cfg)
        tok = train_tokenizer(list(task.texts(["de", "fr"])), 300)
        task.prepare(tok, ["de"], ["fr"])
        longest = {f"{lang}/{split}": max(len(e["input_ids"]) for e in task._encode(lang, split))
                   for lang, split in (("de", "train"), ("de", "dev"), ("fr", "test"))}
        return task, longest

    _, full = lengths(_ner(tmp_path, max_length=512))
    assert min(full.values()) > 12                       # the sentences are longer than the cut below
    short_task, short = lengths(_ner(tmp_path, max_length=12, eval_max_length=512))
    assert short["de/train"] == 12 and short["de/dev"] == full["de/dev"] and short["fr/test"] == full["fr/test"]
    assert short_task.truncated_words[("de", "train")] > 0 and short_task.truncated_words[("de", "dev")] == 0
    same_task, same = lengths(_ner(tmp_path, max_length=12))                   # default: eval as training
    assert same == {k: 12 for k in same}
    assert same_task.prep_stats["cache_hits"] >= 1         # the 12-token training split is shared


def test_max_length_for_defaults_to_max_length():
    task = TASKS["ner"](TaskConfig(format="synthetic", max_length=32))
    assert [task.max_length_for(s) for s in ("train", "dev", "test")] == [32, 32, 32]
    task = TASKS["ner"](TaskConfig(format="synthetic", max_length=32, eval_max_length=256))
    assert [task.max_length_for(s) for s in ("train", "dev", "test")] == [32, 256, 256]


def _spec(tmp_path: Path, model: ModelConfig) -> TrialSpec:
    return TrialSpec(sweep="s", method="mlf", sources=("de",), targets=("fr",), pool=("de", "fr"),
                     train=TrainConfig(), task=_ner(tmp_path), model=model)


def test_head_dropout_reaches_the_head_and_not_the_encoder(tmp_path):
    tiny = TinyModel(hidden_size=16, layers=1, heads=1, vocab_size=200)
    _, model = build_model(_spec(tmp_path, ModelConfig(tiny=tiny, dropout=0.1, head_dropout=0.4)), torch.device("cpu"))
    head_p = [m.p for m in model.head.modules() if isinstance(m, torch.nn.Dropout)]
    encoder_p = {m.p for m in model.encoder.modules() if isinstance(m, torch.nn.Dropout)}
    assert head_p == [0.4] and encoder_p == {0.1}
    assert model.encoder.config.hidden_dropout_prob == 0.1
    _, model = build_model(_spec(tmp_path, ModelConfig(tiny=tiny, dropout=0.2)), torch.device("cpu"))
    assert [m.p for m in model.head.modules() if isinstance(m, torch.nn.Dropout)] == [0.2]   # default: dropout


# ------------------------------------------------------------------------------------------ the probe
class _Recording(WordTokenizer):
    def __init__(self) -> None:
        super().__init__(extra="query:")
        self.seen: list[str] = []

    def __call__(self, texts, **kw):
        self.seen.extend(texts)
        return super().__call__(texts, **kw)


def test_probe_prefix_reaches_the_tokenizer_on_both_sides():
    tok = _Recording()
    pairs = {"de": [("hund schläft", "dog sleeps")]}
    data = _build(pairs, tok, 32, 8, prefix="query: ")
    assert set(tok.seen) == {"query: dog sleeps", "query: hund schläft"}
    plain = _build(pairs, _Recording(), 32, 8)
    query_id = tok.vocab["query:"]
    assert all(query_id in row for _, ids, _ in data.batches for row in ids.tolist())
    assert data.n_tokens == plain.n_tokens + 2


def test_probe_prefix_is_part_of_the_data_and_theta0_cache_keys(tmp_path):
    tok = WordTokenizer(extra="query:")
    plain = RetrievalProbe(tatoeba_cfg(tmp_path))
    plain.prepare(tok)
    base = plain.baseline(FakeEncoder(len(tok)), "cpu", "model-a")
    prefixed = RetrievalProbe(tatoeba_cfg(tmp_path, prefix="query: "))
    prefixed.prepare(tok)
    assert prefixed.stats["prepare_cache_hit"] is False
    enc = FakeEncoder(len(tok))
    again = prefixed.baseline(enc, "cpu", "model-a")
    assert enc.calls > 0 and prefixed.stats["baseline_cache_hit"] is False
    assert again == base             # the fake encoder aligns translations with or without the shared prefix


# 3 sentences x 3 candidates; with k = 4 capped at 3 the margin denominator is (row sum + column sum) / 6.
SIM = torch.tensor([[0.9, 0.8, 0.1],
                    [0.9, 0.3, 0.0],
                    [0.6, 0.1, 0.5]])
GOLD = torch.tensor([1, 0, 2])


def test_ratio_margin_against_a_hand_computed_example():
    # row sums 1.8, 1.2, 1.2; column sums 2.4, 1.2, 0.6
    expected = torch.tensor([[0.9 * 6 / 4.2, 0.8 * 6 / 3.0, 0.1 * 6 / 2.4],
                             [0.9 * 6 / 3.6, 0.3 * 6 / 2.4, 0.0],
                             [0.6 * 6 / 3.6, 0.1 * 6 / 2.4, 0.5 * 6 / 1.8]])
    assert torch.allclose(ratio_margin(SIM), expected)
    assert accuracy(SIM, GOLD) == pytest.approx(1 / 3)             # cosine: column 0 is a hub
    assert accuracy(ratio_margin(SIM), GOLD) == 1.0                # the margin discounts it
    assert reverse_accuracy(SIM, GOLD) == pytest.approx(2 / 3)     # column 0 ties rows 0 and 1: row 0 wins
    assert reverse_accuracy(ratio_margin(SIM), GOLD) == 1.0
    # k = 1: the nearest neighbour on each side only
    # (row maxima 0.9, 0.9, 0.6; column maxima 0.9, 0.8, 0.5; halved)
    k1 = torch.tensor([[0.9 / 0.9, 0.8 / 0.85, 0.1 / 0.7],
                       [0.9 / 0.9, 0.3 / 0.85, 0.0],
                       [0.6 / 0.75, 0.1 / 0.7, 0.5 / 0.55]])
    assert torch.allclose(ratio_margin(SIM, k=1), k1)


def test_en_xx_is_xx_en_on_the_transposed_matrix():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        sim = torch.randn(7, 7, generator=g)
        perm = torch.randperm(7, generator=g)
        inverse = torch.argsort(perm)
        assert reverse_accuracy(sim, perm) == accuracy(sim.T, inverse)
        assert torch.allclose(ratio_margin(sim.T), ratio_margin(sim).T)


def test_top1_keeps_its_cosine_default_and_takes_margin():
    q = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    assert top1(q, q, torch.tensor([0, 1])) == 1.0
    assert similarity(q, q).shape == (2, 2)
    assert top1(q, q, torch.tensor([0, 1]), scoring="margin") == 1.0


def test_probe_directions_and_their_metric_names(tmp_path):
    tok = WordTokenizer()
    probe = RetrievalProbe(tatoeba_cfg(tmp_path, directions=["xx-en", "en-xx"]))
    probe.prepare(tok)
    scores = probe.measure(FakeEncoder(len(tok)), "cpu")
    assert set(scores) == {"de", "es", "en-xx/de", "en-xx/es"}
    assert scores["de"] == 1.0 and scores["en-xx/de"] == 1.0 and scores["es"] == pytest.approx(3 / 5)
    only = RetrievalProbe(tatoeba_cfg(tmp_path, directions=["en-xx"]))
    only.prepare(tok)
    assert only.measure(FakeEncoder(len(tok)), "cpu") == {k: v for k, v in scores.items() if k.startswith("en-xx")}

    out = metrics({"de": 0.5, "en-xx/de": 0.25}, {"de": 1.0, "en-xx/de": 0.75})
    assert out == {
        "forgetting/retrieval_acc/de": 0.5, "forgetting/retrieval_drop/de": 0.5,
        "forgetting/retrieval_acc_en-xx/de": 0.25, "forgetting/retrieval_drop_en-xx/de": 0.5,
        "forgetting/retrieval_acc_en-xx/avg": 0.25, "forgetting/retrieval_drop_en-xx/avg": 0.5,
        "forgetting/retrieval_acc0_en-xx/avg": 0.75,
        "forgetting/retrieval_acc_xx-en/avg": 0.5, "forgetting/retrieval_drop_xx-en/avg": 0.5,
        "forgetting/retrieval_acc0_xx-en/avg": 1.0,
        "forgetting/retrieval_acc/avg": 0.375, "forgetting/retrieval_drop/avg": 0.5,   # both directions, equal
        "forgetting/retrieval_acc0/avg": 0.875,                                          # weight per score
    }


def test_margin_scoring_in_the_probe_counts_nonpositive_denominators(tmp_path):
    tok = WordTokenizer()
    probe = RetrievalProbe(tatoeba_cfg(tmp_path, scoring="margin", directions=["xx-en", "en-xx"]))
    probe.prepare(tok)
    scores = probe.measure(FakeEncoder(len(tok)), "cpu")
    assert scores["de"] == 1.0 and probe.stats["margin_nonpositive"] == 0   # one-hot embeddings: cosines >= 0
    data = probe._prepared()       # every query opposite every pivot sentence: all cosines -1
    emb = torch.cat([-torch.ones(data.n_pivot, 3), torch.ones(data.n_sequences - data.n_pivot, 3)])
    assert set(probe.scores(emb)) == set(scores)
    assert probe.stats["margin_nonpositive"] == sum(len(data.gold[x]) * len(data.candidates[x]) for x in ("de", "es"))


def test_probe_settings_defaults_and_errors():
    cfg = ProbeConfig(languages=["de"])
    assert cfg.prefix == "" and cfg.directions == ["xx-en"] and cfg.scoring == "cosine"
    with pytest.raises(ValueError, match="at most once"):
        ProbeConfig(languages=["de"], directions=["en-xx", "en-xx"])
    with pytest.raises(ValueError):
        ProbeConfig(languages=["de"], directions=["de-en"])


def test_check_refuses_a_space_that_samples_batch_size_beside_per_source_batch(tmp_path):
    """Caught by --check, before any trial starts (trial_spec refuses it too, above)."""
    from lfmlf.checks import load_checked

    text = QUICKSTART.read_text().replace("  batch_size: 24\n", "  per_source_batch: 8\n")
    text = text.replace("    space: ../search_spaces/quickstart_mlf.yaml\n",
                        "    space: {batch_size: {type: categorical, choices: [16, 32]}}\n")
    path = tmp_path / "sweep.yaml"
    path.write_text(text.replace("../search_spaces/", str(QUICKSTART.parents[1] / "search_spaces") + "/"))
    with pytest.raises(ConfigError, match=r"methods.mlf.space': the inline space samples batch_size, but "
                                          r"train.per_source_batch \(8\).*sample per_source_batch instead"):
        load_checked(path)
