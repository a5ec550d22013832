"""Equal weighting: the plain sum of the losses."""

from __future__ import annotations

import torch
from torch import nn

from ernie_cpt.weighting.base import LossWeighting, register


@register
class Equal(LossWeighting):
    """Every task present has weight 1: total = sum_i L_i, the usual multi-task objective
    (Caruana 1997, "Multitask Learning", Machine Learning 28)."""

    name = "equal"

    def weigh(self, losses: dict[str, torch.Tensor], shared: nn.Parameter,
              kpis: dict[str, float]) -> dict[str, torch.Tensor | float]:
        return dict.fromkeys(losses, 1.0)
