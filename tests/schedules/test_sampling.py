"""Task samplers: budgets met exactly, exhausted tasks never drawn, frequencies as the formulas say."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ernie_cpt.errors import UserError
from schedules.sampling import SAMPLERS, get_sampler

SIZES = {"a": 100, "b": 400, "c": 1600, "d": 50}


def drain(name: str, budgets: dict[str, int], seed: int = 0, temperature: float = 2.0) -> list[str]:
    """Draw as the trainer does (a generator per (seed, stage, step)) until no task has steps left."""
    remaining, drawn = dict(budgets), []
    for step in range(sum(budgets.values())):
        task = SAMPLERS[name](remaining, SIZES, temperature, np.random.default_rng([seed, 0, step]))
        assert remaining[task] > 0, f"{name} drew {task}, which had no steps left"
        remaining[task] -= 1
        drawn.append(task)
    return drawn


@pytest.mark.parametrize("name", ["uniform", "remaining", "size"])
def test_draining_a_stage_meets_every_budget_exactly(name):
    budgets = {"a": 50, "b": 30, "c": 20, "d": 0}

    for seed in range(5):
        assert Counter(drain(name, budgets, seed)) == {"a": 50, "b": 30, "c": 20}


@pytest.mark.parametrize("name", ["uniform", "remaining", "size"])
def test_the_same_generator_state_gives_the_same_draws(name):
    budgets = {"a": 40, "b": 40, "c": 40}
    assert drain(name, budgets, seed=3) == drain(name, budgets, seed=3)
    assert drain(name, budgets, seed=3) != drain(name, budgets, seed=4)


def frequencies(name: str, remaining: dict[str, int], draws: int, temperature: float = 2.0) -> dict[str, float]:
    """How often each task is drawn over ``draws`` steps of a stage too large for any task to run out."""
    rng = np.random.default_rng(11)
    counts = Counter(SAMPLERS[name](remaining, SIZES, temperature, rng) for _ in range(draws))
    return {task: counts[task] / draws for task in remaining}


@pytest.mark.parametrize(("temperature", "expected"), [
    (2.0, {"a": 10 / 70, "b": 20 / 70, "c": 40 / 70}),  # sqrt(100), sqrt(400), sqrt(1600)
    (1.0, {"a": 100 / 2100, "b": 400 / 2100, "c": 1600 / 2100}),  # proportional to size (MT-DNN)
    (1000.0, {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}),  # nearly uniform
])
def test_size_follows_n_to_the_one_over_t(temperature, expected):
    observed = frequencies("size", {"a": 10_000, "b": 10_000, "c": 10_000}, 7000, temperature)

    for task in expected:
        assert observed[task] == pytest.approx(expected[task], abs=0.015)


def test_remaining_is_proportional_to_the_steps_left():
    observed = frequencies("remaining", {"a": 1000, "b": 3000, "d": 0}, 4000)
    # Remaining counts are not decremented here, so every draw has p = 1/4, 3/4.
    assert observed == pytest.approx({"a": 0.25, "b": 0.75, "d": 0.0}, abs=0.02)


def test_uniform_ignores_budgets_and_sizes():
    observed = frequencies("uniform", {"a": 10, "c": 100_000}, 4000)
    assert observed == pytest.approx({"a": 0.5, "c": 0.5}, abs=0.025)


def test_remaining_keeps_every_task_until_the_stage_ends_and_uniform_does_not():
    budgets = {"a": 900, "b": 100}
    # The last 100 steps: an urn keeps b mixed in to the end (~10 of them), uniform has spent b long before.
    assert 2 <= drain("remaining", budgets)[-100:].count("b") <= 25
    assert drain("uniform", budgets)[-100:].count("b") == 0


def test_size_is_safe_with_large_sizes_and_low_temperatures():
    sizes = {"a": 10**9, "b": 10**8}
    with np.errstate(all="raise"):
        draws = {SAMPLERS["size"]({"a": 5, "b": 5}, sizes, 0.01, np.random.default_rng(i)) for i in range(50)}
    assert draws == {"a"}  # (10^9 / 10^8)^100 = 10^100 : 1


def test_unknown_sampler_suggests_the_closest():
    with pytest.raises(UserError, match=r"unknown task sampling 'remainig'; did you mean 'remaining'\?"):
        get_sampler("remainig")


def test_a_stage_with_nothing_left_is_a_programming_error():
    with pytest.raises(ValueError, match="no task of the stage has steps left"):
        SAMPLERS["remaining"]({"a": 0}, SIZES, 2.0, np.random.default_rng(0))
