"""A schedule is a list of stages; a stage is a set of tasks, each with its step budget.

Budgets are whole numbers of steps, divided by :func:`apportion` (largest remainders), so a
task's steps over the stages of a curriculum add up to its budget exactly. How a task's budget
is spread over the stages it takes part in is an allocation policy, registered by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ernie_cpt.registry import Registry


@dataclass(frozen=True)
class Stage:
    """Tasks trained together in one stage, with the steps each task gets."""

    steps: dict[str, int]

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())

    def optimizer_steps(self, task_mixing: str) -> int:
        """Optimizer steps the stage takes: one task per step (``sample``) takes the sum of the
        tasks' steps; all active tasks in every step (``all``) takes the largest."""
        return max(self.steps.values(), default=0) if task_mixing == "all" else self.total_steps


def apportion(total: int, weights: list[int]) -> list[int]:
    """``total`` divided into whole parts proportional to ``weights`` (Hamilton's largest-remainder
    method): every part gets the floor of its quota, and the units left over go to the parts with
    the largest fractional remainders, ties to the earliest. The parts add up to ``total``."""
    whole = sum(weights)
    parts = [total * w // whole for w in weights]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts


def with_replay(stages: list[Stage], fraction: float) -> list[Stage]:
    """Experience replay: in every stage, ``fraction`` of its task steps (rounded) go to the tasks
    that earlier stages train and this one does not, in equal shares (remainders to the earliest),
    taken from the stage's own tasks in proportion to their steps (:func:`apportion`). The stage's
    total steps, and so the curriculum's cost, are unchanged; a task replayed in later stages gets
    more than its budget, a task that yields steps to replay fewer. A stage with no such earlier
    task is kept as it is. For ``continual`` (A) -> (B) -> (C) with N steps each and fraction 0.05,
    stage 2 trains B 0.95N and A 0.05N steps, stage 3 C 0.95N and A, B 0.025N each: the 5 % replay
    that Ibrahim et al. 2024 ("Simple and Scalable Strategies to Continually Pre-train Large
    Language Models", TMLR) add to continual pre-training."""
    replayed: list[Stage] = []
    seen: list[str] = []
    for stage in stages:
        earlier = [task for task in seen if task not in stage.steps]
        given = round(fraction * stage.total_steps) if earlier else 0
        steps = dict(stage.steps)
        if given:
            taken = apportion(given, list(stage.steps.values()))
            steps = {task: n - k for (task, n), k in zip(stage.steps.items(), taken)}
            steps.update(zip(earlier, apportion(given, [1] * len(earlier))))
        replayed.append(Stage({task: n for task, n in steps.items() if n > 0}))
        seen += [task for task in stage.steps if task not in seen]
    return replayed


def split_budget(total_steps: int, tasks: list[str]) -> dict[str, int]:
    """``total_steps`` shared as evenly as possible; earlier tasks get the remainder."""
    return dict(zip(tasks, apportion(total_steps, [1] * len(tasks))))


Allocation = Callable[[int, int], list[int]]
ALLOCATIONS: Registry[Allocation] = Registry("stage allocation")
register_allocation = ALLOCATIONS.register
get_allocation = ALLOCATIONS.get


@register_allocation("even", summary="equal shares, the remainder one step each to the earliest stages")
def even(budget: int, stages: int) -> list[int]:
    """The default: equal shares of the budget, the remainder one step each to the earliest stages
    (1000 steps over 3 stages: 334, 333, 333). ERNIE 2.0 (Sun et al. 2020) only says that the
    framework allocates each task's N iterations to its stages automatically; equal shares is the
    allocation that assumes nothing about which stage matters more."""
    return apportion(budget, [1] * stages)


@register_allocation("front", summary="shares s:s-1:...:1 over a task's s stages, most in the stage "
                     "that introduces it")
def front(budget: int, stages: int) -> list[int]:
    """Linearly decreasing shares s : s-1 : ... : 1 over a task's s stages (1000 steps over 3
    stages: 500, 333, 167): a task is trained most in the stage that introduces it, when it still
    has to be learnt, and less in later stages, where it is mostly rehearsed so it is not forgotten."""
    return apportion(budget, list(range(stages, 0, -1)))
