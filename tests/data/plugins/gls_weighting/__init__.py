"""A plugin loss weighting: the geometric loss strategy (GLS).

Chennupati, Sistu, Yogamani & Rawashdeh 2019, "MultiNet++: Multi-Stream Feature Aggregation and
Geometric Loss Strategy for Multi-Task Learning" (CVPR Workshops): the loss is the geometric mean of
the task losses, (prod_i L_i)^(1/n). As a weighted sum: w_i = G / (n L_i), G the geometric mean,
held constant, gives the same value and the same gradient (dG/dL_i = G / (n L_i)).
"""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import LossWeighting, StepContext, register


@register
class GeometricLossStrategy(LossWeighting):
    name = "gls"
    summary = "the geometric mean of the task losses (Chennupati et al. 2019)"

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        stacked = torch.stack(list(losses.values())).detach()
        mean = stacked.log().mean().exp()
        return {task: mean / (len(losses) * loss.detach()) for task, loss in losses.items()}
