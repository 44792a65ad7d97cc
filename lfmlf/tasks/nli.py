"""Natural-language inference (XNLI): a premise-hypothesis pair -> entailment / neutral / contradiction.

Encoding: the pair as one sequence (``tokenizer(premise, hypothesis, truncation=True, max_length=...)``,
XLM-R's ``<s> P </s></s> H </s>``); head: dropout + linear over the first token's (``<s>``) last hidden
state, 3 classes in the order of :data:`lfmlf.data.xnli.NLI_LABELS`; loss: cross-entropy; score: accuracy.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from lfmlf.config import TaskConfig
from lfmlf.data.hub import load_xnli_hub
from lfmlf.data.synthetic import synthetic_nli
from lfmlf.data.xnli import NLI_LABELS, NliPair, read_xnli, split_by_premise
from lfmlf.models import eval_mode
from lfmlf.tasks.base import Example, Task, TaskOptions, by_length, check_split_files, splits_needed

__all__ = ["FirstTokenHead", "NliTask"]


class FirstTokenHead(nn.Module):
    """Dropout + linear over the first position's hidden state: [B, T, H] -> [B, n_classes]."""

    def __init__(self, hidden_size: int, n_classes: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden_size, n_classes)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.linear(self.dropout(hidden[:, 0]))


class NliOptions(TaskOptions):
    split_dev: float | None = Field(None, gt=0.0, lt=1.0, description=(
        "Fraction of a source language's premises held out as its dev set, the rest being its training set, "
        "both taken from one file (its train file if task.files.<lang>.train is set, else its dev file). "
        "None: train and dev are read from their own files."))
    split_seed: int = Field(0, description="Seed of the held-out premise draw (split_dev).")
    held_out_targets: bool = Field(True, description=(
        "With split_dev: evaluate target languages only on the held-out premise positions of their file. "
        "XNLI's languages are translations of the same pairs in the same order, so every other premise was "
        "trained on (in a source language); scoring it would not be zero-shot. Set false for target files "
        "that are not parallel to the sources'."))


class NliTask(Task):
    """XNLI-style NLI, metric ``acc`` (accuracy over pairs, in [0, 1]).

    Formats (``task.format``):

    * ``xnli``: TSV files in ``task.files`` (``premise <TAB> hypothesis <TAB> label``, no header, as in
      XTREME's ``dev-<lang>.tsv``; see :func:`lfmlf.data.xnli.read_xnli`).
    * ``hub``: ``datasets.load_dataset(hub_path, lang)``, ``hub_path`` default ``facebook/xnli`` (splits
      train, validation = dev, test; its train split is MultiNLI machine-translated, 393k pairs per
      language: cap it with ``max_train_sentences``).
    * ``synthetic``: :func:`lfmlf.data.synthetic.synthetic_nli`, sizes from ``task.synthetic``.

    Training on a dev set (``options.split_dev``). Public XNLI has labelled dev and test sets in every
    language but training data only in English (MultiNLI). To train on several source languages without
    other data, set ``split_dev`` (e.g. 0.2): each *source* language's ``train`` and ``dev`` are then both
    carved from one pool -- its ``files.<lang>.train`` if given, else its ``files.<lang>.dev`` (format
    ``xnli``); the hub's validation split (``hub``); the synthetic dev set (``synthetic``). A fraction
    ``split_dev`` of the pool's distinct *premises*, drawn with ``split_seed``, goes to dev with all their
    hypotheses, the rest to train, so no premise is in both (XNLI has three hypotheses per premise; a
    random split by pair would put the same premise in both and inflate dev scores). The draw is over
    premise positions, so in XNLI's parallel files the same premises are held out in every language.
    *Target* languages are evaluated on the same held-out premise positions of their ``target_split``
    file (``held_out_targets``, default true): their other pairs are translations of pairs some source
    trained on. Set ``held_out_targets: false`` when the target files are not parallel to the sources'.
    ``max_train_sentences`` / ``max_eval_sentences`` cap the pairs after the split. Example::

        task:
          name: nli
          format: xnli
          data_dir: ../shared/data/xtreme/xnli
          target_split: dev
          files: {en: {dev: dev-en.tsv}, de: {dev: dev-de.tsv}, fr: {dev: dev-fr.tsv}}
          options: {split_dev: 0.2}        # en, de: train on 80 % of the premises, select on 20 %
    """

    Options = NliOptions
    options: NliOptions
    name = "nli"
    metric = "acc"
    formats = ("xnli", "hub", "synthetic")

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self.labels = list(NLI_LABELS)
        self.label_id = {t: i for i, t in enumerate(self.labels)}
        self._stored: dict[tuple[str, str], list[NliPair]] = {}   # as read, before carving and caps
        self._raw: dict[tuple[str, str], list[NliPair]] = {}      # what load() returns
        self._encoded: dict[tuple[str, str], list[Example]] = {}
        self._sources: frozenset[str] = frozenset()
        self.truncated_pairs: dict[tuple[str, str], int] = {}   # pairs that reach max_length (likely cut)

    # ------------------------------------------------------------------ data
    @staticmethod
    def _pool_split(cfg: TaskConfig, lang: str) -> str:
        """With split_dev: the split whose data is carved into train and dev."""
        files = cfg.files.get(lang)
        return "train" if cfg.format == "xnli" and files is not None and files.train is not None else "dev"

    @classmethod
    def check_data(cls, cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> None:
        if cfg.format != "xnli":
            return  # synthetic data exists for every language; hub data is checked when it is loaded
        split_dev = cls.Options(**cfg.options).split_dev
        need: list[tuple[str, str]] = []
        for lang in sources:
            if not split_dev:
                need += [(lang, "train"), (lang, "dev")]
                continue
            pool = cls._pool_split(cfg, lang)
            files = cfg.files.get(lang)
            if cfg.data_dir is not None and (files is None or getattr(files, pool) is None):
                raise ValueError(
                    f"key 'task.files.{lang}.dev' is missing: with task.options.split_dev, source language "
                    f"'{lang}' takes its train and dev sets from its dev file (or its train file if given). "
                    f"Fix: add task.files.{lang}.dev, or drop '{lang}' from the languages.")
            need.append((lang, pool))
        need += [(lang, cfg.target_split) for lang in targets]
        check_split_files(cfg, need)

    def set_sources(self, sources: Sequence[str]) -> None:
        """Under split_dev a source's train and dev are carved from one pool, a target's are not."""
        if frozenset(sources) != self._sources:
            self._sources = frozenset(sources)
            self._raw.clear()   # what load() returned before depended on the old sources

    def _carved(self, lang: str, split: str) -> bool:
        return self.options.split_dev is not None and split in ("train", "dev") and lang in self._sources

    def data_files(self, lang: str, split: str) -> list[Path]:
        stored = self._pool_split(self.cfg, lang) if self._carved(lang, split) else split
        return super().data_files(lang, stored)

    def _read(self, lang: str, split: str) -> list[NliPair]:
        """Every pair of a language's split as stored (file, hub, generator): no carving, no caps."""
        key = (lang, split)
        if key not in self._stored:
            cfg = self.cfg
            if cfg.format == "xnli":
                path = Path(cfg.data_dir or ".") / str(cfg.files[lang].path(split))
                pairs = list(self.rows(read_xnli(path), lang, split))
            elif cfg.format == "hub":
                pairs = load_xnli_hub(lang, split, path=cfg.hub_path or "facebook/xnli", revision=cfg.hub_revision)
            else:
                pairs = synthetic_nli([lang], split, getattr(cfg.synthetic, split))[lang]
            self._stored[key] = pairs
        return self._stored[key]

    def _held_out_target(self, lang: str, split: str) -> bool:
        o = self.options
        return (o.split_dev is not None and o.held_out_targets and lang not in self._sources
                and split == self.cfg.target_split)

    def _carve(self, lang: str, part: str) -> list[NliPair]:
        """The train or dev part of a language's pool under split_dev."""
        assert self.options.split_dev is not None
        pool = self._read(lang, self._pool_split(self.cfg, lang))
        rest, held = split_by_premise(pool, self.options.split_dev, self.options.split_seed)
        return rest if part == "train" else held

    def load(self, lang: str, split: str) -> list[NliPair]:
        """Pairs of a language's split (a source's train/dev carved from one pool under split_dev), capped."""
        key = (lang, split)
        if key not in self._raw:
            if self._carved(lang, split):
                pairs = self._carve(lang, split)
            elif self._held_out_target(lang, split):   # translations of training pairs stay out
                assert self.options.split_dev is not None   # as _held_out_target checked
                pairs = split_by_premise(self._read(lang, split), self.options.split_dev, self.options.split_seed)[1]
            else:
                pairs = self._read(lang, split)
            self._raw[key] = self.capped(pairs, lang, split, "pairs")
        return self._raw[key]

    def _has(self, lang: str, split: str) -> bool:
        files = self.cfg.files.get(lang)
        return self.cfg.format != "xnli" or (files is not None and getattr(files, split) is not None)

    def texts(self, langs: Sequence[str]) -> Iterable[str]:
        """Premises and hypotheses of each language's training pairs (under split_dev: the part that
        is not held out), or of its evaluation split when it has no training data."""
        for lang in langs:
            if self.options.split_dev is not None and self._has(lang, self._pool_split(self.cfg, lang)):
                pairs = self._carve(lang, "train")
            else:
                pairs = self._read(lang, "train" if self._has(lang, "train") else self.cfg.target_split)
            cap = self.cfg.max_train_sentences
            for pair in pairs[:cap] if cap else pairs:
                yield pair.premise
                yield pair.hypothesis

    def prepare(self, tokenizer: Any, sources: Sequence[str], targets: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id
        self.set_sources(sources)
        for lang, split in splits_needed(self.cfg, sources, targets):
            self._encode(lang, split)

    def _encode(self, lang: str, split: str) -> list[Example]:
        key = (lang, split)
        if key not in self._encoded:
            view = ("carved" if self._carved(lang, split)   # a source's dev != a target's dev
                    else "held-out" if self._held_out_target(lang, split) else "whole")
            examples, truncated = self.cached(lang, split, lambda: self._encode_uncached(lang, split), view)
            self._encoded[key] = examples
            self.truncated_pairs[key] = truncated
        return self._encoded[key]

    def _encode_uncached(self, lang: str, split: str) -> tuple[list[Example], int]:
        pairs = self.load(lang, split)
        enc = self.tokenizer([p.premise for p in pairs], [p.hypothesis for p in pairs], truncation=True,
                             max_length=self.max_length_for(split))
        examples: list[Example] = [{"input_ids": list(ids), "labels": self.label_id[p.label]}
                    for ids, p in zip(enc["input_ids"], pairs)]
        return examples, sum(len(e["input_ids"]) >= self.max_length_for(split) for e in examples)

    def train_examples(self, lang: str) -> Sequence[Example]:
        return self._encoded[(lang, "train")]

    # ------------------------------------------------------------------ model
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return FirstTokenHead(hidden_size, len(self.labels), dropout)

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = model(batch["input_ids"], batch["attention_mask"])
        return F.cross_entropy(out.logits.float(), batch["labels"]), out.hidden

    @torch.inference_mode()   # no autograd state at all: ~6% faster than no_grad here
    def predict(self, model: nn.Module, lang: str, split: str, batch_size: int,
                device: torch.device) -> list[str]:
        """The predicted label of every pair of a language's split."""
        examples = self._encode(lang, split)
        preds: list[str] = ["" for _ in examples]
        with eval_mode(model):
            for chunk in by_length(examples, batch_size):
                batch = {k: v.to(device) for k, v in self.collate([examples[i] for i in chunk]).items()}
                best = model(batch["input_ids"], batch["attention_mask"]).logits.argmax(-1).cpu()
                for i, label in zip(chunk, best):
                    preds[i] = self.labels[int(label)]
        return preds

    def evaluate(self, model: nn.Module, lang: str, split: str, batch_size: int,
                 device: torch.device) -> dict[str, float]:
        preds = self.predict(model, lang, split, batch_size, device)
        gold = [p.label for p in self.load(lang, split)]
        return {self.metric: sum(g == p for g, p in zip(gold, preds)) / len(gold) if gold else 0.0}
