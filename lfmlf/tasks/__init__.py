"""Task registry: name -> Task class. Add a task by writing one module and one line here."""
from __future__ import annotations

from lfmlf.tasks.base import Task
from lfmlf.tasks.ner import NerTask
from lfmlf.tasks.nli import NliTask
from lfmlf.tasks.pos import PosTask
from lfmlf.tasks.qa import QaTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (NerTask, PosTask, NliTask, QaTask)}

__all__ = ["TASKS", "Task"]
