"""Reader for CoNLL-U files (Universal Dependencies): words, their UPOS tags, ``# sent_id`` and ``# text``.

Layout (https://universaldependencies.org/format.html): ``#`` comment lines, then one word per line with
10 tab-separated columns ``ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS MISC``; a blank line ends a
sentence. Only *syntactic words* are kept: multi-word token lines (``3-4 am``, the surface form of the
words ``3 an`` + ``4 dem``) and empty nodes (``5.1``) are skipped, so the words and tags are exactly the
ones UD's UPOS scores count. Comments ``# sent_id = ...`` and ``# text = ...`` are kept on the sentence
(PUD files are parallel across languages by ``sent_id``). Files are read as UTF-8 (a BOM is ignored,
CRLF line ends are fine); a missing final blank line is fine.

Every malformed line raises :class:`~lfmlf.data.base.DataError` naming ``file:line`` and the fix.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from lfmlf.data.base import DataError, TaggedSentence, read_text_lines

__all__ = ["UPOS_TAGS", "UdSentence", "read_conllu", "sniff_layout"]

#: The 17 universal part-of-speech tags (https://universaldependencies.org/u/pos/), alphabetical.
UPOS_TAGS: tuple[str, ...] = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART",
                              "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X")

_COLUMNS = {"upos": 3, "xpos": 4, "deprel": 7}


@dataclass(frozen=True)
class UdSentence(TaggedSentence):
    """A CoNLL-U sentence: its syntactic words, one tag each, and its ``sent_id`` / ``text`` comments."""

    sent_id: str | None = None
    text: str | None = None


def _fail(p: Path, lineno: int, what: str, line: str, fix: str) -> DataError:
    return DataError(f"{p}:{lineno}: {what}: {line[:80]!r}. Fix: {fix}")


def read_conllu(path: str | Path, column: str = "upos",
                tagset: Collection[str] | None = None) -> list[UdSentence]:
    """Every sentence of a CoNLL-U file, with the tags of ``column`` (``upos``, ``xpos`` or ``deprel``).

    With ``tagset``, a tag outside it is an error (naming file:line). Raises DataError on a missing or
    unreadable file and on malformed lines: a word line without exactly 10 tab-separated columns, a
    non-numeric ID, word IDs that do not run 1, 2, 3, ... within a sentence (often a missing blank line
    between two sentences), an empty FORM or tag.
    """
    if column not in _COLUMNS:
        raise ValueError(f"unknown CoNLL-U column {column!r}: use one of {', '.join(_COLUMNS)}")
    col = _COLUMNS[column]
    p = Path(path)
    lines = read_text_lines(p, "CoNLL-U", ".conllu")

    sentences: list[UdSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    meta: dict[str, str] = {}

    def close() -> None:
        nonlocal tokens, tags, meta
        if tokens:
            sentences.append(UdSentence(tuple(tokens), tuple(tags), meta.get("sent_id"), meta.get("text")))
        tokens, tags, meta = [], [], {}

    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            close()
            continue
        if line.startswith("#"):
            key, eq, value = line[1:].partition("=")
            key = key.strip()
            if eq and key in ("sent_id", "text") and key not in meta:
                meta[key] = value.strip()
            continue
        fields = line.split("\t")
        if len(fields) != 10:
            hint = (" (the line has no tab: columns must be TAB-separated, not spaces)" if len(fields) == 1
                    else "")
            what = f"expected 10 tab-separated CoNLL-U columns, got {len(fields)}{hint}"
            raise _fail(p, lineno, what, line, "fix or remove the line; a sentence is comment lines, one "
                        "10-column line per word, then a blank line")
        idx = fields[0].strip()
        if "-" in idx or "." in idx:
            lo, sep, hi = idx.replace(".", "-").partition("-")
            if sep and lo.isdigit() and hi.isdigit():
                continue   # multi-word token range (3-4) or empty node (5.1): not a syntactic word
            raise _fail(p, lineno, f"bad word ID {idx!r}", line, "IDs are integers 1, 2, ..., ranges 3-4 or "
                        "decimals 5.1")
        if not idx.isdigit():
            raise _fail(p, lineno, f"bad word ID {idx!r}", line, "the first column must be the word's "
                        "integer index in its sentence (1, 2, ...)")
        if int(idx) != len(tokens) + 1:
            if int(idx) == 1:
                why = "a new sentence (ID 1) starts without a blank line before it"
            else:
                why = f"word ID {idx} follows word {len(tokens)}"
            raise _fail(p, lineno, why, line, "word IDs must run 1, 2, 3, ... within a sentence; separate "
                        "sentences with a blank line")
        form, tag = fields[1].strip(), fields[col].strip()
        if not form:
            raise _fail(p, lineno, "empty FORM (column 2)", line, "give every word its form")
        if not tag or tag == "_":
            raise _fail(p, lineno, f"word without a {column.upper()} tag (column {col + 1})", line,
                        f"tag every word, or read another column than {column!r}")
        if tagset is not None and tag not in tagset:
            raise _fail(p, lineno, f"{column.upper()} tag {tag!r} is not one of {', '.join(sorted(tagset))}",
                        line, f"use the universal tag set in column {col + 1}")
        tokens.append(form)
        tags.append(tag)
    close()
    return sentences


def _is_word_id(field: str) -> bool:
    return field.replace("-", "").replace(".", "").isdigit() and field[:1].isdigit()


def sniff_layout(path: str | Path, max_lines: int = 200) -> str | None:
    """``"conllu"`` if the file's first data line is a 10-column CoNLL-U word line, ``"tagged"`` if it is a
    ``token <TAB> tag`` line (XTREME's udpos files), None if unclear (also for a missing file): readers
    use it to accept both layouts in one data set while keeping strict errors for each."""
    try:
        with Path(path).open("r", encoding="utf-8-sig", errors="replace") as fh:
            for _, line in zip(range(max_lines), fh):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                fields = line.split("\t")
                if line.startswith("#") and (len(fields) == 1 or " " in fields[0]):
                    continue   # a comment; "#<TAB>SYM" is the token "#"
                if len(fields) == 10 and _is_word_id(fields[0].strip()):
                    return "conllu"
                return "tagged" if len(fields) == 2 else None
    except OSError:
        return None
    return None
