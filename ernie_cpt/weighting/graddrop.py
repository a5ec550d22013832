"""GradDrop: per parameter, only the gradients of one sign, drawn by their sign purity (Chen et al. 2020)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import GradientWeighting, StepContext, register
from ernie_cpt.weighting.torchjd_aggregator import seeded


@dataclass
class GradDropOptions:
    """Loss weighting graddrop"""

    graddrop_leak: float = option(0.0, "graddrop: the fraction of every task's gradient that always passes (the "
                                  "paper's leak l_i, the same for every task; 0 = pure GradDrop, 1 = the plain sum)",
                                  valid=Range(0, 1))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class GradDrop(GradientWeighting):
    """Chen, Ngiam, Huang, Luong, Kretzschmar, Chai & Anguelov 2020, "Just Pick a Sign: Optimizing
    Deep Multitask Models with Gradient Sign Dropout" (NeurIPS), Algorithm 1 lines 10-15, through
    torchjd's ``GradDrop``.

    For every coordinate p of the (K, P) ``gradients``, the positive sign purity

        P_p = (1 + sum_i g_ip / sum_i |g_ip|) / 2   in [0, 1]

    is compared with one uniform draw U_p: where P_p > U_p only the positive task gradients pass,
    else only the negative ones; task i's gradient then passes as l_i + (1 - l_i) m_ip of itself
    (l = ``graddrop_leak``, m the mask), and the update is the sum over tasks, shape (P,). The
    draws come from torch's generator seeded by the step's ``context.rng`` (the same on every
    process, and again on resume). The paper applies the mask to the gradients of one shared
    activation layer, summed over the batch; here, as in torchjd and LibMTL, it is applied to the
    gradients of the shared parameters (the trainer has no common activation: each task has its
    own batch).
    """

    name = "graddrop"
    options_class = GradDropOptions
    options: GradDropOptions
    summary = "per parameter, only the gradients of one sign, drawn by their sign purity (Chen et al. 2020)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import GradDrop as GradDropAggregator

        leak = torch.full((len(gradients),), self.options.graddrop_leak, dtype=gradients.dtype,
                          device=gradients.device)
        with seeded(context.rng, gradients.device):
            update = GradDropAggregator(leak=leak)(gradients)
        return update, dict.fromkeys(losses, 1.0)
