"""Continual: each task alone, one after the other."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schedules.curricula.base import register, spread
from schedules.stage import Stage

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions


@register("continual", summary="(A) -> (B) -> (C): each task alone, no replay of earlier tasks")
def continual(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions,
              settings: None = None) -> list[Stage]:
    """(A) -> (B) -> (C): each task alone, its whole budget, no replay of earlier tasks (continual
    learning's sequential fine-tuning baseline; ``--replay`` adds replay)."""
    return spread([[task] for task in tasks], budgets, options.stage_allocation)
