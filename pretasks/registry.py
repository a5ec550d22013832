"""Pre-tasks registered by name, so configs and the command line can name them.

A task's id (its row of the ERNIE 2.0 task embedding) is its registration index, and the number
of registered tasks sizes the task embedding: ``pretasks/__init__`` registers the seven ERNIE 2.0
tasks first, in the paper's order (ids 0-6), then any other task module of the package.
"""

from __future__ import annotations

from ernie_cpt.registry import Registry
from pretasks.base import PreTask

TASKS: Registry[type[PreTask]] = Registry("task")


def register(cls: type[PreTask]) -> type[PreTask]:
    """Class decorator: make a task available under ``cls.name``, with the next free task id."""
    TASKS.register()(cls)
    cls.task_id = TASKS.id_of(cls.name)
    return cls


def get_task(name: str) -> type[PreTask]:
    """The task class registered as ``name``; an unknown name is a user error with a suggestion."""
    return TASKS.get(name)
