"""What is optimised and reported for each task, and the one registry of tasks by name.

:data:`TASKS` is the only place a task's name (``task`` in a run's configuration) is looked up.
A task class builds its model on a corpus and is what :func:`rnnkit.training.loop.fit` trains;
the class itself reads its corpus, rebuilds a trained run and names its figures (see
:class:`rnnkit.tasks.base.TaskKind`). A new task is one new module and one line in
:data:`rnnkit.names.TASK_CLASSES`.
"""

from __future__ import annotations

import importlib

from rnnkit import names
from rnnkit.errors import RnnkitError
from rnnkit.tasks.base import Task, TaskKind


def _task_class(path: str) -> TaskKind:
    module, name = path.split(":")
    kind: TaskKind = getattr(importlib.import_module(module), name)
    return kind


TASKS: dict[str, TaskKind] = {name: _task_class(path) for name, path in names.TASK_CLASSES.items()}
"""Every task by the name a run's configuration gives it, from :data:`rnnkit.names.TASK_CLASSES`
(names and modules only, so that the configuration is validated without importing torch)."""


def task_kind(name: str) -> TaskKind:
    """The task class named ``name``, or a one-line error listing the tasks there are."""
    try:
        return TASKS[name]
    except KeyError:
        raise RnnkitError(f"task must be one of {list(TASKS)}, got {name!r}") from None


__all__ = ["TASKS", "Task", "TaskKind", "task_kind"]
