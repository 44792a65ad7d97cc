"""The Task interface: data for a language and split, a head, a loss, and an evaluation.

Everything task-specific lives behind this interface, so the loop, the methods and the sweep never
branch on a task's name. Call order in a trial: ``check_data`` (at config load, before Ray starts) ->
``__init__`` -> ``texts`` (tokenizer training for tiny models) -> ``prepare`` (once the tokenizer exists)
-> ``build_head`` -> many ``loss`` / ``evaluate`` calls.
"""
from __future__ import annotations

import functools
import hashlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from lfmlf.config import TaskConfig, check_fields
from lfmlf.data.base import DataError
from lfmlf.data.cache import cache_root, cached, file_stamp, fingerprint, tokenizer_fingerprint

Example = dict[str, Any]   # "input_ids": list[int], other sequences (list[int]) or per-example ints


SPLITS = ("train", "dev", "test")   # the fields of a task.files entry


def by_length(examples: Sequence[Example], batch_size: int) -> list[list[int]]:
    """Evaluation batches as lists of example indices, shortest examples first: each batch is padded only
    to its own longest example (the attention mask keeps the scores those of the unpadded examples)."""
    order = sorted(range(len(examples)), key=lambda i: (len(examples[i]["input_ids"]), i))
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Tensor]:
    """Batch encoded examples: list values are padded to the longest ``input_ids`` (``input_ids`` with
    ``pad_id``, ``labels`` with -100, which the losses ignore, anything else with 0); int values (a
    sentence label, an answer position) become a [B] tensor. Adds ``attention_mask``."""
    width = max(len(e["input_ids"]) for e in examples)
    batch: dict[str, Tensor] = {}
    for key in examples[0]:
        if not isinstance(examples[0][key], list):
            batch[key] = torch.tensor([e[key] for e in examples], dtype=torch.long)
            continue
        fill = pad_id if key == "input_ids" else (-100 if key == "labels" else 0)
        rows = [e[key] + [fill] * (width - len(e[key])) for e in examples]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    batch["attention_mask"] = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                            for e in examples], dtype=torch.long)
    return batch


@functools.cache
def code_fingerprint() -> str:
    """The hash of the code that reads and encodes data (every module of ``lfmlf.tasks`` and ``lfmlf.data``):
    a cached dataset is only as good as the code that built it, so after an upgrade that changes how data
    are read, encoded or cached, no entry written by the old code is read (it would not even unpack)."""
    root = Path(__file__).resolve().parents[1]
    files = sorted([*(root / "tasks").glob("*.py"), *(root / "data").glob("*.py")])
    return fingerprint([hashlib.sha256(f.read_bytes()).hexdigest() for f in files])


class TaskOptions(BaseModel):
    """Base of a task's own options (``task.options`` in the YAML): typed, defaults, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(ABC):
    """One supervised task evaluated zero-shot per language."""

    name: ClassVar[str]
    metric: ClassVar[str]            # the key of evaluate()'s headline score (model selection), e.g. "f1"
    formats: ClassVar[tuple[str, ...]]   # values of ``task.format`` this task reads
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    pad_id: int = 0
    tokenizer: Any   # a Hugging Face tokenizer, set in ``prepare``

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg
        self.options = self.Options(**cfg.options)
        self.prep_stats = {"cache_hits": 0, "cache_misses": 0, "encode_s": 0.0}

    @classmethod
    def validate_options(cls, options: dict[str, Any]) -> None:
        """Raise ValueError naming every bad or unknown option and the valid ones (called at config load)."""
        check_fields(cls.Options, options, "option", f"task '{cls.name}'")

    def capped(self, items: Sequence[Any], lang: str, split: str, unit: str) -> list[Any]:
        """A split's items as read, capped by ``max_train_sentences`` / ``max_eval_sentences``; no items at
        all is a DataError naming the language, split and format (it would otherwise score 0 silently)."""
        if not items:
            raise DataError(f"task '{self.name}': no {unit} for language '{lang}', split '{split}' (format "
                            f"'{self.cfg.format}'). Fix: check the data source of that split.")
        cap = self.cfg.max_train_sentences if split == "train" else self.cfg.max_eval_sentences
        return list(items[:cap] if cap else items)

    def max_length_for(self, split: str) -> int:
        """Tokens per sequence when a split is encoded (called by ``prepare``'s encoders): ``task.max_length``
        for training, ``task.eval_max_length`` (default ``max_length``) for the dev and test splits."""
        if split == "train" or self.cfg.eval_max_length is None:
            return self.cfg.max_length
        return self.cfg.eval_max_length

    def collate(self, examples: Sequence[Example]) -> dict[str, Tensor]:
        """Called for every training and evaluation batch: encoded examples -> padded tensors."""
        return collate(examples, self.pad_id)

    def data_files(self, lang: str, split: str) -> list[Path]:
        """The files a language's split is read from (their size and mtime are part of the cache key)."""
        files = self.cfg.files.get(lang)
        name = files.path(split) if files is not None and split in SPLITS else None
        return [Path(self.cfg.data_dir or ".") / name] if name else []

    def _slice_spec(self, lang: str, split: str) -> str | None:
        """The slice of a split's file entry as written (part of the data-cache key), None without one."""
        files = self.cfg.files.get(lang)
        cut = files.rows(split) if files is not None and split in SPLITS else None
        return None if cut is None else f"{cut.start}:{cut.stop}"

    def rows(self, items: Sequence[Any], lang: str, split: str) -> Sequence[Any]:
        """The items of a language's split that its file entry's slice selects (``dev-de.tsv[:500]``), all
        of them without a slice; called right after a file is read, before carving and caps."""
        files = self.cfg.files.get(lang)
        cut = files.rows(split) if files is not None and split in SPLITS else None
        return items if cut is None else items[cut]

    def cached(self, lang: str, split: str, build: Callable[[], Any], *extra: Any) -> Any:
        """``build()`` (the encoded examples of a language's split, or anything derived from data and
        tokenizer) through the on-disk cache shared by all trials on this machine. The key covers the task
        settings, the split's maximum length (:meth:`max_length_for`), the data files, the tokenizer
        (``self.tokenizer``, set in ``prepare``) and ``extra``
        (e.g. a label map that depends on the source set)."""
        if not hasattr(self, "_tok_fp"):
            self._tok_fp = tokenizer_fingerprint(self.tokenizer)
        # the split's own length (max_length_for) stands for both length settings: a training split is
        # shared by sweeps that differ only in eval_max_length
        settings = self.cfg.model_dump(exclude={"files", "cache_dir", "target_split", "max_length", "eval_max_length"})
        key = fingerprint(self.name, settings, self.max_length_for(split),
                          [file_stamp(f) for f in self.data_files(lang, split)], self._slice_spec(lang, split),
                          lang, split, self._tok_fp, list(extra), code_fingerprint())
        started = time.perf_counter()
        value, hit = cached(cache_root(self.cfg.cache_dir), f"data/{self.name}", key, build)
        self.prep_stats["cache_hits" if hit else "cache_misses"] += 1
        self.prep_stats["encode_s"] += time.perf_counter() - started
        return value

    @classmethod
    @abstractmethod
    def check_data(cls, cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> None:
        """Called at config load: raise ValueError naming the key and the fix if any source lacks train or
        dev data, or any target lacks evaluation data. Must not read whole files (only check they exist)."""

    @abstractmethod
    def texts(self, langs: Sequence[str]) -> Iterable[str]:
        """Unlabelled text of these languages' training data (tokenizer training, MLM, distillation)."""

    @abstractmethod
    def load(self, lang: str, split: str) -> Sequence[Any]:
        """The unencoded items (sentences, pairs, questions) of a language's split, capped; a file that does
        not parse is a DataError naming it (``lfmlf.contents`` reads every split this way before Ray starts)."""

    def set_sources(self, sources: Sequence[str]) -> None:   # noqa: B027 (optional hook: most tasks need nothing)
        """Called before :meth:`load` by callers that read splits without :meth:`prepare` (the pre-flight
        content check): the languages that are sources, for tasks whose splits depend on it (NLI's
        ``split_dev`` carves a source's train and dev from one file). Default: nothing to do."""

    @abstractmethod
    def prepare(self, tokenizer: Any, sources: Sequence[str], targets: Sequence[str]) -> None:
        """Called once per trial after the tokenizer exists: read and encode the data of every language."""

    @abstractmethod
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        """A fresh, randomly initialised task head over the encoder's hidden states."""

    @abstractmethod
    def train_examples(self, lang: str) -> Sequence[Example]:
        """Encoded training examples of a source language."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Called every training step per source sub-batch: (mean loss, last hidden states [B, T, H])."""

    @abstractmethod
    def evaluate(self, model: nn.Module, lang: str, split: str, batch_size: int,
                 device: torch.device) -> dict[str, float]:
        """Called at every evaluation: scores of ``model`` on a language's split, ``self.metric`` among them."""


def splits_needed(cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> list[tuple[str, str]]:
    """The (language, split) pairs a trial reads: every source's train and dev, every target's target split."""
    return ([(lang, "train") for lang in sources] + [(lang, "dev") for lang in sources]
            + [(lang, cfg.target_split) for lang in targets])


def check_split_files(cfg: TaskConfig, need: Sequence[tuple[str, str]]) -> None:
    """Raise ValueError naming ``task.data_dir`` or ``task.files.<lang>.<split>`` and the fix unless every
    needed (language, split) has a file that exists (the files are not read)."""
    if cfg.data_dir is None:
        raise ValueError(f"key 'task.data_dir' is required with format '{cfg.format}'. Fix: set it to the "
                         "folder holding the files (relative paths are relative to the sweep file).")
    for lang, split in need:
        files = cfg.files.get(lang)
        name = files.path(split) if files is not None else None
        key = f"task.files.{lang}.{split}"
        if name is None:
            raise ValueError(f"key '{key}' is missing: language '{lang}' needs a {split} file. "
                             f"Fix: add it under task.files.{lang}, or drop '{lang}' from the languages.")
        path = Path(cfg.data_dir) / name
        if not path.is_file():
            raise ValueError(f"key '{key}': file {path} does not exist. Fix: check task.data_dir "
                             f"({cfg.data_dir}) and the file name.")
