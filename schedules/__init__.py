"""Curricula (stages of tasks with step budgets) and how tasks are mixed inside a stage."""

from schedules.curricula import CURRICULA, build_schedule
from schedules.stage import Stage, pick_task, split_budget

__all__ = ["CURRICULA", "Stage", "build_schedule", "pick_task", "split_budget"]
