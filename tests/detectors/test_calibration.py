"""False-alarm rates on unshifted data, and calibrated run lengths.

Every seed's data set is one column of a single array, so one vectorised call runs all
seeds at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors import (
    anderson_test, calibrate_threshold, chi2_test, correct, cvm_test, g_test, ks_test)

ALPHA = 0.05
N_SEEDS = 600
N_FEATURES = 20
LO, HI = stats.binom.interval(0.99, N_SEEDS, ALPHA)  # 99% interval of the count at rate alpha


def _continuous(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, N_SEEDS * N_FEATURES))
    y = rng.normal(size=(100, N_SEEDS * N_FEATURES))
    return x, y


def _categorical(seed):
    rng = np.random.default_rng(seed)
    probs = [0.4, 0.3, 0.2, 0.1]
    x = rng.choice(4, p=probs, size=(300, N_SEEDS * N_FEATURES))
    y = rng.choice(4, p=probs, size=(100, N_SEEDS * N_FEATURES))
    return x, y


TESTS = {
    "ks": (ks_test, _continuous),
    "cvm": (cvm_test, _continuous),
    "anderson": (anderson_test, _continuous),
    "chi2": (chi2_test, _categorical),
    "g_test": (g_test, _categorical),
}


@pytest.mark.parametrize("name", sorted(TESTS))
def test_false_positive_rate_single_feature_and_family(name):
    fn, data = TESTS[name]
    x, y = data(sum(map(ord, name)))
    p = fn(x, y, correction="none").p_value.reshape(N_SEEDS, N_FEATURES)

    # one feature per seed: the rate is alpha, within binomial error
    n_false = int(np.sum(p[:, 0] <= ALPHA))
    assert LO <= n_false <= HI, (name, n_false, (LO, HI))

    # 20 features per seed: family-wise false alarms at most alpha
    bonf = correct(p, alpha=ALPHA, method="bonferroni").rejected.any(axis=1).sum()
    bh = correct(p, alpha=ALPHA, method="bh").rejected.any(axis=1).sum()
    assert bonf <= HI, (name, bonf)
    assert bh <= HI, (name, bh)
    # Bonferroni's family-wise rate is 1 - (1 - alpha/20)^20 = 0.0488 for independent
    # continuous tests; BH's equals alpha when every null is true. Neither may be far below.
    assert bonf >= LO and bh >= LO, (name, bonf, bh)
    # and the pure functions' own correction agrees with correct() on the same p-values
    res = fn(x[:, :N_FEATURES], y[:, :N_FEATURES], correction="bh")
    assert res.drifted.tolist() == correct(p[0], method="bh").rejected.tolist()


def test_uncorrected_family_false_alarms_far_exceed_alpha():
    # the reason for correcting: 20 uncorrected tests fire together ~64% of the time
    x, y = _continuous(1)
    p = ks_test(x, y, correction="none").p_value.reshape(N_SEEDS, N_FEATURES)
    assert (p <= ALPHA).any(axis=1).mean() > 0.5


W, S = 50, 10  # window and stride (overlapping windows: 80% shared frames)


def _z_of_window_mean(windows):
    return np.abs(windows.mean(axis=(1, 2))) * np.sqrt(W)


def _run_lengths(threshold, n_streams, cap, seed):
    """Evaluations until the first alarm on fresh N(0, 1) streams, on the W/S schedule."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(0, n_streams, 50):
        x = rng.normal(size=(50, W + (cap - 1) * S))
        c = np.cumsum(np.c_[np.zeros(50), x], axis=1)
        ends = W + S * np.arange(cap)
        z = np.abs(c[:, ends] - c[:, ends - W]) / np.sqrt(W)
        hit = z > threshold
        out.append(np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, cap))
    return np.concatenate(out)[:n_streams]


def test_calibrated_threshold_delivers_the_promised_run_length():
    target = 500
    ref = np.random.default_rng(0).normal(size=(20_000, 1))
    cal = calibrate_threshold(ref, _z_of_window_mean, window=W, stride=S,
                              target_run_length=target, n_blocks=3000, vectorized=True, seed=3)
    assert cal.block_evaluations == 50 and cal.n_blocks == 3000
    rl = _run_lengths(cal.threshold, n_streams=600, cap=20 * target, seed=4)
    mean, se = rl.mean(), rl.std(ddof=1) / np.sqrt(len(rl))
    # E[N] >= target by construction, and about target + L / 2: within sampling error of that
    assert target - 3 * se <= mean <= target + cal.block_evaluations + 3 * se, (mean, se)
    # a per-evaluation 5% threshold on the same schedule alarms every few dozen evaluations
    naive = _run_lengths(stats.norm.isf(ALPHA / 2), n_streams=200, cap=2000, seed=5)
    assert naive.mean() < target / 10


def test_calibration_non_vectorized_and_block_bootstrap_agree_in_form():
    ref = np.random.default_rng(1).normal(size=(5000, 2))
    fn = lambda w: float(np.abs(w.mean(axis=0)).max() * np.sqrt(len(w)))  # noqa: E731
    a = calibrate_threshold(ref, fn, window=20, stride=20, target_run_length=100,
                            n_blocks=200, seed=7)
    b = calibrate_threshold(ref, fn, window=20, stride=20, target_run_length=100,
                            n_blocks=200, seed=7)
    assert a.threshold == b.threshold  # the generator is owned and seeded
    c = calibrate_threshold(ref, fn, window=20, stride=20, target_run_length=100,
                            n_blocks=200, resample_block=25, seed=7)
    assert np.isfinite(c.threshold) and c.block_maxima.shape == (200,)
    assert a.block_alarm_rate == pytest.approx(25 / 125)


def test_calibration_rejects_bad_options():
    ref = np.zeros((100, 1))
    fn = lambda w: 0.0  # noqa: E731
    for kwargs in ({"window": 0, "stride": 1}, {"window": 5, "stride": 1.5},
                   {"window": 5, "stride": 1, "target_run_length": 2},
                   {"window": 5, "stride": 1, "n_blocks": 2},
                   {"window": 5, "stride": 1, "resample_block": 1000}):
        with pytest.raises(ValueError):
            calibrate_threshold(ref, fn, **kwargs)
