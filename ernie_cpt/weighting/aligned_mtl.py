"""Aligned-MTL: the task gradients made orthogonal and equally large before they are summed (Senushkin et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ernie_cpt.options import option
from ernie_cpt.weighting.base import GradientWeighting, StepContext, register
from ernie_cpt.weighting.torchjd_aggregator import combine, gramian


@dataclass
class AlignedMTLOptions:
    """Loss weighting aligned_mtl"""

    aligned_mtl_scale: str = option("min", "aligned_mtl: the eigenvalue of the gradients' Gramian whose root sets the "
                                    "aligned gradients' length: min (the paper's Algorithm 1), median, or rmse (the "
                                    "mean, as the authors' code does)", choices=("min", "median", "rmse"))


@register
class AlignedMTL(GradientWeighting):
    """Senushkin, Patakin, Kuznetsov & Konushin 2023, "Independent Component Alignment for Multi-Task
    Learning" (CVPR), Algorithm 1, through torchjd's ``AlignedMTLWeighting``.

    With G = J J^T = V diag(lambda) V^T the Gramian of the (K, P) gradients J (of rank R, its R
    positive eigenvalues kept), the balance transformation

        B = sqrt(lambda_min) V_R diag(lambda_R)^(-1/2) V_R^T   (K x K)

    makes the rows of B J orthogonal with equal norms sqrt(lambda_min) (the condition number of the
    linear system is 1, the paper's stability criterion), and the update is their sum,
    d = 1^T B J, shape (P,): K x the paper's mean, the scale of the sum of the losses that the
    task-specific parameters (weight 1) have. ``aligned_mtl_scale`` picks the eigenvalue that sets
    the length (``min``, the paper's; ``median``; ``rmse``, the authors' code's mean). All zero
    gradients give a zero update.
    """

    name = "aligned_mtl"
    options_class = AlignedMTLOptions
    options: AlignedMTLOptions
    summary = "the gradients made orthogonal and equally long, then summed (Senushkin et al. 2023)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import AlignedMTLWeighting

        weighting = AlignedMTLWeighting(scale_mode=self.options.aligned_mtl_scale)  # type: ignore[arg-type]
        return combine(len(gradients) * weighting(gramian(gradients)), gradients), dict.fromkeys(losses, 1.0)
