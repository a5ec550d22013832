"""Pairwise-then-all: every task alone, then every pair, then all tasks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from schedules.curricula.base import register, spread
from schedules.stage import Stage

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions


@register("pairwise", summary="every task alone, then every pair (neighbours first), then all tasks")
def pairwise(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions, settings: None = None) -> list[Stage]:
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
