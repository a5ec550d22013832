"""Joint: all tasks in one stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schedules.curricula.base import register, spread
from schedules.stage import Stage

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions


@register("joint", summary="(A,B,C): all tasks in one stage (multi-task learning)")
def joint(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions, settings: None = None) -> list[Stage]:
    """All tasks in one stage, each with its whole budget (multi-task learning, Caruana 1997,
    "Multitask Learning", Machine Learning 28)."""
    return spread([list(tasks)], budgets, options.stage_allocation)
