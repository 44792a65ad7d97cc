"""Named-entity recognition: IOB2 tags per word, scored with seqeval's entity-level F1.

Subword alignment, encoding, head, loss and prediction are :class:`~lfmlf.tasks.tagging.TaggingTask`'s:
a word's label sits on its first piece that is not a bare ``▁`` marker; words cut off by ``max_length``
are predicted ``O`` and counted in ``truncated_words``. The labels are the tags of the source languages'
training data, ``O`` first, then grouped by entity type.
"""
from __future__ import annotations

from collections.abc import Sequence

from lfmlf.data.base import TaggedSentence
from lfmlf.data.conll import read_tagged
from lfmlf.data.hub import load_wikiann
from lfmlf.data.synthetic import synthetic_ner
from lfmlf.tasks.tagging import IGNORE, SPLITS, TaggingTask, align_labels

__all__ = ["IGNORE", "SPLITS", "NerTask", "align_labels"]


class NerTask(TaggingTask):
    """NER. Formats: ``conll`` (IOB2 files in task.files, Universal NER or plain CoNLL layout),
    ``wikiann`` (the hub's WikiAnn, ``hub_path`` default ``unimelb-nlp/wikiann``), ``synthetic``."""

    name = "ner"
    metric = "f1"
    formats = ("conll", "wikiann", "synthetic")
    file_formats = ("conll",)
    truncated_tag = "O"

    def read(self, lang: str, split: str) -> Sequence[TaggedSentence]:
        cfg = self.cfg
        if cfg.format == "conll":
            return read_tagged(self.file(lang, split))
        if cfg.format == "wikiann":
            return load_wikiann(lang, split, path=cfg.hub_path or "unimelb-nlp/wikiann", revision=cfg.hub_revision)
        return synthetic_ner([lang], split, getattr(cfg.synthetic, split))[lang]

    def label_set(self, sources: Sequence[str]) -> list[str]:
        tags: set[str] = set()
        for lang in sources:   # each source's tag set goes through the cache: a cached trial reads no file
            def tag_set(lang: str = lang) -> list[str]:
                return sorted({t for s in self.load(lang, "train") for t in s.tags})

            tags |= set(self.cached(lang, "train", tag_set, "tag-set"))
        return sorted(tags, key=lambda t: (t != "O", t[2:], t))

    def score(self, gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
        from seqeval.metrics import f1_score  # lazy: only evaluation scores

        return {self.metric: float(f1_score(gold, pred, zero_division=0))}
