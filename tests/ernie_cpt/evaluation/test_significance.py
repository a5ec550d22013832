"""Intervals over seeds, paired differences and the seeds a difference needs, against hand-computed values
and published sample-size tables."""

from __future__ import annotations

import pytest

from ernie_cpt.evaluation.significance import estimate, paired_difference, paired_power, seeds_needed

T_975_2 = 4.302653  # Student's t, 97.5th percentile, 2 degrees of freedom


def test_estimate_is_the_mean_with_a_student_t_interval():
    # [1, 2, 3]: mean 2, sample std 1, half-width t(0.975, 2) * 1 / sqrt(3) = 2.48414
    result = estimate([1.0, 2.0, 3.0])
    assert (result.mean, result.n, result.std) == (2.0, 3, 1.0)
    assert (result.low, result.high) == pytest.approx((2 - T_975_2 / 3**0.5, 2 + T_975_2 / 3**0.5))
    assert not result.excludes_zero()


def test_one_seed_has_no_interval_and_equal_values_a_point_interval():
    assert estimate([0.5]) == pytest.approx(estimate([0.5])) and estimate([0.5]).low is None
    assert estimate([]) is None
    same = estimate([0.25, 0.25, 0.25])
    assert (same.low, same.high, same.std) == (0.25, 0.25, 0.0) and same.excludes_zero()


def test_paired_difference_uses_only_the_seeds_both_have():
    # seeds 1-3 shared: differences 0.1, 0.2, 0.3 (mean 0.2, std 0.1); seed 4 lacks a partner, seed 5 is None
    first = {1: 0.6, 2: 0.7, 3: 0.8, 4: 0.9, 5: None}
    second = {1: 0.5, 2: 0.5, 3: 0.5, 5: 0.4}
    result = paired_difference(first, second)
    assert (result.mean, result.n) == (pytest.approx(0.2), 3) and result.std == pytest.approx(0.1)
    assert (result.low, result.high) == pytest.approx((0.2 - T_975_2 * 0.1 / 3**0.5, 0.2 + T_975_2 * 0.1 / 3**0.5))
    assert not result.excludes_zero()  # 0.2 - 0.248 < 0: three seeds cannot tell this difference from none
    assert paired_difference({1: 0.5}, {2: 0.5}) is None


def test_pairing_removes_the_spread_the_seeds_share():
    # Each seed moves both variants alike (0.4, 0.6, 0.8), the second always 0.05 behind: unpaired the
    # intervals overlap, paired the difference is exactly 0.05.
    first, second = {1: 0.45, 2: 0.65, 3: 0.85}, {1: 0.4, 2: 0.6, 3: 0.8}
    assert estimate(list(first.values())).low < estimate(list(second.values())).high
    assert paired_difference(first, second).low == pytest.approx(0.05)


def test_seeds_needed_matches_the_sample_size_tables():
    # One-sample / paired two-sided t-test, alpha 0.05, power 0.8 (Cohen 1988; G*Power gives the same):
    # effect size d/s = 1 -> 10, 0.5 -> 34, 0.2 -> 199.
    assert seeds_needed(1.0, 1.0) == 10
    assert seeds_needed(0.5, 1.0) == 34
    assert seeds_needed(-0.1, 0.5) == 199
    assert paired_power(0.5, 1.0, 34) >= 0.8 > paired_power(0.5, 1.0, 33)


def test_seeds_needed_is_unknown_without_a_spread_or_a_difference():
    assert seeds_needed(0.1, None) is None
    assert seeds_needed(0.0, 0.1) is None
    assert seeds_needed(0.1, 0.0) == 2
    assert seeds_needed(1e-6, 1.0) is None  # more than 10,000 seeds
