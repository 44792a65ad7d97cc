"""NER task: label alignment on XLM-R pieces (bare '▁' markers), seqeval entity F1, truncation."""
from __future__ import annotations

import pytest
import torch

from lfmlf.config import TaskConfig
from lfmlf.data.base import TaggedSentence
from lfmlf.tasks.ner import IGNORE, NerTask, align_labels
from tests.conftest import real_data


def test_label_goes_on_the_first_piece_that_is_not_a_bare_marker():
    # words: ["北京", "是"] tokenised as <s> ▁ 北京 ▁是 </s>
    word_ids = [None, 0, 0, 1, None]
    pieces = ["<s>", "\u2581", "北京", "\u2581是", "</s>"]
    assert align_labels(word_ids, pieces, [5, 0]) == [IGNORE, IGNORE, 5, 0, IGNORE]
    # a word that is only a bare marker keeps its label there
    assert align_labels([None, 0, None], ["<s>", "\u2581", "</s>"], [3]) == [IGNORE, 3, IGNORE]
    # later pieces of a word are ignored
    assert align_labels([None, 0, 0, 0], ["<s>", "\u2581Ber", "li", "n"], [1]) == [IGNORE, 1, IGNORE, IGNORE]


def test_real_xlmr_tokenizer_never_labels_a_bare_marker_when_the_word_has_more(encoder_dir):
    from transformers import AutoTokenizer

    from lfmlf.data.conll import read_tagged

    tok = AutoTokenizer.from_pretrained(encoder_dir)
    sents = read_tagged(real_data("xtreme/udpos/dev-zh.tsv"))[:50]
    enc = tok([list(s.tokens) for s in sents], is_split_into_words=True, truncation=True, max_length=256)
    bare_firsts = 0
    for i, s in enumerate(sents):
        word_ids = enc.word_ids(i)
        pieces = tok.convert_ids_to_tokens(enc["input_ids"][i])
        labels = align_labels(word_ids, pieces, list(range(len(s.tokens))))
        for w in set(x for x in word_ids if x is not None):
            positions = [p for p, x in enumerate(word_ids) if x == w]
            bare_firsts += pieces[positions[0]] == "\u2581"
            labelled = [p for p in positions if labels[p] != IGNORE]
            assert len(labelled) == 1
            if len(positions) > 1:
                assert pieces[labelled[0]] != "\u2581"
    assert bare_firsts > 50   # Chinese really does start many words with a bare marker


class _Oracle(torch.nn.Module):
    """A 'model' whose logits are the gold labels (or all O), to check scoring end to end."""

    def __init__(self, examples, n_labels, perfect):
        super().__init__()
        self.examples, self.n_labels, self.perfect = examples, n_labels, perfect

    def forward(self, input_ids, attention_mask):
        rows = []
        for ids in input_ids.tolist():
            ex = next(e for e in self.examples if e["input_ids"] == ids[:len(e["input_ids"])])
            labels = [max(lab, 0) if self.perfect else 0 for lab in ex["labels"]]
            labels += [0] * (len(ids) - len(labels))
            rows.append(torch.nn.functional.one_hot(torch.tensor(labels), self.n_labels).float())

        class Out:
            logits = torch.stack(rows)
        return Out()


def _task(sents, max_length=64):
    from lfmlf.models import train_tokenizer

    task = NerTask(TaskConfig(name="ner", format="synthetic", max_length=max_length))
    task._raw[("xx", "train")] = sents
    task._raw[("xx", "dev")] = sents
    task.prepare(train_tokenizer([" ".join(s.tokens) for s in sents], 200), ["xx"], [])
    return task


SENTS = [TaggedSentence(("Ana", "Kovacs", "visited", "Porto", "."), ("B-PER", "I-PER", "O", "B-LOC", "O")),
         TaggedSentence(("Banco", "Norte", "pays", "."), ("B-ORG", "I-ORG", "O", "O")),
         TaggedSentence(("nothing", "here"), ("O", "O"))]


def test_entity_f1_of_perfect_and_empty_predictions():
    task = _task(SENTS)
    examples = task._encode("xx", "dev")
    perfect = task.evaluate(_Oracle(examples, len(task.labels), True), "xx", "dev", 2, torch.device("cpu"))
    empty = task.evaluate(_Oracle(examples, len(task.labels), False), "xx", "dev", 2, torch.device("cpu"))
    assert perfect == {"f1": 1.0}
    assert empty == {"f1": 0.0}
    assert task.labels[0] == "O"


def test_entity_f1_matches_a_hand_count():
    """Gold entities: PER(0-1), LOC(3) in sentence 1, ORG(0-1) in sentence 2 -> 3. Predicted: PER(0) only
    (a boundary error: wrong), LOC(3) right, ORG(0-1) right, and a spurious PER in sentence 3 -> 4.
    Correct 2: precision 2/4, recall 2/3, F1 = 2PR/(P+R) = (2 * 1/2 * 2/3) / (1/2 + 2/3) = 4/7."""
    gold = [list(s.tags) for s in SENTS]
    pred = [["B-PER", "O", "O", "B-LOC", "O"], ["B-ORG", "I-ORG", "O", "O"], ["B-PER", "O"]]
    assert _task(SENTS).score(gold, pred) == {"f1": pytest.approx(4 / 7)}


def test_truncated_words_are_predicted_O_and_counted():
    long = [TaggedSentence(tuple(["w"] * 30 + ["Porto"]), tuple(["O"] * 30 + ["B-LOC"])), SENTS[0]]
    task = _task(long, max_length=12)
    examples = task._encode("xx", "dev")
    assert task.truncated_words[("xx", "dev")] > 0
    perfect = task.evaluate(_Oracle(examples, len(task.labels), True), "xx", "dev", 4, torch.device("cpu"))
    # 3 gold entities; the truncated LOC is missed: precision 1, recall 2/3 -> F1 0.8
    assert perfect["f1"] == pytest.approx(0.8)
