"""``ernie-cpt plan``: the stages of a curriculum, tasks and steps, printed before anything trains.

No corpus and no model are loaded: the table comes from the options alone, so a schedule can
be checked (and its total steps read) in a second.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from ernie_cpt.options import Range, split_items
from pretasks import get_task
from schedules.curricula import CURRICULA, build_schedule, uses_budget
from schedules.options import ScheduleOptions, check_schedule
from schedules.stage import Stage

MAX_STEPS_RANGE = Range(1)  # as pretrain's --max-steps (TrainingOptions), which this module does not load


def plan_table(stages: list[Stage], tasks: list[str], task_mixing: str) -> str:
    """A Markdown table: one row per stage with each task's steps ("-" where the task is not in
    the stage) and the stage's optimizer steps, then a ``total`` row."""
    rows = [[str(number), *(str(stage.steps[t]) if t in stage.steps else "-" for t in tasks),
             str(stage.optimizer_steps(task_mixing))] for number, stage in enumerate(stages, start=1)]
    rows.append(["total", *(str(sum(stage.steps.get(t, 0) for stage in stages)) for t in tasks),
                 str(sum(stage.optimizer_steps(task_mixing) for stage in stages))])
    header = ["stage", *tasks, "optimizer steps"]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [header, ["-" * (w - 1) + ":" for w in widths], *rows]
    return "\n".join("| " + " | ".join(cell.rjust(w) for cell, w in zip(line, widths)) + " |" for line in lines)


def _budget(options: ScheduleOptions, settings: Any, stages: list[Stage], tasks: list[str], max_steps: int) -> str:
    per_task = sorted({sum(stage.steps.get(t, 0) for stage in stages) for t in tasks})
    steps = f"{per_task[0]} steps per task" if len(per_task) == 1 else f"{per_task[0]}-{per_task[-1]} steps per task"
    if not uses_budget(options.schedule):  # the curriculum's own options set the steps
        values = dataclasses.asdict(settings).values() if settings is not None else []
        return f"{steps} from {', '.join(map(str, values)) or f'--schedule {options.schedule}'}"
    if options.steps_per_task is None:
        return f"{steps} (--max-steps {max_steps} shared evenly)"
    return steps


def plan(groups: Mapping[type, Any], tasks: list[str], max_steps: int) -> str:
    """A one-line header naming the curriculum, budget and task mixing, then :func:`plan_table`.
    ``groups``: the schedule's option instances by class (``ScheduleOptions`` and the curricula's own;
    defaults where absent). ``tasks`` may hold comma-separated names."""
    options = groups.get(ScheduleOptions) or ScheduleOptions()
    check_schedule(groups)
    settings = CURRICULA.options_for(options.schedule, groups)
    tasks = split_items(tasks)
    if max_steps not in MAX_STEPS_RANGE:
        raise UserError(f"--max-steps must be {MAX_STEPS_RANGE}, got {max_steps}")
    for task in tasks:
        get_task(task)
    stages = build_schedule(options, tasks, max_steps, settings=settings)
    optimizer_steps = sum(stage.optimizer_steps(options.task_mixing) for stage in stages)
    mixing = (f"one task per step, drawn by --task-sampling {options.task_sampling}"
              if options.task_mixing == "sample" else "all active tasks in every step")
    header = (f"Curriculum {options.schedule}: {plural(len(tasks), 'task')}, "
              f"{_budget(options, settings, stages, tasks, max_steps)}; "
              f"{len(stages)} stage{'s' * (len(stages) != 1)}, {optimizer_steps} optimizer steps ({mixing})")
    return f"{header}\n\n{plan_table(stages, tasks, options.task_mixing)}"
