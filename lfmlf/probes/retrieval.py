"""Measuring the probe: the pairs tokenised and length-batched once (through the on-disk cache), the
mean-pooled sentence embeddings of one encoder layer, top-1 retrieval accuracy per language, the
theta0 baseline (cached per model) and the forgetting metrics. Scoring by cosine or by the ratio margin
(:func:`ratio_margin`), in one or both directions (``probe.directions``), is chosen after embedding: the
tokenised data depend only on the texts (``probe.prefix`` included), the theta0 cache key on every setting.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lfmlf.config import ModelConfig, ProbeConfig
from lfmlf.data.cache import cache_root, cacheable, cached, file_stamp, fingerprint, tokenizer_fingerprint
from lfmlf.models import ModelError, TaskModel, eval_mode
from lfmlf.probes.pairs import data_files, read_pairs

#: Nearest neighbours on each side of the ratio margin (``probe.scoring: margin``), as in Artetxe & Schwenk (2019).
MARGIN_K = 4

#: The key prefix of an en -> xx score in :meth:`RetrievalProbe.measure`'s output (xx -> en: the language alone).
REVERSE = "en-xx/"

# Bump when the prepared data layout or the scoring changes. 2: _Prepared moved from lfmlf.probes to
# lfmlf.probes.retrieval (the cache stores it by qualified name; an entry under the old name would be
# refused with a warning and rebuilt).
_CACHE_VERSION = 2


# ------------------------------------------------------------------------------------------------ prepared
@cacheable
@dataclass
class _Prepared:
    """Everything ``measure`` needs, tokenised and batched once (kept in the on-disk cache).

    Sequences are numbered: the unique pivot sentences first (``n_pivot``), then each language's sentences.
    ``batches`` hold them sorted by length: (sequence numbers, input_ids [B, T], attention_mask [B, T])."""

    n_pivot: int
    queries: dict[str, tuple[int, int]]        # language -> [start, end) of its sentences
    candidates: dict[str, Tensor]              # language -> pivot sequence numbers it retrieves among [m]
    gold: dict[str, Tensor]                    # language -> position of each sentence's translation in candidates [n]
    batches: list[tuple[Tensor, Tensor, Tensor]]
    n_tokens: int
    truncated: int                             # sentences cut at max_length

    @property
    def n_sequences(self) -> int:
        return sum(len(index) for index, _, _ in self.batches)


def _build(pairs: Mapping[str, Sequence[tuple[str, str]]], tokenizer: Any, max_length: int,
           batch_size: int, prefix: str = "") -> _Prepared:
    pivot_index: dict[str, int] = {}
    candidates, gold = {}, {}
    for lang, items in pairs.items():
        cand: dict[int, int] = {}         # pivot sequence number -> position among this language's candidates
        g = []
        for _, pivot_text in items:
            pid = pivot_index.setdefault(pivot_text, len(pivot_index))
            g.append(cand.setdefault(pid, len(cand)))
        candidates[lang] = torch.tensor(list(cand), dtype=torch.long)
        gold[lang] = torch.tensor(g, dtype=torch.long)
    texts = list(pivot_index)
    queries = {}
    for lang, items in pairs.items():
        queries[lang] = (len(texts), len(texts) + len(items))
        texts.extend(src for src, _ in items)

    texts = [prefix + t for t in texts]   # probe.prefix, on both sides (e5: "query: ")
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    truncated = sum(len(ids) > max_length for ids in full)
    ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
    batches = []
    for s in range(0, len(order), batch_size):
        chunk = order[s:s + batch_size]
        width = max(len(ids[i]) for i in chunk)
        input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            input_ids[row, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, :len(ids[i])] = 1
        batches.append((torch.tensor(chunk, dtype=torch.long), input_ids, mask))
    return _Prepared(n_pivot=len(pivot_index), queries=queries, candidates=candidates, gold=gold,
                     batches=batches, n_tokens=sum(len(x) for x in ids), truncated=truncated)


_DATA_FIELDS = {"format", "languages", "pivot", "files", "max_pairs", "max_length", "prefix"}


def _settings(cfg: ProbeConfig, data_only: bool = False) -> dict[str, Any]:
    """The probe settings the tokenised data (``data_only``) or a score depends on: not the batch size, the
    cache folder or the data folder (the files' own stamps stand for it)."""
    dump = cfg.model_dump(exclude={"batch_size", "cache_dir", "data_dir"})
    return {k: v for k, v in dump.items() if k in _DATA_FIELDS} if data_only else dump


# ------------------------------------------------------------------------------------------------ the probe
def similarity(queries: Tensor, candidates: Tensor, center: bool = False) -> Tensor:
    """Cosine similarity [n, m] (float32) of ``queries`` [n, H] and ``candidates`` [m, H]. With ``center``,
    each side's mean is subtracted first (Libovicky et al., 2020: removes the language-specific offset)."""
    if center:
        queries, candidates = queries - queries.mean(0), candidates - candidates.mean(0)
    q = torch.nn.functional.normalize(queries.to(torch.float32), dim=-1)
    c = torch.nn.functional.normalize(candidates.to(torch.float32), dim=-1)
    return q @ c.T


def margin_denominators(sim: Tensor, k: int = MARGIN_K) -> Tensor:
    """The ratio margin's denominator [n, m] of a similarity matrix: the mean cosine of each query's ``k``
    nearest candidates plus that of each candidate's ``k`` nearest queries, halved
    (``sum_{NN_k(x)} cos / 2k + sum_{NN_k(y)} cos / 2k``; k is capped at the number of rows or columns)."""
    kx, ky = min(k, sim.shape[1]), min(k, sim.shape[0])
    forward = sim.topk(kx, dim=1).values.sum(1) / (2 * kx)    # [n]: each query's neighbourhood
    backward = sim.topk(ky, dim=0).values.sum(0) / (2 * ky)   # [m]: each candidate's neighbourhood
    return forward[:, None] + backward[None, :]


def ratio_margin(sim: Tensor, k: int = MARGIN_K) -> Tensor:
    """Artetxe & Schwenk (2019)'s ratio margin of a cosine matrix [n, m]: ``cos(x, y)`` divided by
    :func:`margin_denominators`. Symmetric: ``ratio_margin(sim.T) == ratio_margin(sim).T``, so one matrix
    serves both retrieval directions. Ranks like a margin only where the denominators are positive (they
    are for the anisotropic embeddings of real encoders; :meth:`RetrievalProbe.scores` counts the others)."""
    return sim / margin_denominators(sim, k)


def accuracy(scores: Tensor, gold: Tensor) -> float:
    """xx -> en: share of the rows of ``scores`` [n, m] (queries) whose highest column (candidate) is
    ``gold`` [n] (ties go to the lower index)."""
    pred = scores.argmax(dim=1).cpu()
    return float((pred == gold.cpu()).to(torch.float64).mean())


def reverse_accuracy(scores: Tensor, gold: Tensor) -> float:
    """en -> xx on the same matrix: for each pair i, its pivot sentence (column ``gold[i]``) retrieves among
    the rows; right when the retrieved row's translation is that same pivot sentence (identical pivot
    sentences are one candidate, so a duplicated English line may retrieve either of its translations).
    Counted per pair, like :func:`accuracy`; for distinct sentences it is :func:`accuracy` of ``scores.T``
    with the inverse alignment."""
    gold = gold.cpu()
    pred = scores.argmax(dim=0).cpu()           # [m]: the row each candidate retrieves
    return float((gold[pred[gold]] == gold).to(torch.float64).mean())


def top1(queries: Tensor, candidates: Tensor, gold: Tensor, center: bool = False,
         scoring: str = "cosine") -> float:
    """Share of ``queries`` [n, H] whose best row of ``candidates`` [m, H] is ``gold`` [n] (ties go to the
    lower index), by cosine or by ``scoring="margin"`` (:func:`ratio_margin`). With ``center``, each side's
    mean is subtracted first."""
    sim = similarity(queries, candidates, center)
    return accuracy(ratio_margin(sim) if scoring == "margin" else sim, gold)


def _named(scores: Mapping[str, float], base: Mapping[str, float], suffix: str,
           per_language: bool) -> dict[str, float]:
    """``forgetting/retrieval_{acc,drop}<suffix>/<lang>`` (with ``per_language``) and ``/avg``, and
    ``retrieval_acc0<suffix>/avg`` of ``scores`` (keys ``<lang>`` or ``en-xx/<lang>``)."""
    out: dict[str, float] = {}
    keys = list(scores)
    if per_language:
        for key in keys:
            lang = key.removeprefix(REVERSE)
            out[f"forgetting/retrieval_acc{suffix}/{lang}"] = float(scores[key])
            out[f"forgetting/retrieval_drop{suffix}/{lang}"] = float(base[key]) - float(scores[key])
    if keys:
        out[f"forgetting/retrieval_acc{suffix}/avg"] = sum(float(scores[k]) for k in keys) / len(keys)
        out[f"forgetting/retrieval_drop{suffix}/avg"] = sum(float(base[k]) - float(scores[k]) for k in keys) / len(keys)
        out[f"forgetting/retrieval_acc0{suffix}/avg"] = sum(float(base[k]) for k in keys) / len(keys)
    return out


def metrics(current: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """Metric keys of DESIGN §5 from :meth:`RetrievalProbe.measure`'s scores now (``current``) and at theta0
    (``base``). xx -> en (keys ``<lang>``): ``forgetting/retrieval_acc/<lang>`` (now) and
    ``forgetting/retrieval_drop/<lang>`` (theta0 minus now: positive = forgotten). en -> xx (keys
    ``en-xx/<lang>``): the same under ``retrieval_acc_en-xx`` and ``retrieval_drop_en-xx``. The summaries
    ``forgetting/retrieval_acc/avg``, ``retrieval_drop/avg`` and ``retrieval_acc0/avg`` (theta0) average every
    score of ``current``, all languages of all directions with equal weight; when en -> xx is measured,
    each direction's own averages are also given (``retrieval_acc_xx-en/avg``, ``retrieval_acc_en-xx/avg``,
    and so for drop and acc0)."""
    missing = [key for key in current if key not in base]
    if missing:
        raise KeyError(f"the baseline has no score for {missing}; measure both with the same probe settings")
    forward = {k: v for k, v in current.items() if not k.startswith(REVERSE)}
    reverse = {k: v for k, v in current.items() if k.startswith(REVERSE)}
    out = _named(forward, base, "", per_language=True)
    out.update(_named(reverse, base, "_en-xx", per_language=True))
    out.update(_named(current, base, "", per_language=False))      # the summaries: every direction
    if reverse:
        out.update(_named(forward, base, "_xx-en", per_language=False))
    return out


class RetrievalProbe:
    """Top-1 cross-lingual retrieval accuracy per language (see the module docstring for the protocol).

    ``__init__`` checks the configuration and that the files exist (no reading). ``prepare(tokenizer)``
    is called once per trial after the tokenizer exists. ``measure`` is called at every evaluation;
    ``baseline`` once per trial at theta0 (it runs the encoder only the first time for a model).
    """

    def __init__(self, cfg: ProbeConfig) -> None:
        self.cfg = cfg
        # Per-language mean-centering before the cosine: off by default (the XTREME protocol).
        self.center = cfg.center
        self.files = data_files(cfg)
        self._data: _Prepared | None = None
        self._data_key = ""
        self.stats: dict[str, Any] = {"prepare_cache_hit": None, "prepare_s": 0.0, "baseline_cache_hit": None,
                                      "measure_s": 0.0, "measure_calls": 0,
                                      "margin_nonpositive": 0}

    @property
    def languages(self) -> list[str]:
        return list(self.cfg.languages)

    def prepare(self, tokenizer: Any) -> None:
        """Read the pairs and tokenise them once (cached on disk under namespace ``probe``, keyed by the
        data files, the tokenizer, ``max_length``, ``max_pairs``, ``prefix`` and ``batch_size``)."""
        started = time.perf_counter()
        stamps = {lang: [file_stamp(f) for f in files] for lang, files in self.files.items()}
        self._data_key = fingerprint("probe", _CACHE_VERSION, _settings(self.cfg, data_only=True), stamps,
                                     tokenizer_fingerprint(tokenizer))
        key = fingerprint(self._data_key, self.cfg.batch_size)
        data, hit = cached(cache_root(self.cfg.cache_dir), "probe", key,
                           lambda: _build(read_pairs(self.cfg), tokenizer, self.cfg.max_length,
                                          self.cfg.batch_size, self.cfg.prefix))
        self._data = data
        self.stats.update(prepare_cache_hit=hit, prepare_s=time.perf_counter() - started,
                          pairs={lang: int(g.numel()) for lang, g in data.gold.items()},
                          truncated=data.truncated)

    def _prepared(self) -> _Prepared:
        if self._data is None:
            raise RuntimeError("RetrievalProbe.prepare(tokenizer) must be called before measure/baseline")
        return self._data

    @torch.inference_mode()
    def embed(self, encoder: nn.Module, device: torch.device | str) -> Tensor:
        """Mean-pooled embeddings [N, H] (float32, not normalised, on ``device``) of every prepared
        sequence in sequence-number order. The encoder (or a TaskModel's encoder) runs in eval mode; every
        module's training flag is restored afterwards, also on error."""
        data = self._prepared()
        if isinstance(encoder, TaskModel):
            encoder = encoder.encoder
        layer = self.cfg.layer
        n_layers = getattr(getattr(encoder, "config", None), "num_hidden_layers", None)
        if isinstance(n_layers, int) and not -(n_layers + 1) <= layer <= n_layers:
            raise ModelError(f"probe.layer is {layer}, but the encoder has {n_layers} layers. Fix: use a value "
                             f"from 0 (embeddings output) to {n_layers}, or -1 for the last layer.")
        use_last = layer == -1 or layer == n_layers
        out: Tensor | None = None
        with eval_mode(encoder):
            for index, input_ids, mask in data.batches:
                input_ids, mask = input_ids.to(device), mask.to(device)
                if use_last:
                    hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
                else:
                    hidden = encoder(input_ids=input_ids, attention_mask=mask,
                                     output_hidden_states=True).hidden_states[layer]
                weights = mask.unsqueeze(-1).to(torch.float32)
                pooled = (hidden.to(torch.float32) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
                if out is None:
                    out = torch.empty(data.n_sequences, pooled.shape[-1], device=pooled.device)
                out[index.to(pooled.device)] = pooled
        assert out is not None
        return out

    def scores(self, emb: Tensor, center: bool | None = None) -> dict[str, float]:
        """Top-1 accuracy from :meth:`embed`'s output (``center`` defaults to the config's), by
        ``probe.scoring``, for each of ``probe.directions``: key ``<lang>`` for xx -> en, ``en-xx/<lang>``
        for en -> xx (both read one similarity matrix per language). With margin scoring,
        ``stats["margin_nonpositive"]`` counts the (sentence, candidate) scores whose denominator is not
        positive (there the margin does not rank like a margin; 0 for real encoders)."""
        data = self._prepared()
        center = self.center if center is None else center
        out = {}
        nonpositive = 0
        for lang in self.cfg.languages:
            start, end = data.queries[lang]
            sim = similarity(emb[start:end], emb[data.candidates[lang].to(emb.device)], center)
            if self.cfg.scoring == "margin":
                denominators = margin_denominators(sim)
                nonpositive += int((denominators <= 0).sum())
                sim = sim / denominators
            if "xx-en" in self.cfg.directions:
                out[lang] = accuracy(sim, data.gold[lang])
            if "en-xx" in self.cfg.directions:
                out[REVERSE + lang] = reverse_accuracy(sim, data.gold[lang])
        self.stats["margin_nonpositive"] = nonpositive
        return out

    def measure(self, encoder: nn.Module, device: torch.device | str) -> dict[str, float]:
        """Top-1 retrieval accuracy in [0, 1] per language and direction (keys as :meth:`scores`): each
        sentence retrieves among the pivot sentences of its language's pairs (xx -> en), each pivot sentence
        among the language's sentences (en -> xx). All sentences go through the encoder in one length-sorted pass
        (each distinct pivot sentence once, however many languages share it)."""
        started = time.perf_counter()
        scores = self.scores(self.embed(encoder, device))
        self.stats["measure_s"] = time.perf_counter() - started
        self.stats["measure_calls"] += 1
        return scores

    def baseline(self, encoder: nn.Module, device: torch.device | str, model_key: str) -> dict[str, float]:
        """The theta0 scores of the model that ``model_key`` names (see :func:`model_key`): measured once,
        then read from ``<cache root>/probe_baseline`` (keyed by model, probe settings, data files and
        tokenizer), so every trial of every sweep on a machine shares it."""
        self._prepared()
        key = fingerprint("probe-baseline", _CACHE_VERSION, model_key, self._data_key, _settings(self.cfg))
        scores, hit = cached(cache_root(self.cfg.cache_dir), "probe_baseline", key,
                             lambda: self.measure(encoder, device))
        self.stats["baseline_cache_hit"] = hit
        return dict(scores)

    metrics = staticmethod(metrics)


def model_key(model_cfg: ModelConfig, tokenizer: Any) -> str:
    """A string naming theta0 of a model: for a local directory its path and the size and mtime of every
    file in it (config.json, weights, tokenizer files); for a hub id the id (and ``revision`` if the config
    has one); for ``tiny`` the tiny settings and the tokenizer fingerprint (its tokenizer is trained on the
    run's text)."""
    name = model_cfg.name_or_path
    if name == "tiny":
        return "tiny:" + fingerprint(model_cfg.tiny.model_dump(), tokenizer_fingerprint(tokenizer))
    path = Path(name).expanduser()
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")
                       and not f.name.endswith(".lock"))
        if not any(f.name == "config.json" for f in files):
            raise ModelError(f"{path} has no config.json. Fix: point model.name_or_path at a Hugging Face model "
                             "directory.")
        return f"dir:{path.resolve()}:" + fingerprint([file_stamp(f) for f in files])
    revision = getattr(model_cfg, "revision", None)
    return f"hub:{name}" + (f"@{revision}" if revision else "")
