"""Reading the probe's parallel text: the (sentence, pivot sentence) pairs of each probed language, from
XTREME's Tatoeba files, Universal Dependencies PUD CoNLL-U files, or the synthetic languages' parallel
sentences (the formats are in the
:mod:`lfmlf.probes` docstring), and the check that every file a probe needs is there (:func:`data_files`,
which reads no file). Imports no torch.
"""
from __future__ import annotations

import re
from pathlib import Path

from lfmlf.config import ProbeConfig
from lfmlf.data.base import DataError
from lfmlf.data.synthetic import synthetic_parallel

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
    Reads no file: cheap enough to call when a sweep is loaded. The synthetic format has no files."""
    base = Path(cfg.data_dir)
    if cfg.format != "synthetic" and not (cfg.data_dir and base.is_dir()):
        raise DataError(f"probe.data_dir {base} is not a directory. Fix: point probe.data_dir at the folder "
                        f"of the {cfg.format} files (relative paths are relative to the sweep file).")
    if cfg.pivot in cfg.languages:
        raise DataError(f"probe.languages lists the pivot '{cfg.pivot}', which would retrieve among itself. "
                        f"Fix: remove '{cfg.pivot}' from probe.languages.")
    duplicated = sorted({x for x in cfg.languages if cfg.languages.count(x) > 1})
    if duplicated:
        raise DataError(f"probe.languages lists {duplicated} more than once. Fix: list each language once.")
    out: dict[str, list[Path]] = {}
    if cfg.format == "synthetic":
        if cfg.files or cfg.data_dir:
            raise DataError("probe.format is synthetic (generated parallel sentences), but probe.files or "
                            "probe.data_dir is set. Fix: remove them, or use probe.format: tatoeba or pud.")
        return {lang: [] for lang in cfg.languages}
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
    if cfg.format == "synthetic":
        text = synthetic_parallel([cfg.pivot, *cfg.languages], cfg.max_pairs or 1000)
        return {lang: list(zip(text[lang], text[cfg.pivot])) for lang in cfg.languages}
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
