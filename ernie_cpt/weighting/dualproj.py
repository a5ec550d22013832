"""DualProj: the average gradient projected onto the dual cone of the task gradients (Quinton & Rey 2024)."""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import GradientWeighting, StepContext, register
from ernie_cpt.weighting.torchjd_aggregator import combine, gramian


@register
class DualProj(GradientWeighting):
    """Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization" (arXiv 2406.16232),
    through torchjd's ``DualProjWeighting``: the projection of Lopez-Paz & Ranzato 2017 (GEM,
    NeurIPS, equation 11) applied to the tasks' gradients.

    The sum of the K gradients (rows of the (K, P) ``gradients``) is projected onto their dual cone
    {x : g_j . x >= 0 for every j}:

        d = J^T w,   w = argmin_{v >= 1} v^T G v   (G = J J^T, one quadratic program in K variables).

    d is the nearest vector to the sum that conflicts with no task; it is the sum itself when that
    conflicts with none. The paper projects the mean; the sum (K x its d) keeps the scale of the sum
    of the losses, as the task-specific parameters (weight 1) have. Returns d, shape (P,).
    """

    name = "dualproj"
    summary = "the sum of the gradients projected onto their dual cone (Quinton & Rey 2024)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import DualProjWeighting

        weights = len(gradients) * DualProjWeighting()(gramian(gradients))
        return combine(weights, gradients), dict.fromkeys(losses, 1.0)
