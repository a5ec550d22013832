"""Sequential multi-task learning: each stage adds a task to the earlier ones (ERNIE 2.0)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schedules.curricula.base import register, spread
from schedules.stage import Stage

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions


@register("sequential", summary="(A) -> (A,B) -> (A,B,C): each stage adds a task, the earlier ones stay in "
          "(ERNIE 2.0)")
def sequential(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions,
               settings: None = None) -> list[Stage]:
    """(A) -> (A,B) -> (A,B,C): stage i adds the i-th task to the earlier ones, which stay in, and
    each task's budget is spread over the stages it is in. The sequential multi-task learning of
    ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
    Understanding", AAAI)."""
    return spread([tasks[:i + 1] for i in range(len(tasks))], budgets, options.stage_allocation)
