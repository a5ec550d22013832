"""The schedule's options: curriculum, step budgets, task mixing, and what carries over between stages.

Names of registered things (curriculum, stage allocation, task sampling) are checked when the
options are made, with the closest known name suggested, so a typo fails before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ernie_cpt.errors import UserError, unknown_name
from ernie_cpt.options import Range, check_ranges, option
from schedules.curricula import CURRICULA, FILE_EXAMPLE, get_curriculum
from schedules.sampling import SAMPLERS, get_sampler
from schedules.stage import ALLOCATIONS, get_allocation

TASK_MIXING = ("sample", "all")


@dataclass
class ScheduleOptions:
    """Schedule: curriculum stages, task mixing and what carries over between stages"""

    schedule: str = option("joint", f"Curriculum that turns the tasks into stages: {', '.join(CURRICULA)}")
    steps_per_task: int | None = option(None, "Step budget N of every task over the whole curriculum; when unset, "
                                        "--max-steps is shared evenly", valid=Range(1))
    schedule_file: str | None = option(None, f"YAML file of stages for --schedule file, e.g. {FILE_EXAMPLE}")
    stage_allocation: str = option("even", f"How sequential/pairwise spread a task's N steps over the stages it "
                                   f"takes part in ({', '.join(ALLOCATIONS)}): even = equal shares; front = shares "
                                   f"s:s-1:...:1 over its s stages, most in the stage that introduces the task")
    task_mixing: str = option("sample", f"{', '.join(TASK_MIXING)}. sample: one task per optimizer step, drawn by "
                              f"--task-sampling; all: every active task in every step, losses combined by "
                              f"--loss-weighting")
    task_sampling: str = option("remaining", f"How --task-mixing sample draws each step's task "
                                f"({', '.join(SAMPLERS)}): uniform; remaining = in proportion to the steps a task "
                                f"has left; size = see --sampling-temperature")
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
        if self.schedule == "file":
            if not self.schedule_file:
                raise UserError(f"--schedule file needs --schedule-file FILE, a YAML file of stages like "
                                f"{FILE_EXAMPLE}")
            if self.steps_per_task is not None:
                raise UserError("--steps-per-task does not apply to --schedule file, whose stages give every "
                                "task's steps; drop it")
        elif self.schedule_file:
            raise UserError(f"--schedule-file is read only by --schedule file, not --schedule {self.schedule}; "
                            f"add --schedule file or drop --schedule-file")
