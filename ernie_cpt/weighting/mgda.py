"""MGDA: the minimum-norm convex combination of the task gradients (Sener & Koltun 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ernie_cpt.options import option
from ernie_cpt.weighting.base import GradientWeighting, StepContext, register

MAX_ITERATIONS = 250
TOLERANCE = 1e-6


@dataclass
class MGDAOptions:
    """Loss weighting mgda"""

    mgda_normalization: str = option("none", "mgda: how each task's gradient is normalised before the min-norm "
                                     "weights are solved: none (the paper), l2, loss, loss+ (loss times l2 norm)",
                                     choices=("none", "l2", "loss", "loss+"))


def min_norm_on_segment(aa: float, ab: float, bb: float) -> float:
    """The gamma in [0, 1] minimising ||gamma a + (1 - gamma) b||^2, from the dot products
    a.a, a.b and b.b (Sener & Koltun 2018, Algorithm 1)."""
    if ab >= aa:
        return 1.0
    if ab >= bb:
        return 0.0
    return (bb - ab) / (aa + bb - 2 * ab)


def min_norm_weights(gram: np.ndarray) -> np.ndarray:
    """The weights (on the simplex) of the minimum-norm point in the convex hull of K vectors, from
    their Gram matrix: Frank-Wolfe with the exact line search of Algorithm 1 (Sener & Koltun 2018,
    Algorithm 2), from the best pair's solution as in the authors' solver."""
    k = len(gram)
    weights = np.zeros(k)
    if k == 1:
        return np.ones(1)
    best = None
    for i in range(k):  # start at the best two-vector solution
        for j in range(i + 1, k):
            gamma = min_norm_on_segment(gram[i, i], gram[i, j], gram[j, j])
            norm = gamma**2 * gram[i, i] + 2 * gamma * (1 - gamma) * gram[i, j] + (1 - gamma) ** 2 * gram[j, j]
            if best is None or norm < best[0]:
                best = (norm, i, j, gamma)
    assert best is not None  # k >= 2 gives one pair at least
    _, i, j, gamma = best
    weights[i], weights[j] = gamma, 1 - gamma
    for _ in range(MAX_ITERATIONS):
        toward = int(np.argmin(gram @ weights))  # the vertex that most decreases the norm
        vertex = np.zeros(k)
        vertex[toward] = 1.0
        # Line search between the current point (w) and the vertex (e_t).
        ww, we, ee = weights @ gram @ weights, (gram @ weights)[toward], gram[toward, toward]
        gamma = min_norm_on_segment(ww, we, ee)
        updated = gamma * weights + (1 - gamma) * vertex
        if np.abs(updated - weights).sum() < TOLERANCE:
            return updated
        weights = updated
    return weights


@register
class MGDA(GradientWeighting):
    """Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS): MGDA,
    the multiple-gradient descent algorithm (Désidéri 2012), solved by Frank-Wolfe.

    The weights alpha (on the simplex) of the minimum-norm point of the convex hull of the task
    gradients, min ||sum_i alpha_i g_i||^2, give a direction that decreases every task's loss
    (or 0 at a Pareto-stationary point). The shared parameters move along K sum_i alpha_i g_i and
    every task's specific parameters get weight K alpha_i, as in the authors' implementation
    (K scales the weights to sum to K, like the sum of the losses).

    The paper's MGDA-UB takes the gradients with respect to the shared representation of one
    input batch instead of the shared parameters (an upper bound that costs one backward pass).
    Here every task trains on its own batch, so the tasks have no common representation: the
    gradients of the shared parameters are used, the exact problem that MGDA-UB bounds.
    ``mgda_normalization`` optionally normalises each gradient before the weights are solved (by
    its l2 norm, its loss, or both: the paper's code's "l2", "loss", "loss+"); the weights then
    apply to the raw gradients, as in the authors' code.
    """

    name = "mgda"
    options_class = MGDAOptions
    options: MGDAOptions
    summary = "the minimum-norm convex combination of the gradients (Sener & Koltun 2018)"

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        scales = self._normalizers(gradients, list(losses.values()))
        normalised = gradients.double() / torch.as_tensor(scales, dtype=torch.float64, device=gradients.device)[:, None]
        gram = (normalised @ normalised.T).cpu().numpy()
        alpha = min_norm_weights(gram) * len(gradients)
        weights = torch.as_tensor(alpha, dtype=gradients.dtype, device=gradients.device)
        return weights @ gradients, dict(zip(losses, alpha.tolist()))

    def _normalizers(self, gradients: torch.Tensor, losses: list[float]) -> np.ndarray:
        norms = gradients.double().norm(dim=1).cpu().numpy()
        method = self.options.mgda_normalization
        scales = {"none": np.ones(len(losses)), "l2": norms, "loss": np.array(losses),
                  "loss+": np.array(losses) * norms}[method]
        return np.where(scales > 0, scales, 1.0)
