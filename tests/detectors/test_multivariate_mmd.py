"""Kernel MMD (exact, with a precomputed reference) and its random-Fourier-feature variant."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist, pdist

from detectors import (
    MMDReference,
    MultivariateTestResult,
    median_bandwidth,
    mmd2,
    mmd_rff_test,
    mmd_test,
)
from detectors._gram import random_indicators


def direct_mmd2(x, y, sigma, unbiased=True):
    """Textbook O(n^2) computation, written independently of the library's block algebra."""
    kxx = np.exp(-cdist(x, x, "sqeuclidean") / (2 * sigma**2))
    kyy = np.exp(-cdist(y, y, "sqeuclidean") / (2 * sigma**2))
    kxy = np.exp(-cdist(x, y, "sqeuclidean") / (2 * sigma**2))
    m, n = len(x), len(y)
    if unbiased:
        return (
            (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
            + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * kxy.mean()
        )
    return kxx.mean() + kyy.mean() - 2 * kxy.mean()


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("shape", [(30, 20, 3), (17, 40, 1), (25, 25, 8)])
def test_mmd2_matches_direct_computation(shape, unbiased):
    m, n, d = shape
    rng = np.random.default_rng(m * n * d)
    x, y = rng.normal(size=(m, d)), rng.normal(0.3, 1.2, size=(n, d))
    sigma = median_bandwidth(x)
    expected = direct_mmd2(x, y, sigma, unbiased)
    assert mmd2(x, y, unbiased=unbiased) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    ref = MMDReference(x, bandwidth=sigma)
    assert ref.mmd2(y, unbiased=unbiased) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    ref32 = MMDReference(x, bandwidth=sigma, dtype="float32")
    assert ref32.mmd2(y, unbiased=unbiased) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert mmd_test(x, y, seed=0).statistic == pytest.approx(
        direct_mmd2(x, y, sigma), rel=1e-10, abs=1e-12
    )


def test_median_bandwidth_is_median_pairwise_distance():
    x = np.random.default_rng(1).normal(size=(60, 5))
    assert median_bandwidth(x) == pytest.approx(np.median(pdist(x)))


def test_user_bandwidth_is_used():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(15, 2))
    assert MMDReference(x, bandwidth=0.7).bandwidth == 0.7
    assert mmd2(x, y, bandwidth=0.7) == pytest.approx(direct_mmd2(x, y, 0.7))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_permuted_statistics_match_direct_relabelling(dtype):
    """The matrix-product relabellings equal MMD^2 recomputed from scratch on each relabelling."""
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(23, 3)), rng.normal(size=(11, 3))
    ref = MMDReference(x, dtype=dtype)
    blocks = ref._blocks(y)
    q, lin, dc = blocks.permuted_forms(np.random.default_rng(7), 300)  # > one chunk of 128
    fast = ref._mmd2(blocks, q, lin, dc)
    # Replay the same random relabellings (same generator, same chunking).
    replay = np.random.default_rng(7)
    ind = np.concatenate(
        [random_indicators(replay, 34, 11, b, np.float64) for b in (128, 128, 44)], axis=1
    )
    pooled = np.concatenate([x, y])
    slow = [direct_mmd2(pooled[col == 0], pooled[col == 1], ref.bandwidth) for col in ind.T]
    tol = 1e-10 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(fast, slow, rtol=tol, atol=tol)


def test_random_indicators_pick_exactly_n_uniformly():
    ind = random_indicators(np.random.default_rng(0), 10, 3, 4000, np.float64)
    assert np.all(ind.sum(axis=0) == 3)
    freq = ind.mean(axis=1)
    np.testing.assert_allclose(freq, 0.3, atol=0.03)


def test_result_fields_and_smallest_p_value():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(40, 2)), rng.normal(5.0, 1.0, size=(30, 2))
    res = mmd_test(x, y, n_permutations=49, alpha=0.05, seed=0)
    assert isinstance(res, MultivariateTestResult)
    assert (res.method, res.n_ref, res.n_cur, res.threshold) == ("mmd", 40, 30, 0.05)
    assert res.p_value == pytest.approx(1 / 50)
    assert res.drifted and not hasattr(res, "drift")  # one verdict name
    assert "permutation" in res.p_value_note


def test_reference_is_reused_and_seed_reproducible():
    rng = np.random.default_rng(5)
    ref = MMDReference(rng.normal(size=(100, 4)))
    assert ref.n_ref == 100 and ref.n_dims == 4 and ref.nbytes == 100 * 100 * 8
    y = rng.normal(size=(30, 4))
    a = ref.test(y, seed=11)
    b = ref.test(y, seed=11)
    assert a == b
    assert a.p_value == mmd_test(ref._x, y, seed=11).p_value


@pytest.mark.parametrize(
    "kwargs",
    [{"n_permutations": 0}, {"alpha": 0.0}, {"alpha": 1.5}, {"bandwidth": -1.0}],
)
def test_bad_options_rejected(kwargs):
    rng = np.random.default_rng(6)
    with pytest.raises(ValueError):
        mmd_test(rng.normal(size=(10, 2)), rng.normal(size=(10, 2)), **kwargs)


def test_bad_inputs_rejected():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="same number of dimensions"):
        mmd_test(x, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        mmd_test(x, np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="dimensions"):
        MMDReference(x).test(rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="dtype"):
        MMDReference(x, dtype="float16")


def test_rff_statistic_is_unbiased_mmd2_of_the_feature_kernel():
    """With D features the statistic is the exact unbiased MMD^2 of k(x, y) = z(x).z(y)."""
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(30, 3)), rng.normal(0.5, 1.0, size=(20, 3))
    sigma, n_features = 1.3, 64
    res = mmd_rff_test(x, y, bandwidth=sigma, n_features=n_features, seed=5)
    g = np.random.default_rng(5)  # replay the feature draw
    w = g.standard_normal((3, n_features)) / sigma
    b = g.uniform(0, 2 * np.pi, n_features)
    zx = np.sqrt(2 / n_features) * np.cos(x @ w + b)
    zy = np.sqrt(2 / n_features) * np.cos(y @ w + b)
    kxx, kyy, kxy = zx @ zx.T, zy @ zy.T, zx @ zy.T
    expected = (
        (kxx.sum() - np.trace(kxx)) / (30 * 29)
        + (kyy.sum() - np.trace(kyy)) / (20 * 19)
        - 2 * kxy.mean()
    )
    assert res.statistic == pytest.approx(expected, rel=1e-10)
    assert res.method == "mmd_rff"


def test_rff_approaches_exact_mmd_with_many_features():
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(200, 4)), rng.normal(0.7, 1.0, size=(150, 4))
    exact = mmd2(x, y)
    approx = mmd_rff_test(x, y, n_features=20000, n_permutations=1, seed=0).statistic
    assert approx == pytest.approx(exact, rel=0.05)
