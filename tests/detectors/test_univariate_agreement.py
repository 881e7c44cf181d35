"""Every univariate statistic and p-value agrees with scipy on the same data."""

from __future__ import annotations

import warnings
from itertools import pairwise

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import stats
from scipy.spatial.distance import jensenshannon

from detectors import (
    UnivariateReference,
    anderson_test,
    chi2_test,
    correct,
    cvm_test,
    g_test,
    hellinger_test,
    jensen_shannon_test,
    ks_test,
    psi_test,
    wasserstein_test,
)


def _datasets(seed: int, n_sets: int, max_n: int = 60, k: int = 3):
    """Random pairs: continuous, heavily tied (small integers), mixed, current values repeating
    reference values, tiny and unequal sizes."""
    rng = np.random.default_rng(seed)
    for i in range(n_sets):
        n1 = int(rng.integers(1, max_n))
        n2 = int(rng.integers(1, max_n))
        kind = i % 4
        if kind == 0:
            x, y = rng.normal(size=(n1, k)), rng.normal(0.3, 1.2, size=(n2, k))
        elif kind == 1:
            x = rng.integers(0, 4, size=(n1, k)).astype(float)
            y = rng.integers(0, 5, size=(n2, k)).astype(float)
        elif kind == 2:
            x = np.round(rng.exponential(size=(n1, k)), 1)
            y = np.round(rng.exponential(1.3, size=(n2, k)), 1)
        else:  # distinct reference values, some of them repeated in the current window
            x = rng.normal(size=(n1, k))
            y = np.where(
                rng.uniform(size=(n2, k)) < 0.5,
                x[rng.integers(0, n1, size=(n2, k)), 0],
                rng.normal(size=(n2, k)),
            )
        yield x, y


@pytest.mark.parametrize("method", ["auto", "exact", "asymp"])
def test_ks_matches_scipy_on_random_and_tied_data(method):
    n_checked = 0
    for x, y in _datasets(1, 150):
        res = ks_test(x, y, method=method, correction="none")
        for c in range(x.shape[1]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # scipy's exact->asymp notice
                ref = stats.ks_2samp(x[:, c], y[:, c], method=method)
            assert_allclose(res.statistic[c], ref.statistic, rtol=1e-12)
            assert_allclose(res.p_value[c], ref.pvalue, rtol=1e-10, atol=1e-300)
            n_checked += 1
    assert n_checked == 450


def test_ks_matches_scipy_at_daemon_sizes():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 4))
    y = np.c_[rng.normal(size=(1000, 2)), rng.normal(0.1, size=(1000, 2))]
    res = ks_test(x, y)
    expected = [stats.ks_2samp(x[:, c], y[:, c]) for c in range(4)]
    assert_allclose(res.statistic, [e.statistic for e in expected], rtol=1e-12)
    assert_allclose(res.p_value, [e.pvalue for e in expected], rtol=1e-10)
    # above scipy's exact limit, "auto" is asymptotic in both
    big = rng.normal(size=(10_001, 2))
    res = ks_test(big, y[:, :2])
    assert res.p_value_note.startswith("asymptotic")
    assert_allclose(
        res.p_value, [stats.ks_2samp(big[:, c], y[:, c]).pvalue for c in range(2)], rtol=1e-10
    )


@pytest.mark.parametrize("method", ["auto", "asymptotic"])
def test_cvm_matches_scipy(method):
    for x, y in _datasets(3, 60, max_n=15 if method == "auto" else 40):
        if min(len(x), len(y)) < 2:
            continue
        if any(len(np.unique(np.r_[x[:, c], y[:, c]])) < 2 for c in range(x.shape[1])):
            continue  # one distinct value: documented deviation, tested separately
        res = cvm_test(x, y, method=method, correction="none")
        for c in range(x.shape[1]):
            ref = stats.cramervonmises_2samp(x[:, c], y[:, c], method=method)
            assert_allclose(res.statistic[c], ref.statistic, rtol=1e-9, atol=1e-12)
            assert_allclose(res.p_value[c], ref.pvalue, rtol=1e-9, atol=1e-12)


def test_cvm_large_samples_match_scipy():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(3000, 3)), rng.normal(0.05, size=(700, 3))
    res = cvm_test(x, y)
    for c in range(3):
        ref = stats.cramervonmises_2samp(x[:, c], y[:, c])
        assert_allclose([res.statistic[c], res.p_value[c]], [ref.statistic, ref.pvalue], rtol=1e-9)


def test_anderson_matches_scipy_midrank_and_is_clipped():
    seen_clipped = set()
    for x, y in _datasets(5, 120, max_n=50):
        if len(x) + len(y) < 4:
            continue
        res = anderson_test(x, y, correction="none")
        assert "clipped to [0.001, 0.25]" in res.p_value_note
        for c in range(x.shape[1]):
            if len(np.unique(np.r_[x[:, c], y[:, c]])) < 2:
                continue  # scipy raises; documented behaviour tested separately
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy's "p-value capped/floored" warnings
                ref = stats.anderson_ksamp([x[:, c], y[:, c]], variant="midrank")
            assert_allclose(res.statistic[c], ref.statistic, rtol=1e-9, atol=1e-12)
            assert_allclose(res.p_value[c], ref.pvalue, rtol=1e-9)
            if ref.pvalue in (0.25, 0.001):
                seen_clipped.add(float(ref.pvalue))
    assert seen_clipped == {0.25, 0.001}


def test_wasserstein_matches_scipy_distance_over_reference_std():
    for x, y in _datasets(6, 120):
        res = wasserstein_test(x, y)
        for c in range(x.shape[1]):
            w = stats.wasserstein_distance(x[:, c], y[:, c])
            sd = np.std(x[:, c])
            if sd > 0:
                assert_allclose(res.statistic[c], w / sd, rtol=1e-9, atol=1e-12)
            else:
                assert np.isfinite(res.statistic[c])
                assert (res.statistic[c] == 0) == (w == 0)


def test_wasserstein_coprime_sizes():
    rng = np.random.default_rng(7)
    x, y = rng.gamma(2.0, size=(997, 2)), rng.gamma(2.2, size=(331, 2))
    res = wasserstein_test(x, y)
    expected = [stats.wasserstein_distance(x[:, c], y[:, c]) / x[:, c].std() for c in range(2)]
    assert_allclose(res.statistic, expected, rtol=1e-10)


def _proportions(x, y, bins):
    """Reference-quantile histogram proportions, computed independently of the library."""
    xs = np.sort(x)
    edges = np.unique(
        np.r_[xs[0], np.quantile(xs, np.arange(1, bins) / bins), np.nextafter(xs[-1], np.inf)]
    )
    full = np.r_[-np.inf, edges, np.inf]
    # [e_i, e_{i+1}) bins: histogram with left-closed bins via counting
    p = np.array([np.mean((x >= lo) & (x < hi)) for lo, hi in pairwise(full)])
    q = np.array([np.mean((y >= lo) & (y < hi)) for lo, hi in pairwise(full)])
    return p, q


def test_jensen_shannon_and_hellinger_match_definitions():
    for x, y in _datasets(8, 60, max_n=80):
        js = jensen_shannon_test(x, y, bins=5)
        hel = hellinger_test(x, y, bins=5)
        for c in range(x.shape[1]):
            p, q = _proportions(x[:, c], y[:, c], 5)
            assert_allclose(js.statistic[c], jensenshannon(p, q), rtol=1e-9, atol=1e-12)
            assert_allclose(
                hel.statistic[c], np.sqrt(1 - np.sum(np.sqrt(p * q))), rtol=1e-7, atol=1e-7
            )


def test_psi_matches_definition():
    for x, y in _datasets(9, 60, max_n=80):
        res = psi_test(x, y, bins=4)
        for c in range(x.shape[1]):
            p, q = _proportions(x[:, c], y[:, c], 4)
            p, q = np.maximum(p, 1e-4), np.maximum(q, 1e-4)
            assert_allclose(res.statistic[c], np.sum((q - p) * np.log(q / p)), rtol=1e-10)


def test_psi_hand_computed():
    ref = np.arange(10.0)  # bins=2 -> edges [0, 4.5, next(9)]: <0, [0,4.5), [4.5,9], >9
    cur = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 1, 2])  # 7 low, 3 high
    expected = 0.2 * np.log(0.7 / 0.5) - 0.2 * np.log(0.3 / 0.5)
    assert_allclose(psi_test(ref, cur, bins=2).statistic, [expected], rtol=1e-12)
    # one value above the reference range: 0.1 in the empty top bin (epsilon 1e-4)
    cur = np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 20])
    expected = (0.5 - 0.5) * 0 + (0.4 - 0.5) * np.log(0.4 / 0.5) + (0.1 - 1e-4) * np.log(0.1 / 1e-4)
    res = psi_test(ref, cur, bins=2, threshold=0.2)
    assert_allclose(res.statistic, [expected], rtol=1e-12)
    assert res.drifted.tolist() == [True]
    assert res.p_value is None and res.adjusted_p_value is None and res.correction == "none"
    assert "no p-value" in res.p_value_note


def test_js_hellinger_wasserstein_hand_computed():
    ref = np.arange(10.0)
    top = np.full(10, 9.0)  # (0.5, 0.5) vs (0, 1) on bins=2
    assert_allclose(
        jensen_shannon_test(ref, top, bins=2).statistic, [np.sqrt(0.75 * np.log(4 / 3))], rtol=1e-12
    )
    assert_allclose(
        hellinger_test(ref, top, bins=2).statistic, [np.sqrt(1 - np.sqrt(0.5))], rtol=1e-12
    )
    # W1 between {0,1,2,3} and {1,2,3,4} is 1; std of {0,1,2,3} is sqrt(1.25)
    assert_allclose(
        wasserstein_test([0.0, 1, 2, 3], [1.0, 2, 3, 4]).statistic, [1 / np.sqrt(1.25)], rtol=1e-12
    )
    # unequal sizes: {0, 2} vs {1}: W1 = 1, std = 1
    assert_allclose(wasserstein_test([0.0, 2.0], [1.0]).statistic, [1.0], rtol=1e-12)


def test_categorical_matches_scipy_contingency():
    rng = np.random.default_rng(10)
    for i in range(60):
        n1, n2 = int(rng.integers(5, 200)), int(rng.integers(5, 200))
        x = rng.integers(0, 4, size=(n1, 3))
        y = rng.integers(0, 4 + i % 3, size=(n2, 3))  # sometimes categories unseen in x
        chi, g = chi2_test(x, y, correction="none"), g_test(x, y, correction="none")
        for c in range(3):
            cats = np.union1d(x[:, c], y[:, c])
            table = np.array(
                [[np.sum(x[:, c] == v) for v in cats], [np.sum(y[:, c] == v) for v in cats]]
            )
            if len(cats) < 2:
                assert chi.statistic[c] == 0 and chi.p_value[c] == 1
                continue
            r_chi = stats.chi2_contingency(table, correction=False)
            r_g = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
            assert_allclose(
                [chi.statistic[c], chi.p_value[c]],
                [r_chi.statistic, r_chi.pvalue],
                rtol=1e-9,
                atol=1e-300,
            )
            assert_allclose(
                [g.statistic[c], g.p_value[c]], [r_g.statistic, r_g.pvalue], rtol=1e-9, atol=1e-300
            )
            # the same numbers through power_divergence on the flattened table
            expected = stats.contingency.expected_freq(table)
            pd = stats.power_divergence(
                table.ravel(),
                expected.ravel(),
                ddof=table.size - 1 - (len(cats) - 1),
                lambda_="log-likelihood",
            )
            assert_allclose(
                [g.statistic[c], g.p_value[c]], [pd.statistic, pd.pvalue], rtol=1e-9, atol=1e-300
            )


def test_categorical_string_labels_and_unseen_category():
    ref = np.array(["day"] * 80 + ["night"] * 20)
    cur = np.array(["day"] * 30 + ["night"] * 20 + ["fog"] * 10)
    res = chi2_test(ref, cur)
    table = np.array([[80, 0, 20], [30, 10, 20]])
    assert_allclose(res.statistic, [stats.chi2_contingency(table, correction=False).statistic])
    assert np.isfinite(res.statistic).all() and res.drifted.tolist() == [True]


def test_correction_matches_scipy_bh_and_bonferroni():
    rng = np.random.default_rng(11)
    for _ in range(200):
        m = int(rng.integers(1, 40))
        p = rng.uniform(size=m) ** rng.uniform(0.5, 4)
        c = correct(p, alpha=0.05, method="bh")
        assert_allclose(
            c.adjusted_p_value, stats.false_discovery_control(p, method="bh"), rtol=1e-12
        )
        # BH rejects exactly what the step-up rule rejects
        ps = np.sort(p)
        passing = np.nonzero(ps <= np.arange(1, m + 1) * 0.05 / m)[0]
        n_rej = passing[-1] + 1 if len(passing) else 0
        assert c.drifted.sum() == n_rej
        b = correct(p, alpha=0.05, method="bonferroni")
        assert_allclose(b.adjusted_p_value, np.minimum(p * m, 1))
        assert_array_equal(b.drifted, p * m <= 0.05)
    rows = rng.uniform(size=(5, 7))
    batched = correct(rows, method="bh")
    for i in range(5):
        assert_allclose(batched.adjusted_p_value[i], correct(rows[i], method="bh").adjusted_p_value)


def test_reference_methods_equal_pure_functions():
    rng = np.random.default_rng(12)
    x = np.c_[rng.normal(size=(800, 3)), rng.integers(0, 3, size=(800, 1)), np.full(800, 7.0)]
    ref = UnivariateReference(x, psi_bins=8)
    for shift in (0.0, 0.3):
        y = np.c_[
            rng.normal(shift, size=(300, 3)), rng.integers(0, 4, size=(300, 1)), np.full(300, 7.0)
        ]
        pairs = [
            (ref.ks(y, alpha=0.01, correction="bh"), ks_test(x, y, alpha=0.01, correction="bh")),
            (ref.cvm(y), cvm_test(x, y)),
            (ref.anderson(y), anderson_test(x, y)),
            (ref.psi(y, threshold=0.1), psi_test(x, y, threshold=0.1, bins=8)),
            (ref.wasserstein(y), wasserstein_test(x, y)),
            (ref.jensen_shannon(y), jensen_shannon_test(x, y, bins=8)),
            (ref.hellinger(y), hellinger_test(x, y, bins=8)),
        ]
        for a, b in pairs:
            _assert_same_result(a, b)
    back = UnivariateReference.from_arrays(ref.to_arrays())
    _assert_same_result(back.ks(y), ref.ks(y))
    _assert_same_result(back.psi(y), ref.psi(y))
    assert back.feature_names == ref.feature_names
    assert_allclose(ref.quantiles([0.0, 0.5, 1.0]), np.quantile(x, [0.0, 0.5, 1.0], axis=0))


ALL_METHODS = ("ks", "cvm", "anderson", "psi", "wasserstein", "jensen_shannon", "hellinger")


@pytest.mark.parametrize("seed", range(4))
def test_placed_window_gives_the_raw_windows_results(seed):
    """Every method on a PlacedWindow equals the method on the raw array, bit for bit, in any
    order of calls (the sort and the placement are shared, never stale)."""
    rng = np.random.default_rng(seed)
    x = np.c_[rng.normal(size=(500, 2)), rng.integers(0, 3, size=(500, 1)), np.full(500, 7.0)]
    ref = UnivariateReference(x, psi_bins=6)
    for y in (
        np.c_[rng.normal(0.2, size=(120, 2)), rng.integers(0, 4, size=(120, 1)), np.full(120, 7.0)],
        x[:37],
    ):
        options = {
            "ks": {"alpha": 0.01, "correction": "bh"},
            "cvm": {"correction": "none"},
            "psi": {"threshold": 0.05},
        }
        order = list(ALL_METHODS)
        rng.shuffle(order)
        placed = ref.place(y)
        for name in order:
            kw = options.get(name, {})
            _assert_same_result(getattr(ref, name)(placed, **kw), getattr(ref, name)(y, **kw))
        assert placed.pooled is placed.pooled and placed.n_cur == len(y)
    one_column = UnivariateReference(x[:, 0])
    _assert_same_result(one_column.ks(one_column.place(y[:, 0])), one_column.ks(y[:, 0]))
    with pytest.raises(ValueError, match="another reference"):
        UnivariateReference(x).ks(placed)
    with pytest.raises(ValueError, match="x_cur"):
        ref.place(np.zeros((5, 3)))


def _assert_same_result(a, b):
    assert a.method == b.method and a.correction == b.correction
    assert a.p_value_note == b.p_value_note and a.threshold == b.threshold
    assert (a.n_ref, a.n_cur) == (b.n_ref, b.n_cur)
    assert_array_equal(a.statistic, b.statistic)
    assert_array_equal(a.drifted, b.drifted)
    if a.p_value is None:
        assert b.p_value is None and b.adjusted_p_value is None
    else:
        assert_array_equal(a.p_value, b.p_value)
        assert_array_equal(a.adjusted_p_value, b.adjusted_p_value)


@pytest.mark.filterwarnings("error")
def test_constant_columns_give_finite_results_without_warnings():
    x = np.c_[np.full(200, 640.0), np.full(200, 0.1), np.random.default_rng(0).normal(size=200)]
    same = np.c_[np.full(50, 640.0), np.full(50, 0.1), np.zeros(50)]
    moved = np.c_[np.full(50, 641.0), np.full(50, 0.2), np.zeros(50)]
    ref = UnivariateReference(x)
    for y, drifted in ((same, False), (moved, True)):
        placed = ref.place(y)
        results = {name: getattr(ref, name)(placed) for name in ALL_METHODS}
        results["chi2"] = chi2_test(x[:, :2], y[:, :2])
        results["g_test"] = g_test(x[:, :2], y[:, :2])
        for name, res in results.items():
            assert np.all(np.isfinite(res.statistic)), name
            if res.p_value is not None:
                assert np.all(np.isfinite(res.p_value)), name
            assert res.drifted[:2].tolist() == [drifted, drifted], name


def test_bad_options_are_rejected_up_front():
    x, y = np.zeros((10, 2)), np.zeros((10, 2))
    with pytest.raises(ValueError):
        ks_test(x, y, method="fast")
    with pytest.raises(ValueError):
        ks_test(x, y, correction="holm")
    with pytest.raises(ValueError):
        ks_test(x, y, alpha=1.5)
    with pytest.raises(ValueError):
        ks_test(x, np.zeros((10, 3)))
    with pytest.raises(ValueError):
        ks_test(x, np.full((10, 2), np.nan))
    with pytest.raises(ValueError):
        ks_test(np.zeros((0, 2)), y)
    with pytest.raises(ValueError):
        cvm_test(x, y, method="permutation")
    with pytest.raises(ValueError):
        psi_test(x, y, bins=1)
    with pytest.raises(ValueError):
        wasserstein_test(x, y, threshold=-1)
    with pytest.raises(ValueError):
        correct([0.5, 1.2])
    with pytest.raises(ValueError):
        correct([0.5], method="holm")
    with pytest.raises(ValueError):
        UnivariateReference(x, feature_names=["a"])
    with pytest.raises(ValueError):
        UnivariateReference(x).ks(np.zeros((5, 3)))
