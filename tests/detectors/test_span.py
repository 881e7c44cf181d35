"""The span null: window shifts in units of how far the reference's own windows wander.

Rates are measured over many seeded streams and compared with what the Gaussian model promises.
"""

import numpy as np
import pytest
from scipy.stats import binomtest, norm

from detectors.span import fit_span_null, shift_test, threshold


def ar1(rng, n, phi, k=1):
    """A stationary AR(1) stream with unit marginal variance, ``k`` independent features."""
    x = np.empty((n, k))
    x[0] = rng.normal(size=k)
    e = rng.normal(size=(n, k)) * np.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    return x


def window_mean_sd(phi, n):
    """Exact sd of an n-frame mean of a unit-variance AR(1)."""
    k = np.arange(1, n)
    return float(np.sqrt((1 + 2 * ((1 - k / n) * phi**k).sum()) / n))


@pytest.mark.parametrize("phi", [0.0, 0.9, 0.98])
def test_a_long_reference_measures_the_window_spread_of_correlated_frames(phi):
    rng = np.random.default_rng(int(phi * 100))
    x = ar1(rng, 40_000, phi)
    null = fit_span_null(x, [np.arange(len(x))], 100)
    truth = window_mean_sd(phi, 100)
    # a long reference: the observed spread (within its sampling error), a little inflated by the
    # conservative bound's weight
    assert 0.9 * truth <= null.scale[0] <= truth * 1.25 + 0.01, (null.scale[0], truth)
    assert null.support[0] > 100


def test_a_short_or_unordered_reference_is_judged_almost_as_single_frames():
    rng = np.random.default_rng(1)
    short = ar1(rng, 200, 0.95)
    null = fit_span_null(short, [np.arange(100), np.arange(100, 200)], 100)
    assert null.support[0] < 10 and null.scale[0] > 0.6 * short.std()
    bag = fit_span_null(short, None, 100)
    assert bag.support[0] == 0 and bag.scale[0] == pytest.approx(
        short.std() * np.sqrt(1 + 1 / 200), rel=1e-6
    )
    assert bag.segments == 0


def test_a_constant_feature_that_moves_is_a_shift():
    x = np.column_stack([np.full(300, 1920.0), np.random.default_rng(2).normal(size=300)])
    null = fit_span_null(x, [np.arange(300)], 50)
    window = np.column_stack([np.full(50, 1280.0), np.random.default_rng(3).normal(size=50)])
    res = shift_test(null, window, z_threshold=threshold(1e-4, 2))
    assert res.drifted.tolist() == [True, False] and np.isfinite(res.statistic).all()


def test_false_alarms_on_unshifted_correlated_windows_stay_within_the_promise():
    """Fresh streams from the reference's process: windows drift at most at the nominal rate."""
    alpha, k, n = 0.01, 5, 100
    z_star = threshold(alpha, k)
    fired = total = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        ref = ar1(rng, 4000, 0.95, k)
        null = fit_span_null(ref, [np.arange(4000)], n)
        live = ar1(rng, 4000, 0.95, k)
        for start in range(0, 4000 - n + 1, n):  # disjoint windows of a fresh stream
            fired += bool(shift_test(null, live[start : start + n], z_threshold=z_star).any_drifted)
            total += 1
    upper = binomtest(fired, total, alpha).proportion_ci(0.99).low
    assert upper <= alpha, (fired, total)  # not above the promised rate (99% one-sided)


def test_a_shift_of_a_few_window_spreads_is_detected():
    rng = np.random.default_rng(5)
    ref = ar1(rng, 4000, 0.9, 3)
    null = fit_span_null(ref, [np.arange(4000)], 100)
    live = ar1(rng, 100, 0.9, 3)
    live[:, 1] += 8 * window_mean_sd(0.9, 100)
    res = shift_test(null, live, z_threshold=threshold(1e-4, 3))
    assert res.drifted.tolist() == [False, True, False]
    assert res.p_value[1] < 1e-6 and res.p_value_note.startswith("Gaussian model")
    assert norm.isf(res.p_value[1] / 2) == pytest.approx(res.statistic[1], rel=1e-6)
