"""A schedule is a list of stages; a stage is a set of tasks, each with its step budget."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stage:
    """Tasks trained together in one stage, with the optimizer steps each task gets."""

    steps: dict[str, int]

    @property
    def total_steps(self) -> int:
        return sum(self.steps.values())


def split_budget(total_steps: int, tasks: list[str]) -> dict[str, int]:
    """``total_steps`` shared as evenly as possible; earlier tasks get the remainder."""
    share, extra = divmod(total_steps, len(tasks))
    return {task: share + (i < extra) for i, task in enumerate(tasks)}


def pick_task(remaining: dict[str, int], rng: np.random.Generator) -> str:
    """A task drawn with probability proportional to its remaining budget, so that every
    budget is met exactly when the stage ends."""
    tasks = [t for t, n in remaining.items() if n > 0]
    weights = np.array([remaining[t] for t in tasks], dtype=np.float64)
    return tasks[rng.choice(len(tasks), p=weights / weights.sum())]
