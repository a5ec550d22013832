"""Our PCGrad, MGDA, CAGrad and Nash-MTL held against torchjd's on the same random float64 gradient matrices
(2 to 4 tasks, 20 parameters, standard normal entries: conflicts are common).

PCGrad is torchjd's (``ernie_cpt.weighting.pcgrad``); it is held here against the paper's Algorithm 1 as
this project wrote it before, given the same random orders. MGDA, CAGrad and Nash-MTL are ours; each
docstring says how and why they differ from torchjd's. Measured on 200 matrices (torchjd 0.18.0): PCGrad
equal to a relative 5e-16; MGDA's direction to a cosine of 1 - 2.9e-3, ours always at least as near the
minimum-norm point (nearer in 133 of 200); CAGrad's direction to 1 - 6.2e-9, ours K / (1 + c^2) times as
long; Nash-MTL's direction to 1 - 3.3e-16, ours ||G||_F^(1/2) times as long. The solver-based methods are
checked on 40 matrices here (cvxpy's solvers take a tenth of a second a matrix).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
from torchjd.aggregation import CAGradWeighting, MGDAWeighting, NashMTL, PCGradWeighting

from ernie_cpt.weighting import StepContext, build_weighting

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _matrices(count: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(2 + n % 3, 20, generator=generator, dtype=torch.float64) for n in range(count)]


def _ours(name: str, gradients: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
    losses = {f"t{i}": 1.0 for i in range(len(gradients))}
    direction, weights = build_weighting(name, list(losses)).direction(gradients, losses, StepContext())
    return direction, np.array(list(weights.values()))


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _pcgrad_algorithm_1(gradients: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Yu et al. 2020, Algorithm 1, in the parameter space: each g_i projected off every original g_j it
    conflicts with, the j in a fresh random order for each i."""
    projected = gradients.clone()
    for i in range(len(gradients)):
        for j in rng.permutation(len(gradients)).tolist():
            dot = projected[i] @ gradients[j]
            if j != i and dot < 0:
                projected[i] -= dot / (gradients[j] @ gradients[j]) * gradients[j]
    return projected.sum(0)


def test_pcgrad_is_algorithm_1_given_the_same_orders():
    for n, gradients in enumerate(_matrices(200)):
        reference = _pcgrad_algorithm_1(gradients, np.random.default_rng(n))
        rng = np.random.default_rng(n)  # torchjd draws one order per task with torch.randperm: the same ones
        with mock.patch("torch.randperm", lambda k, rng=rng: torch.as_tensor(rng.permutation(k))):
            weights = PCGradWeighting()(gradients @ gradients.T)
        assert torch.allclose(weights @ gradients, reference, rtol=1e-12, atol=1e-12)


def test_mgda_agrees_in_direction_and_ours_is_at_least_as_near_the_min_norm_point():
    nearer = 0
    for gradients in _matrices(40):
        ours, _ = _ours("mgda", gradients)
        theirs = MGDAWeighting()(gradients @ gradients.T) @ gradients
        assert _cosine(ours, theirs) > 1 - 5e-3
        mine, their_norm = (ours / len(gradients)).norm().item(), theirs.norm().item()  # ours sums to K
        assert mine <= their_norm * (1 + 1e-12)
        nearer += mine < their_norm * (1 - 1e-9)
    assert nearer > 10  # torchjd stops its Frank-Wolfe at a step of 1e-3


def test_cagrad_agrees_in_direction_and_ours_is_k_over_1_plus_c_squared_times_longer():
    c = 0.4  # ours' default
    for gradients in _matrices(40):
        ours, _ = _ours("cagrad", gradients)
        theirs = CAGradWeighting(c=c)(gradients @ gradients.T) @ gradients
        assert _cosine(ours, theirs) > 1 - 1e-7
        assert (ours.norm() / theirs.norm()).item() == pytest.approx(len(gradients) / (1 + c**2), rel=1e-4)


def test_nash_mtl_agrees_in_direction_and_ours_scales_the_weights_by_the_gramians_norm():
    for gradients in _matrices(40):
        ours, weights = _ours("nash_mtl", gradients)
        theirs = NashMTL(n_tasks=len(gradients), max_norm=0.0).weighting(gradients)  # fresh, no clipping
        assert _cosine(ours, theirs @ gradients) > 1 - 1e-9
        frobenius = torch.linalg.norm(gradients @ gradients.T).item()
        assert weights == pytest.approx(theirs.numpy() * frobenius**0.5, rel=1e-4)
