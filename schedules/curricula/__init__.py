"""Curricula, one module each, registered by name (see ``base``), and the schedule they make.

Every module of this package is imported here (the ERNIE 2.0 paper's and the continual-learning
baselines first, in the order ``--help`` lists them), so a new curriculum module registers itself
just by existing; a third-party one registers through the ``ernie_cpt.plugins`` entry points.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from ernie_cpt.errors import UserError
from schedules.budget import AMPLE, check_budget
from schedules.curricula.base import (
    CURRICULA,
    Curriculum,
    get_curriculum,
    own_step_options,
    register,
    spread,
    uses_budget,
)
from schedules.stage import Stage, split_budget, with_replay

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions

FIRST = ("continual", "joint", "sequential", "pairwise", "file")
for _name in [*FIRST, *sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in (*FIRST, "base"))]:
    importlib.import_module(f"{__name__}.{_name}")


def build_schedule(options: ScheduleOptions, tasks: list[str], total_steps: int, warn: bool = True,
                   settings: Any = None) -> list[Stage]:
    """The stages of the curriculum ``options.schedule`` for ``tasks`` (in curriculum order), with
    ``settings``, its own options (its defaults when None). Each task's budget is ``--steps-per-task``
    when given, else ``total_steps`` shared evenly, the remainder one step each to the earliest tasks
    (1000 steps, 3 tasks: 334, 333, 333); a curriculum that does not use budgets sets every step itself.
    With ``--replay F`` a fraction F of every stage's steps then replays earlier tasks
    (:func:`schedules.stage.with_replay`). A budget that leaves a stage (or a task) without a step
    is a UserError naming the smallest that fills the curriculum; one that leaves a task out of some
    of its stages, a warning unless not ``warn`` (:func:`schedules.budget.check_budget`)."""
    if not tasks:
        raise UserError("--tasks is empty; name at least one pre-task")
    repeated = [task for i, task in enumerate(tasks) if task in tasks[:i]]
    if repeated:
        raise UserError(f"task {repeated[0]} is listed twice in --tasks; list every task once")
    curriculum = get_curriculum(options.schedule)
    settings = CURRICULA.options_for(options.schedule, {} if settings is None else {type(settings): settings})
    if not uses_budget(options.schedule):  # it sets every step (and refuses a stage without one)
        stages = curriculum(tasks, {}, options, settings)
    else:
        given = (f"--steps-per-task {options.steps_per_task}" if options.steps_per_task is not None
                 else f"--max-steps {total_steps}")
        budgets = (dict.fromkeys(tasks, options.steps_per_task) if options.steps_per_task is not None
                   else split_budget(total_steps, tasks))
        stages = check_budget(lambda b: curriculum(tasks, b, options, settings), options.schedule, tasks, budgets,
                              given, _alone(curriculum, options, settings, tasks), warn)
    return with_replay(stages, options.replay) if options.replay else stages


def _alone(curriculum: Curriculum, options: ScheduleOptions, settings: Any, tasks: list[str]) -> list[set[str]] | None:
    """The stages of one task each, which a curriculum that stages tasks may come to with these tasks
    (sequential with one task: then it is continual); None for one that never stages two tasks (joint)
    or always trains them alone (continual)."""
    probe = curriculum(["a", "b", "c"], dict.fromkeys("abc", AMPLE), options, settings)
    if len(probe) == 1 or all(len(stage.steps) == 1 for stage in probe):
        return None
    return [{task} for task in tasks]


__all__ = ["CURRICULA", "Curriculum", "build_schedule", "get_curriculum", "own_step_options", "register", "spread",
           "uses_budget"]
