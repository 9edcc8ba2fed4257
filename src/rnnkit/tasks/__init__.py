"""What is optimised and reported for each task, and the one registry of tasks by name.

:data:`TASKS` is the only place a task's name (``task`` in a run's configuration) is looked up.
A task class builds its model on a corpus and is what :func:`rnnkit.training.loop.fit` trains;
the class itself reads its corpus, rebuilds a trained run and names its figures (see
:class:`rnnkit.tasks.base.TaskKind`). A new task is one new module and one line here.
"""

from __future__ import annotations

from rnnkit.errors import RnnkitError
from rnnkit.tasks.base import Task, TaskKind
from rnnkit.tasks.classification import Classification
from rnnkit.tasks.lm import LanguageModelling
from rnnkit.tasks.tagging import Tagging

TASKS: dict[str, TaskKind] = {
    "lm": LanguageModelling,
    "tag": Tagging,
    "classify": Classification,
}
"""Every task by the name a run's configuration gives it."""


def task_kind(name: str) -> TaskKind:
    """The task class named ``name``, or a one-line error listing the tasks there are."""
    try:
        return TASKS[name]
    except KeyError:
        raise RnnkitError(f"task must be one of {list(TASKS)}, got {name!r}") from None


__all__ = ["TASKS", "Task", "TaskKind", "task_kind"]
