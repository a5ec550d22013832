"""PCGrad: project each task's gradient off the gradients it conflicts with (Yu et al. 2020)."""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import GradientWeighting, StepContext, register


@register
class PCGrad(GradientWeighting):
    """Yu, Kumar, Gupta, Levine, Hausman & Finn 2020, "Gradient Surgery for Multi-Task Learning"
    (NeurIPS), Algorithm 1.

    For each task i, and each other task j in random order, if g_i . g_j < 0 (they conflict) the
    projection of g_i onto g_j is removed from it:

        g_i <- g_i - (g_i . g_j / ||g_j||^2) g_j,

    always against the original g_j. The shared parameters move along sum_i g_i (projected);
    task-specific parameters along their own gradients (weight 1). The random order (which only
    matters for three or more tasks) comes from the step's seeded generator, so a resumed run
    projects as the uninterrupted one did.
    """

    name = "pcgrad"
    summary = "each task's gradient projected off those it conflicts with (Yu et al. 2020)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        projected = gradients.clone()
        squared_norms = (gradients * gradients).sum(1)
        for i in range(len(gradients)):
            for j in context.rng.permutation(len(gradients)).tolist():
                if j == i or squared_norms[j] == 0:
                    continue
                dot = projected[i] @ gradients[j]
                if dot < 0:
                    projected[i] -= dot / squared_norms[j] * gradients[j]
        return projected.sum(0), dict.fromkeys(losses, 1.0)
