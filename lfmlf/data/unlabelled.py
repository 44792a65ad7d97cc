"""Unlabelled text for the masked-LM and distillation objectives: an endless, resumable stream of batches.

Text comes from the sweep's plain-text files (``unlabelled.files``: language -> file, one sentence or
paragraph per line, blank lines skipped), else from the task's own source-language text. Each batch takes
``unlabelled.batch_size`` sequences, each from a language drawn uniformly; masked batches use BERT's
recipe (``mlm_probability`` of the non-special tokens; 80% <mask>, 10% random, 10% kept) through
transformers' ``DataCollatorForLanguageModeling`` on torch's global RNG, whose state the loop checkpoints.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lfmlf.config import UnlabelledConfig
from lfmlf.data.base import DataError
from lfmlf.data.streams import LanguageStream
from lfmlf.tasks.base import collate


def read_lines(path: str | Path, max_lines: int | None) -> list[str]:
    """Non-blank lines of a UTF-8 text file (at most ``max_lines``)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"unlabelled text file {p} does not exist. Fix: check unlabelled.files in the sweep "
                        "file (paths are relative to it).")
    lines: list[str] = []
    with p.open(encoding="utf-8", errors="strict") as f:
        try:
            for line in f:
                if line.strip():
                    lines.append(line.strip())
                    if max_lines and len(lines) >= max_lines:
                        break
        except UnicodeDecodeError as e:
            raise DataError(f"unlabelled text file {p} is not UTF-8 ({e}). Fix: re-encode it as UTF-8.") from None
    if not lines:
        raise DataError(f"unlabelled text file {p} has no text. Fix: give a file with one sentence per line.")
    return lines


def file_texts(cfg: UnlabelledConfig) -> dict[str, list[str]]:
    """The lines of every configured file, per language (empty when no files are configured)."""
    return {lang: read_lines(path, cfg.max_lines) for lang, path in cfg.files.items()}


class UnlabelledText:
    """Batches of unlabelled text: ``batch(device)`` is called once per micro-batch by the loop."""

    def __init__(self, cfg: UnlabelledConfig, texts: Mapping[str, Iterable[str]], tokenizer: Any,
                 seed: int, masked: bool) -> None:
        self.cfg, self.tokenizer, self.masked = cfg, tokenizer, masked
        self.streams: dict[str, LanguageStream] = {}
        for lang, lines in texts.items():
            lines = list(lines)[:cfg.max_lines] if cfg.max_lines else list(lines)
            if not lines:
                raise DataError(f"no unlabelled text for language '{lang}'. Fix: give unlabelled.files.{lang}.")
            enc = tokenizer(lines, truncation=True, max_length=cfg.max_length)["input_ids"]
            self.streams[lang] = LanguageStream([{"input_ids": list(ids)} for ids in enc], seed, f"unlabelled/{lang}")
        self.rng = torch.Generator().manual_seed(seed + 2)   # which language each sequence comes from
        if masked:
            if tokenizer.mask_token is None:
                raise DataError("the tokenizer has no mask token, so masked-LM batches cannot be built. "
                                "Fix: use a model with a masked-LM head and its tokenizer.")
            from transformers import DataCollatorForLanguageModeling  # lazy: transformers is slow to import

            self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=cfg.mlm_probability)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)))

    def batch(self, device: torch.device) -> dict[str, Tensor]:
        """The next batch: ``input_ids``, ``attention_mask`` (and ``labels``, -100 except at masked
        positions, when masked)."""
        langs = list(self.streams)
        draws = torch.randint(len(langs), (self.cfg.batch_size,), generator=self.rng).tolist()
        examples = [e for i, lang in enumerate(langs) for e in self.streams[lang].take(draws.count(i))]
        batch = collate(examples, self.tokenizer.pad_token_id)
        if self.masked:
            ids = batch["input_ids"]
            special = torch.isin(ids, self.special) | (batch["attention_mask"] == 0)
            batch["input_ids"], batch["labels"] = self.collator.torch_mask_tokens(ids.clone(), special)
        return {k: v.to(device) for k, v in batch.items()}

    def state(self) -> dict[str, Any]:
        return {"streams": {k: s.state() for k, s in self.streams.items()}, "rng": self.rng.get_state()}

    def restore(self, state: Mapping[str, Any]) -> None:
        for lang, pos in state["streams"].items():
            self.streams[lang].restore(pos)
        self.rng.set_state(state["rng"])


def unlabelled_stream(cfg: UnlabelledConfig, need: str, task_texts: Callable[[], Mapping[str, Sequence[str]]],
                      tokenizer: Any, seed: int) -> UnlabelledText | None:
    """The stream a configuration needs (``Needs.unlabelled``): "masked" always (files, else the task's
    source text, ``task_texts()``, read only then), "text" only when the sweep gives files, "none" never."""
    if need == "none" or (need == "text" and not cfg.files):
        return None
    texts = file_texts(cfg) if cfg.files else dict(task_texts())
    return UnlabelledText(cfg, texts, tokenizer, seed, masked=need == "masked")
