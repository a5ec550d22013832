"""GradVac: raise each pair of tasks' gradient similarity to its running average (Wang et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import GradientWeighting, StepContext, register
from ernie_cpt.weighting.torchjd_aggregator import combine, gramian, seeded


@dataclass
class GradVacOptions:
    """Loss weighting gradvac"""

    gradvac_beta: float = option(0.5, "gradvac: beta, the weight of each step's cosine similarity in the running "
                                 "average that sets the target similarity of each pair of tasks (torchjd's and "
                                 "LibMTL's default; the paper leaves it to the experiment)", valid=Range(0, 1))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class GradVac(GradientWeighting):
    """Wang, Tsvetkov, Firat & Cao 2021, "Gradient Vaccine: Investigating and Improving Multi-task
    Optimization in Massively Multilingual Models" (ICLR), Algorithm 1, through torchjd's
    ``GradVacWeighting``.

    For each task i, and each other task j in random order, with phi_ij the cosine of (the already
    corrected) g_i and g_j, rows of the (K, P) ``gradients``, and phi^_ij its target: if
    phi_ij < phi^_ij, g_i gains

        ||g_i|| (phi^_ij sqrt(1 - phi_ij^2) - phi_ij sqrt(1 - phi^_ij^2)) / (||g_j|| sqrt(1 - phi^_ij^2)) g_j,

    which raises their cosine to phi^_ij; then phi^_ij <- (1 - beta) phi^_ij + beta phi_ij (beta =
    ``gradvac_beta``). The update is the sum of the corrected gradients, shape (P,); task-specific
    parameters follow their own gradients (weight 1). The targets of every pair of this weighting's
    tasks, a (tasks, tasks) float64 buffer starting at 0 (where GradVac is PCGrad), are in the
    state_dict, so a resumed run continues from them; a step with fewer tasks updates only their
    pairs. The order comes from torch's generator seeded by the step's ``context.rng``. The paper
    also applies GradVac per layer or per parameter group; here the shared parameters form one group.
    """

    name = "gradvac"
    options_class = GradVacOptions
    options: GradVacOptions
    summary = "each pair's gradient similarity raised to its running average (Wang et al. 2021)"

    def __init__(self, tasks: list[str], options: GradVacOptions | None = None) -> None:
        super().__init__(tasks, options)
        self.register_buffer("similarity_targets", torch.zeros(len(self.tasks), len(self.tasks), dtype=torch.float64))

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        # torchjd loads scipy (and cvxpy where installed): when a step needs it
        from torchjd.aggregation import GradVacWeighting

        targets = self.get_buffer("similarity_targets")
        index = torch.tensor([self.tasks.index(task) for task in losses], device=targets.device)
        weighting = GradVacWeighting(beta=self.options.gradvac_beta)
        # torchjd keeps phi^ of the tasks of a call in its buffer "_phi_t", keyed by (tasks, dtype): ours go there.
        weighting.register_buffer("_phi_t", targets[index[:, None], index].cpu())
        weighting._state_key = (len(index), torch.float64)
        with seeded(context.rng, gradients.device):
            weights = weighting(gramian(gradients))
        targets[index[:, None], index] = weighting.get_buffer("_phi_t").to(targets.device)
        return combine(weights, gradients), dict.fromkeys(losses, 1.0)
