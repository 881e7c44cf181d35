"""Classifier two-sample test: AUC against scipy's Mann-Whitney U, cross-fitting, scores."""

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from detectors import ClassifierTestResult, MultivariateTestResult, classifier_test
from detectors.classifier import auc_u


def test_auc_u_matches_direct_pair_count_and_scipy():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 20, size=37).astype(float)  # ties on purpose
    cur = rng.integers(3, 25, size=23).astype(float)
    u, mean, var = auc_u(ref, cur)
    direct = np.sum(cur[:, None] > ref[None, :]) + 0.5 * np.sum(cur[:, None] == ref[None, :])
    assert u == direct
    assert u == mannwhitneyu(cur, ref).statistic
    assert mean == 37 * 23 / 2
    # scipy's asymptotic p-value uses the same tie-corrected variance and continuity correction.
    from scipy.stats import norm

    p_scipy = mannwhitneyu(cur, ref, alternative="greater", method="asymptotic").pvalue
    assert norm.sf((u - mean - 0.5) / np.sqrt(var)) == pytest.approx(p_scipy, rel=1e-10)


@pytest.mark.parametrize("features", ["linear", "quadratic"])
def test_statistic_is_within_fold_auc_and_every_sample_is_scored(features):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(120, 3)), rng.normal(0.3, 1.0, size=(70, 3))
    res = classifier_test(x, y, n_folds=4, seed=3, features=features)
    assert isinstance(res, ClassifierTestResult) and isinstance(res, MultivariateTestResult)
    assert res.scores.shape == (70,) and res.ref_scores.shape == (120,)
    assert np.all(np.isfinite(res.scores))
    # Stratified folds of near-equal size.
    assert np.bincount(res.ref_fold).tolist() == [30] * 4
    assert sorted(np.bincount(res.cur_fold).tolist()) == [17, 17, 18, 18]
    u_total = pairs = 0.0
    for k in range(4):
        s_r, s_c = res.ref_scores[res.ref_fold == k], res.scores[res.cur_fold == k]
        u = mannwhitneyu(s_c, s_r).statistic
        assert res.fold_auc[k] == pytest.approx(u / (len(s_r) * len(s_c)))
        u_total += u
        pairs += len(s_r) * len(s_c)
    assert res.statistic == pytest.approx(u_total / pairs)


def test_cross_fitting_scores_come_from_models_that_did_not_see_the_sample():
    """Changing one held-out window sample's features changes only its own score in its fold's
    scoring, never the scores of the other samples of that fold (their model did not train on it).
    """
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(40, 2))
    a = classifier_test(x, y, n_folds=5, seed=0)
    k = a.cur_fold[0]
    y2 = y.copy()
    y2[0] += 2.0
    b = classifier_test(x, y2, n_folds=5, seed=0)
    same_fold = a.cur_fold == k
    same_fold[0] = False
    np.testing.assert_allclose(a.scores[same_fold], b.scores[same_fold], rtol=1e-6)
    np.testing.assert_allclose(
        a.ref_scores[a.ref_fold == k], b.ref_scores[a.ref_fold == k], rtol=1e-6
    )
    assert not np.allclose(a.scores[~same_fold], b.scores[~same_fold])


def test_clear_shift_gives_high_auc_and_tiny_p():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 4)), rng.normal(1.5, 1.0, size=(100, 4))
    res = classifier_test(x, y, seed=0)
    assert res.statistic > 0.9 and res.p_value == pytest.approx(1 / 101) and res.drifted


def test_validation():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 2))
    for kwargs in ({"n_folds": 1}, {"features": "cubic"}, {"l2": 0.0}, {"alpha": 2.0}):
        with pytest.raises(ValueError):
            classifier_test(x, x, **kwargs)
    with pytest.raises(ValueError, match="n_folds"):
        classifier_test(x, x[:3], n_folds=5)


def test_statistic_matches_an_independent_cross_fitted_discriminant():
    """Refit each fold from scratch (plain numpy) and recompute AUC and scores."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(90, 3)), rng.normal(0.2, 1.0, size=(45, 3))
    res = classifier_test(x, y, n_folds=3, seed=1, l2=0.1, n_permutations=20)
    u_total = pairs = 0.0
    for k in range(3):
        xr_tr, yc_tr = x[res.ref_fold != k], y[res.cur_fold != k]
        tr = np.vstack([xr_tr, yc_tr])
        mu, sd = tr.mean(axis=0), tr.std(axis=0)
        z = (tr - mu) / sd
        t = np.r_[np.full(len(xr_tr), -1 / len(xr_tr)), np.full(len(yc_tr), 1 / len(yc_tr))]
        beta = np.linalg.solve(z.T @ z / len(z) + 0.1 * np.eye(3), z.T @ t / len(z))
        s_ref = ((x[res.ref_fold == k] - mu) / sd) @ beta
        s_cur = ((y[res.cur_fold == k] - mu) / sd) @ beta
        np.testing.assert_allclose(
            res.scores[res.cur_fold == k], (s_cur - s_ref.mean()) / s_ref.std(ddof=1), rtol=1e-8
        )
        u_total += np.sum(s_cur[:, None] > s_ref[None, :])
        pairs += len(s_ref) * len(s_cur)
    assert res.statistic == pytest.approx(u_total / pairs)
    assert res.p_value_note.startswith("permutation (B=20")
    assert 1 / 21 <= res.p_value <= 1.0
