"""CAGrad: the update closest to the average gradient that raises the worst task's improvement (Liu et al. 2021)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import GradientWeighting, StepContext, register


@dataclass
class CAGradOptions:
    """Loss weighting cagrad"""

    cagrad_c: float = option(0.4, "cagrad: c, how far the update may move from the average gradient to raise the "
                             "worst task's improvement (0 = the average gradient)", valid=Range(0, 10))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class CAGrad(GradientWeighting):
    """Liu, Liu, Jin, Stone & Liu 2021, "Conflict-Averse Gradient Descent for Multi-task Learning"
    (NeurIPS), Algorithm 1.

    With g_0 = mean_i g_i over the K tasks and phi = c^2 ||g_0||^2 (c = ``cagrad_c``), the dual

        min over w in the simplex of  g_w . g_0 + sqrt(phi) ||g_w||,   g_w = sum_i w_i g_i,

    is solved over the K x K Gram matrix (scipy's SLSQP, from uniform w), and the update is

        d = (g_0 + sqrt(phi) / ||g_w|| g_w) / (1 + c^2) x K,

    the maximiser of the worst task's improvement min_i g_i . d within distance sqrt(phi) of g_0,
    rescaled by 1/(1 + c^2) as the authors' code does, and by K to match the sum of the losses
    that the other weightings (and the task-specific parameters, weight 1) use. c = 0 gives the
    sum of the gradients.
    """

    name = "cagrad"
    options_class = CAGradOptions
    options: CAGradOptions
    summary = "the update near the average gradient that raises the worst task's improvement (Liu et al. 2021)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        from scipy.optimize import minimize  # scipy loads in a second: when a step needs it

        k, c = len(gradients), self.options.cagrad_c
        gram = (gradients.double() @ gradients.double().T).cpu().numpy()
        mean_norm = float(np.sqrt(max(gram.mean(), 0.0)))  # ||g_0||
        radius = c * mean_norm  # sqrt(phi)
        uniform = np.full(k, 1.0 / k)

        def dual(w: np.ndarray) -> float:
            return float(w @ gram @ uniform + radius * np.sqrt(max(w @ gram @ w, 0.0) + 1e-12))

        solution = minimize(dual, uniform, bounds=[(0.0, 1.0)] * k,
                            constraints={"type": "eq", "fun": lambda w: 1.0 - w.sum()}, method="SLSQP",
                            options={"ftol": 1e-12, "maxiter": 200})
        w = torch.as_tensor(solution.x, dtype=gradients.dtype, device=gradients.device)
        mean = gradients.mean(0)
        combined = w @ gradients
        norm = combined.norm()
        step = mean + (radius / norm) * combined if norm > 0 else mean
        return step * (k / (1 + c**2)), dict.fromkeys(losses, 1.0)
