"""Curricula (stages of tasks with step budgets) and how tasks are mixed inside a stage."""

from schedules.curricula import CURRICULA, build_schedule, get_curriculum
from schedules.options import TASK_MIXING, ScheduleOptions
from schedules.sampling import SAMPLERS, get_sampler
from schedules.stage import ALLOCATIONS, Stage, apportion, get_allocation, split_budget

__all__ = ["ALLOCATIONS", "CURRICULA", "SAMPLERS", "TASK_MIXING", "ScheduleOptions", "Stage", "apportion",
           "build_schedule", "get_allocation", "get_curriculum", "get_sampler", "split_budget"]
