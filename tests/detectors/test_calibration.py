"""False-alarm rates on unshifted data, and calibrated run lengths.

Every seed's data set is one column of a single array, so one vectorised call runs all
seeds at once.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from detectors import (
    anderson_test,
    calibrate_ks,
    calibrate_threshold,
    chi2_test,
    correct,
    cvm_test,
    g_test,
    ks_test,
)
from detectors.calibration import ks_rank_codes, max_ks_statistic

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
    bonf = correct(p, alpha=ALPHA, method="bonferroni").drifted.any(axis=1).sum()
    bh = correct(p, alpha=ALPHA, method="bh").drifted.any(axis=1).sum()
    assert bonf <= HI, (name, bonf)
    assert bh <= HI, (name, bh)
    # Bonferroni's family-wise rate is 1 - (1 - alpha/20)^20 = 0.0488 for independent
    # continuous tests; BH's equals alpha when every null is true. Neither may be far below.
    assert bonf >= LO and bh >= LO, (name, bonf, bh)
    # and the pure functions' own correction agrees with correct() on the same p-values
    res = fn(x[:, :N_FEATURES], y[:, :N_FEATURES], correction="bh")
    assert res.drifted.tolist() == correct(p[0], method="bh").drifted.tolist()


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
    cal = calibrate_threshold(
        ref,
        _z_of_window_mean,
        window=W,
        stride=S,
        target_run_length=target,
        n_blocks=3000,
        vectorized=True,
        seed=3,
    )
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
    a = calibrate_threshold(
        ref, fn, window=20, stride=20, target_run_length=100, n_blocks=200, seed=7
    )
    b = calibrate_threshold(
        ref, fn, window=20, stride=20, target_run_length=100, n_blocks=200, seed=7
    )
    assert a.threshold == b.threshold  # the generator is owned and seeded
    c = calibrate_threshold(
        ref,
        fn,
        window=20,
        stride=20,
        target_run_length=100,
        n_blocks=200,
        resample_block=25,
        seed=7,
    )
    assert np.isfinite(c.threshold) and c.block_maxima.shape == (200,)
    assert a.block_alarm_rate == pytest.approx(25 / 125)


def test_calibration_rejects_bad_options():
    ref = np.zeros((100, 1))
    fn = lambda w: 0.0  # noqa: E731
    for kwargs in (
        {"window": 0, "stride": 1},
        {"window": 5, "stride": 1.5},
        {"window": 5, "stride": 1, "target_run_length": 2},
        {"window": 5, "stride": 1, "n_blocks": 2},
        {"window": 5, "stride": 1, "resample_block": 1000},
    ):
        with pytest.raises(ValueError):
            calibrate_threshold(ref, fn, **kwargs)


def test_max_ks_statistic_equals_the_ks_test_with_ties_and_constant_columns():
    rng = np.random.default_rng(8)
    ref = np.c_[rng.normal(size=3000), np.round(rng.normal(size=3000)), np.full(3000, 7.0)]
    codes, shift = ks_rank_codes(ref)
    windows = rng.integers(0, 3000, size=(40, 120))
    got = max_ks_statistic(codes[windows].astype(np.int32), 3000, shift)
    want = [ks_test(ref, ref[w]).statistic.max() for w in windows]
    np.testing.assert_array_equal(got, want)


def _ks_run_lengths(ref, threshold, n_streams, cap, seed):
    """Evaluations until max_k D_k first exceeds ``threshold`` on fresh N(0, I) streams."""
    from detectors import UnivariateReference

    uref = UnivariateReference(ref)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_streams):
        stream = rng.normal(size=(W + (cap - 1) * S, ref.shape[1]))
        n = cap
        for i in range(cap):
            if uref.ks(stream[i * S : i * S + W], correction="none").statistic.max() > threshold:
                n = i + 1
                break
        out.append(n)
    return np.array(out)


def test_calibrated_ks_delivers_the_promised_run_length_on_fresh_streams():
    # The daemon's rule: 5 features, a 50-frame window every 10 frames, fire when any KS
    # statistic exceeds the calibrated threshold. Streams are fresh draws from the process, not
    # from the reference, and each of 30 references (4,000 frames) gets its own calibration and
    # 10 streams: the reference's own sampling error is part of what is measured, and the
    # promise is on average over references.
    target = 100
    run_lengths = []
    for i in range(30):
        ref = np.random.default_rng(100 + i).normal(size=(4000, 5))
        cal = calibrate_ks(ref, window=W, stride=S, target_run_length=target, seed=i)
        assert cal.level < ALPHA / 5  # stricter than Bonferroni for a single look
        run_lengths.append(
            _ks_run_lengths(
                ref, cal.statistic_threshold, n_streams=10, cap=20 * target, seed=1000 + i
            )
        )
    rl = np.concatenate(run_lengths)
    mean, se = rl.mean(), rl.std(ddof=1) / np.sqrt(len(rl))
    L = cal.calibration.block_evaluations
    assert target - 3 * se <= mean <= target + L + 3 * se, (mean, se)
    # Bonferroni at alpha on the same schedule: a false alarm every few dozen evaluations
    bonf = _ks_run_lengths(
        ref, max_ks_threshold(ref, ALPHA / 5), n_streams=100, cap=20 * target, seed=12
    )
    assert bonf.mean() < target / 2, bonf.mean()


def max_ks_threshold(ref, level):
    """Largest KS statistic whose exact p-value for (len(ref), W) is above ``level``."""
    from detectors.ks import ks_p_value

    grid = np.arange(1, W + 1) / W  # D is a multiple of 1/lcm; W divides len(ref) here
    ok = [d for d in grid if ks_p_value(len(ref), W, d) > level]
    return max(ok)
