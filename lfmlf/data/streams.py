"""Endless, resumable streams over a language's examples, and how a batch is shared among languages.

Used by the training loop (source-language batches) and by the unlabelled-text stream of the masked-LM
and distillation objectives.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch

Example = dict[str, Any]


class LanguageStream:
    """Endless shuffled passes over one language's examples; the position is two ints, so resumable."""

    def __init__(self, examples: Sequence[Example], seed: int, lang: str) -> None:
        self.examples, self.seed, self.lang = examples, seed, lang
        self.epoch, self.pos = 0, 0
        self._order = self._permutation()

    def _permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}/{self.lang}/{self.epoch}".encode()))
        return torch.randperm(len(self.examples), generator=g).tolist()

    def take(self, n: int) -> list[Example]:
        out = []
        for _ in range(n):
            if self.pos == len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._permutation()
            out.append(self.examples[self._order[self.pos]])
            self.pos += 1
        return out

    def state(self) -> tuple[int, int]:
        return self.epoch, self.pos

    def restore(self, state: Sequence[int]) -> None:
        self.epoch, self.pos = int(state[0]), int(state[1])
        self._order = self._permutation()


def language_weights(sizes: dict[str, int], sampler: str, temperature: float) -> dict[str, float]:
    """Share of each source in a batch: uniform, proportional to data size, or size ** (1 / T)."""
    if sampler == "uniform":
        raw = {k: 1.0 for k in sizes}
    elif sampler == "proportional":
        raw = {k: float(n) for k, n in sizes.items()}
    else:
        raw = {k: float(n) ** (1.0 / temperature) for k, n in sizes.items()}
    total = sum(raw.values())
    return {k: v / total for k, v in raw.items()}


def allocate(batch_size: int, weights: dict[str, float], generator: torch.Generator,
             per_source: int | None = None) -> dict[str, int]:
    """Examples per source in one micro-batch, called by the loop for every micro-batch: one each (every
    source constrains every step), the rest drawn from ``weights``. With ``per_source`` (``train.
    per_source_batch``): exactly that many of each source, ``batch_size`` and ``weights`` unused and
    ``generator`` untouched."""
    langs = list(weights)
    if per_source is not None:
        return {k: per_source for k in langs}
    counts = {k: 1 for k in langs}
    if batch_size > len(langs):
        extra = torch.multinomial(torch.tensor([weights[k] for k in langs]), batch_size - len(langs),
                                  replacement=True, generator=generator)
        for i in extra.tolist():
            counts[langs[i]] += 1
    return counts
