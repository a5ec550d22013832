"""Dynamic Task Prioritization: focal weights from each task's KPI (Guo et al. 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import LossWeighting, StepContext, register

KPI_EPSILON = 1e-6  # kappa is kept in [eps, 1 - eps] so that log(kappa) and the weight stay finite


@dataclass
class DTPOptions:
    """Loss weighting dtp"""

    dtp_gamma: float = option(2.0, "dtp: focusing exponent gamma of the focal weights", valid=Range(0, 10))
    dtp_momentum: float = option(0.9, "dtp: momentum of the moving average of each task's KPI (accuracy)",
                                 valid=Range(0, 1, high_open=True))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class DynamicTaskPrioritization(LossWeighting):
    """Guo, Haque, Huang, Yeung & Fei-Fei 2018, "Dynamic Task Prioritization for Multitask
    Learning" (ECCV), task-level prioritization with the focal-loss weight:

        kappa_i <- m * kappa_i + (1 - m) * KPI_i        w_i = -(1 - kappa_i)^gamma * log(kappa_i)

    where KPI_i is the task's accuracy on this step's batch, kappa_i its moving average (momentum
    m = ``dtp_momentum``, initialised with the task's first KPI, updated before weighing) and
    gamma = ``dtp_gamma``. A task with a lower KPI (harder) gets a higher weight. The weights are
    constants (no gradient flows through them) and are not normalised. It needs every task to have
    an accuracy (``needs_kpis``): not a regression set's.
    """

    name = "dtp"
    options_class = DTPOptions
    options: DTPOptions
    needs_kpis = True
    summary = "focal weights from each task's accuracy, harder tasks first (Guo et al. 2018)"

    def __init__(self, tasks: list[str], options: DTPOptions | None = None) -> None:
        super().__init__(tasks, options)
        self.kpi_averages: dict[str, float] = {}

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        momentum, gamma = self.options.dtp_momentum, self.options.dtp_gamma
        weights = {}
        for task in losses:
            previous = self.kpi_averages.get(task)
            kpi = context.kpis[task]
            kappa = kpi if previous is None else momentum * previous + (1 - momentum) * kpi
            self.kpi_averages[task] = kappa
            kappa = min(max(kappa, KPI_EPSILON), 1 - KPI_EPSILON)
            weights[task] = -((1 - kappa) ** gamma) * math.log(kappa)
        return weights

    def get_extra_state(self) -> dict[str, Any]:
        return {"kpi_averages": dict(self.kpi_averages)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kpi_averages = dict(state["kpi_averages"])
