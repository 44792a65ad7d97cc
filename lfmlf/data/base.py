"""The record types every reader returns, whatever the file format or hub dataset."""
from __future__ import annotations

from dataclasses import dataclass


class DataError(ValueError):
    """A data file or dataset cannot be read; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence of a token-level task (NER, POS): words and one tag per word."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise DataError(f"{len(self.tokens)} tokens but {len(self.tags)} tags in {self.tokens[:5]}...")
