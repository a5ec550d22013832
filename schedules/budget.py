"""Whether a step budget fills a curriculum: every stage needs a step, and every task a step in each
stage it takes part in.

A curriculum spreads each task's budget over the stages it takes part in (``schedules.stage``); a
budget smaller than that leaves the task out of some of them, and a stage whose tasks are all left
out has no step at all. Training would skip such a stage, so it would never be evaluated at its
end, and no accuracy matrix could be made. :func:`check_budget` refuses that before any work and
names the smallest budget at which every task trains in each of its stages, found by building the
curriculum itself with growing budgets (nothing here knows a curriculum's shape); a budget that
only leaves some tasks out of some stages is accepted with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from schedules.stage import Stage, split_budget

log = logging.getLogger(__name__)

Build = Callable[[dict[str, int]], list[Stage]]  # task budgets -> the curriculum's stages
AMPLE = 10**6  # a budget per task that every allocation spreads over any number of stages
SEARCH_LIMIT = 100_000  # budgets tried before giving up on naming the smallest


def _tasks_per_stage(stages: list[Stage]) -> list[set[str]]:
    return [set(stage.steps) for stage in stages]


class BudgetTooSmall(UserError):
    """A budget that leaves a stage or a task without a step; ``total`` and ``per_task`` are the smallest
    ``--max-steps`` and ``--steps-per-task`` that fill the curriculum (None: none found)."""

    def __init__(self, message: str, total: int | None, per_task: int | None) -> None:
        super().__init__(message)
        self.total, self.per_task = total, per_task


def _fills(build: Build, budgets: dict[str, int], design: list[set[str]]) -> bool:
    return _tasks_per_stage(build(budgets)) == design


def smallest_budgets(build: Build, tasks: list[str]) -> tuple[int | None, int | None]:
    """The smallest ``--max-steps`` (shared evenly, :func:`schedules.stage.split_budget`) and the
    smallest ``--steps-per-task`` at which every task has a step in every stage it takes part in;
    None where none up to ``SEARCH_LIMIT`` does."""
    design = _tasks_per_stage(build(dict.fromkeys(tasks, AMPLE)))
    per_task = next((n for n in range(1, SEARCH_LIMIT) if _fills(build, dict.fromkeys(tasks, n), design)), None)
    total = next((m for m in range(len(tasks), SEARCH_LIMIT) if _fills(build, split_budget(m, tasks), design)), None)
    return total, per_task


def _numbers(stages: list[int]) -> str:
    """``[5, 6, 7]`` -> ``stages 5-7``; ``[2, 4, 5]`` -> ``stages 2, 4-5``; ``[3]`` -> ``stage 3`` (from 1)."""
    runs: list[list[int]] = []
    for number in stages:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    text = ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)
    return f"stage{'s' * (len(stages) > 1)} {text}"


def _advice(total: int | None, per_task: int | None) -> str:
    if total is None or per_task is None:
        return "a larger budget"
    return f"at least {plural(total, 'step')} (--max-steps {total} or --steps-per-task {per_task})"


def check_budget(build: Build, name: str, tasks: list[str], budgets: dict[str, int], given: str,
                 same_as: list[set[str]] | None = None, warn: bool = True) -> list[Stage]:
    """The stages ``build(budgets)`` of curriculum ``name``, checked. ``given`` names the budget as the
    user gave it (``--max-steps 4``); ``same_as`` is the stages' tasks of continual, to name when this
    curriculum comes to the same with these tasks (None: it cannot, or it is continual itself).

    Raises BudgetTooSmall (a UserError) when a stage gets no step or a task none at all, naming the
    smallest budget that fills the curriculum. With ``warn``, logs a warning when some task is left
    out of a stage it takes part in, and when the stages are those of ``same_as`` (one task per stage)."""
    stages = build(budgets)
    design = _tasks_per_stage(build(dict.fromkeys(tasks, AMPLE)))
    empty = [number for number, stage in enumerate(stages, start=1) if not stage.steps]
    idle = [task for task in tasks if not budgets.get(task)]
    if empty or idle:
        left = _numbers(empty) if empty else f"task {', '.join(idle)}"
        total, per_task = smallest_budgets(build, tasks)
        raise BudgetTooSmall(f"--schedule {name} with {plural(len(tasks), 'task')} has "
                             f"{plural(len(design), 'stage')} and needs {_advice(total, per_task)}; {given} leaves "
                             f"{left} without a step", total, per_task)
    if not warn:
        return stages
    missing = {task: [n for n, (stage, want) in enumerate(zip(stages, design), start=1)
                      if task in want and task not in stage.steps] for task in tasks}
    missing = {task: numbers for task, numbers in missing.items() if numbers}
    if missing:
        alone = " (one task per stage, as --schedule continual)" if all(len(s.steps) == 1 for s in stages) else ""
        log.warning("--schedule %s: %s leaves %s%s; every task trains in each of its stages with %s", name, given,
                    "; ".join(f"{task} out of {_numbers(numbers)}" for task, numbers in missing.items()), alone,
                    _advice(*smallest_budgets(build, tasks)))
    elif same_as is not None and design == same_as:
        log.warning("--schedule %s with %s is the same as --schedule continual: every stage trains one task",
                    name, plural(len(tasks), "task"))
    return stages
