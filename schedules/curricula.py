"""Curricula registered by name: each turns an ordered task list and per-task budgets into stages.

A curriculum is called as ``curriculum(tasks, budgets, options)``. Every task gets its whole
budget N over the curriculum: its steps summed over the stages equal N exactly. Where a task
takes part in several stages, ``--stage-allocation`` spreads N over them (see
``schedules.stage.ALLOCATIONS``); a task whose share in a stage is 0 (N smaller than its number
of stages) is left out of that stage; ``build_schedule`` refuses a budget that leaves a stage
without steps (``schedules.budget``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ernie_cpt.errors import UserError
from ernie_cpt.registry import Registry
from ernie_cpt.yaml_files import read_yaml
from schedules.budget import AMPLE, check_budget
from schedules.stage import Stage, get_allocation, split_budget, with_replay

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions

Curriculum = Callable[[list[str], dict[str, int], "ScheduleOptions"], list[Stage]]
CURRICULA: Registry[Curriculum] = Registry("schedule")
FILE_EXAMPLE = "stages: [{knowledge_masking: 500}, {knowledge_masking: 200, capitalization: 300}]"
register = CURRICULA.register
get_curriculum = CURRICULA.get


def spread(groups: list[list[str]], budgets: dict[str, int], allocation: str) -> list[Stage]:
    """One stage per group of tasks; each task's budget is divided over the groups it is in by
    the allocation policy named ``allocation``."""
    allocate = get_allocation(allocation)
    shares = {task: iter(allocate(budget, sum(task in group for group in groups))) for task, budget in budgets.items()}
    stages = []
    for group in groups:
        steps = {task: next(shares[task]) for task in group}
        stages.append(Stage({task: n for task, n in steps.items() if n > 0}))
    return stages


@register("continual")
def continual(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions) -> list[Stage]:
    """(A) -> (B) -> (C): each task alone, its whole budget, no replay of earlier tasks."""
    return spread([[task] for task in tasks], budgets, options.stage_allocation)


@register("joint")
def joint(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions) -> list[Stage]:
    """All tasks in one stage, each with its whole budget (multi-task learning, Caruana 1997)."""
    return spread([list(tasks)], budgets, options.stage_allocation)


@register("sequential")
def sequential(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions) -> list[Stage]:
    """(A) -> (A,B) -> (A,B,C): stage i adds the i-th task to the earlier ones, which stay in, and
    each task's budget is spread over the stages it is in. The sequential multi-task learning of
    ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
    Understanding", AAAI)."""
    return spread([tasks[:i + 1] for i in range(len(tasks))], budgets, options.stage_allocation)


@register("pairwise")
def pairwise(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions) -> list[Stage]:
    """Pairwise-then-all: every task alone in order, then every pair of tasks, then all tasks,
    each task's budget spread over the stages it is in. Pairs come in order of their distance in
    the task list, neighbours first: (A,B), (B,C), (C,D), then (A,C), (B,D), then (A,D), ...; for
    3 tasks (A) -> (B) -> (C) -> (A,B) -> (B,C) -> (A,C) -> (A,B,C). With 2 tasks the all-tasks
    stage would repeat the pair (A,B) and is left out: k tasks give k + k(k-1)/2 (+1 if k > 2)
    stages, and every task takes part in k + 1 of them (k, if k <= 2)."""
    k = len(tasks)
    pairs = [[tasks[i], tasks[i + gap]] for gap in range(1, k) for i in range(k - gap)]
    everything = [list(tasks)] if k > 2 else []
    return spread([[task] for task in tasks] + pairs + everything, budgets, options.stage_allocation)


@register("file")
def from_file(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions) -> list[Stage]:
    """The stages and steps written in ``--schedule-file``, a YAML mapping with one key, a list of
    stages, each mapping task names to steps, e.g. ``stages: [{knowledge_masking: 500},
    {knowledge_masking: 200, capitalization: 300}]``. The tasks are those of ``--tasks``: the file
    may name no other, and must give every one of them steps. ``budgets`` is not used: the file
    sets every step."""
    path = options.schedule_file
    assert path, "ScheduleOptions requires --schedule-file with --schedule file"
    stages = [Stage(steps) for steps in _stages_of(_read_yaml(path), path, tasks)]
    missing = [task for task in tasks if not any(task in stage.steps for stage in stages)]
    if missing:
        raise UserError(f"task {missing[0]} of --tasks has no steps in schedule file {path}; "
                        f"give it steps in a stage or drop it from --tasks")
    return stages


def _read_yaml(path: str) -> Any:
    return read_yaml(path, "schedule file", "--schedule-file")[0]


def _stages_of(data: Any, path: str, tasks: list[str]) -> list[dict[str, int]]:
    """The ``stages`` list of a schedule file, checked: known tasks, positive whole steps."""
    if not isinstance(data, dict) or "stages" not in data:
        raise UserError(f"schedule file {path} must hold a 'stages' list, e.g. {FILE_EXAMPLE}")
    for key in data:
        if key != "stages":
            raise UserError(f"unknown key '{key}' in schedule file {path}; it holds only a 'stages' list, "
                            f"e.g. {FILE_EXAMPLE}")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise UserError(f"'stages' in schedule file {path} must be a non-empty list of stages, e.g. {FILE_EXAMPLE}")
    stages = []
    for number, stage in enumerate(data["stages"], start=1):
        where = f"stage {number} of schedule file {path}"
        if not isinstance(stage, dict) or not stage:
            raise UserError(f"{where} must map task names to steps, like {{knowledge_masking: 500}}; got {stage!r}")
        for task, steps in stage.items():
            if task not in tasks:
                close = difflib.get_close_matches(str(task), tasks, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise UserError(f"{where} names task '{task}', which is not in --tasks ({', '.join(tasks)}); "
                                f"{hint}add it to --tasks or remove it from the file")
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise UserError(f"{where} gives {task} {steps!r} steps; write a positive whole number of steps, "
                                f"or leave the task out of that stage")
        stages.append(dict(stage))
    return stages


def build_schedule(options: ScheduleOptions, tasks: list[str], total_steps: int, warn: bool = True) -> list[Stage]:
    """The stages of the curriculum ``options.schedule`` for ``tasks`` (in curriculum order). Each
    task's budget is ``--steps-per-task`` when given, else ``total_steps`` shared evenly, the
    remainder one step each to the earliest tasks (1000 steps, 3 tasks: 334, 333, 333). With
    ``--replay F`` a fraction F of every stage's steps then replays earlier tasks
    (:func:`schedules.stage.with_replay`). A budget that leaves a stage (or a task) without a step
    is a UserError naming the smallest that fills the curriculum; one that leaves a task out of some
    of its stages, a warning unless not ``warn`` (:func:`schedules.budget.check_budget`)."""
    if not tasks:
        raise UserError("--tasks is empty; name at least one pre-task")
    repeated = [task for i, task in enumerate(tasks) if task in tasks[:i]]
    if repeated:
        raise UserError(f"task {repeated[0]} is listed twice in --tasks; list every task once")
    curriculum = get_curriculum(options.schedule)
    if options.schedule == "file":  # the file sets every step (and refuses a stage without one)
        stages = curriculum(tasks, {}, options)
    else:
        given = (f"--steps-per-task {options.steps_per_task}" if options.steps_per_task is not None
                 else f"--max-steps {total_steps}")
        budgets = (dict.fromkeys(tasks, options.steps_per_task) if options.steps_per_task is not None
                   else split_budget(total_steps, tasks))
        # A curriculum that stages two tasks (not joint) is continual when it trains one task per stage.
        staged = len(curriculum(["a", "b"], {"a": AMPLE, "b": AMPLE}, options)) > 1
        stages = check_budget(lambda b: curriculum(tasks, b, options), options.schedule, tasks, budgets, given,
                              [{task} for task in tasks] if staged else None, warn)
    return with_replay(stages, options.replay) if options.replay else stages
