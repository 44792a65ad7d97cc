"""The Task interface: data for a language and split, a head, a loss, and an evaluation.

Everything task-specific lives behind this interface, so the loop, the methods and the sweep never
branch on a task's name. Call order in a trial: ``check_data`` (at config load, before Ray starts) ->
``__init__`` -> ``texts`` (tokenizer training for tiny models) -> ``prepare`` (once the tokenizer exists)
-> ``build_head`` -> many ``loss`` / ``evaluate`` calls.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterable, Sequence

import torch
from torch import Tensor, nn

from lfmlf.config import TaskConfig

Example = dict[str, list[int]]


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Tensor]:
    """Pad a list of encoded examples into a batch: ``input_ids`` with ``pad_id``, ``labels`` with -100
    (ignored by the loss), everything else with 0; adds ``attention_mask``."""
    width = max(len(e["input_ids"]) for e in examples)
    batch: dict[str, Tensor] = {}
    for key in examples[0]:
        fill = pad_id if key == "input_ids" else (-100 if key == "labels" else 0)
        rows = [e[key] + [fill] * (width - len(e[key])) for e in examples]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    batch["attention_mask"] = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                            for e in examples], dtype=torch.long)
    return batch


class Task(ABC):
    """One supervised task evaluated zero-shot per language."""

    name: ClassVar[str]
    metric: ClassVar[str]   # the key under which evaluate() returns the headline score, e.g. "f1"

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg

    @classmethod
    @abstractmethod
    def check_data(cls, cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> None:
        """Called at config load: raise ValueError naming the key and the fix if any source lacks train or
        dev data, or any target lacks evaluation data. Must not read whole files (only check they exist)."""

    @abstractmethod
    def texts(self, langs: Sequence[str]) -> Iterable[str]:
        """Unlabelled text of these languages' training data (tokenizer training, MLM, distillation)."""

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
    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Called every training step per source sub-batch: (mean loss, last hidden states [B, T, H])."""

    @abstractmethod
    def evaluate(self, model: nn.Module, lang: str, split: str, batch_size: int,
                 device: torch.device) -> dict[str, float]:
        """Called at every evaluation: scores of ``model`` on a language's split, ``self.metric`` among them."""
