"""Task ids and the size of the task embedding, fixed when a run starts and read back from it.

A task's id is its row of the ERNIE 2.0 task embedding (Sun et al. 2020, "ERNIE 2.0: A Continual
Pre-training Framework for Language Understanding", AAAI: the task embedding tells the encoder which
task an input is for) and keys the random streams of its examples. A new run gives the seven ERNIE
2.0 tasks ids 0-6 (``pretasks.ERNIE_TASKS``), every other task of the run the next free ids in
``--tasks`` order, and the embedding as many rows as the ids need (at least 7): never the number of
installed task modules, so installing a plugin task changes nothing about a run that does not use it.

``tasks.json`` in the run directory records them::

    {"task_ids": {"knowledge_masking": 0, "my_task": 7}, "task_embedding_size": 8}

and a resumed run, or a run started ``--init-from`` an ernie-cpt model, takes them from there (the
model's own task ids for ``--init-from``), whatever task modules are installed now. A ``tasks.json``
written before this record (a flat ``{task: row}`` mapping) reads as the ids runs had then: each ERNIE
task's index, any other task its recorded row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pretasks.registry import ERNIE_TASKS

TASKS_JSON = "tasks.json"


def assign_task_ids(tasks: list[str], taken: Mapping[str, int] | None = None) -> dict[str, int]:
    """The id of every task of ``tasks``: its id in ``taken`` (a model the run starts from), else its
    index in ``ERNIE_TASKS``, else the next id after every id given so far (and after 0-6), in order.
    ``taken`` ids that are not distinct (a model trained with ``--shared-task-id``) are ignored."""
    taken = dict(taken or {})
    if len(set(taken.values())) < len(taken):
        taken = {}
    ids = {task: taken[task] for task in tasks if task in taken}
    ids |= {task: ERNIE_TASKS.index(task) for task in tasks if task not in ids and task in ERNIE_TASKS}
    following = max([len(ERNIE_TASKS) - 1, *taken.values(), *ids.values()]) + 1
    for task in tasks:
        if task not in ids:
            ids[task], following = following, following + 1
    return {task: ids[task] for task in tasks}


def embedding_size(ids: Mapping[str, int]) -> int:
    """Rows of the task embedding that ``ids`` need: one past the largest, and at least one per ERNIE task."""
    return max([len(ERNIE_TASKS) - 1, *ids.values()]) + 1


def write_task_ids(run_dir: Path, ids: Mapping[str, int], size: int) -> None:
    """Record ``ids`` and the embedding ``size`` in the run's ``tasks.json`` (atomically)."""
    from ernie_cpt.training.checkpoint import atomic_write_text

    atomic_write_text(run_dir / TASKS_JSON, json.dumps({"task_ids": dict(ids), "task_embedding_size": size},
                                                       indent=2))


def read_task_ids(run_dir: Path, tasks: list[str]) -> dict[str, int]:
    """The ids of ``tasks`` that the run in ``run_dir`` fixed when it started (see the module docstring
    for a ``tasks.json`` of an older run); a task the run does not record gets the id it would have had
    (:func:`assign_task_ids` after the recorded ones)."""
    path = run_dir / TASKS_JSON
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    if "task_ids" in recorded:
        return assign_task_ids(tasks, recorded["task_ids"])
    legacy = {task: ERNIE_TASKS.index(task) if task in ERNIE_TASKS else row for task, row in recorded.items()}
    return assign_task_ids(tasks, legacy)
