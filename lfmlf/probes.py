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
"""
from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lfmlf.config import ModelConfig, ProbeConfig
from lfmlf.data.base import DataError
from lfmlf.data.cache import cache_root, cacheable, cached, file_stamp, fingerprint, tokenizer_fingerprint
from lfmlf.models import ModelError, TaskModel, eval_mode

__all__ = ["TATOEBA_CODES", "RetrievalProbe", "metrics", "model_key", "read_pud", "read_tatoeba"]

# Our codes (ISO 639-1 where one exists) -> the ISO 639-3 codes of XTREME's Tatoeba files (36 languages).
TATOEBA_CODES: dict[str, str] = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa", "et": "est",
    "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun", "id": "ind",
    "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "ml": "mal", "mr": "mar",
    "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh", "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl",
    "tr": "tur", "ur": "urd", "vi": "vie", "zh": "cmn", "en": "eng",
}

PUD_PATTERN = "{lang}_pud-ud-test.conllu"
_SENT_ID = re.compile(r"^#\s*sent_id\s*=\s*(\S+)")
_TEXT = re.compile(r"^#\s*text\s*=\s?(.*)$")
_CACHE_VERSION = 1    # bump when the prepared data layout or the scoring changes


# ------------------------------------------------------------------------------------------------ reading
def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"probe data file not found: {path}. Fix: check probe.data_dir and probe.files "
                        "(or remove the language from probe.languages).") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start}). Fix: re-encode it as "
                        "UTF-8.") from None
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def tatoeba_files(data_dir: str | Path, lang: str) -> tuple[Path, Path]:
    """(language file, English file) of ``lang`` (our code or an ISO 639-3 code)."""
    code = TATOEBA_CODES.get(lang, lang)
    base = Path(data_dir)
    return base / f"tatoeba.{code}-eng.{code}", base / f"tatoeba.{code}-eng.eng"


def read_tatoeba(data_dir: str | Path, lang: str, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """The first ``max_pairs`` (sentence, English sentence) pairs of ``lang``."""
    src_file, eng_file = tatoeba_files(data_dir, lang)
    src, eng = _read_lines(src_file), _read_lines(eng_file)
    if len(src) != len(eng):
        raise DataError(f"{src_file} has {len(src)} lines but {eng_file} has {len(eng)}; Tatoeba files must "
                        "be line-aligned. Fix: restore both files from the same XTREME release.")
    if not src:
        raise DataError(f"{src_file} is empty. Fix: restore it, or remove '{lang}' from probe.languages.")
    pairs = [(a.strip(), b.strip()) for a, b in zip(src, eng)]   # XTREME strips every line too
    return pairs[:max_pairs] if max_pairs is not None else pairs


def read_pud(path: str | Path) -> dict[str, str]:
    """sent_id -> text (``# text =``) of every sentence of a CoNLL-U file, in file order."""
    p = Path(path)
    out: dict[str, str] = {}
    sent_id: str | None = None
    text: str | None = None
    start = 1

    def close(lineno: int) -> None:
        nonlocal sent_id, text
        if sent_id is None and text is None:
            return
        if sent_id is None or text is None:
            missing = "# sent_id" if sent_id is None else "# text ="
            raise DataError(f"{p}:{start}: the sentence ending at line {lineno} has no '{missing}' comment. "
                            "Fix: use CoNLL-U files with both comments on every sentence (UD PUD has them).")
        if sent_id in out:
            raise DataError(f"{p}:{start}: sent_id '{sent_id}' occurs twice. Fix: give every sentence a "
                            "unique sent_id.")
        out[sent_id] = text
        sent_id, text = None, None

    lines = _read_lines(p)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            close(lineno)
            start = lineno + 1
            continue
        if line.startswith("#"):
            if m := _SENT_ID.match(line):
                sent_id = m.group(1)
            elif m := _TEXT.match(line):
                text = m.group(1).strip()
    close(len(lines))
    if not out:
        raise DataError(f"{p}: no sentence with a '# sent_id' comment. Fix: point probe.files / probe.data_dir "
                        "at CoNLL-U files (e.g. UD PUD's <lang>_pud-ud-test.conllu).")
    return out


def pud_file(cfg: ProbeConfig, lang: str) -> Path:
    """The CoNLL-U file of ``lang``: ``probe.files[lang]``, else ``<lang>_pud-ud-test.conllu``, else the
    single ``<lang>_*.conllu`` in ``data_dir``."""
    base = Path(cfg.data_dir)
    if lang in cfg.files:
        return base / cfg.files[lang]
    default = base / PUD_PATTERN.format(lang=lang)
    if default.is_file():
        return default
    found = sorted(base.glob(f"{lang}_*.conllu"))
    if len(found) == 1:
        return found[0]
    what = "no" if not found else f"{len(found)} ({', '.join(f.name for f in found)})"
    other = "set probe.pivot to a language that has a file" if lang == cfg.pivot else \
        f"remove '{lang}' from probe.languages"
    raise DataError(f"probe: {what} CoNLL-U file for language '{lang}' in {base} (looked for "
                    f"{default.name}, then {lang}_*.conllu). Fix: add 'probe.files.{lang}: <file>' or {other}.")


def _available_tatoeba(data_dir: Path) -> list[str]:
    inverse = {v: k for k, v in TATOEBA_CODES.items()}
    codes = {f.name.split(".")[1].split("-")[0] for f in data_dir.glob("tatoeba.*-eng.eng")}
    return sorted(inverse.get(c, c) for c in codes)


def data_files(cfg: ProbeConfig) -> dict[str, list[Path]]:
    """language -> the files its pairs are read from (the pivot's PUD file included); raises DataError
    naming the key and the fix for a non-en Tatoeba pivot, an unknown language or a missing file.
    Reads no file: cheap enough to call when a sweep is loaded."""
    base = Path(cfg.data_dir)
    if not base.is_dir():
        raise DataError(f"probe.data_dir {base} is not a directory. Fix: point probe.data_dir at the folder "
                        f"of the {cfg.format} files (relative paths are relative to the sweep file).")
    if cfg.pivot in cfg.languages:
        raise DataError(f"probe.languages lists the pivot '{cfg.pivot}', which would retrieve among itself. "
                        f"Fix: remove '{cfg.pivot}' from probe.languages.")
    duplicated = sorted({x for x in cfg.languages if cfg.languages.count(x) > 1})
    if duplicated:
        raise DataError(f"probe.languages lists {duplicated} more than once. Fix: list each language once.")
    out: dict[str, list[Path]] = {}
    if cfg.format == "tatoeba":
        if cfg.pivot != "en":
            raise DataError(f"probe.pivot is '{cfg.pivot}', but Tatoeba pairs every language with English "
                            "only. Fix: set probe.pivot: en, or use probe.format: pud for another pivot.")
        if cfg.files:
            raise DataError("probe.files is set, but Tatoeba files are found by their names "
                            "(tatoeba.<iso3>-eng.<iso3>). Fix: remove probe.files, or use probe.format: pud.")
        for lang in cfg.languages:
            files = list(tatoeba_files(base, lang))
            missing = [f for f in files if not f.is_file()]
            if missing:
                known = "" if lang in TATOEBA_CODES else " (it is not one of the XTREME Tatoeba languages)"
                raise DataError(f"probe.languages: no Tatoeba data for '{lang}'{known}: {missing[0]} is "
                                f"missing. Fix: use languages that have files in {base}: "
                                f"{', '.join(_available_tatoeba(base)) or 'none found'}.")
            out[lang] = files
    else:
        extra = sorted(set(cfg.files) - set(cfg.languages) - {cfg.pivot})
        if extra:
            raise DataError(f"probe.files names {extra}, which are neither probe.languages nor the pivot. "
                            "Fix: remove them or add them to probe.languages.")
        pivot = pud_file(cfg, cfg.pivot)
        for lang in cfg.languages:
            out[lang] = [pud_file(cfg, lang), pivot]
        for f in sorted({f for files in out.values() for f in files}):
            if not f.is_file():
                key = next((f"probe.files.{k}" for k, v in cfg.files.items() if base / v == f), "probe.data_dir")
                raise DataError(f"probe: {f} is missing ({key}). Fix: correct {key} or remove the language.")
    return out


def read_pairs(cfg: ProbeConfig) -> dict[str, list[tuple[str, str]]]:
    """language -> its first ``max_pairs`` (sentence, pivot sentence) pairs."""
    files = data_files(cfg)
    if cfg.format == "tatoeba":
        return {lang: read_tatoeba(cfg.data_dir, lang, cfg.max_pairs) for lang in cfg.languages}
    pivot = read_pud(pud_file(cfg, cfg.pivot))
    out = {}
    for lang in cfg.languages:
        src = read_pud(files[lang][0])
        pairs = [(text, pivot[sid]) for sid, text in src.items() if sid in pivot]
        if not pairs:
            raise DataError(f"probe: {files[lang][0]} and {files[lang][1]} share no sent_id. Fix: use the PUD "
                            f"files of the same treebank release for '{lang}' and the pivot '{cfg.pivot}'.")
        out[lang] = pairs[:cfg.max_pairs] if cfg.max_pairs is not None else pairs
    return out


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
           batch_size: int) -> _Prepared:
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


_DATA_FIELDS = {"format", "languages", "pivot", "files", "max_pairs", "max_length"}


def _settings(cfg: ProbeConfig, data_only: bool = False) -> dict[str, Any]:
    """The probe settings the tokenised data (``data_only``) or a score depends on: not the batch size, the
    cache folder or the data folder (the files' own stamps stand for it)."""
    dump = cfg.model_dump(exclude={"batch_size", "cache_dir", "data_dir"})
    return {k: v for k, v in dump.items() if k in _DATA_FIELDS} if data_only else dump


# ------------------------------------------------------------------------------------------------ the probe
def top1(queries: Tensor, candidates: Tensor, gold: Tensor, center: bool = False) -> float:
    """Share of ``queries`` [n, H] whose most cosine-similar row of ``candidates`` [m, H] is ``gold`` [n]
    (ties go to the lower index). With ``center``, each side's mean is subtracted first (Libovicky et al.,
    2020: removes the language-specific offset)."""
    if center:
        queries, candidates = queries - queries.mean(0), candidates - candidates.mean(0)
    q = torch.nn.functional.normalize(queries.to(torch.float32), dim=-1)
    c = torch.nn.functional.normalize(candidates.to(torch.float32), dim=-1)
    pred = (q @ c.T).argmax(dim=1).cpu()
    return float((pred == gold.cpu()).to(torch.float64).mean())


def metrics(current: Mapping[str, float], base: Mapping[str, float]) -> dict[str, float]:
    """Metric keys of DESIGN §5: ``forgetting/retrieval_acc/<lang>`` and ``/avg`` (now),
    ``forgetting/retrieval_drop/<lang>`` and ``/avg`` (theta0 minus now: positive = forgotten), and
    ``forgetting/retrieval_acc0/avg`` (theta0). Averages are over the languages of ``current``."""
    langs = list(current)
    missing = [lang for lang in langs if lang not in base]
    if missing:
        raise KeyError(f"the baseline has no score for {missing}; measure both with the same probe settings")
    out: dict[str, float] = {}
    for lang in langs:
        out[f"forgetting/retrieval_acc/{lang}"] = float(current[lang])
        out[f"forgetting/retrieval_drop/{lang}"] = float(base[lang]) - float(current[lang])
    if langs:
        out["forgetting/retrieval_acc/avg"] = sum(float(current[x]) for x in langs) / len(langs)
        out["forgetting/retrieval_drop/avg"] = sum(float(base[x]) - float(current[x]) for x in langs) / len(langs)
        out["forgetting/retrieval_acc0/avg"] = sum(float(base[x]) for x in langs) / len(langs)
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
                                      "measure_s": 0.0, "measure_calls": 0}

    @property
    def languages(self) -> list[str]:
        return list(self.cfg.languages)

    def prepare(self, tokenizer: Any) -> None:
        """Read the pairs and tokenise them once (cached on disk under namespace ``probe``, keyed by the
        data files, the tokenizer, ``max_length``, ``max_pairs`` and ``batch_size``)."""
        started = time.perf_counter()
        stamps = {lang: [file_stamp(f) for f in files] for lang, files in self.files.items()}
        self._data_key = fingerprint("probe", _CACHE_VERSION, _settings(self.cfg, data_only=True), stamps,
                                     tokenizer_fingerprint(tokenizer))
        key = fingerprint(self._data_key, self.cfg.batch_size)
        self._data, hit = cached(cache_root(self.cfg.cache_dir), "probe", key,
                                 lambda: _build(read_pairs(self.cfg), tokenizer, self.cfg.max_length,
                                                self.cfg.batch_size))
        self.stats.update(prepare_cache_hit=hit, prepare_s=time.perf_counter() - started,
                          pairs={lang: int(g.numel()) for lang, g in self._data.gold.items()},
                          truncated=self._data.truncated)

    def _prepared(self) -> _Prepared:
        if self._data is None:
            raise RuntimeError("RetrievalProbe.prepare(tokenizer) must be called before measure/baseline")
        return self._data

    @torch.no_grad()
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
        """Top-1 accuracy per language from :meth:`embed`'s output (``center`` defaults to the config's)."""
        data = self._prepared()
        center = self.center if center is None else center
        out = {}
        for lang in self.cfg.languages:
            start, end = data.queries[lang]
            out[lang] = top1(emb[start:end], emb[data.candidates[lang].to(emb.device)], data.gold[lang], center)
        return out

    def measure(self, encoder: nn.Module, device: torch.device | str) -> dict[str, float]:
        """Top-1 retrieval accuracy in [0, 1] per language: each sentence retrieves among the pivot
        sentences of its language's pairs. All sentences go through the encoder in one length-sorted pass
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
