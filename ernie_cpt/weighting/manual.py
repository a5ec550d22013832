"""Manual weighting: fixed weights given in the configuration."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

import torch

from ernie_cpt.errors import UserError
from ernie_cpt.options import option
from ernie_cpt.weighting.base import LossWeighting, StepContext, register


@dataclass
class ManualOptions:
    """Loss weighting manual"""

    task_weights: list[str] = option([], "manual: TASK=WEIGHT for each task (pre-task or --task set) to weigh, e.g. "
                                         "capitalization=0.5; tasks not listed get 1.0")


def parse_task_weights(items: list[str], tasks: list[str]) -> dict[str, float]:
    """``TASK=WEIGHT`` strings as a weight per task of ``tasks``; tasks not listed get 1.0."""
    weights = dict.fromkeys(tasks, 1.0)
    given: set[str] = set()
    for item in items:
        task, sep, number = (part.strip() for part in item.partition("="))
        example = f"e.g. --task-weights {tasks[0]}=0.5"
        if not sep or not task:
            raise UserError(f"--task-weights '{item}' is not TASK=WEIGHT; write one TASK=WEIGHT per task, {example}")
        if task not in weights:
            close = difflib.get_close_matches(task, tasks, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(f"--task-weights '{item}': '{task}' is not a task of this run; {hint}"
                            f"write TASK=WEIGHT with TASK one of {', '.join(tasks)}")
        if task in given:
            raise UserError(f"--task-weights gives '{task}' twice; write one TASK=WEIGHT per task")
        try:
            weight = float(number)
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            raise UserError(f"--task-weights '{item}': the weight must be a number >= 0, {example}")
        weights[task] = weight
        given.add(task)
    return weights


@register
class Manual(LossWeighting):
    """Fixed weights: total = sum_i w_i L_i with w_i from ``--task-weights`` (1.0 where not given),
    the hand-tuned weighted sum that adaptive methods such as Kendall et al. 2018 replace."""

    name = "manual"
    options_class = ManualOptions
    options: ManualOptions
    summary = "fixed weights, --task-weights TASK=WEIGHT (1.0 where not given)"

    def __init__(self, tasks: list[str], options: ManualOptions | None = None) -> None:
        super().__init__(tasks, options)
        self.task_weights = parse_task_weights(self.options.task_weights, self.tasks)

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        return {task: self.task_weights[task] for task in losses}
