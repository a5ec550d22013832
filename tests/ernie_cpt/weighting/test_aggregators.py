"""The weightings built on torchjd's aggregators against hand-computed two-task cases.

g1 = (1, 0) and g2 = (-1, 1) conflict (g1 . g2 = -1); their Gramian is G = [[1, -1], [-1, 2]].
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from ernie_cpt.weighting import WEIGHTINGS, StepContext, build_weighting

CONFLICTING = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)
LOSSES = {"a": 1.0, "b": 1.0}
AGGREGATORS = ["upgrad", "dualproj", "aligned_mtl", "config", "imtl_g", "graddrop", "gradvac", "pcgrad"]


def _weighting(name: str, tasks=tuple(LOSSES), **options):
    options_class = WEIGHTINGS.options_class(name)
    return build_weighting(name, list(tasks), options_class(**options) if options_class else None)


def _direction(name: str, gradients: torch.Tensor = CONFLICTING, seed: int = 0, **options) -> torch.Tensor:
    losses = {task: 1.0 for task in "abcd"[:len(gradients)]}
    direction, weights = _weighting(name, losses, **options).combine_gradients(
        gradients, losses, StepContext(rng=np.random.default_rng(seed)))
    assert weights == dict.fromkeys(losses, 1.0)  # task-specific parameters follow their own gradients
    return direction


def test_upgrad_sums_each_gradient_projected_onto_the_dual_cone():
    # pi(g1) = g1 - (g1.g2 / |g2|^2) g2 = (0.5, 0.5) (then g2 . pi(g1) = 0); pi(g2) = g2 + g1 = (0, 1).
    # torchjd regularises the (trace-normalised) Gramian by 1e-4 I before its QP: agreement to 1e-3.
    assert torch.allclose(_direction("upgrad"), torch.tensor([0.5, 1.5], dtype=torch.float64), atol=1e-3)
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(_direction("upgrad", agreeing), agreeing.sum(0), atol=1e-3)


def test_dualproj_projects_the_sum_only_when_it_conflicts():
    # The sum (0, 1) has g1 . s = 0 and g2 . s = 1: it is in the dual cone and is kept.
    assert torch.allclose(_direction("dualproj"), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-6)
    # g1 = (1, 0), g2 = (-2, 1): the sum (-1, 1) has g1 . s = -1 < 0. The nearest vector with g1 . x >= 0 is
    # (0, 1), and g2 . (0, 1) = 1 >= 0. (torchjd's 1e-4 I on the trace-normalised Gramian, whose smaller
    # eigenvalue is 0.028 here, moves the QP's answer by 1.2e-3.)
    steep = torch.tensor([[1.0, 0.0], [-2.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(_direction("dualproj", steep), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=2e-3)


def test_aligned_mtl_sums_the_gradients_made_orthogonal_and_equally_long():
    # G = [[1, -1], [-1, 2]]: det 1, trace 3, so sqrt(G) = (G + I) / sqrt(5) and G^(-1/2) = [[3, 1], [1, 2]] / sqrt(5);
    # lambda_min = (3 - sqrt 5) / 2, sqrt(lambda_min) = (sqrt 5 - 1) / 2. d = sqrt(lambda_min) 1^T G^(-1/2) J
    # = (sqrt 5 - 1) / (2 sqrt 5) (4 g1 + 3 g2) = (sqrt 5 - 1) / (2 sqrt 5) (1, 3).
    expected = (math.sqrt(5) - 1) / (2 * math.sqrt(5)) * torch.tensor([1.0, 3.0], dtype=torch.float64)
    assert torch.allclose(_direction("aligned_mtl"), expected, atol=1e-9)
    # "rmse" scales by the mean eigenvalue, 3/2, instead: sqrt(3/2) / sqrt(lambda_min) times as long.
    rmse = _direction("aligned_mtl", aligned_mtl_scale="rmse")
    assert torch.allclose(rmse, expected * math.sqrt(1.5) / ((math.sqrt(5) - 1) / 2), atol=1e-9)


def test_config_moves_at_an_equal_angle_to_every_gradient():
    # U v = 1 for the unit gradients (1, 0) and (-1, 1)/sqrt 2: v = (1, 1 + sqrt 2), normalised; the length is
    # g1 . v + g2 . v.
    v = torch.tensor([1.0, 1 + math.sqrt(2)], dtype=torch.float64)
    v = v / v.norm()
    expected = (CONFLICTING @ v).sum() * v
    direction = _direction("config")
    assert torch.allclose(direction, expected, atol=1e-9)
    cosines = CONFLICTING @ direction / CONFLICTING.norm(dim=1) / direction.norm()
    assert cosines[0] == pytest.approx(cosines[1].item()) and cosines[0] > 0


def test_imtl_g_gives_equal_projections_on_the_unit_gradients():
    # alpha ~ G^-1 (|g1|, |g2|) = [[2, 1], [1, 1]] (1, sqrt 2) = (2 + sqrt 2, 1 + sqrt 2), summing to 1; d = 2 alpha J.
    alpha = torch.tensor([2 + math.sqrt(2), 1 + math.sqrt(2)], dtype=torch.float64)
    expected = 2 * (alpha / alpha.sum()) @ CONFLICTING
    direction = _direction("imtl_g")
    assert torch.allclose(direction, expected, atol=1e-9)
    projections = CONFLICTING @ direction / CONFLICTING.norm(dim=1)
    assert projections[0] == pytest.approx(projections[1].item())


def test_graddrop_keeps_one_sign_per_coordinate_drawn_by_its_purity():
    # Coordinate 2: both gradients are >= 0 (purity 1), so g2's 1 always passes. Coordinate 1: purity 1/2, so
    # g1's +1 or g2's -1 passes, each about half the time.
    draws = torch.stack([_direction("graddrop", seed=seed) for seed in range(200)])
    assert torch.equal(draws[:, 1], torch.ones(200, dtype=torch.float64))
    assert set(draws[:, 0].tolist()) == {-1.0, 1.0}
    assert 70 < (draws[:, 0] > 0).sum() < 130
    # The same step's generator gives the same draw; a leak of 1 passes everything (the plain sum).
    assert torch.equal(_direction("graddrop", seed=3), draws[3])
    assert torch.equal(_direction("graddrop", graddrop_leak=1.0), CONFLICTING.sum(0))


def test_gradvac_raises_the_similarity_to_its_running_target_and_keeps_it_in_its_state():
    gradvac = _weighting("gradvac")
    # Step 1, targets 0: g1 gains (-phi) |g1| / |g2| g2 = 1/2 g2 as in PCGrad, and symmetrically g2 gains g1.
    first, _ = gradvac.combine_gradients(CONFLICTING, LOSSES, StepContext(rng=np.random.default_rng(0)))
    assert torch.allclose(first, torch.tensor([0.5, 1.5], dtype=torch.float64), atol=1e-6)
    phi = -1 / math.sqrt(2)  # cos(g1, g2)
    target = 0.5 * phi  # (1 - beta) 0 + beta phi, beta = 0.5
    assert gradvac.state_dict()["similarity_targets"][0, 1].item() == pytest.approx(target)
    saved = io.BytesIO()
    torch.save(gradvac.state_dict(), saved)
    saved.seek(0)
    restored = _weighting("gradvac")
    restored.load_state_dict(torch.load(saved, weights_only=True))
    # Step 2 raises cos(g1, g2) to the target only: g1 + w12 g2 and g2 + w21 g1 with the paper's w.
    root, root_target = math.sqrt(1 - phi**2), math.sqrt(1 - target**2)
    w12 = 1 * (target * root - phi * root_target) / (math.sqrt(2) * root_target)
    w21 = math.sqrt(2) * (target * root - phi * root_target) / (1 * root_target)
    expected = (1 + w21) * CONFLICTING[0] + (1 + w12) * CONFLICTING[1]
    second = [w.combine_gradients(CONFLICTING, LOSSES, StepContext(rng=np.random.default_rng(1)))[0]
              for w in (gradvac, restored, _weighting("gradvac"))]
    assert torch.allclose(second[0], expected, atol=1e-6)
    assert torch.equal(second[1], second[0])  # restored from the state: the same update
    assert not torch.allclose(second[2], second[0])  # a fresh one starts from targets 0 again


def test_gradvac_updates_only_the_pairs_of_the_tasks_present():
    gradvac = _weighting("gradvac", tasks=["a", "b", "c"])
    gradvac.combine_gradients(CONFLICTING, {"a": 1.0, "c": 1.0}, StepContext(rng=np.random.default_rng(0)))
    targets = gradvac.state_dict()["similarity_targets"]
    assert targets[0, 2] == pytest.approx(-0.5 / math.sqrt(2)) and targets[2, 0] == pytest.approx(-0.5 / math.sqrt(2))
    assert torch.count_nonzero(targets) == 2


@pytest.mark.parametrize("name", AGGREGATORS)
def test_each_aggregator_is_scale_equivariant_and_seeded(name):
    # Gradients 1e6 times smaller give an update 1e6 times smaller (torchjd's absolute epsilons, 1e-4 on the
    # Gramian's trace in its QP, would otherwise turn UPGrad into the mean), and the random ones draw the same
    # with the same step's generator without touching torch's global generator.
    gradients = torch.tensor([[1.0, 0.2, -0.5], [-0.8, 1.0, 0.1], [0.3, -0.9, 1.0]], dtype=torch.float64)
    state = torch.get_rng_state()
    large, small = _direction(name, gradients, seed=5), _direction(name, gradients * 1e-6, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.allclose(small * 1e6, large, rtol=1e-5, atol=1e-9)
    assert torch.equal(_direction(name, gradients, seed=5), large)


@pytest.mark.parametrize("name", AGGREGATORS)
def test_each_aggregator_makes_no_tensor_without_a_device(name):
    # On a GPU a tensor made without a device lands on the CPU: under a meta default device it fails instead.
    gradients = torch.tensor([[1.0, 0.2, -0.5], [-0.8, 1.0, 0.1], [0.3, -0.9, 1.0]], dtype=torch.float64)
    losses = dict.fromkeys("abc", 1.0)
    expected, weighting = _direction(name, gradients), _weighting(name, losses)  # a module's buffers: built before
    with torch.device("meta"):
        direction, _ = weighting.combine_gradients(gradients, losses, StepContext(rng=np.random.default_rng(0)))
    assert torch.equal(direction, expected)
