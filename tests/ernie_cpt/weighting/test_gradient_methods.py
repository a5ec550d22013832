"""The gradient-level weightings (and FAMO) against hand-computed two-task cases."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from ernie_cpt.training.task_gradients import TaskGradients
from ernie_cpt.weighting import WEIGHTINGS, StepContext, build_weighting
from ernie_cpt.weighting.mgda import min_norm_weights

CONFLICTING = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)  # g1 . g2 = -1 < 0
LOSSES = {"a": 1.0, "b": 1.0}


def _direction(name: str, gradients: torch.Tensor, losses=LOSSES, **options) -> tuple[torch.Tensor, dict]:
    options_class = WEIGHTINGS.options_class(name)
    weighting = build_weighting(name, list(losses), options_class(**options) if options_class else None)
    return weighting.combine_gradients(gradients, losses, StepContext(rng=np.random.default_rng(0)))


def test_pcgrad_projects_each_gradient_off_the_other():
    # g1' = g1 - (g1.g2 / |g2|^2) g2 = (1, 0) + 1/2 (-1, 1) = (0.5, 0.5); g2' = g2 - (g2.g1 / |g1|^2) g1 = (0, 1)
    direction, weights = _direction("pcgrad", CONFLICTING)
    assert torch.allclose(direction, torch.tensor([0.5, 1.5], dtype=torch.float64))
    assert weights == {"a": 1.0, "b": 1.0}
    # Gradients that do not conflict are summed unchanged.
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(_direction("pcgrad", agreeing)[0], agreeing.sum(0))


def test_mgda_finds_the_min_norm_point_of_the_segment():
    # min |g a + (1-g) b|^2: g = (b.b - a.b) / |a - b|^2 = (2 + 1) / 5 = 0.6 -> (0.6, 0) + 0.4 (-1, 1) = (0.2, 0.4),
    # orthogonal to a - b = (2, -1). Weights are scaled to sum to K = 2.
    direction, weights = _direction("mgda", CONFLICTING)
    assert weights["a"] == pytest.approx(1.2) and weights["b"] == pytest.approx(0.8)
    assert torch.allclose(direction, torch.tensor([0.4, 0.8], dtype=torch.float64))


def test_mgda_frank_wolfe_matches_a_brute_force_search_over_three_vectors():
    vectors = np.array([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.3], [0.1, -0.8, 1.0]])
    weights = min_norm_weights(vectors @ vectors.T)
    grid = [(x, y, 1 - x - y) for x in np.linspace(0, 1, 401) for y in np.linspace(0, 1, 401) if x + y <= 1]
    best = min(grid, key=lambda w: np.linalg.norm(np.array(w) @ vectors))
    assert np.linalg.norm(weights @ vectors) <= np.linalg.norm(np.array(best) @ vectors) + 1e-6
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()


def test_cagrad_solves_its_dual_and_reduces_to_the_sum_at_c_zero():
    c = 0.5
    g = CONFLICTING.numpy()
    g0 = g.mean(0)
    radius = c * np.linalg.norm(g0)
    # Brute force over the simplex of two tasks: min_w g_w . g0 + radius |g_w|.
    grid = np.linspace(0, 1, 100001)
    values = [(w * g[0] + (1 - w) * g[1]) @ g0 + radius * np.linalg.norm(w * g[0] + (1 - w) * g[1]) for w in grid]
    w = grid[int(np.argmin(values))]
    gw = w * g[0] + (1 - w) * g[1]
    expected = (g0 + radius / np.linalg.norm(gw) * gw) * 2 / (1 + c**2)
    direction, _ = _direction("cagrad", CONFLICTING, cagrad_c=c)
    assert np.allclose(direction.numpy(), expected, atol=1e-4)
    # The worst task improves more along d than along the plain average: min_i g_i . d / |d|.
    d = direction.numpy()
    assert min(g @ d) / np.linalg.norm(d) > min(g @ g0) / np.linalg.norm(g0)
    assert torch.allclose(_direction("cagrad", CONFLICTING, cagrad_c=0.0)[0], CONFLICTING.sum(0))


def test_nash_mtl_weights_solve_the_bargaining_equation():
    # Orthogonal gradients: alpha_i = 1 / |g_i| for the Gram matrix divided by its norm s = sqrt(17).
    orthogonal = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    direction, weights = _direction("nash_mtl", orthogonal)
    scale = 17 ** 0.25
    assert weights["a"] == pytest.approx(scale / 2) and weights["b"] == pytest.approx(scale)
    assert torch.allclose(direction, torch.tensor([scale, scale], dtype=torch.float64))
    # g1 = (1, 0), g2 = (1, 1): G = [[1, 1], [1, 2]]; alpha1 (alpha1 + alpha2) = alpha2 (alpha1 + 2 alpha2) = 1 gives
    # alpha1^4 - 4 alpha1^2 + 2 = 0, alpha1 = sqrt(2 - sqrt 2), alpha2 = 1 / alpha1 - alpha1; times 7^(1/4).
    _, weights = _direction("nash_mtl", torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64))
    alpha1 = math.sqrt(2 - math.sqrt(2))
    assert weights["a"] == pytest.approx(7**0.25 * alpha1, rel=1e-6)
    assert weights["b"] == pytest.approx(7**0.25 * (1 / alpha1 - alpha1), rel=1e-6)


def test_famo_weights_follow_its_formula_and_move_toward_the_slowest_task():
    famo = build_weighting("famo", ["a", "b"])
    losses = {"a": torch.tensor(2.0), "b": torch.tensor(1.0)}
    famo.combine(losses, StepContext(shared=nn.Parameter(torch.zeros(1)), kpis=dict.fromkeys(losses, 0.5)))
    # z = (1/2, 1/2), c = 0.5/2 + 0.5/1 = 0.75: w = z / (c L) = (1/3, 2/3)
    assert famo.last_weights["a"] == pytest.approx(1 / 3) and famo.last_weights["b"] == pytest.approx(2 / 3)
    famo.after_step({"a": 1.0, "b": 0.9})  # a's loss halved, b's fell by a tenth: b is the slow one
    z = torch.softmax(famo.logits, 0)
    assert z[1] > 0.5 > z[0]
    restored = build_weighting("famo", ["a", "b"])
    saved = io.BytesIO()
    torch.save(famo.state_dict(), saved)  # as a checkpoint holds it
    saved.seek(0)
    restored.load_state_dict(torch.load(saved, weights_only=True))
    for weighting in (famo, restored):
        weighting.combine(losses, StepContext(shared=nn.Parameter(torch.zeros(1)), kpis=dict.fromkeys(losses, 0.5)))
        weighting.after_step({"a": 1.5, "b": 0.95})
    assert torch.equal(famo.logits, restored.logits)


def test_task_gradients_give_the_shared_parameters_the_direction_and_the_heads_their_weighted_gradient():
    torch.manual_seed(0)
    shared, head_a, head_b = nn.Linear(3, 2), nn.Linear(2, 1), nn.Linear(2, 1)
    model = nn.ModuleList([shared, head_a, head_b])
    x = torch.randn(4, 3)

    def losses() -> dict[str, torch.Tensor]:
        hidden = torch.tanh(shared(x))
        return {"a": head_a(hidden).pow(2).mean(), "b": (head_b(hidden) - 1).pow(2).mean()}

    per_task = {t: torch.autograd.grad(loss, list(model.parameters()), allow_unused=True, retain_graph=True)
                for t, loss in losses().items()}
    flat = torch.stack([torch.cat([per_task[t][0].reshape(-1), per_task[t][1].reshape(-1)]) for t in "ab"])
    weighting = build_weighting("mgda", ["a", "b"])
    expected_direction, weights = weighting.direction(flat, {"a": 1.0, "b": 1.0},
                                                      StepContext(rng=np.random.default_rng(0)))

    gradients = TaskGradients(model, list(shared.parameters()))
    gradients.add(losses(), 0.5)
    gradients.add(losses(), 0.5)  # two micro-batches of the same data: the same sum
    gradients.apply(weighting, {"a": 1.0, "b": 1.0}, StepContext(rng=np.random.default_rng(0)))
    assert torch.allclose(torch.cat([shared.weight.grad.reshape(-1), shared.bias.grad]), expected_direction)
    assert torch.allclose(head_a.weight.grad, weights["a"] * per_task["a"][2])
    assert torch.allclose(head_b.bias.grad, weights["b"] * per_task["b"][5])


def test_nash_mtl_restored_from_its_state_solves_from_the_same_start():
    gradients = torch.tensor([[1.0, 0.0, 0.2], [0.3, 1.0, 0.0], [0.0, -0.4, 1.0]], dtype=torch.float64)
    losses = {"a": 1.0, "b": 1.0, "c": 1.0}
    original = build_weighting("nash_mtl", list(losses))
    original.combine_gradients(gradients, losses, StepContext(rng=np.random.default_rng(0)))
    saved = io.BytesIO()
    torch.save(original.state_dict(), saved)
    saved.seek(0)
    restored = build_weighting("nash_mtl", list(losses))
    restored.load_state_dict(torch.load(saved, weights_only=True))
    later = gradients * torch.tensor([1.5, 1.0, 0.5], dtype=torch.float64)[:, None]
    first, second = (w.combine_gradients(later, losses, StepContext(rng=np.random.default_rng(1)))[0]
                     for w in (original, restored))
    assert torch.equal(first, second)
