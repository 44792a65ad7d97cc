"""What a trial's numbers came from: the data files it read (path, size, sha256), for MLflow's dataset
inputs. Pure Python over a :class:`~lfmlf.config.TrialSpec`; hashes are computed once per file and process."""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from lfmlf.config import TrialSpec
from lfmlf.probes import data_files


@dataclass(frozen=True)
class DataFile:
    name: str       # e.g. "task/de/train", "probe/de", "unlabelled/en"
    context: str    # MLflow's dataset context: train | dev | test | probe | unlabelled
    path: str
    size: int
    sha256: str


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:   # size and mtime in the key: an edited file is re-hashed
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def describe(name: str, context: str, path: str | Path) -> DataFile:
    st = Path(path).stat()
    return DataFile(name, context, str(path), st.st_size, _digest(str(path), st.st_size, st.st_mtime_ns))


def trial_files(spec: TrialSpec) -> list[DataFile]:
    """Every local data file the trial reads: its sources' train and dev files, its targets' evaluation
    files, the probe's files and the unlabelled-text files (hub and synthetic data have none)."""
    task = spec.task
    wanted = [(lang, split) for lang in spec.sources for split in ("train", "dev")]
    wanted += [(lang, task.target_split) for lang in spec.targets]
    out = []
    for lang, split in wanted:
        files = task.files.get(lang)
        name = files.path(split) if files is not None else None   # the file (its slice, if any, is in the config)
        if name:
            out.append(describe(f"task/{lang}/{split}", split, Path(task.data_dir or ".") / name))
    if spec.probe is not None:
        for lang, paths in data_files(spec.probe).items():
            for p in paths:
                out.append(describe(f"probe/{lang}/{Path(p).name}", "probe", p))
    for lang, path in spec.unlabelled.files.items():
        out.append(describe(f"unlabelled/{lang}", "unlabelled", path))
    return [f for f in out if Path(f.path).is_file()]
