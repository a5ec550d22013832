"""The schedule's options: curriculum, step budgets, task mixing, and what carries over between stages.

Names of registered things (curriculum, stage allocation, task sampling) are checked when the
options are made, with the closest known name suggested, so a typo fails before anything loads.
Their help lists the registered ones when ``--help`` is built, and a curriculum's own options are
declared next to it (``--schedule-file``: ``curricula.file.ScheduleFileOptions``);
:func:`check_schedule` checks them against the chosen curriculum.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ernie_cpt.errors import UserError, unknown_name
from ernie_cpt.options import Range, check_ranges, option
from schedules.curricula.base import CURRICULA, get_curriculum, uses_budget
from schedules.sampling import SAMPLERS, get_sampler
from schedules.stage import ALLOCATIONS, get_allocation

TASK_MIXING = ("sample", "all")


def _schedule_help() -> str:
    return f"Curriculum that turns the tasks into stages: {CURRICULA.listing()}"


def _allocation_help() -> str:
    return (f"How a curriculum spreads a task's N steps over the stages it takes part in: "
            f"{ALLOCATIONS.listing(first='even')}")


def _sampling_help() -> str:
    return f"How --task-mixing sample draws each step's task: {SAMPLERS.listing(first='remaining')}"


@dataclass
class ScheduleOptions:
    """Schedule: curriculum stages, task mixing and what carries over between stages"""

    schedule: str = option("joint", _schedule_help)
    steps_per_task: int | None = option(None, "Step budget N of every task over the whole curriculum; when unset, "
                                        "--max-steps is shared evenly", valid=Range(1))
    stage_allocation: str = option("even", _allocation_help)
    task_mixing: str = option("sample", f"{', '.join(TASK_MIXING)}. sample: one task per optimizer step, drawn by "
                              f"--task-sampling; all: every active task in every step, losses combined by "
                              f"--loss-weighting")
    task_sampling: str = option("remaining", _sampling_help)
    sampling_temperature: float = option(2.0, "Temperature T of --task-sampling size: p_i proportional to n_i^(1/T), "
                                         "n_i the task's training examples (T5 / MT-DNN mixing)",
                                         valid=Range(0, 100, low_open=True))
    replay: float = option(0.0, "Fraction of every stage's steps given to the tasks that earlier stages train and "
                           "this one does not (experience replay; Ibrahim et al. 2024 replay 0.05). The "
                           "stage's total steps stay the same. With continual, 'continual + replay' lies between "
                           "continual and sequential", valid=Range(0, 1, high_open=True))
    reset_optimizer: bool = option(False, "Reset AdamW's moment estimates at every stage boundary; otherwise they "
                                   "are kept. Parameters always carry over")
    shared_task_id: bool = option(False, "All tasks use task id 0 in the task embedding (an ablation); otherwise "
                                  "each task has its own id")

    def __post_init__(self) -> None:
        check_ranges(self)
        get_curriculum(self.schedule)
        get_allocation(self.stage_allocation)
        get_sampler(self.task_sampling)
        if self.task_mixing not in TASK_MIXING:
            raise unknown_name("task mixing", self.task_mixing, list(TASK_MIXING))
        if self.steps_per_task is not None and not uses_budget(self.schedule):
            raise UserError(f"--steps-per-task does not apply to --schedule {self.schedule}, which gives every "
                            f"task's steps itself; drop it")


def schedule_option_classes() -> list[type]:
    """The schedule's option groups: ScheduleOptions, then each curriculum's, allocation's and sampler's own."""
    return [ScheduleOptions, *CURRICULA.option_classes(), *ALLOCATIONS.option_classes(), *SAMPLERS.option_classes()]


def check_schedule(groups: Mapping[type, Any]) -> None:
    """The schedule's options across groups (option instances keyed by class): the chosen curriculum's
    own options complete (their ``check_chosen``), and no option given of a curriculum not chosen.
    Raises UserError naming the option and the fix."""
    schedule = groups.get(ScheduleOptions) or ScheduleOptions()
    chosen = CURRICULA.options_class(schedule.schedule)
    for name in CURRICULA.names():
        cls = CURRICULA.options_class(name)
        if cls is None or cls is chosen or cls not in groups:
            continue
        default = cls()
        for f in dataclasses.fields(cls):
            if getattr(groups[cls], f.name) != getattr(default, f.name):
                flag = "--" + f.name.replace("_", "-")
                raise UserError(f"{flag} is read only by --schedule {name}, not --schedule {schedule.schedule}; "
                                f"add --schedule {name} or drop {flag}")
    own = CURRICULA.options_for(schedule.schedule, groups)
    if hasattr(own, "check_chosen"):
        own.check_chosen()
