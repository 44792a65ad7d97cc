"""Reader for token-per-line tagged files (IOB2 NER, POS): Universal NER and plain CoNLL-style.

Two layouts are recognised, per file, from its first data line:

* **Universal NER** (``*.iob2``): ``#`` comment lines, then ``idx <TAB> token <TAB> tag <TAB> misc...``
  with an integer ``idx`` (``1`` on the file's first data line); token = column 1, tag = column 2.
  CoNLL-U multi-word token lines (``3-4``) and empty nodes (``5.1``) are skipped.
* **plain**: ``token <TAB> tag`` or ``token tag`` (whitespace separated, used when the line has no tab);
  token = first column, tag = last column (so CoNLL-2003 ``EU NNP B-NP B-ORG`` works too).

Sentences are separated by blank lines (a missing final blank line is fine); ``-DOCSTART-`` lines act as
separators.  A line starting with ``#`` is a comment unless it is a tab-separated data line whose first
field has no space (``#<TAB>SYM`` in XTREME's POS files is the token ``#``).  Files are read as UTF-8
(a BOM is ignored, CRLF line ends are fine).
"""
from __future__ import annotations

from pathlib import Path

from lfmlf.data.base import DataError, TaggedSentence, utf8_error

__all__ = ["read_tagged"]

_UNER = "uner"
_PLAIN = "plain"


def _is_comment(line: str, mode: str | None) -> bool:
    if not line.startswith("#"):
        return False
    if "\t" in line:
        # `# text = ...` comments hold spaces in the first field; `#\tSYM` is the token "#".
        return " " in line.split("\t", 1)[0]
    # No tab: a comment, except `# O` in an (already detected) whitespace-separated plain file.
    return not (mode == _PLAIN and len(line.split()) == 2 and line.split()[0].strip("#") == "")


def read_tagged(path: str | Path) -> list[TaggedSentence]:
    """Read every sentence of a token-tag file; raise DataError naming file and line on bad input."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8-sig", newline=None) as fh:
            lines = fh.read().split("\n")
    except FileNotFoundError:
        raise DataError(
            f"tagged data file not found: {p} -- check the data_dir / file setting of this dataset"
        ) from None
    except IsADirectoryError:
        raise DataError(f"{p} is a directory, expected a token-tag file -- check the file setting") from None
    except UnicodeDecodeError as e:
        raise utf8_error(p, e) from None
    except OSError as e:
        raise DataError(f"cannot read tagged data file {p}: {e}") from None

    sentences: list[TaggedSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    mode: str | None = None

    for lineno, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line or line.isspace():
            if tokens:
                sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        if line[0] == "#" and _is_comment(line, mode):
            continue
        if line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
                tokens, tags = [], []
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if mode is None:
            # The first data line opens a sentence, so a UNER index there is 1 (this keeps CoNLL-2003 lines
            # such as "1996 CD I-NP O" in the plain layout).
            mode = _UNER if len(fields) >= 3 and fields[0].strip() == "1" else _PLAIN
        if mode is _UNER:
            if len(fields) < 3 or not fields[0].isdigit():
                idx = fields[0].strip()
                if len(fields) >= 3 and idx.isdigit():
                    pass  # index padded with spaces
                elif (len(fields) >= 3 and ("-" in idx or "." in idx)
                      and idx.replace("-", "").replace(".", "").isdigit()):
                    continue  # CoNLL-U multi-word token range / empty node
                else:
                    raise DataError(
                        f"{p}, line {lineno}: expected 'index<TAB>token<TAB>tag[<TAB>...]' (Universal NER "
                        f"layout, as detected from the first data line), got {len(fields)} column(s): {line[:80]!r}"
                    )
            token, tag = fields[1].strip(), fields[2].strip()
        else:
            if len(fields) < 2:
                raise DataError(
                    f"{p}, line {lineno}: expected 'token<TAB>tag' (or 'token tag'), "
                    f"got 1 column: {line[:80]!r}"
                )
            token, tag = fields[0].strip(), fields[-1].strip()
        if not token or not tag:
            raise DataError(f"{p}, line {lineno}: empty token or tag in {line[:80]!r}")
        tokens.append(token)
        tags.append(tag)
    if tokens:
        sentences.append(TaggedSentence(tuple(tokens), tuple(tags)))
    return sentences
