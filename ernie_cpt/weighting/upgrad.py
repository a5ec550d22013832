"""UPGrad: each task's gradient projected onto the dual cone of all of them, then averaged (Quinton & Rey 2024)."""

from __future__ import annotations

import torch

from ernie_cpt.weighting.base import GradientWeighting, StepContext, register
from ernie_cpt.weighting.torchjd_aggregator import combine, gramian


@register
class UPGrad(GradientWeighting):
    """Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization" (arXiv 2406.16232),
    section 3: the unconflicting projection of gradients, through torchjd's ``UPGradWeighting``.

    Each task's gradient g_i (row i of the (K, P) ``gradients``) is projected onto the dual cone
    {x : g_j . x >= 0 for every j} of all the tasks' gradients, and the projections are summed:

        d = sum_i pi_J(g_i),   pi_J(g_i) = J^T w_i,   w_i = argmin_{v >= e_i} v^T G v,

    G = J J^T the Gramian (each projection is a quadratic program in K variables, solved by quadprog).
    d conflicts with no task (g_j . d >= 0 for all j) and is the sum of the gradients when none
    conflict. The paper averages the projections; the sum (K x the paper's d) keeps the scale of
    the sum of the losses that the other weightings and the task-specific parameters (weight 1, as
    torchjd's ``mtl_backward`` gives them) use. Returns d, shape (P,), in the gradients' dtype.
    """

    name = "upgrad"
    summary = "each gradient projected onto the dual cone of all of them, summed (Quinton & Rey 2024)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import UPGradWeighting

        return combine(len(gradients) * UPGradWeighting()(gramian(gradients)), gradients), dict.fromkeys(losses, 1.0)
