"""False-positive rate on unshifted data and power on a clear shift, for every multivariate test.

Calibration: 500 seeds (0..499) of reference and window drawn from the same distribution
(n = 50 each, d = 4); the number of rejections at alpha = 0.05 must lie in the binomial 99%
interval of 0.05, ``scipy.stats.binom.interval(0.99, 500, 0.05) = (13, 38)``. Permutation tests
use B = 59 relabellings, so that alpha (B + 1) = 3 is an integer and the permutation test's
exact level is 0.05 (with B = 50 it would be 2/51 = 0.039). Deterministic: fixed seeds.
"""

import numpy as np
import pytest
from scipy.stats import binom

from detectors import classifier_test, energy_test, ks_dims_test, mmd_rff_test, mmd_test

N_SEEDS = 500
ALPHA = 0.05
B = 59

TESTS = {
    "mmd": lambda x, y, s: mmd_test(x, y, n_permutations=B, alpha=ALPHA, seed=s),
    "mmd_rff": lambda x, y, s: mmd_rff_test(
        x, y, n_features=64, n_permutations=B, alpha=ALPHA, seed=s
    ),
    "energy": lambda x, y, s: energy_test(x, y, n_permutations=B, alpha=ALPHA, seed=s),
    "classifier": lambda x, y, s: classifier_test(x, y, n_permutations=B, alpha=ALPHA, seed=s),
    "ks_dims": lambda x, y, s: ks_dims_test(x, y, alpha=ALPHA),
}


@pytest.mark.parametrize("name", sorted(TESTS))
def test_false_positive_rate_is_calibrated(name):
    test = TESTS[name]
    rejections = 0
    for seed in range(N_SEEDS):
        rng = np.random.default_rng(seed)
        # A correlated, non-Gaussian distribution (the null need not be Gaussian).
        mix = np.array(
            [[1.0, 0.5, 0.0, 0.0], [0.0, 1.0, 0.3, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0]]
        )
        x = rng.standard_t(5, size=(50, 4)) @ mix
        y = rng.standard_t(5, size=(50, 4)) @ mix
        res = test(x, y, seed)
        assert res.p_value is not None and 0.0 < res.p_value <= 1.0
        rejections += res.drifted
    low, high = binom.interval(0.99, N_SEEDS, ALPHA)
    assert low <= rejections <= high, f"{name}: {rejections}/{N_SEEDS} false positives"


@pytest.mark.parametrize("name", sorted(TESTS))
def test_detects_a_clear_mean_shift_in_most_seeds(name):
    test = TESTS[name]
    detected = 0
    for seed in range(50):
        rng = np.random.default_rng(10_000 + seed)
        x = rng.normal(size=(50, 4))
        y = rng.normal(loc=0.8, size=(50, 4))
        detected += test(x, y, seed).drifted
    assert detected >= 45, f"{name}: detected {detected}/50"
