"""Curricula registered by name: each turns an ordered task list and budgets into stages."""

from __future__ import annotations

from collections.abc import Callable

from ernie_cpt.errors import unknown_name
from schedules.stage import Stage

Curriculum = Callable[[list[str], dict[str, int]], list[Stage]]
CURRICULA: dict[str, Curriculum] = {}


def register(name: str) -> Callable[[Curriculum], Curriculum]:
    def add(fn: Curriculum) -> Curriculum:
        CURRICULA[name] = fn
        return fn
    return add


@register("joint")
def joint(tasks: list[str], budgets: dict[str, int]) -> list[Stage]:
    """All tasks in one stage, each with its whole budget (multi-task learning, Caruana 1997)."""
    return [Stage({task: budgets[task] for task in tasks})]


def build_schedule(name: str, tasks: list[str], budgets: dict[str, int]) -> list[Stage]:
    if name not in CURRICULA:
        raise unknown_name("schedule", name, list(CURRICULA))
    return CURRICULA[name](tasks, budgets)
