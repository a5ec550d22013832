"""ConFIG: the update whose angle to every task's gradient is the same (Liu et al. 2024)."""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import GradientWeighting, StepContext, register


@register
class ConFIG(GradientWeighting):
    """Liu, Chu & Thuerey 2024, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks" (arXiv 2408.11104; ICLR 2025), equation 2, through torchjd's ``ConFIG``.

    With u_i = g_i / ||g_i|| the unit gradients (rows of the (K, P) ``gradients``; a zero gradient
    gives a zero row) and U the (K, P) matrix of them, the direction

        v = pinv(U) 1 / ||pinv(U) 1||

    has the same cosine with every task's gradient (U v is a multiple of 1), so it conflicts with
    none, and the update is d = (sum_i g_i . v) v, shape (P,): as long as the sum of the gradients'
    projections on v (the scale of the sum of the losses, as the task-specific parameters have with
    weight 1). The pseudo-inverse is taken of the (K, P) matrix itself, in the gradients' dtype.
    """

    name = "config"
    summary = "the update at an equal angle to every gradient, as long as their projections' sum (Liu et al. 2024)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import ConFIG as ConFIGAggregator

        return ConFIGAggregator()(gradients), dict.fromkeys(losses, 1.0)
