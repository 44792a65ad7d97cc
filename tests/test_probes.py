"""The retrieval probe: scoring by construction on hand-written fixtures, the real Tatoeba and PUD files,
caching, errors, metric keys, and (slow) the real 6-layer e5 encoder."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lfmlf.config import ModelConfig, ProbeConfig
from lfmlf.data.base import DataError
from lfmlf.models import ModelError, TaskModel
from lfmlf.probes import RetrievalProbe, metrics, model_key, read_pairs, read_pud, read_tatoeba, top1
from lfmlf.probes.retrieval import _build
from tests.conftest import real_data

FIXTURES = Path(__file__).parent / "fixtures" / "probe"

# Every fixture word -> its English translation (English words map to themselves).
LEXICON = {
    "hund": "dog", "schläft": "sleeps", "katze": "cat", "trinkt": "drinks", "milch": "milk", "ich": "i",
    "lese": "read", "buch": "book", "wir": "we", "gehen": "go", "heim": "home", "es": "it", "regnet": "rains",
    "heute": "today", "perro": "dog", "duerme": "sleeps", "gato": "cat", "bebe": "drinks", "leche": "milk",
    "yo": "i", "leo": "read", "libro": "book", "nosotros": "we", "vamos": "go", "casa": "home",
    "llueve": "rains", "hoy": "today",
}


class WordTokenizer:
    """Word-level: a word gets the id of its English translation, so translations tokenise identically."""

    pad_token_id, bos, eos, unk = 0, 1, 2, 3

    def __init__(self, extra: str = "") -> None:
        words = sorted(set(LEXICON.values())) + ([extra] if extra else [])
        self.vocab = {w: i + 4 for i, w in enumerate(words)}
        self.name_or_path = f"word-tokenizer{extra}"

    def __len__(self) -> int:
        return len(self.vocab) + 4

    def __call__(self, texts, add_special_tokens=True, truncation=False, max_length=None):
        out = []
        for text in texts:
            ids = [self.vocab.get(LEXICON.get(w, w), self.unk) for w in text.split()]
            if truncation and max_length is not None:
                ids = ids[:max_length - 2]
            out.append([self.bos, *ids, self.eos])
        return {"input_ids": out}


class FakeEncoder(nn.Module):
    """hidden_states[aligned] = one-hot token ids (translations identical); the other layers are seeded
    noise that ignores the input (no alignment). Padded positions output garbage, so pooling over padding
    would show. Counts forward calls and rows, and records the training flag seen during forward."""

    def __init__(self, vocab_size: int, layers: int = 2, aligned: int = -1) -> None:
        super().__init__()
        self.config = SimpleNamespace(num_hidden_layers=layers)
        self.vocab_size, self.layers, self.aligned = vocab_size, layers, aligned % (layers + 1)
        self.dropout = nn.Dropout(0.5)
        self.calls, self.rows, self.saw_training = 0, 0, []

    def forward(self, input_ids, attention_mask, output_hidden_states=False):
        self.calls += 1
        self.rows += input_ids.shape[0]
        self.saw_training.append(self.training)
        g = torch.Generator().manual_seed(self.calls)
        garbage = (attention_mask == 0).unsqueeze(-1).float() * 100.0
        states = tuple(self.dropout(nn.functional.one_hot(input_ids, self.vocab_size).float()) + garbage
                       if k == self.aligned else torch.randn(*input_ids.shape, self.vocab_size, generator=g)
                       for k in range(self.layers + 1))
        return SimpleNamespace(last_hidden_state=states[-1], hidden_states=states if output_hidden_states else None)


def tatoeba_cfg(tmp_path, **kw) -> ProbeConfig:
    return ProbeConfig(**{"format": "tatoeba", "data_dir": str(FIXTURES / "tatoeba"), "languages": ["de", "es"],
                          "cache_dir": str(tmp_path / "cache"), **kw})


def pud_cfg(tmp_path, **kw) -> ProbeConfig:
    return ProbeConfig(**{"format": "pud", "data_dir": str(FIXTURES / "pud"), "languages": ["de", "es"],
                          "cache_dir": str(tmp_path / "cache"), **kw})


def prepared(cfg: ProbeConfig) -> tuple[RetrievalProbe, FakeEncoder]:
    tok = WordTokenizer()
    probe = RetrievalProbe(cfg)
    probe.prepare(tok)
    return probe, FakeEncoder(len(tok))


# ------------------------------------------------------------------------------------ scoring by construction
def test_tatoeba_fixture_identical_pairs_score_one_and_swapped_lines_score_known_share(tmp_path):
    probe, enc = prepared(tatoeba_cfg(tmp_path))
    assert probe.measure(enc, "cpu") == {"de": 1.0, "es": pytest.approx(3 / 5)}


def test_pud_fixture_aligns_by_sent_id(tmp_path):
    probe, enc = prepared(pud_cfg(tmp_path))
    assert probe.stats["pairs"] == {"de": 2, "es": 3}
    assert probe.measure(enc, "cpu") == {"de": 1.0, "es": pytest.approx(1 / 3)}


def test_pivot_sentences_are_encoded_once(tmp_path):
    probe, enc = prepared(tatoeba_cfg(tmp_path, batch_size=4))
    probe.measure(enc, "cpu")
    # de and es share one English file: 5 distinct pivot sentences + 5 de + 5 es
    assert enc.rows == 15 and enc.calls == 4


def test_padding_is_masked_out_and_order_restored(tmp_path):
    one, enc = prepared(tatoeba_cfg(tmp_path, batch_size=1))
    many, _ = prepared(tatoeba_cfg(tmp_path, batch_size=64))
    assert torch.allclose(one.embed(enc, "cpu"), many.embed(enc, "cpu"))


def test_layer_selects_hidden_state(tmp_path):
    tok = WordTokenizer()
    for layer, aligned in ((-1, 2), (2, 2), (1, 1), (0, 0)):
        probe = RetrievalProbe(tatoeba_cfg(tmp_path, layer=layer, languages=["de"]))
        probe.prepare(tok)
        assert probe.measure(FakeEncoder(len(tok), layers=2, aligned=aligned), "cpu") == {"de": 1.0}
        wrong = FakeEncoder(len(tok), layers=2, aligned=(aligned + 1) % 3)
        assert probe.measure(wrong, "cpu")["de"] < 1.0
    with pytest.raises(ModelError, match="probe.layer.*Fix"):
        probe = RetrievalProbe(tatoeba_cfg(tmp_path, layer=3))
        probe.prepare(tok)
        probe.measure(FakeEncoder(len(tok), layers=2), "cpu")


def test_measure_runs_in_eval_mode_and_restores_every_flag(tmp_path):
    probe, enc = prepared(tatoeba_cfg(tmp_path))
    enc.train()
    enc.dropout.eval()            # a submodule deliberately left in eval mode (e.g. frozen)
    probe.measure(enc, "cpu")
    assert not any(enc.saw_training)
    assert enc.training and not enc.dropout.training
    # a TaskModel is probed through its encoder
    assert probe.measure(TaskModel(enc, nn.Identity()), "cpu") == {"de": 1.0, "es": pytest.approx(0.6)}


def test_top1_ties_and_duplicate_pivots():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert top1(q, q.clone(), torch.tensor([0, 1])) == 1.0
    assert top1(q, q.flip(0), torch.tensor([0, 1])) == 0.0
    # identical pivot sentences become one candidate; both queries retrieve it
    data = _build({"de": [("a", "x"), ("b", "x"), ("c", "y")]}, WordTokenizer(), 16, 8)
    assert data.n_pivot == 2 and data.candidates["de"].tolist() == [0, 1] and data.gold["de"].tolist() == [0, 0, 1]


def test_centering_subtracts_each_sides_mean():
    q = torch.tensor([[1.0, 1.0], [1.0, 2.0]])       # offset (1, 0) from the candidates
    c = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    gold = torch.tensor([0, 1])
    assert top1(q, c, gold) == 0.5 and top1(q, c, gold, center=True) == 1.0


def test_max_pairs_keeps_the_first_pairs(tmp_path):
    pairs = read_pairs(tatoeba_cfg(tmp_path, max_pairs=2))
    assert pairs["de"] == [("hund schläft", "dog sleeps"), ("katze trinkt milch", "cat drinks milk")]
    pud = read_pairs(pud_cfg(tmp_path, max_pairs=1))
    assert pud == {"de": [("katze trinkt milch", "cat drinks milk")], "es": [("nosotros vamos casa", "we go home")]}


def test_pud_reads_text_not_text_en_and_files_override(tmp_path):
    assert read_pud(FIXTURES / "pud" / "de_pud-ud-test.conllu") == {
        "s2": "katze trinkt milch", "s5": "es regnet heute", "s1": "hund schläft"}
    cfg = pud_cfg(tmp_path, languages=["fr"], files={"fr": "de_pud-ud-test.conllu"})
    assert read_pairs(cfg)["fr"][0] == ("katze trinkt milch", "cat drinks milk")


# ------------------------------------------------------------------------------------------------- metrics
def test_metric_keys_and_drop_arithmetic():
    out = metrics({"de": 0.5, "es": 0.25}, {"de": 0.75, "es": 0.5, "fr": 0.9})
    assert out == {
        "forgetting/retrieval_acc/de": 0.5, "forgetting/retrieval_acc/es": 0.25,
        "forgetting/retrieval_drop/de": 0.25, "forgetting/retrieval_drop/es": 0.25,
        "forgetting/retrieval_acc/avg": 0.375, "forgetting/retrieval_drop/avg": 0.25,
        "forgetting/retrieval_acc0/avg": 0.625,
    }
    assert RetrievalProbe.metrics({"de": 1.0}, {"de": 1.0})["forgetting/retrieval_drop/avg"] == 0.0
    with pytest.raises(KeyError, match="de"):
        metrics({"de": 0.5}, {"es": 0.5})


# ------------------------------------------------------------------------------------------------- caching
def test_baseline_is_measured_once_per_model(tmp_path):
    probe, enc = prepared(tatoeba_cfg(tmp_path))
    first = probe.baseline(enc, "cpu", "model-a")
    assert enc.calls > 0 and probe.stats["baseline_cache_hit"] is False

    again, fresh = prepared(tatoeba_cfg(tmp_path))             # another trial on the same machine
    assert again.stats["prepare_cache_hit"] is True
    assert again.baseline(fresh, "cpu", "model-a") == first and fresh.calls == 0
    assert again.stats["baseline_cache_hit"] is True

    again.baseline(fresh, "cpu", "model-b")                     # another model
    assert fresh.calls > 0
    other_layer, enc2 = prepared(tatoeba_cfg(tmp_path, layer=0))  # other probe settings
    other_layer.baseline(enc2, "cpu", "model-a")
    assert enc2.calls > 0


def test_prepare_cache_key_follows_tokenizer_and_settings(tmp_path):
    cfg = tatoeba_cfg(tmp_path)
    RetrievalProbe(cfg).prepare(WordTokenizer())
    probe = RetrievalProbe(cfg)
    probe.prepare(WordTokenizer(extra="zebra"))
    assert probe.stats["prepare_cache_hit"] is False
    probe = RetrievalProbe(tatoeba_cfg(tmp_path, max_pairs=3))
    probe.prepare(WordTokenizer())
    assert probe.stats["prepare_cache_hit"] is False and probe.stats["pairs"] == {"de": 3, "es": 3}
    probe = RetrievalProbe(tatoeba_cfg(tmp_path, layer=0))          # the layer does not change the data
    probe.prepare(WordTokenizer())
    assert probe.stats["prepare_cache_hit"] is True


def test_measure_before_prepare_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="prepare"):
        RetrievalProbe(tatoeba_cfg(tmp_path)).measure(FakeEncoder(10), "cpu")


def test_model_key(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"0" * 10)
    cfg = ModelConfig(name_or_path=str(model))
    key = model_key(cfg, WordTokenizer())
    assert key.startswith("dir:") and key == model_key(cfg, WordTokenizer())
    (model / "model.safetensors").write_bytes(b"0" * 11)
    assert model_key(cfg, WordTokenizer()) != key
    assert model_key(ModelConfig(name_or_path="intfloat/multilingual-e5-small"), None) == \
        "hub:intfloat/multilingual-e5-small"
    tiny = model_key(ModelConfig(), WordTokenizer())
    assert tiny != model_key(ModelConfig(), WordTokenizer(extra="zebra"))
    assert tiny != model_key(ModelConfig(tiny={"seed": 1}), WordTokenizer())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        model_key(ModelConfig(name_or_path=str(tmp_path / "empty")), None)


# -------------------------------------------------------------------------------------------------- errors
def test_unknown_language_names_it_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"'xx'.*Fix: .*de, es"):
        RetrievalProbe(tatoeba_cfg(tmp_path, languages=["xx"]))
    with pytest.raises(DataError, match=r"'xx'.*Fix"):
        RetrievalProbe(pud_cfg(tmp_path, languages=["xx"]))


def test_tatoeba_needs_the_english_pivot(tmp_path):
    with pytest.raises(DataError, match=r"probe.pivot.*Fix: set probe.pivot: en"):
        RetrievalProbe(tatoeba_cfg(tmp_path, pivot="de", languages=["es"]))


def test_pivot_listed_as_a_language_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"pivot 'en'.*Fix"):
        RetrievalProbe(tatoeba_cfg(tmp_path, languages=["de", "en"]))


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.conllu.*probe\.files\.de.*Fix"):
        RetrievalProbe(pud_cfg(tmp_path, files={"de": "nope.conllu"}))
    with pytest.raises(DataError, match=r"not a directory.*Fix"):
        RetrievalProbe(tatoeba_cfg(tmp_path, data_dir=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match=r"probe.files names \['ru'\].*Fix"):
        RetrievalProbe(pud_cfg(tmp_path, files={"ru": "x.conllu"}))


def test_misaligned_tatoeba_files(tmp_path):
    data = tmp_path / "tatoeba"
    data.mkdir()
    (data / "tatoeba.deu-eng.deu").write_text("a\nb\nc\n", encoding="utf-8")
    (data / "tatoeba.deu-eng.eng").write_text("a\nb\n", encoding="utf-8")
    probe = RetrievalProbe(tatoeba_cfg(tmp_path, data_dir=str(data), languages=["de"]))
    with pytest.raises(DataError, match=r"tatoeba\.deu-eng\.deu has 3 lines.*tatoeba\.deu-eng\.eng has 2.*Fix"):
        probe.prepare(WordTokenizer())


def test_line_separators_inside_a_sentence_do_not_shift_alignment(tmp_path):
    data = tmp_path / "tatoeba"
    data.mkdir()
    (data / "tatoeba.deu-eng.deu").write_text("a\u2028b\r\nc\n", encoding="utf-8")
    (data / "tatoeba.deu-eng.eng").write_text("x\ny", encoding="utf-8")
    assert read_tatoeba(data, "de") == [("a\u2028b", "x"), ("c", "y")]


def test_bad_pud_files(tmp_path):
    data = tmp_path / "pud"
    data.mkdir()
    (data / "en_pud-ud-test.conllu").write_text("# sent_id = a\n# text = x\n1\tx\n\n", encoding="utf-8")
    (data / "de_pud-ud-test.conllu").write_text("# sent_id = b\n# text = y\n1\ty\n\n", encoding="utf-8")
    (data / "fr_pud-ud-test.conllu").write_text("# sent_id = a\n1\tx\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"share no sent_id.*Fix"):
        read_pairs(pud_cfg(tmp_path, data_dir=str(data), languages=["de"]))
    with pytest.raises(DataError, match=r"fr_pud-ud-test\.conllu:1: .*'# text =' .*Fix"):
        read_pairs(pud_cfg(tmp_path, data_dir=str(data), languages=["fr"]))


# ------------------------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def shared_data() -> Path:
    """The shared data folder, with its Tatoeba and PUD folders (else the test is skipped)."""
    real_data("tatoeba")
    real_data("ud_pud")
    return real_data()


def test_real_tatoeba_pairs(shared_data, tmp_path):
    cfg = ProbeConfig(format="tatoeba", data_dir=str(shared_data / "tatoeba"), languages=["de", "jv", "zh"],
                      max_pairs=None, cache_dir=str(tmp_path))
    pairs = read_pairs(cfg)
    assert {k: len(v) for k, v in pairs.items()} == {"de": 1000, "jv": 205, "zh": 1000}
    assert pairs["de"][0] == ("Maria sagte, sie wisse nicht, wo Tom sei.", "Mary said she didn't know where Tom was.")
    assert len(read_pairs(cfg.model_copy(update={"max_pairs": 100}))["jv"]) == 100


def test_real_pud_pairs_aligned_by_sent_id(shared_data, tmp_path):
    cfg = ProbeConfig(format="pud", data_dir=str(shared_data / "ud_pud"), languages=["de", "zh"],
                      max_pairs=None, cache_dir=str(tmp_path))
    pairs = read_pairs(cfg)
    assert {k: len(v) for k, v in pairs.items()} == {"de": 1000, "zh": 1000}
    en = read_pud(shared_data / "ud_pud" / "en_pud-ud-test.conllu")
    de = read_pud(shared_data / "ud_pud" / "de_pud-ud-test.conllu")
    assert next(iter(en)) == "n01001011" and en["n01001011"].startswith("“While much of the digital transition")
    assert pairs["de"][0] == (de["n01001011"], en["n01001011"])
    assert not any(text.startswith("“While much") for text in de.values())   # `# text_en` is not the text
    zh = read_pud(shared_data / "ud_pud" / "zh_pud-ud-test.conllu")
    assert pairs["zh"][5] == (zh[list(zh)[5]], en[list(zh)[5]])


@pytest.mark.slow
def test_untrained_e5_retrieves_translations(full_encoder_dir, shared_data, tmp_path):
    """XTREME's Tatoeba protocol (mean-pooled last layer, cosine, 1000 pairs each) on the untrained
    multilingual-e5-small (all 12 layers): measured de 0.985, es 0.954, fr 0.926. (The 6-layer cut used for
    training tests reaches 0.935 / 0.866 / 0.813, and 0.954 / 0.902 / 0.865 with ``probe.center``.)"""
    from lfmlf.models import load_encoder

    torch.manual_seed(0)
    encoder, tokenizer = load_encoder(ModelConfig(name_or_path=str(full_encoder_dir)))[:2]
    cfg = ProbeConfig(format="tatoeba", data_dir=str(shared_data / "tatoeba"), languages=["de", "es", "fr"],
                      cache_dir=str(tmp_path))
    probe = RetrievalProbe(cfg)
    probe.prepare(tokenizer)
    acc = probe.measure(encoder, "cpu")
    assert min(acc.values()) >= 0.85, acc


def test_pud_pivot_without_a_file(tmp_path):
    with pytest.raises(DataError, match=r"language 'ru'.*Fix: .*probe.files.ru.*probe.pivot"):
        RetrievalProbe(pud_cfg(tmp_path, pivot="ru"))


def test_training_loop_logs_the_probe(tmp_path):
    """The loop's probe hook end to end: tiny model, fixture data, forgetting/* keys at every evaluation."""
    from lfmlf.loop import fit
    from tests.conftest import tiny_spec

    spec = tiny_spec()
    spec = spec.model_copy(update={"probe": tatoeba_cfg(tmp_path)})
    evaluations = list(fit(spec))
    keys = {"forgetting/retrieval_acc/de", "forgetting/retrieval_acc/es", "forgetting/retrieval_acc/avg",
            "forgetting/retrieval_drop/de", "forgetting/retrieval_drop/avg", "forgetting/retrieval_acc0/avg"}
    for ev in evaluations:
        assert keys <= set(ev.metrics)
        assert 0.0 <= ev.metrics["forgetting/retrieval_acc/avg"] <= 1.0
