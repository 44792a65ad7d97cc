"""Reading a sweep's data files before Ray starts, with the readers the trials use (no tokenisation), so
a malformed line or a bad encoding is reported as ``file:line`` with a fix in seconds, not as a crashed
trial minutes later. Called by ``lfmlf sweep`` (and ``--check``) after the YAML is validated."""
from __future__ import annotations

import time

from lfmlf.config import SweepConfig
from lfmlf.data.base import DataError

#: Reading stops after this many seconds; the files not read yet are named (and read by the trials).
TIME_CAP_S = 60.0
FILE_FORMATS_SKIPPED = ("hub", "wikiann", "synthetic")   # no local files to read


def check_contents(cfg: SweepConfig, cap_s: float = TIME_CAP_S) -> list[str]:
    """Read every local file of every (language, split) a trial may need; raise the reader's DataError
    (naming the file, the line and the fix) on the first bad one. Returns the splits not read within
    ``cap_s`` seconds (empty when everything was read)."""
    # lazy: the task registry imports torch, and the CLI imports this module for `--help` too
    from lfmlf.tasks import TASKS
    from lfmlf.tasks.base import splits_needed

    if cfg.task.format in FILE_FORMATS_SKIPPED:
        return []
    task = TASKS[cfg.task.name](cfg.task)
    task.set_sources(cfg.languages.sources)
    started = time.monotonic()
    pending = splits_needed(cfg.task, cfg.languages.sources, cfg.languages.targets)
    for i, (lang, split) in enumerate(pending):
        if time.monotonic() - started > cap_s:
            return [f"{lang}/{split}" for lang, split in pending[i:]]
        try:
            task.load(lang, split)
        except DataError as e:
            if "Fix:" in str(e):
                raise
            raise DataError(f"{e}. Fix: correct that line (or the file's format: task.format is "
                            f"'{cfg.task.format}') and run the same command again.") from None
    return []
