"""Equal weighting: the plain sum of the losses."""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import LossWeighting, StepContext, register


@register
class Equal(LossWeighting):
    """Every task present has weight 1: total = sum_i L_i, the usual multi-task objective
    (Caruana 1997, "Multitask Learning", Machine Learning 28)."""

    name = "equal"
    summary = "the plain sum of the losses (Caruana 1997)"

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        return dict.fromkeys(losses, 1.0)
