"""Extractive question answering (SQuAD-style): predict the answer span's start and end token.

Encoding: question first, context second (``truncation="only_second"``); a context longer than the window
is cut into overlapping windows by the fast tokenizer (``return_overflowing_tokens`` with ``stride``
tokens of overlap, ``return_offsets_mapping`` to map tokens back to context characters). A window whose
context part does not hold the whole (first) gold answer is labelled with position 0 (``<s>``/CLS), as in
Hugging Face's ``run_qa`` example. Questions longer than ``max_question_length`` tokens are cut.

Evaluation: for every window, the ``n_best`` start and end logits over context tokens give candidate spans
(end >= start, at most ``max_answer_length`` tokens); the highest start + end logit over all windows of a
question is its answer, read from the context through the offsets and scored with EM and token F1 (max over
the gold answers) by :mod:`lfmlf.tasks.qa_metrics`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import Tensor, nn

from lfmlf.config import TaskConfig
from lfmlf.data.base import DataError
from lfmlf.data.squad import SYNTHETIC_QA_LANGS, QaExample, load_squad_hub, read_squad, synthetic_qa
from lfmlf.models import eval_mode
from lfmlf.tasks.base import Example, Task, TaskOptions, check_split_files, splits_needed
from lfmlf.tasks.qa_metrics import Normalisation, dataset_normalisation, qa_scores

__all__ = ["DEFAULT_HUB_PATH", "QaOptions", "QaTask", "answer_positions", "best_spans", "encode_qa"]

DEFAULT_HUB_PATH = "google/xquad"
Offsets = list[tuple[int, int] | None]   # per token: its context characters, None outside the context


class QaOptions(TaskOptions):
    """``task.options`` of the QA task."""

    doc_stride: int = Field(128, ge=0)
    """Tokens of overlap between consecutive windows of a long context (HF's ``doc_stride``); clamped to
    half of the context room of a window (``max_length`` - question - special tokens) so windows advance."""
    max_answer_length: int = Field(30, ge=1)
    """Longest predicted answer, in tokens."""
    n_best: int = Field(20, ge=1)
    """Start and end candidates per window (the top-n logits over context tokens)."""
    max_question_length: int = Field(64, ge=1)
    """Questions are cut to this many tokens (and to half of the window)."""
    normalisation: Literal["auto", "squad", "mlqa"] = "auto"
    """Answer normalisation of the scores: 'auto' (default) picks per language and split what XTREME uses for
    the data (:func:`~lfmlf.tasks.qa_metrics.dataset_normalisation`): 'mlqa' for MLQA files (``*mlqa*``,
    ``*context-xx-question-xx*``) or hub data (``facebook/mlqa``, config ``mlqa.*``), 'squad' for XQuAD, TyDi QA
    GoldP and everything else. 'mlqa' (language-aware: Unicode punctuation, articles of en es de vi ar, Chinese
    scored per character) or 'squad' (SQuAD v1.1) force one normalisation for every language and split."""
    hub_config: str | None = "xquad.{lang}"
    """Format 'hub': the dataset config of a language, '{lang}' is replaced (None: no config)."""
    hub_splits: dict[str, str] = Field(default_factory=lambda: {"train": "train", "dev": "validation",
                                                                "test": "validation"})
    """Format 'hub': our split (train, dev, test) -> the dataset's split name."""

    @field_validator("hub_splits")
    @classmethod
    def _known_splits(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - {"train", "dev", "test"})
        if unknown:
            raise ValueError(f"keys {unknown} are not splits; use train, dev, test")
        return value


# ------------------------------------------------------------------------------------------- encoding
def answer_positions(offsets: Offsets, start_char: int, end_char: int,
                     bare: Sequence[bool] = ()) -> tuple[int, int]:
    """(first, last) token of the answer characters [start_char, end_char) in a window, or (0, 0) when the
    window's context part does not hold the whole answer. A first token flagged in ``bare`` (a bare ``▁``
    word marker, frequent in XLM-R's Chinese) passes the start on to the next token of the answer."""
    ctx = [t for t, o in enumerate(offsets) if o is not None]
    if not ctx or offsets[ctx[0]][0] > start_char or offsets[ctx[-1]][1] < end_char:  # type: ignore[index]
        return 0, 0
    first = next(t for t in ctx if offsets[t][1] > start_char)             # type: ignore[index]
    last = next(t for t in reversed(ctx) if offsets[t][0] < end_char)      # type: ignore[index]
    while first < last and first < len(bare) and bare[first]:
        first += 1
    return (first, last) if last >= first else (0, 0)


def _cut_questions(tokenizer: Any, questions: list[str], cap: int) -> list[str]:
    """Questions cut (at a token boundary) to at most ``cap`` tokens."""
    out = list(questions)
    for i, offs in enumerate(tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
                             ["offset_mapping"]):
        q = questions[i]
        while len(offs) > cap:   # q shrinks every round; re-tokenising a cut text may merge differently
            cut = offs[cap - 1][1]
            q = q[:cut] if 0 < cut < len(q) else q[:-1]
            offs = tokenizer(q, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        out[i] = q
    return out


def encode_qa(tokenizer: Any, examples: Sequence[QaExample], *, max_length: int, doc_stride: int = 128,
              max_question_length: int = 64) -> dict[str, list[Any]]:
    """Sliding windows of every question over its context.

    Returns ``{"examples": [{"input_ids", "start_positions", "end_positions"}], "qid": [question index of
    each window], "offsets": [per window, each token's context characters or None], "stride": [stride]}``.
    Labels point at the first gold answer, or at 0 when the window does not hold it."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    q_cap = min(max_question_length, (max_length - specials) // 2)
    room = max_length - specials - q_cap
    if q_cap < 1 or room < 1:
        raise ValueError(f"task.max_length={max_length} leaves no room for a question and a context "
                         f"({specials} special tokens). Fix: raise task.max_length.")
    stride = min(doc_stride, room // 2)
    out: dict[str, list[Any]] = {"examples": [], "qid": [], "offsets": [], "stride": [stride]}
    if not examples:
        return out
    marker = tokenizer.convert_tokens_to_ids("\u2581")   # a bare word marker, if the vocabulary has one
    marker = None if marker == tokenizer.unk_token_id else marker
    questions = _cut_questions(tokenizer, [ex.question.lstrip() for ex in examples], q_cap)
    enc = tokenizer(questions, [ex.context for ex in examples], truncation="only_second",
                    max_length=max_length, stride=stride, return_overflowing_tokens=True,
                    return_offsets_mapping=True)
    for f, ids in enumerate(enc["input_ids"]):
        i = enc["overflow_to_sample_mapping"][f]
        offsets: Offsets = [tuple(o) if s == 1 else None
                            for o, s in zip(enc["offset_mapping"][f], enc.sequence_ids(f))]
        ex = examples[i]
        bare = [t == marker for t in ids]
        start, end = answer_positions(offsets, ex.answer_starts[0], ex.answer_starts[0] + len(ex.answers[0]),
                                      bare)
        out["examples"].append({"input_ids": list(ids), "start_positions": start, "end_positions": end})
        out["qid"].append(i)
        out["offsets"].append(offsets)
    return out


# ------------------------------------------------------------------------------------------ decoding
def best_spans(start: Tensor, end: Tensor, context: Tensor, n_best: int,
               max_answer_length: int) -> tuple[Tensor, Tensor, Tensor]:
    """Best span per row of [B, T] start/end logits: (score = start + end logit, start, end), among the
    ``n_best`` start and end tokens of the context (bool [B, T]) with start <= end < start +
    ``max_answer_length``. A row without a valid span gets score -inf."""
    k = min(n_best, start.shape[1])
    s_val, s_idx = start.float().masked_fill(~context, -math.inf).topk(k, dim=1)
    e_val, e_idx = end.float().masked_fill(~context, -math.inf).topk(k, dim=1)
    length = e_idx[:, None, :] - s_idx[:, :, None]                        # [B, k(start), k(end)]
    score = s_val[:, :, None] + e_val[:, None, :]
    score = score.masked_fill((length < 0) | (length >= max_answer_length), -math.inf)
    best, flat = score.flatten(1).max(dim=1)
    return best, s_idx.gather(1, (flat // k)[:, None])[:, 0], e_idx.gather(1, (flat % k)[:, None])[:, 0]


# ---------------------------------------------------------------------------------------------- task
class QaTask(Task):
    """Extractive QA. Formats: ``squad`` (SQuAD v1.1 JSON files in task.files), ``hub`` (a hub dataset
    with SQuAD columns: ``hub_path`` default ``google/xquad``, options ``hub_config`` and ``hub_splits``),
    ``synthetic`` (:func:`~lfmlf.data.squad.synthetic_qa`, languages ``SYNTHETIC_QA_LANGS``)."""

    name = "qa"
    metric = "f1"
    formats = ("squad", "hub", "synthetic")
    Options = QaOptions

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self.options: QaOptions
        self._raw: dict[tuple[str, str], list[QaExample]] = {}
        self._encoded: dict[tuple[str, str], dict[str, list[Any]]] = {}
        self.pad_id = 0

    # ------------------------------------------------------------------ data
    @classmethod
    def check_data(cls, cfg: TaskConfig, sources: Sequence[str], targets: Sequence[str]) -> None:
        need = splits_needed(cfg, sources, targets)
        if cfg.format == "synthetic":
            missing = sorted({lang for lang, _ in need} - set(SYNTHETIC_QA_LANGS))
            if missing:
                raise ValueError(f"key 'languages': synthetic QA has no language(s) {missing}. Fix: use "
                                 f"languages among {', '.join(SYNTHETIC_QA_LANGS)}, or real data "
                                 f"(format squad).")
            return
        if cfg.format != "squad":
            return  # hub data is checked when it is loaded
        check_split_files(cfg, need)

    def load(self, lang: str, split: str) -> list[QaExample]:
        """Questions of a language's split from files, the hub or the generator, capped by
        ``max_train_sentences`` / ``max_eval_sentences`` (questions, not contexts)."""
        key = (lang, split)
        if key not in self._raw:
            cfg, opts = self.cfg, self.options
            if cfg.format == "squad":
                files = cfg.files.get(lang)
                name = files.path(split) if files is not None else None
                if name is None:
                    raise DataError(f"key 'task.files.{lang}.{split}' is not set. Fix: add the {split} "
                                    f"file of '{lang}' under task.files.")
                rows = self.rows(read_squad(Path(cfg.data_dir or ".") / name), lang, split)
            elif cfg.format == "hub":
                config = opts.hub_config.format(lang=lang) if opts.hub_config else None
                rows = load_squad_hub(cfg.hub_path or DEFAULT_HUB_PATH, config,
                                      opts.hub_splits.get(split, split), revision=cfg.hub_revision)
            else:
                rows = synthetic_qa([lang], split, getattr(cfg.synthetic, split))[lang]
            self._raw[key] = self.capped(rows, lang, split, "questions")
        return self._raw[key]

    def texts(self, langs: Sequence[str]) -> Iterable[str]:
        for lang in langs:
            last = None
            for ex in self._text_rows(lang):
                if ex.context != last:   # the questions of a paragraph share its context: yield it once
                    yield ex.context
                    last = ex.context
                yield ex.question

    def _text_rows(self, lang: str) -> list[QaExample]:
        """The training split of a language, else its evaluation split."""
        files = self.cfg.files.get(lang)
        if self.cfg.format == "squad" and (files is None or files.train is None):
            return self.load(lang, self.cfg.target_split)
        if self.cfg.format == "hub":
            try:
                return self.load(lang, "train")
            except DataError:  # e.g. XQuAD: evaluation splits only
                return self.load(lang, self.cfg.target_split)
        return self.load(lang, "train")

    def prepare(self, tokenizer: Any, sources: Sequence[str], targets: Sequence[str]) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"the QA task needs a fast tokenizer (character offsets), got "
                             f"{type(tokenizer).__name__}. Fix: use a model that ships a tokenizer.json "
                             f"(AutoTokenizer(..., use_fast=True)).")
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id
        for lang, split in splits_needed(self.cfg, sources, targets):
            self._encode(lang, split)

    def _encode(self, lang: str, split: str) -> dict[str, list[Any]]:
        key = (lang, split)
        if key not in self._encoded:
            opts = self.options
            self._encoded[key] = self.cached(lang, split, lambda: encode_qa(
                self.tokenizer, self.load(lang, split), max_length=self.max_length_for(split),
                doc_stride=opts.doc_stride, max_question_length=opts.max_question_length))
        return self._encoded[key]

    def train_examples(self, lang: str) -> Sequence[Example]:
        return self._encoded[(lang, "train")]["examples"]

    # ------------------------------------------------------------------ model
    def build_head(self, hidden_size: int, dropout: float) -> nn.Module:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_size, 2))

    def loss(self, model: nn.Module, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = model(batch["input_ids"], batch["attention_mask"])
        logits = out.logits.float().masked_fill(batch["attention_mask"][..., None] == 0, -1e4)
        start, end = logits.unbind(-1)
        loss = (F.cross_entropy(start, batch["start_positions"])
                + F.cross_entropy(end, batch["end_positions"])) / 2
        return loss, out.hidden

    def predict(self, model: nn.Module, lang: str, split: str, batch_size: int,
                device: torch.device) -> list[str]:
        """The predicted answer text of every question of a language's split ('' if no valid span)."""
        enc = self._encode(lang, split)
        questions = self.load(lang, split)
        best: list[tuple[float, str]] = [(-math.inf, "")] * len(questions)
        with eval_mode(model), torch.inference_mode():
            for b in range(0, len(enc["examples"]), batch_size):
                chunk = enc["examples"][b:b + batch_size]
                ids = self.collate([{"input_ids": e["input_ids"]} for e in chunk])
                batch = {k: v.to(device) for k, v in ids.items()}
                logits = model(batch["input_ids"], batch["attention_mask"]).logits.float().cpu()
                width = logits.shape[1]
                offsets = enc["offsets"][b:b + batch_size]
                context = torch.tensor([[o is not None for o in offs] + [False] * (width - len(offs))
                                        for offs in offsets], dtype=torch.bool)
                scores, starts, ends = best_spans(logits[..., 0], logits[..., 1], context,
                                                  self.options.n_best, self.options.max_answer_length)
                for row, offs in enumerate(offsets):
                    q, score = enc["qid"][b + row], float(scores[row])
                    if score > best[q][0]:
                        s, e = offs[int(starts[row])], offs[int(ends[row])]
                        best[q] = (score, questions[q].context[s[0]:e[1]].strip())
        return [text for _, text in best]

    def normalisation(self, lang: str, split: str) -> Normalisation:
        """The answer normalisation that scores a language's split (at every evaluation): the one
        ``task.options.normalisation`` forces, else (``auto``) the one XTREME uses for the data read there:
        the file's name (format squad) or the hub id and config (format hub); 'squad' for synthetic data."""
        chosen = self.options.normalisation
        if chosen != "auto":
            return chosen
        cfg = self.cfg
        if cfg.format == "squad":
            return dataset_normalisation(str(getattr(cfg.files.get(lang), split, None) or ""))
        if cfg.format == "hub":
            config = self.options.hub_config.format(lang=lang) if self.options.hub_config else ""
            return dataset_normalisation(f"{cfg.hub_path or DEFAULT_HUB_PATH} {config}")
        return "squad"

    def evaluate(self, model: nn.Module, lang: str, split: str, batch_size: int,
                 device: torch.device) -> dict[str, float]:
        preds = self.predict(model, lang, split, batch_size, device)
        golds = [q.answers for q in self.load(lang, split)]
        scores = qa_scores(preds, golds, lang, self.normalisation(lang, split))
        return {self.metric: scores["f1"], "em": scores["em"]}
