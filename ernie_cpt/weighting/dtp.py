"""Dynamic Task Prioritization: focal weights from each task's KPI (Guo et al. 2018)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ernie_cpt.weighting.base import LossWeighting, WeightingOptions, register

KPI_EPSILON = 1e-6  # kappa is kept in [eps, 1 - eps] so that log(kappa) and the weight stay finite


@register
class DynamicTaskPrioritization(LossWeighting):
    """Guo, Haque, Huang, Yeung & Fei-Fei 2018, "Dynamic Task Prioritization for Multitask
    Learning" (ECCV), task-level prioritization with the focal-loss weight:

        kappa_i <- m * kappa_i + (1 - m) * KPI_i        w_i = -(1 - kappa_i)^gamma * log(kappa_i)

    where KPI_i is the task's accuracy on this step's batch, kappa_i its moving average (momentum
    m = ``dtp_momentum``, initialised with the task's first KPI, updated before weighing) and
    gamma = ``dtp_gamma``. A task with a lower KPI (harder) gets a higher weight. The weights are
    constants (no gradient flows through them) and are not normalised.
    """

    name = "dtp"

    def __init__(self, tasks: list[str], options: WeightingOptions) -> None:
        super().__init__(tasks, options)
        self.kpi_averages: dict[str, float] = {}

    def weigh(self, losses: dict[str, torch.Tensor], shared: nn.Parameter,
              kpis: dict[str, float]) -> dict[str, torch.Tensor | float]:
        momentum, gamma = self.options.dtp_momentum, self.options.dtp_gamma
        weights = {}
        for task in losses:
            previous = self.kpi_averages.get(task)
            kappa = kpis[task] if previous is None else momentum * previous + (1 - momentum) * kpis[task]
            self.kpi_averages[task] = kappa
            kappa = min(max(kappa, KPI_EPSILON), 1 - KPI_EPSILON)
            weights[task] = -((1 - kappa) ** gamma) * math.log(kappa)
        return weights

    def get_extra_state(self) -> dict[str, Any]:
        return {"kpi_averages": dict(self.kpi_averages)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kpi_averages = dict(state["kpi_averages"])
