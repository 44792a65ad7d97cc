"""Part-of-speech tagging: Universal Dependencies UPOS per word, scored by accuracy over words.

Subword alignment, encoding, head, loss and prediction are :class:`~lfmlf.tasks.tagging.TaggingTask`'s.
The labels are always the 17 UPOS tags (:data:`lfmlf.data.conllu.UPOS_TAGS`, alphabetical), whatever the
source set, so label ids (and a head's rows) mean the same in every trial. A tag outside them is a data
error. Words cut off by ``max_length`` count as errors (their prediction ``_`` is never gold) and are
counted in ``truncated_words``.
"""
from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from lfmlf.data.base import DataError, TaggedSentence
from lfmlf.data.conll import read_tagged
from lfmlf.data.conllu import UPOS_TAGS, read_conllu, sniff_layout
from lfmlf.data.hub import load_ud
from lfmlf.data.synthetic import synthetic_pos
from lfmlf.tasks.base import TaskOptions
from lfmlf.tasks.tagging import TaggingTask

__all__ = ["DEFAULT_TREEBANKS", "PosTask", "upos_accuracy"]

#: Hub treebank (config of ``universal-dependencies/universal_dependencies``) per language, for format
#: ``hub`` when ``task.options.treebanks`` does not name one: the largest general-domain treebank with
#: train, validation and test splits.
DEFAULT_TREEBANKS: dict[str, str] = {
    "af": "af_afribooms", "ar": "ar_padt", "bg": "bg_btb", "cs": "cs_pdt", "da": "da_ddt", "de": "de_gsd",
    "el": "el_gdt", "en": "en_ewt", "es": "es_gsd", "et": "et_edt", "eu": "eu_bdt", "fa": "fa_seraji",
    "fi": "fi_tdt", "fr": "fr_gsd", "he": "he_htb", "hi": "hi_hdtb", "hu": "hu_szeged", "id": "id_gsd",
    "it": "it_isdt", "ja": "ja_gsd", "ko": "ko_kaist", "mr": "mr_ufal", "nl": "nl_alpino", "pl": "pl_pdb",
    "pt": "pt_bosque", "ro": "ro_rrt", "ru": "ru_syntagrus", "sv": "sv_talbanken", "ta": "ta_ttb",
    "te": "te_mtg", "tr": "tr_imst", "uk": "uk_iu", "ur": "ur_udtb", "vi": "vi_vtb", "zh": "zh_gsd",
}


def upos_accuracy(gold: list[list[str]], pred: list[list[str]]) -> float:
    """Correct words / all gold words (micro average over sentences); 0.0 when there are no words."""
    total = sum(len(g) for g in gold)
    correct = sum(g == p for gs, ps in zip(gold, pred, strict=True) for g, p in zip(gs, ps, strict=True))
    return correct / total if total else 0.0


class PosTask(TaggingTask):
    """UPOS tagging, metric ``acc`` (accuracy over words, in [0, 1]).

    Formats (``task.format``):

    * ``conllu``: CoNLL-U files in ``task.files`` (e.g. Universal Dependencies treebanks, PUD); multi-word
      token lines (``3-4``) and empty nodes (``5.1``) are skipped, the UPOS column is read.
    * ``udpos``: XTREME's processed UD files, ``token <TAB> UPOS`` per line, a blank line between sentences.

      Both file formats read both layouts, decided per file from its first data line (10 tab-separated
      columns with a word ID: CoNLL-U; 2 columns: token-tag; anything else: the format's own layout, whose
      reader then names the bad line). So one sweep can train on XTREME's ``train-en.tsv`` and evaluate
      zero-shot on PUD's ``.conllu`` files (give ``data_dir`` their common parent and paths below it).
    * ``hub``: a Universal Dependencies dataset via ``datasets.load_dataset(hub_path, treebank)``
      (``hub_path`` default ``universal-dependencies/universal_dependencies``; the treebank of a language
      from ``options.treebanks``, else :data:`DEFAULT_TREEBANKS`, else the language code itself).
    * ``synthetic``: the project's artificial languages (:func:`lfmlf.data.synthetic.synthetic_pos`),
      sizes from ``task.synthetic``; offline quickstarts and tests.
    """

    class Options(TaskOptions):
        treebanks: dict[str, str] = Field(default_factory=dict, description=(
            "Format hub: the dataset config (treebank) per language, e.g. {de: de_hdt}; overrides "
            "DEFAULT_TREEBANKS."))

    options: Options
    name = "pos"
    metric = "acc"
    formats = ("conllu", "udpos", "hub", "synthetic")
    file_formats = ("conllu", "udpos")
    truncated_tag = "_"

    def treebank(self, lang: str) -> str:
        """The hub config of a language (format ``hub``)."""
        return self.options.treebanks.get(lang) or DEFAULT_TREEBANKS.get(lang) or lang

    def read(self, lang: str, split: str) -> Sequence[TaggedSentence]:
        cfg = self.cfg
        if cfg.format in self.file_formats:
            path = self.file(lang, split)
            layout = sniff_layout(path) or ("conllu" if cfg.format == "conllu" else "tagged")
            if layout == "conllu":
                return read_conllu(path, "upos", tagset=UPOS_TAGS)
            sents = read_tagged(path)
            where = str(path)
        elif cfg.format == "hub":
            path_id = cfg.hub_path or "universal-dependencies/universal_dependencies"
            sents = load_ud(self.treebank(lang), split, path=path_id, revision=cfg.hub_revision)
            where = f"{path_id} ({self.treebank(lang)}, {split})"
        else:
            return synthetic_pos([lang], split, getattr(cfg.synthetic, split))[lang]
        known = set(UPOS_TAGS)
        for i, s in enumerate(sents):
            bad = sorted(set(s.tags) - known)
            if bad:
                raise DataError(f"{where}: sentence {i + 1} ({' '.join(s.tokens[:6])} ...) has tag(s) {bad}, "
                                f"not UPOS. Fix: give the UPOS column (one of {', '.join(UPOS_TAGS)}), not "
                                "language-specific tags")
        return sents

    def label_set(self, sources: Sequence[str]) -> list[str]:
        return list(UPOS_TAGS)

    def score(self, gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
        return {self.metric: upos_accuracy(gold, pred)}
