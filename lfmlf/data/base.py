"""The record types every reader returns, whatever the file format or hub dataset."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lfmlf.errors import UserError


class DataError(UserError, ValueError):
    """A data file or dataset cannot be read; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence of a token-level task (NER, POS): words and one tag per word."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.tokens) != len(self.tags):
            raise DataError(f"{len(self.tokens)} tokens but {len(self.tags)} tags in {self.tokens[:5]}...")


def read_text_lines(path: str | Path, kind: str, suffix: str = "") -> list[str]:
    """The lines of a UTF-8 data file (a BOM and CRLF endings are accepted). A missing file, a folder, or
    bytes that are not UTF-8 raise DataError naming the file and the fix. ``kind`` names the format in
    messages ("CoNLL-U"), ``suffix`` the expected file extension (".conllu")."""
    p = Path(path)
    try:
        with p.open("r", encoding="utf-8-sig", newline=None) as fh:
            return fh.read().split("\n")
    except FileNotFoundError:
        raise DataError(f"{kind} file not found: {p}. Fix: check task.data_dir and task.files") from None
    except IsADirectoryError:
        raise DataError(f"{p} is a directory, expected a {kind} {suffix} file. Fix: check task.files") from None
    except UnicodeDecodeError as e:
        raise utf8_error(p, e) from None
    except OSError as e:
        raise DataError(f"cannot read {kind} file {p}: {e}") from None


def utf8_error(path: Path, e: UnicodeDecodeError) -> DataError:
    """A DataError for bytes that are not UTF-8: the file, the line and the fix."""
    line = path.read_bytes()[:e.start].count(b"\n") + 1
    return DataError(f"{path}, line {line}: not valid UTF-8 ({e.reason} at byte {e.start}). Fix: convert the file "
                     f"to UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}")
