"""PCA fitted on the reference, and per-dimension KS with Bonferroni."""

import numpy as np
import pytest
from scipy.stats import ks_2samp

from detectors import PCA, KSDimsTestResult, ks_dims_test


def correlated(rng, n, d=6):
    a = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ a + np.arange(d)


def test_pca_matches_eigendecomposition_of_covariance():
    x = correlated(np.random.default_rng(0), 400)
    pca = PCA(3).fit(x)
    evals, evecs = np.linalg.eigh(np.cov(x, rowvar=False))
    order = np.argsort(evals)[::-1][:3]
    np.testing.assert_allclose(pca.explained_variance_, evals[order], rtol=1e-10)
    # Same axes up to sign; orthonormal rows.
    np.testing.assert_allclose(np.abs(pca.components_ @ evecs[:, order]), np.eye(3), atol=1e-8)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(3), atol=1e-12)
    z = pca.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(z.var(axis=0, ddof=1), pca.explained_variance_, rtol=1e-10)


def test_pca_round_trips():
    rng = np.random.default_rng(1)
    x = correlated(rng, 300)
    full = PCA().fit(x)
    np.testing.assert_allclose(full.inverse_transform(full.transform(x)), x, atol=1e-9)
    pca = PCA().fit(x, n_components=4)
    arrays = pca.to_arrays()
    assert set(arrays) == {"mean", "components", "explained_variance", "explained_variance_ratio"}
    # Through a real .npz file, as a reference file would store it.
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    with np.load(buf) as loaded:
        again = PCA.from_arrays(loaded)
    y = correlated(rng, 50)
    np.testing.assert_array_equal(again.transform(y), pca.transform(y))
    assert again.n_components == 4
    # Refitting gives identical arrays (deterministic signs).
    refit = PCA().fit(x, n_components=4).to_arrays()
    for key in arrays:
        np.testing.assert_array_equal(refit[key], arrays[key])


def test_pca_validation():
    x = np.random.default_rng(2).normal(size=(10, 3))
    with pytest.raises(ValueError):
        PCA().fit(x, n_components=4)
    with pytest.raises(ValueError, match="not fitted"):
        PCA().transform(x)
    with pytest.raises(ValueError, match="dimensions"):
        PCA().fit(x).transform(np.ones((2, 5)))
    with pytest.raises(ValueError):
        PCA.from_arrays(
            {"mean": np.zeros(3), "components": np.zeros((2, 4)), "explained_variance": np.zeros(2)}
        )


def test_ks_dims_matches_scipy_with_bonferroni():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(80, 5)), rng.normal(size=(60, 5))
    y[:, 1] *= 1.8
    res = ks_dims_test(x, y, alpha=0.05)
    assert isinstance(res, KSDimsTestResult)
    per = [ks_2samp(x[:, k], y[:, k]) for k in range(5)]
    np.testing.assert_allclose(res.dim_statistic, [r.statistic for r in per])
    np.testing.assert_allclose(res.dim_p_value, [r.pvalue for r in per])
    assert res.statistic == max(r.statistic for r in per)
    assert res.p_value == pytest.approx(min(1.0, 5 * min(r.pvalue for r in per)))
    assert res.drifted == (res.p_value <= 0.05)
    assert (res.method, res.n_ref, res.n_cur) == ("ks_dims", 80, 60)


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")
def test_ks_dims_with_pca_and_p_value_capped_at_one():
    rng = np.random.default_rng(4)
    x = correlated(rng, 200)
    pca = PCA().fit(x, n_components=3)
    res = ks_dims_test(x, x[::-1].copy(), pca=pca)
    assert res.dim_statistic.shape == (3,)
    assert res.statistic == 0.0 and res.p_value == 1.0 and not res.drifted
    shifted = x + 3.0 * pca.components_[0]
    assert ks_dims_test(x, shifted, pca=pca).drifted
    with pytest.raises(ValueError):
        ks_dims_test(x, x, method="fast")
