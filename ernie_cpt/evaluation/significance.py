"""Confidence intervals over seeds, paired comparisons, and how many seeds a difference needs.

Seeds are few (3 is typical), so intervals use Student's t, from scipy: the 95 % interval of a
mean over n seeds is ``scipy.stats.ttest_1samp(...).confidence_interval()``, and two variants
are compared *paired by seed* (the same seed gives both the same initialisation and data), with
the interval of the mean per-seed difference from ``scipy.stats.ttest_rel``. A percentile
bootstrap (``scipy.stats.bootstrap``) is not used: with 3 seeds it has 10 distinct resamples of
the mean and its interval is about [min, max] of the data, so any difference whose three seeds
share a sign would "exclude 0" (a false-positive rate near 25 % when there is no difference);
Colas, Sigaud & Oudeyer 2018 ("How Many Random Seeds? Statistical Power Analysis in Deep
Reinforcement Learning Experiments") measure this excess of false positives for the bootstrap at
small n and recommend the t-test there.

The seeds a difference needs: the smallest n at which a two-sided paired t-test at level 0.05
detects the observed mean difference d with 80 % power, taking the observed standard deviation
s of the per-seed differences as the truth. Power is computed exactly from the noncentral t
distribution (``scipy.stats.nct``, noncentrality d / s * sqrt(n)), as in Cohen 1988 ("Statistical
Power Analysis for the Behavioral Sciences", ch. 2) and statsmodels' ``TTestPower``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
POWER = 0.8
MAX_SEEDS = 10_000
TIE = 1e-12  # values this close are equal (rounding in a - b): the spread is 0, not a t-test on noise


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` seeds with its 95 % interval (``low``, ``high``: None below 2 seeds) and the
    sample standard deviation ``std`` (None below 2 seeds)."""

    mean: float
    low: float | None
    high: float | None
    n: int
    std: float | None

    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)


def estimate(values: list[float]) -> Estimate | None:
    """The mean of ``values`` (one per seed) and its Student-t 95 % interval; None for no values.
    When every value is the same (to 1e-12) the interval is that value: no spread was seen."""
    if not values:
        return None
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return Estimate(mean, None, None, 1, None)
    if np.allclose(data, data[0], rtol=0.0, atol=TIE):
        return Estimate(mean, mean, mean, len(data), 0.0)
    interval = stats.ttest_1samp(data, 0.0).confidence_interval(LEVEL)
    return Estimate(mean, float(interval.low), float(interval.high), len(data), float(data.std(ddof=1)))


def paired_difference(first: Mapping[int | None, float | None],
                      second: Mapping[int | None, float | None]) -> Estimate | None:
    """``first`` - ``second`` (each seed -> value) over the seeds both have a value for: the mean
    per-seed difference and its 95 % interval (``scipy.stats.ttest_rel``); None when no seed is shared."""
    pairs = [(a, b) for seed, a in sorted(first.items()) if a is not None and (b := second.get(seed)) is not None]
    if not pairs:
        return None
    differences = [a - b for a, b in pairs]
    if len(pairs) < 2 or np.allclose(differences, differences[0], rtol=0.0, atol=TIE):
        return estimate(differences)
    interval = stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).confidence_interval(LEVEL)
    return Estimate(float(np.mean(differences)), float(interval.low), float(interval.high), len(pairs),
                    float(np.std(differences, ddof=1)))


def paired_power(difference: float, std: float, n: int, alpha: float = 1 - LEVEL) -> float:
    """The power of a two-sided paired t-test at level ``alpha`` with ``n`` seeds when the per-seed
    differences have mean ``difference`` and standard deviation ``std`` (noncentral t)."""
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = difference / std * math.sqrt(n)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def seeds_needed(difference: float, std: float | None) -> int | None:
    """The fewest seeds (at least 2) at which a paired t-test detects ``difference`` with 80 % power
    when the per-seed differences have standard deviation ``std``. None when it cannot be said: no
    spread known (fewer than 2 seeds), a zero difference, or more than 10,000 seeds."""
    if std is None or abs(difference) < TIE:
        return None
    if std == 0.0:
        return 2
    low, high = 1, 2  # power grows with n: double until it is enough, then bisect
    while paired_power(abs(difference), std, high) < POWER:
        low, high = high, 2 * high
        if high > MAX_SEEDS:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if paired_power(abs(difference), std, middle) >= POWER else (middle, high)
    return high
