"""Pre-tasks registered by name, so configs and the command line can name them.

A task's id (its row of the ERNIE 2.0 task embedding) belongs to the run, not to the registry:
the seven ERNIE 2.0 tasks always have ids 0-6 (``ERNIE_TASKS``, the paper's order), any other task
of a run the next free ids in ``--tasks`` order (:mod:`ernie_cpt.training.task_ids`, which also
reads them back from a run). Installing or removing a task module therefore changes nothing about
an existing run or a new one that does not use it.
"""

from __future__ import annotations

from ernie_cpt.registry import Registry
from pretasks.base import PreTask

TASKS: Registry[type[PreTask]] = Registry("task")
ERNIE_TASKS = ("knowledge_masking", "capitalization", "token_document_relation", "sentence_reordering",
               "sentence_distance", "discourse_relation", "ir_relevance")


def default_task_id(name: str) -> int:
    """The id ``name`` has in a run of its own: its index in ``ERNIE_TASKS``, else the first id after them."""
    return ERNIE_TASKS.index(name) if name in ERNIE_TASKS else len(ERNIE_TASKS)


def register(cls: type[PreTask]) -> type[PreTask]:
    """Class decorator: make a task available under ``cls.name``. Its class-level ``task_id`` is the id it has
    in a run of its own (:func:`default_task_id`); a run gives each task instance the id the run fixed. Its
    ``summary`` (one line for ``--help``) is its own, else its options' title ("name: summary")."""
    if not cls.__dict__.get("summary"):
        title = (cls.options_class.__doc__ or "").strip().split("\n")[0]
        cls.summary = title.removeprefix(f"{cls.name}:").strip()
    TASKS.register()(cls)
    cls.task_id = default_task_id(cls.name)
    return cls


def get_task(name: str) -> type[PreTask]:
    """The task class registered as ``name``; an unknown name is a user error with a suggestion."""
    return TASKS.get(name)
