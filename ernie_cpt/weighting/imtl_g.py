"""IMTL-G: the update whose projection on every task's unit gradient is the same (Liu et al. 2021)."""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import GradientWeighting, StepContext, register
from ernie_cpt.weighting.torchjd_aggregator import combine, gramian


@register
class IMTLG(GradientWeighting):
    """Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang 2021, "Towards Impartial Multi-task Learning"
    (ICLR), IMTL-G (section 3.2), through torchjd's ``IMTLGWeighting`` (the closed form of Quinton
    & Rey 2024, which also accepts linearly dependent gradients).

    The update d = sum_i alpha_i g_i (g_i the rows of the (K, P) ``gradients``) has equal
    projections on every unit gradient u_i = g_i / ||g_i||: d . u_i = d . u_j for all i, j. With G
    the Gramian and n its diagonal's square roots (the gradients' norms), alpha = pinv(G) n / 1^T
    pinv(G) n, the paper's solution with sum_i alpha_i = 1 (alpha = 0 where that sum is 0). The
    update is K d, shape (P,), the scale of the sum of the losses that the task-specific parameters
    (weight 1) have; the paper's IMTL-L loss scaling is not part of IMTL-G.
    """

    name = "imtl_g"
    summary = "the update with equal projections on every unit gradient (Liu et al. 2021)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import IMTLGWeighting

        return combine(len(gradients) * IMTLGWeighting()(gramian(gradients)), gradients), dict.fromkeys(losses, 1.0)
