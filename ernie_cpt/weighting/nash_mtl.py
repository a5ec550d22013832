"""Nash-MTL: the Nash bargaining solution among the tasks' gradients (Navon et al. 2022)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ernie_cpt.weighting.base import GradientWeighting, StepContext, register


def bargaining_weights(gram: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """The alpha > 0 with alpha_i (G alpha)_i = 1 for every i, G the K x K Gram matrix of the task
    gradients: the Nash bargaining solution's weights (Navon et al. 2022, Theorem 5.1), found by
    scipy's bounded least squares from ``start`` (default 1 / sqrt(diag G), the answer when the
    gradients are orthogonal)."""
    from scipy.optimize import least_squares  # scipy loads in a second: when a step needs it

    diagonal = np.clip(np.diag(gram), 1e-20, None)
    x0 = 1.0 / np.sqrt(diagonal) if start is None else np.clip(start, 1e-12, None)
    solution = least_squares(lambda alpha: alpha * (gram @ alpha) - 1.0, x0, bounds=(1e-12, np.inf),
                             xtol=1e-12, ftol=1e-12, gtol=1e-12)
    return solution.x


@register
class NashMTL(GradientWeighting):
    """Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya 2022, "Multi-Task Learning as a
    Bargaining Game" (ICML).

    The update d = sum_i alpha_i g_i is the Nash bargaining solution of the tasks, whose utilities
    are their directional derivatives g_i . d in a ball: it maximises sum_i log(g_i . d), and its
    weights solve G^T G alpha = 1 / alpha (Theorem 5.1). As in the authors' code, the Gram matrix
    is first divided by its Frobenius norm (so the weights do not depend on the gradients' scale)
    and the same weights alpha_i scale each task's loss for its task-specific parameters. The
    paper solves the equation by a sequence of convex problems (CCP, cvxpy); here scipy's bounded
    least squares solves it directly, warm-started from the previous step's weights (kept in the
    state, so a resumed run solves from the same start). Without a solution (gradients that
    exactly oppose each other: no direction improves every task) it returns the least-squares
    best fit.
    """

    name = "nash_mtl"
    summary = "the Nash bargaining solution among the gradients (Navon et al. 2022)"

    def __init__(self, tasks: list[str], options: None = None) -> None:
        super().__init__(tasks, options)
        self.previous: dict[str, float] = {}

    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        gram = (gradients.double() @ gradients.double().T).cpu().numpy()
        scale = np.linalg.norm(gram)
        if scale == 0:  # no gradient at all: nothing to bargain over
            return gradients.sum(0), dict.fromkeys(losses, 1.0)
        start = np.array([self.previous[t] for t in losses]) if all(t in self.previous for t in losses) else None
        alpha = bargaining_weights(gram / scale, start)
        self.previous.update(zip(losses, alpha.tolist()))
        weights = torch.as_tensor(alpha, dtype=gradients.dtype, device=gradients.device)
        return weights @ gradients, dict(zip(losses, alpha.tolist()))

    def get_extra_state(self) -> dict[str, Any]:
        return {"previous": dict(self.previous)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.previous = dict(state["previous"])
