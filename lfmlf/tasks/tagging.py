"""Word-level tagging (NER, POS): what every task with one label per word shares.

A subclass says where its sentences come from (:meth:`TaggingTask.read`), which labels the head predicts
(:meth:`TaggingTask.label_set`), how predictions are scored (:meth:`TaggingTask.score`) and which of its
formats read local files (``file_formats``, checked by :meth:`TaggingTask.check_data`). The rest is here:

* **Subword alignment**: a word's label sits on its first piece that is not a bare ``▁`` marker (XLM-R's
  SentencePiece often splits a pre-split word into ``▁`` + the word; labelling the bare marker is why naive
  alignment scores badly on Chinese). The word's other pieces are ignored by the loss (label -100).
* **Encoding** through :meth:`Task.cached` (the on-disk cache shared by the trials of a machine).
* **Head**: dropout + linear over every piece's hidden state; **loss**: cross-entropy over labelled pieces.
* **Prediction**: one label per word, read at the word's labelled piece. Words cut off by ``max_length``
  get ``truncated_tag`` (NER: ``O``; POS: ``_``, which is never gold, so they count as errors) and are
  counted in ``truncated_words[(lang, split)]``.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfmlf.config import TaskConfig
from lfmlf.data.base import TaggedSentence
from lfmlf.models import eval_mode
from lfmlf.tasks.base import Example, Task, by_length, check_split_files, splits_needed

__all__ = ["IGNORE", "SPLITS", "TaggingTask", "align_labels", "check_split_files"]

IGNORE = -100
SPLITS = ("train", "dev", "test")


def align_labels(word_ids: Sequence[int | None], pieces: Sequence[str],
                 word_labels: Sequence[int]) -> list[int]:
    """Per-piece labels: each word's label on its first piece that is not a bare ``▁``, -100 elsewhere."""
    labels = [IGNORE] * len(word_ids)
    positions: dict[int, list[int]] = {}
    for pos, w in enumerate(word_ids):
        if w is not None:
            positions.setdefault(w, []).append(pos)
    for w, ps in positions.items():
        labels[next((p for p in ps if pieces[p] != "\u2581"), ps[0])] = word_labels[w]
    return labels


class TaggingTask(Task):
    """One label per word. Subclasses set ``name``, ``metric``, ``formats``, ``file_formats`` and
    ``truncated_tag`` and implement :meth:`read`, :meth:`label_set` and :meth:`score`."""

    file_formats: ClassVar[tuple[str, ...]]   # formats read from task.files (checked at config load)
    truncated_tag: ClassVar[str]              # the prediction for a word cut off by max_length

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self._raw: dict[tuple[str, str], list[TaggedSentence]] = {}
        self._encoded: dict[tuple[str, str], list[Example]] = {}
        self._gold: dict[tuple[str, str], list[list[str]]] = {}
        self.labels: list[str] = []
        self.pad_id = 0
        self.truncated_words: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def read(self, lang: str, split: str) -> Sequence[TaggedSentence]:
        """Called once per (language, split) by :meth:`load`: every sentence of the source (file, hub or
        synthetic generator named by ``self.cfg.format``), before the sentence caps."""

    @abstractmethod
    def label_set(self, sources: Sequence[str]) -> list[str]:
        """Called in :meth:`prepare`: the head's labels in order (may read the sources' training data)."""

    @abstractmethod
    def score(self, gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
        """Called at every evaluation: scores of predicted against gold tags (one list per sentence, one tag
        per word, same lengths), ``self.metric`` among the keys."""

    # ------------------------------------------------------------------ data
    @classmethod
    def check_data(cls, cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> None:
        if cfg.format not in cls.file_formats:
            return  # synthetic data exists for every language; hub data is checked when it is loaded
        need = splits_needed(cfg, sources, targets)
        check_split_files(cfg, need)

    def file(self, lang: str, split: str) -> Path:
        """The file of a language's split (for ``file_formats``)."""
        return Path(self.cfg.data_dir or ".") / str(self.cfg.files[lang].path(split))

    def load(self, lang: str, split: str) -> list[TaggedSentence]:
        """Sentences of a language's split, from files, the hub, or the synthetic generator (cached)."""
        key = (lang, split)
        if key not in self._raw:
            sents = self.rows(self.read(lang, split), lang, split)
            self._raw[key] = self.capped(sents, lang, split, "sentences")
        return self._raw[key]

    def texts(self, langs: Sequence[str]) -> Iterable[str]:
        for lang in langs:
            for s in self.load(lang, "train" if self._has(lang, "train") else self.cfg.target_split):
                yield " ".join(s.tokens)

    def _has(self, lang: str, split: str) -> bool:
        if self.cfg.format not in self.file_formats:
            return True
        files = self.cfg.files.get(lang)
        return files is not None and getattr(files, split) is not None

    def prepare(self, tokenizer: Any, sources: Sequence[str], targets: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id
        self.labels = self.label_set(sources)
        self.label_id = {t: i for i, t in enumerate(self.labels)}
        for lang, split in splits_needed(self.cfg, sources, targets):
            self._encode(lang, split)

    def _encode(self, lang: str, split: str) -> list[Example]:
        key = (lang, split)
        if key in self._encoded:
            return self._encoded[key]
        build = partial(self._encode_uncached, lang, split)
        examples, truncated, gold = self.cached(lang, split, build, self.labels)
        self.truncated_words[key] = truncated
        self._gold[key] = gold
        self._encoded[key] = examples
        return examples

    def gold(self, lang: str, split: str) -> list[list[str]]:
        """The gold tags of a split, one list per sentence (cached with the encoding: no re-read)."""
        self._encode(lang, split)
        return self._gold[(lang, split)]

    def _encode_uncached(self, lang: str, split: str) -> tuple[list[Example], int, list[list[str]]]:
        sents = self.load(lang, split)
        enc = self.tokenizer([list(s.tokens) for s in sents], is_split_into_words=True, truncation=True,
                             max_length=self.max_length_for(split))
        examples, truncated = [], 0
        for i, s in enumerate(sents):
            ids = enc["input_ids"][i]
            word_ids = enc.word_ids(i)
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            word_labels = [self.label_id.get(t, 0) for t in s.tags]  # unseen gold tags only matter in scoring
            labels = align_labels(word_ids, pieces, word_labels)
            truncated += len(s.tokens) - len({w for w in word_ids if w is not None})
            examples.append({"input_ids": list(ids), "labels": labels})
        return examples, truncated, [list(s.tags) for s in sents]

    def train_examples(self, lang: str) -> Sequence[Example]:
        return self._encoded[(lang, "train")]

    # ------------------------------------------------------------------ model
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, len(self.labels)))

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = model(batch["input_ids"], batch["attention_mask"])
        logits = out.logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                               ignore_index=IGNORE)
        return loss, out.hidden

    @torch.inference_mode()   # no autograd state at all: ~6% faster than no_grad here
    def predict(self, model: nn.Module, lang: str, split: str, batch_size: int,
                device: torch.device) -> list[list[str]]:
        """One predicted tag per word of every sentence of a language's split (truncated words get
        ``truncated_tag``)."""
        examples = self._encode(lang, split)
        gold = self.gold(lang, split)
        preds: list[list[str]] = [[] for _ in examples]
        with eval_mode(model):
            for chunk in by_length(examples, batch_size):
                batch = {k: v.to(device) for k, v in self.collate([examples[i] for i in chunk]).items()}
                logits = model(batch["input_ids"], batch["attention_mask"]).logits
                best = logits.argmax(-1).cpu()
                for row, i in enumerate(chunk):
                    positions = [p for p, lab in enumerate(examples[i]["labels"]) if lab != IGNORE]
                    words = [self.labels[int(best[row, p])] for p in positions]
                    preds[i] = words + [self.truncated_tag] * (len(gold[i]) - len(words))
        return preds

    def evaluate(self, model: nn.Module, lang: str, split: str, batch_size: int,
                 device: torch.device) -> dict[str, float]:
        preds = self.predict(model, lang, split, batch_size, device)
        return self.score(self.gold(lang, split), preds)
