"""Uncertainty weighting: a learned log-variance per task (Kendall, Gal & Cipolla 2018)."""

from __future__ import annotations

import torch
from torch import nn

from ernie_cpt.weighting.base import LossWeighting, StepContext, register


@register
class Uncertainty(LossWeighting):
    """Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty to Weigh Losses for
    Scene Geometry and Semantics" (CVPR).

    Each task has a learned s_i = log sigma_i^2 (initialised to 0), trained with the model by the
    trainer's optimizer, and

        total = sum_i exp(-s_i) * L_i + s_i,

    with no 0.5 factors: the paper's objective 1/(2 sigma^2) L + log sigma times 2,
    which LibMTL implements unscaled as L / (2 exp(s)) + s / 2; the factor scales the total, not the
    minimum. For a fixed L_i the minimum is at s_i = log L_i, so a task with a larger loss gets a
    lower weight exp(-s_i), which is what ``last_weights`` holds.
    """

    name = "uncertainty"
    summary = "a learned log-variance per task (Kendall et al. 2018)"

    def __init__(self, tasks: list[str], options: None = None) -> None:
        super().__init__(tasks, options)
        self.log_variances = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in self.tasks})

    def combine(self, losses: dict[str, torch.Tensor], context: StepContext) -> torch.Tensor:
        weighted = super().combine(losses, context)
        return weighted + sum(self.log_variances[task] for task in losses)

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        return {task: torch.exp(-self.log_variances[task]) for task in losses}
