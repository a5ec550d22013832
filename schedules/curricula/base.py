"""The curriculum seam: a registered function that turns an ordered task list and per-task budgets into stages.

A curriculum is called as ``curriculum(tasks, budgets, options, settings)``: the tasks in curriculum
order, each task's step budget N, the ``ScheduleOptions`` (``--stage-allocation``, ...) and
``settings``, an instance of its own ``options_class`` (None without one). Every task gets its whole
budget N over the curriculum: its steps summed over the stages equal N exactly. Where a task takes
part in several stages, ``--stage-allocation`` spreads N over them (``schedules.stage.ALLOCATIONS``;
:func:`spread`); a task whose share in a stage is 0 (N smaller than its number of stages) is left out
of that stage. ``register(name, summary=..., options_class=..., uses_budget=...)`` gives it its name,
its one-line summary for ``--help``, its options and whether it uses the budgets: one that sets every
task's steps itself (``file``) has ``uses_budget=False`` and gets no budgets (``--steps-per-task``
does not apply to it, and ``compare``, which gives every curriculum the same budget, refuses it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ernie_cpt.registry import Registry
from schedules.stage import Stage, get_allocation

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions

Curriculum = Callable[[list[str], dict[str, int], "ScheduleOptions", Any], list[Stage]]
CURRICULA: Registry[Curriculum] = Registry("schedule")
register = CURRICULA.register
get_curriculum = CURRICULA.get


def uses_budget(name: str) -> bool:
    """Whether curriculum ``name`` spreads the step budgets (False: it sets every task's steps itself)."""
    return getattr(get_curriculum(name), "uses_budget", True)


def own_step_options() -> list[tuple[str, type]]:
    """Each curriculum that sets its own steps (``--schedule file``) with its option group: options that
    ``compare``, which builds every curriculum from one per-task budget, never reads."""
    return [(name, cls) for name in CURRICULA.names()
            if not uses_budget(name) and (cls := CURRICULA.options_class(name)) is not None]


def spread(groups: list[list[str]], budgets: dict[str, int], allocation: str) -> list[Stage]:
    """One stage per group of tasks; each task's budget is divided over the groups it is in by
    the allocation policy named ``allocation``."""
    allocate = get_allocation(allocation)
    shares = {task: iter(allocate(budget, sum(task in group for group in groups))) for task, budget in budgets.items()}
    stages = []
    for group in groups:
        steps = {task: next(shares[task]) for task in group}
        stages.append(Stage({task: n for task, n in steps.items() if n > 0}))
    return stages
