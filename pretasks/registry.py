"""Pre-tasks registered by name, so configs and the command line can name them."""

from __future__ import annotations

from ernie_cpt.errors import unknown_name
from pretasks.base import PreTask

# The seven ERNIE 2.0 tasks each own a row of the task embedding, whether or not they are trained.
NUM_TASK_IDS = 7

TASKS: dict[str, type[PreTask]] = {}


def register(cls: type[PreTask]) -> type[PreTask]:
    """Class decorator: make a task available under ``cls.name``."""
    if cls.name in TASKS:
        raise ValueError(f"task {cls.name!r} is registered twice")
    if not 0 <= cls.task_id < NUM_TASK_IDS:
        raise ValueError(f"task {cls.name!r} has task id {cls.task_id}, outside 0..{NUM_TASK_IDS - 1}")
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[PreTask]:
    """The task class registered as ``name``; an unknown name is a user error with a suggestion."""
    if name not in TASKS:
        raise unknown_name("task", name, list(TASKS))
    return TASKS[name]
