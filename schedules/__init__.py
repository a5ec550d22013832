"""Curricula (stages of tasks with step budgets) and how tasks are mixed inside a stage."""

from schedules.curricula import CURRICULA, build_schedule, get_curriculum, uses_budget
from schedules.options import TASK_MIXING, ScheduleOptions, check_schedule, schedule_option_classes
from schedules.sampling import SAMPLERS, get_sampler
from schedules.stage import ALLOCATIONS, Stage, apportion, get_allocation, split_budget

__all__ = ["ALLOCATIONS", "CURRICULA", "SAMPLERS", "TASK_MIXING", "ScheduleOptions", "Stage", "apportion",
           "build_schedule", "check_schedule", "get_allocation", "get_curriculum", "get_sampler",
           "schedule_option_classes", "split_budget", "uses_budget"]
