"""Named-entity recognition: IOB2 tags per word, scored with seqeval's entity-level F1.

Subword alignment: a word's label sits on its first piece that is not a bare ``▁`` marker (XLM-R's
SentencePiece often splits a pre-split word into ``▁`` + the word; labelling the bare marker is why naive
alignment scores badly on Chinese). The word's other pieces are ignored by the loss. Words cut off by
``max_length`` are predicted ``O`` and counted in ``truncated_words``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lfmlf.config import TaskConfig
from lfmlf.data.base import TaggedSentence
from lfmlf.tasks.base import Example, Task

IGNORE = -100
SPLITS = ("train", "dev", "test")


def align_labels(word_ids: Sequence[int | None], pieces: Sequence[str], word_labels: Sequence[int]) -> list[int]:
    """Per-piece labels: each word's label on its first piece that is not a bare ``▁``, -100 elsewhere."""
    labels = [IGNORE] * len(word_ids)
    positions: dict[int, list[int]] = {}
    for pos, w in enumerate(word_ids):
        if w is not None:
            positions.setdefault(w, []).append(pos)
    for w, ps in positions.items():
        labels[next((p for p in ps if pieces[p] != "\u2581"), ps[0])] = word_labels[w]
    return labels


class NerTask(Task):
    name = "ner"
    metric = "f1"
    formats = ("conll", "wikiann", "synthetic")

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self._raw: dict[tuple[str, str], list[TaggedSentence]] = {}
        self._encoded: dict[tuple[str, str], list[Example]] = {}
        self.labels: list[str] = []
        self.pad_id = 0
        self.truncated_words: dict[tuple[str, str], int] = {}

    # ------------------------------------------------------------------ data
    @classmethod
    def check_data(cls, cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> None:
        if cfg.format != "conll":
            return  # synthetic data exists for every language; hub data is checked when it is loaded
        if cfg.data_dir is None:
            raise ValueError("key 'task.data_dir' is required with format 'conll'. Fix: set it to the folder "
                             "holding the files (relative paths are relative to the sweep file).")
        need = [(lang, "train") for lang in sources] + [(lang, "dev") for lang in sources]
        need += [(lang, cfg.target_split) for lang in targets]
        for lang, split in need:
            files = cfg.files.get(lang)
            name = getattr(files, split) if files is not None else None
            key = f"task.files.{lang}.{split}"
            if name is None:
                raise ValueError(f"key '{key}' is missing: language '{lang}' needs a {split} file. "
                                 f"Fix: add it under task.files.{lang}, or drop '{lang}' from the languages.")
            path = Path(cfg.data_dir) / name
            if not path.is_file():
                raise ValueError(f"key '{key}': file {path} does not exist. Fix: check task.data_dir "
                                 f"({cfg.data_dir}) and the file name.")

    def load(self, lang: str, split: str) -> list[TaggedSentence]:
        """Sentences of a language's split, from files, the hub, or the synthetic generator (cached)."""
        key = (lang, split)
        if key not in self._raw:
            cfg = self.cfg
            if cfg.format == "conll":
                from lfmlf.data.conll import read_tagged

                name = getattr(cfg.files[lang], split)
                sents = read_tagged(Path(cfg.data_dir or ".") / name)
            elif cfg.format == "wikiann":
                from lfmlf.data.hub import load_wikiann

                sents = load_wikiann(lang, split, path=cfg.hub_path or "unimelb-nlp/wikiann")
            else:
                from lfmlf.data.synthetic import synthetic_ner

                sents = synthetic_ner([lang], split, getattr(cfg.synthetic, split))[lang]
            cap = cfg.max_train_sentences if split == "train" else cfg.max_eval_sentences
            self._raw[key] = list(sents[:cap] if cap else sents)
        return self._raw[key]

    def texts(self, langs: Sequence[str]) -> Iterable[str]:
        for lang in langs:
            for s in self.load(lang, "train" if self._has(lang, "train") else self.cfg.target_split):
                yield " ".join(s.tokens)

    def _has(self, lang: str, split: str) -> bool:
        if self.cfg.format != "conll":
            return True
        files = self.cfg.files.get(lang)
        return files is not None and getattr(files, split) is not None

    def prepare(self, tokenizer: Any, sources: Sequence[str], targets: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id
        tags = {t for lang in sources for s in self.load(lang, "train") for t in s.tags}
        self.labels = sorted(tags, key=lambda t: (t != "O", t[2:], t))
        self.label_id = {t: i for i, t in enumerate(self.labels)}
        for lang in sources:
            self._encode(lang, "train")
            self._encode(lang, "dev")
        for lang in targets:
            self._encode(lang, self.cfg.target_split)

    def _encode(self, lang: str, split: str) -> list[Example]:
        key = (lang, split)
        if key in self._encoded:
            return self._encoded[key]
        examples, truncated = self.cached(lang, split, lambda: self._encode_uncached(lang, split), self.labels)
        self.truncated_words[key] = truncated
        self._encoded[key] = examples
        return examples

    def _encode_uncached(self, lang: str, split: str) -> tuple[list[Example], int]:
        sents = self.load(lang, split)
        enc = self.tokenizer([list(s.tokens) for s in sents], is_split_into_words=True, truncation=True,
                             max_length=self.cfg.max_length)
        examples, truncated = [], 0
        for i, s in enumerate(sents):
            ids = enc["input_ids"][i]
            word_ids = enc.word_ids(i)
            pieces = self.tokenizer.convert_ids_to_tokens(ids)
            word_labels = [self.label_id.get(t, 0) for t in s.tags]  # unseen gold tags only matter in scoring
            labels = align_labels(word_ids, pieces, word_labels)
            truncated += len(s.tokens) - len({w for w in word_ids if w is not None})
            examples.append({"input_ids": list(ids), "labels": labels})
        return examples, truncated

    def train_examples(self, lang: str) -> Sequence[Example]:
        return self._encoded[(lang, "train")]

    # ------------------------------------------------------------------ model
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, len(self.labels)))

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = model(batch["input_ids"], batch["attention_mask"])
        logits = out.logits.float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
                               ignore_index=IGNORE)
        return loss, out.hidden

    @torch.no_grad()
    def evaluate(self, model: nn.Module, lang: str, split: str, batch_size: int,
                 device: torch.device) -> dict[str, float]:
        from seqeval.metrics import f1_score

        examples = self._encode(lang, split)
        sents = self.load(lang, split)
        was_training = model.training
        model.eval()
        preds: list[list[str]] = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            batch = {k: v.to(device) for k, v in self.collate(chunk).items()}
            logits = model(batch["input_ids"], batch["attention_mask"]).logits
            best = logits.argmax(-1).cpu()
            for row, ex in enumerate(chunk):
                positions = [p for p, lab in enumerate(ex["labels"]) if lab != IGNORE]
                words = [self.labels[int(best[row, p])] for p in positions]
                n_words = len(sents[start + row].tokens)
                preds.append(words + ["O"] * (n_words - len(words)))
        model.train(was_training)
        gold = [list(s.tags) for s in sents]
        return {self.metric: float(f1_score(gold, preds, zero_division=0))}
