"""Task registry: name -> Task class. Add a task by writing one module and one line here."""
from __future__ import annotations

from lfmlf.tasks.base import Task
from lfmlf.tasks.ner import NerTask

TASKS: dict[str, type[Task]] = {NerTask.name: NerTask}

__all__ = ["TASKS", "Task"]
