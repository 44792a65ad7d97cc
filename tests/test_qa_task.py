"""Extractive QA: SQuAD JSON reading (fixtures and the real XQuAD / TyDi / MLQA files), sliding windows and
their labels, span extraction, the hub loader on a local stand-in, synthetic data, and the QaTask end to end
with the tiny model (an oracle scores 1.0; ~100 training steps beat an untrained model)."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from lfmlf.config import ModelConfig, SplitFiles, SyntheticData, TaskConfig, TinyModel
from lfmlf.data.base import DataError
from lfmlf.data.squad import SYNTHETIC_QA_LANGS, QaExample, load_squad_hub, read_squad, synthetic_qa
from lfmlf.tasks.qa import QaTask, answer_positions, best_spans, encode_qa
from lfmlf.tasks.qa_metrics import normalize_answer
from tests.conftest import real_data

FIXTURES = Path(__file__).parent / "fixtures" / "qa"
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def _tokenizer(texts, vocab=400):
    from lfmlf.models import train_tokenizer

    return train_tokenizer(list(texts), vocab)


# ------------------------------------------------------------------------------------------------ reading
def test_read_fixture_keeps_all_gold_answers_and_offsets():
    rows = read_squad(FIXTURES / "tiny.json")
    assert [r.id for r in rows] == ["r1", "r2", "b1"]
    assert rows[1].answers == ("Ana Kovacs", "Kovacs", "Ana Kovacs")
    for r in rows:
        assert isinstance(r, QaExample)
        for text, start in zip(r.answers, r.answer_starts):
            assert r.context[start:start + len(text)] == text
    with pytest.raises(AttributeError):   # frozen
        rows[0].question = "x"  # type: ignore[misc]


@pytest.mark.parametrize("path, questions, contexts", [
    ("xquad/xquad.en.json", 1190, 240), ("xquad/xquad.zh.json", 1190, 240),
    ("xtreme/tydiqa_goldp/tydiqa.goldp.en.train.json", 3696, None),
    ("xtreme/mlqa_dev/dev-context-de-question-de.json", 512, None),
])
def test_read_real_files(path, questions, contexts):
    rows = read_squad(real_data(path))
    assert len(rows) == questions
    if contexts:
        assert len({r.context for r in rows}) == contexts
    for r in rows:
        assert r.context[r.answer_starts[0]:r.answer_starts[0] + len(r.answers[0])] == r.answers[0]


def test_tydi_dev_files_without_gold_answers_say_so():
    # the shared copies of XTREME's TyDi QA GoldP dev files have every answer blanked ({"text": ""})
    with pytest.raises(DataError, match=r"tydiqa.goldp.en.dev.json: data\[0\].*no gold answers.*Fix:"):
        read_squad(real_data("xtreme/tydiqa_goldp/tydiqa.goldp.en.dev.json"))


def test_missing_file_and_malformed_json_name_the_file_and_fix():
    with pytest.raises(DataError, match=r"SQuAD JSON file not found: .*nope\.json.*Fix:"):
        read_squad(FIXTURES / "nope.json")
    with pytest.raises(DataError) as ei:
        read_squad(FIXTURES / "malformed.json")
    msg = str(ei.value)
    assert "malformed.json: not valid JSON" in msg and "line" in msg and "Fix:" in msg


def test_bad_layout_names_the_question_and_fix(tmp_path):
    where = r"bad_layout\.json: data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]"
    with pytest.raises(DataError, match=where + ".*Fix:"):
        read_squad(FIXTURES / "bad_layout.json")
    with pytest.raises(DataError, match=r"'Valdora' does not occur in the context.*Fix:"):
        read_squad(FIXTURES / "answer_not_in_context.json")
    p = tmp_path / "list.json"
    p.write_text("[1, 2]")
    with pytest.raises(DataError, match=r"list\.json: expected a JSON object with a 'data' list.*Fix:"):
        read_squad(p)
    p.write_text(json.dumps({"data": [{"paragraphs": [{"context": "c", "qas": [
        {"id": "v2", "question": "q?", "answers": []}]}]}]}))
    with pytest.raises(DataError, match=r"qas\[0\]: 'answers' must be a non-empty list.*Fix:"):
        read_squad(p)


def test_answer_start_off_by_a_few_characters_is_moved_to_the_nearest_occurrence(tmp_path):
    p = tmp_path / "off.json"
    ctx = "Lisara is far. Banco Norte was founded in Lisara."
    p.write_text(json.dumps({"data": [{"paragraphs": [{"context": ctx, "qas": [
        {"id": "o", "question": "Where?", "answers": [{"text": "Lisara", "answer_start": 40}]}]}]}]}))
    assert read_squad(p)[0].answer_starts == (ctx.rindex("Lisara"),)


# ---------------------------------------------------------------------------------------------- synthetic
def test_synthetic_questions_are_parallel_and_deterministic():
    a = synthetic_qa(["en", "de", "es", "fr", "it"], "train", 30)
    assert synthetic_qa("en", "train", 30)["en"] == a["en"]
    assert synthetic_qa("en", "test", 30)["en"] != a["en"]
    for i in range(30):
        answers = {a[lang][i].answers for lang in a}
        assert len(answers) == 1                                      # same fact in every language
        assert len({a[lang][i].question for lang in a}) == len(a)     # different wording
    for rows in a.values():
        for r in rows:
            assert r.context[r.answer_starts[0]:].startswith(r.answers[0])
    assert a["en"][0].question.startswith(("Where does", "Who", "When"))
    with pytest.raises(DataError, match="Fix:"):
        synthetic_qa(["xx"], "train", 3)
    assert set(SYNTHETIC_QA_LANGS) >= {"en", "de", "es", "fr", "it"}


# ------------------------------------------------------------------------------------------------ windows
def test_answer_positions_on_hand_offsets():
    offs = [None, None, None, (0, 3), (3, 10), (10, 13), None]      # <s> q q </s>... "Ana▁Kovacs▁in"
    assert answer_positions(offs, 4, 10) == (4, 4)
    assert answer_positions(offs, 0, 10) == (3, 4)
    assert answer_positions(offs, 11, 13) == (5, 5)
    assert answer_positions(offs, 11, 20) == (0, 0)                  # runs past the window
    assert answer_positions([None, None], 0, 1) == (0, 0)
    # a bare "▁" first piece hands the start on to the answer's next piece (XLM-R on Chinese)
    zh = [None, (0, 1), (1, 2), (2, 4)]
    assert answer_positions(zh, 1, 4, bare=[False, False, True, False]) == (3, 3)
    assert answer_positions(zh, 1, 2, bare=[False, False, True, False]) == (2, 2)   # nothing after it


LONG = " ".join(f"Person{i} met Friend{i} in Town{i} during the year {1900 + i} ." for i in range(40))


def _long_examples():
    rows = []
    for i in (3, 17, 36):
        ans = f"Town{i}"
        question = f"Where did Person{i} meet Friend{i}?"
        rows.append(QaExample(f"q{i}", LONG, question, (ans,), (LONG.index(ans + " "),)))
    return rows


def test_long_context_gives_overlapping_windows_and_labels_decode_to_the_answer():
    rows = _long_examples()
    tok = _tokenizer([LONG] + [r.question for r in rows])
    enc = encode_qa(tok, rows, max_length=48, doc_stride=8, max_question_length=16)
    stride = enc["stride"][0]
    assert stride == 8
    per_q = [enc["qid"].count(i) for i in range(len(rows))]
    assert min(per_q) > 3                                            # several windows each
    assert all(len(e["input_ids"]) <= 48 for e in enc["examples"])
    for i, row in enumerate(rows):
        feats = [f for f, q in enumerate(enc["qid"]) if q == i]
        hits = 0
        for f in feats:
            ex, offs = enc["examples"][f], enc["offsets"][f]
            s, e = ex["start_positions"], ex["end_positions"]
            if s == 0:
                assert e == 0
                continue
            hits += 1
            assert offs[s] is not None and offs[e] is not None and s <= e
            assert row.context[offs[s][0]:offs[e][1]].strip() == row.answers[0]
        assert hits >= 1
        # consecutive windows overlap by `stride` context tokens, and together cover the whole context
        ctx = [[t for t, o in zip(enc["examples"][f]["input_ids"], enc["offsets"][f]) if o is not None]
               for f in feats]
        for a, b in itertools.pairwise(ctx):
            assert a[-stride:] == b[:stride]
        first, last = enc["offsets"][feats[0]], enc["offsets"][feats[-1]]
        assert next(o for o in first if o)[0] == 0 and [o for o in last if o][-1][1] == len(LONG.rstrip())


def test_doc_stride_larger_than_the_window_is_clamped_and_long_questions_are_cut():
    rows = _long_examples()
    long_q = QaExample("long", LONG[:200], " ".join(["why"] * 80) + "?", ("Town1",), (LONG.index("Town1 "),))
    tok = _tokenizer([LONG] + [long_q.question])
    enc = encode_qa(tok, rows + [long_q], max_length=32, doc_stride=128, max_question_length=64)
    specials = tok.num_special_tokens_to_add(pair=True)
    q_cap = (32 - specials) // 2
    assert enc["stride"][0] == (32 - specials - q_cap) // 2          # clamped: windows still advance
    for ex, offs in zip(enc["examples"], enc["offsets"]):
        assert len(ex["input_ids"]) <= 32
        assert sum(o is None for o in offs) - specials <= q_cap        # question tokens within the cap
    with pytest.raises(ValueError, match="Fix:"):
        encode_qa(tok, rows, max_length=5)


def test_windows_with_the_real_sentencepiece_tokenizer_decode_exactly(encoder_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(encoder_dir)
    rows = read_squad(FIXTURES / "tiny.json") + _long_examples()
    enc = encode_qa(tok, rows, max_length=40, doc_stride=6, max_question_length=12)
    seen = set()
    for ex, offs, q in zip(enc["examples"], enc["offsets"], enc["qid"]):
        s, e = ex["start_positions"], ex["end_positions"]
        if s:
            seen.add(q)
            assert rows[q].context[offs[s][0]:offs[e][1]].strip() == rows[q].answers[0]
    assert seen == set(range(len(rows)))


# ----------------------------------------------------------------------------------------- span decoding
def test_best_spans_on_hand_made_logits():
    start = torch.tensor([[0., 0, 0, 1, 5, 0, 0, 0], [9., 0, 0, 0, 0, 0, 0, 0]])
    end = torch.tensor([[0., 0, 9, 0, 0, 1, 4, 0], [9., 0, 0, 0, 0, 0, 0, 0]])
    context = torch.tensor([[False] * 3 + [True] * 5, [False] * 8])
    score, s, e = best_spans(start, end, context, n_best=20, max_answer_length=30)
    # row 0: end logit 9 sits outside the context; best is start 4 (5) + end 6 (4)
    assert (s[0].item(), e[0].item(), score[0].item()) == (4, 6, 9.0)
    assert score[1].item() == -math.inf                               # no context tokens at all
    score, s, e = best_spans(start, end, context, n_best=20, max_answer_length=2)
    assert (s[0].item(), e[0].item(), score[0].item()) == (4, 5, 6.0)  # (4, 6) is 3 tokens long
    # an end before the start is never taken
    score, s, e = best_spans(torch.tensor([[0., 0, 0, 0, 9, 0]]), torch.tensor([[0., 0, 0, 8, 0, 1]]),
                             torch.tensor([[False, True, True, True, True, True]]), 20, 30)
    assert (s.item(), e.item()) == (4, 5)
    # n_best=1 keeps only the top start and end: invalid together -> no span (Hugging Face's semantics)
    score, _, _ = best_spans(start[:1], end[:1], context[:1], n_best=1, max_answer_length=2)
    assert score.item() == -math.inf


# ---------------------------------------------------------------------------------------------- the task
def _cfg(**kw) -> TaskConfig:
    base = {"name": "qa", "format": "synthetic", "synthetic": SyntheticData(train=300, dev=60, test=60),
            "max_length": 64}
    return TaskConfig(**{**base, **kw})


def _model(task: QaTask, langs, hidden=64, seed=0):
    from lfmlf.models import TaskModel, load_encoder

    mc = ModelConfig(name_or_path="tiny", tiny=TinyModel(hidden_size=hidden, vocab_size=500), dropout=0.0)
    encoder, tokenizer = load_encoder(mc, list(task.texts(langs)))[:2]
    return encoder, tokenizer, lambda: TaskModel(encoder, task.build_head(hidden, 0.0))


class _Oracle(torch.nn.Module):
    """A 'model' whose start/end logits are the encoded labels (windows without the answer: only <s>)."""

    def __init__(self, examples):
        super().__init__()
        self.gold = {tuple(e["input_ids"]): (e["start_positions"], e["end_positions"]) for e in examples}

    def forward(self, input_ids, attention_mask):
        logits = torch.full((*input_ids.shape, 2), -10.0)
        for row, ids in enumerate(input_ids.tolist()):
            s, e = self.gold[tuple(ids[:int(attention_mask[row].sum())])]
            logits[row, s, 0] = logits[row, e, 1] = 10.0

        class Out:
            pass
        out = Out()
        out.logits = logits
        return out


def test_options_are_typed_with_defaults():
    opts = QaTask(_cfg()).options
    got = (opts.doc_stride, opts.max_answer_length, opts.n_best, opts.max_question_length, opts.normalisation)
    assert got == (128, 30, 20, 64, "auto")
    with pytest.raises(ValueError, match="did you mean 'doc_stride'"):
        QaTask.validate_options({"doc_strides": 64})
    with pytest.raises(ValueError, match="normalisation"):
        QaTask.validate_options({"normalisation": "bleu"})
    with pytest.raises(ValueError, match="hub_splits"):
        QaTask.validate_options({"hub_splits": {"training": "train"}})


def test_check_data_names_the_missing_key_and_file(tmp_path):
    (tmp_path / "en.json").write_text("{}")
    cfg = _cfg(format="squad", data_dir=str(tmp_path),
               files={"en": SplitFiles(train="en.json", dev="en.json")})
    QaTask.check_data(cfg, ["en"], [])
    with pytest.raises(ValueError, match=r"'task.files.de.test' is missing.*Fix:"):
        QaTask.check_data(cfg, ["en"], ["de"])
    bad = _cfg(format="squad", data_dir=str(tmp_path),
               files={"en": SplitFiles(train="en.json", dev="gone.json")})
    with pytest.raises(ValueError, match=r"'task.files.en.dev': file .*gone.json does not exist.*Fix:"):
        QaTask.check_data(bad, ["en"], [])
    with pytest.raises(ValueError, match=r"'task.data_dir' is required.*Fix:"):
        QaTask.check_data(_cfg(format="squad"), ["en"], [])
    with pytest.raises(ValueError, match=r"synthetic QA has no language\(s\) \['xx'\].*Fix:"):
        QaTask.check_data(_cfg(), ["en"], ["xx"])


def test_task_reads_files_caps_questions_and_yields_texts():
    cfg = _cfg(format="squad", data_dir=str(FIXTURES), max_train_sentences=2,
               files={"en": SplitFiles(train="tiny.json", dev="tiny.json")})
    task = QaTask(cfg)
    assert len(task.load("en", "train")) == 2 and len(task.load("en", "dev")) == 3
    texts = list(task.texts(["en"]))
    assert texts[0].startswith("The Valdora river") and texts.count(texts[0]) == 1   # shared context once
    assert texts[1:3] == ["Which town does the Valdora flow through?", "Who named the river?"]
    with pytest.raises(DataError, match="Fix:"):
        task.load("de", "dev")


def test_oracle_scores_one_and_the_tiny_model_runs_end_to_end():
    cfg = _cfg(max_length=32, synthetic=SyntheticData(train=40, dev=20, test=20))   # short: several windows
    task = QaTask(cfg)
    _, tokenizer, make = _model(task, ["en", "de"])
    task.prepare(tokenizer, ["en"], ["de"])
    dev = task._encode("en", "dev")
    assert len(dev["examples"]) > len(task.load("en", "dev"))          # contexts do not fit one window
    assert task.evaluate(_Oracle(dev["examples"]), "en", "dev", 7, CPU) == {"f1": 1.0, "em": 1.0}

    model = make()
    batch = task.collate(task.train_examples("en")[:5])
    loss, hidden = task.loss(model, batch)
    assert torch.isfinite(loss) and hidden.shape == (*batch["input_ids"].shape, 64)
    loss.backward()
    scores = task.evaluate(model, "de", "test", 16, CPU)
    assert list(scores) == ["f1", "em"]
    assert all(0.0 <= v <= 1.0 and math.isfinite(v) for v in scores.values())

    # a second trial (with its own, identical tokenizer) reads the encoding from the cache
    from lfmlf.models import train_tokenizer

    again = QaTask(cfg)
    again.prepare(train_tokenizer(list(again.texts(["en", "de"])), 500), ["en"], ["de"])
    assert again.prep_stats["cache_hits"] == 3 and again._encode("en", "dev") == dev


def test_training_on_synthetic_english_beats_an_untrained_model():
    task = QaTask(_cfg())
    _, tokenizer, make = _model(task, ["en", "de"])
    task.prepare(tokenizer, ["en"], ["de"])
    torch.manual_seed(0)
    model = make()
    before = task.evaluate(model, "en", "dev", 64, CPU)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    examples = task.train_examples("en")
    rng = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(100):
        picked = torch.randint(len(examples), (16,), generator=rng).tolist()
        batch = task.collate([examples[i] for i in picked])
        loss, _ = task.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = task.evaluate(model, "en", "dev", 64, CPU)
    # measured over 4 seeds: EM 0-0.02 -> 0.23-0.38 after 100 steps (the answer type is learnt first)
    assert after["em"] >= before["em"] + 0.12 and after["f1"] > before["f1"] + 0.1, (before, after)


# -------------------------------------------------------------------------------------------------- hub
HUB_README = """---
configs:
- config_name: xquad.en
  data_files:
  - split: validation
    path: xquad.en/validation.parquet
---
# XQuAD stand-in for offline tests
"""


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True, raising=False)


def test_hub_loader_on_a_local_standin(offline, tmp_path):
    from datasets import Dataset, Features, Sequence, Value

    rows = read_squad(FIXTURES / "tiny.json")
    repo = tmp_path / "xquad_standin"
    (repo / "xquad.en").mkdir(parents=True)
    features = Features({"id": Value("string"), "context": Value("string"), "question": Value("string"),
                         "answers": {"text": Sequence(Value("string")),
                                     "answer_start": Sequence(Value("int32"))}})
    Dataset.from_dict({"id": [r.id for r in rows], "context": [r.context for r in rows],
                       "question": [r.question for r in rows],
                       "answers": [{"text": list(r.answers), "answer_start": list(r.answer_starts)}
                                   for r in rows]},
                      features=features).to_parquet(str(repo / "xquad.en" / "validation.parquet"))
    (repo / "README.md").write_text(HUB_README, encoding="utf-8")
    cache = str(tmp_path / "hf_cache")
    assert load_squad_hub(str(repo), "xquad.en", "validation", cache_dir=cache) == rows
    with pytest.raises(DataError, match=r"config 'xquad.en', split 'train'.*Fix:"):
        load_squad_hub(str(repo), "xquad.en", "train", cache_dir=cache)

    task = QaTask(_cfg(format="hub", hub_path=str(repo)))   # defaults: config xquad.{lang}, test=validation
    assert task.load("en", "test") == rows
    assert next(iter(task.texts(["en"]))) == rows[0].context   # no train split: texts of the test split
    assert normalize_answer(rows[1].answers[1]) == "kovacs"
