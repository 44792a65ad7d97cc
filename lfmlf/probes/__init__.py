"""Forgetting probe: top-1 cross-lingual sentence retrieval on parallel text (the XTREME Tatoeba protocol).

Each probed language's sentences retrieve, by cosine similarity, among the pivot language's sentences of
the same pairs (``xx -> en``); the score is the share whose nearest pivot sentence is its translation. A
sentence embedding is the mean of one hidden layer's states over the sentence's tokens: attention-masked,
so padding never counts, and **including** the special tokens (``<s>``/``[CLS]`` and ``</s>``/``[SEP]``),
as multilingual-e5 was trained to pool and as XTREME's ``run_retrieval.py`` does by default (its
``--pool_skip_special_token`` is off). ``ProbeConfig.layer`` picks the layer: ``0`` the embeddings output,
``k`` the output of the k-th transformer layer, ``-1`` the last (negative values count from the top, like
``hidden_states[layer]``). For the 6-layer e5 encoder the last layer retrieves best (Tatoeba, 1000 pairs:
de 0.935, es 0.866, fr 0.813; layer 5: 0.880, 0.832, 0.786; layer 4: 0.799, 0.753, 0.700).

Protocol settings (each default keeps the plain XTREME Tatoeba protocol): ``probe.prefix`` is prepended to
every sentence of both sides before tokenisation (multilingual-e5 was trained on ``"query: "``-prefixed
text); ``probe.directions`` adds ``en-xx`` (each pivot sentence of a pair retrieves among the language's
sentences; "en" stands for the pivot), scored per pair, from the same similarity matrix as ``xx-en``;
``probe.scoring: margin`` ranks by the ratio margin of Artetxe & Schwenk (2019) instead of the cosine:
``cos(x, y) / (sum_{z in NN_4(x)} cos(x, z) / 8 + sum_{z in NN_4(y)} cos(y, z) / 8)``, with the
neighbourhoods taken among the language's candidates and queries (k capped at their number).

Optional per-language mean-centering (subtract each side's mean embedding before the cosine, like
XTREME's ``--use_shift_embeds`` for BUCC) is ``probe.center``; it is off by default, which is the plain
XTREME Tatoeba protocol.

Cost: one forward pass over every probed sentence and every distinct pivot sentence (Tatoeba de+es+fr at
1000 pairs: 5,752 sentences, 74.6k tokens, about 28 CPU-seconds with the 6-layer e5 encoder), at every
evaluation; ``max_pairs`` scales it linearly.

Data (``ProbeConfig.format``):

* ``tatoeba``: ``tatoeba.<iso3>-eng.<iso3>`` and ``tatoeba.<iso3>-eng.eng`` under ``data_dir``, line
  aligned (lines split on ``\\n`` only, so a stray U+2028 inside a sentence cannot shift the alignment).
  Our ISO 639-1 codes map to the files' ISO 639-3 codes through :data:`TATOEBA_CODES` (the XTREME 36
  languages); a code without an entry is used as is (``swh``, ``cmn``). The pivot must be ``en``.
* ``pud``: Universal Dependencies PUD CoNLL-U files, sentences aligned by ``# sent_id`` with the text of
  ``# text =``. ``ProbeConfig.files`` maps each language, the pivot included, to its file; a language
  missing there is looked up as ``<lang>_pud-ud-test.conllu``, else the single ``<lang>_*.conllu`` in
  ``data_dir``. Only sentences present in both the language's and the pivot's file count, in the
  language file's order.

``max_pairs`` keeps the first N pairs of each language. Identical pivot sentences are one candidate (a
query retrieving any copy of its translation's text is right), which differs from XTREME's index match
only on the few duplicated English lines of Tatoeba.

Use in a trial: ``probe = RetrievalProbe(cfg)`` (checks the files exist) -> ``probe.prepare(tokenizer)``
(reads and tokenises once, through the on-disk cache shared by all trials on the machine) ->
``base = probe.baseline(encoder, device, model_key(model_cfg, tokenizer))`` at theta0 (measured once per
model, then read from disk) -> ``metrics(probe.measure(encoder, device), base)`` at every evaluation.
Imports no Ray, Optuna or MLflow.

The package: :mod:`~lfmlf.probes.pairs` reads and aligns the pairs (no torch); :mod:`~lfmlf.probes.retrieval`
measures (tokenising, embedding, scoring, caching). Everything public is importable from ``lfmlf.probes``.
"""
from __future__ import annotations

from lfmlf.probes.pairs import TATOEBA_CODES, data_files, read_pairs, read_pud, read_tatoeba
from lfmlf.probes.retrieval import (
    RetrievalProbe,
    accuracy,
    metrics,
    model_key,
    ratio_margin,
    reverse_accuracy,
    similarity,
    top1,
)

__all__ = ["TATOEBA_CODES", "RetrievalProbe", "accuracy", "data_files", "metrics", "model_key", "ratio_margin",
           "read_pairs", "read_pud", "read_tatoeba", "reverse_accuracy", "similarity", "top1"]
