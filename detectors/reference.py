"""A reference fitted once and evaluated against many windows (the daemon's hot path)."""

from __future__ import annotations

import numpy as np

from detectors._univariate_common import p_value_result, threshold_result
from detectors._pooled import Pooled, SortedReference, sorted_columns
from detectors.anderson import anderson_from_pooled
from detectors.binning import current_proportions, fit_histograms
from detectors.cvm import CVM_METHODS, cvm_from_pooled
from detectors.divergence import hellinger_from_proportions, js_from_proportions
from detectors.ks import KS_METHODS, ks_from_pooled
from detectors.psi import psi_from_proportions
from detectors.result import FeatureTestResult
from detectors.validation import (
    as_columns, as_unit_values, check_alpha, check_bins, check_choice, check_correction,
    check_threshold, check_width)
from detectors.wasserstein import std_denominator, wasserstein_from_sorted

#: Tests :meth:`UnivariateReference.evaluate` knows, by result ``method`` name.
UNIVARIATE_TESTS = ("ks", "cvm", "anderson", "psi", "wasserstein", "jensen_shannon",
                    "hellinger")


class UnivariateReference:
    """Reference sample fitted once for every univariate test.

    Fitting sorts each column and computes what every window reuses: the PSI / JS /
    Hellinger bin edges and reference histograms, the mean and standard deviation used to
    normalise Wasserstein, and the within-reference counts that KS, Cramér-von Mises and
    Anderson-Darling share (a window is placed in the reference once, for all three).
    Every method returns exactly what the matching pure function (``ks_test``, ...) returns
    for ``(x_ref, x_cur)``: both run the same code on the same sorted columns.

    Parameters
    ----------
    x_ref : array_like, shape (n_ref, k) or (n_ref,)
        Reference sample (finite values).
    feature_names : sequence of str, optional
        One name per column (defaults to ``"f0"``, ``"f1"``, ...); kept for reports.
    psi_bins : int
        Number of reference-quantile bins for PSI, Jensen-Shannon and Hellinger.

    Notes
    -----
    Serialisation: :meth:`to_arrays` returns plain numpy arrays (the sorted columns, the
    names, the bin count) and :meth:`from_arrays` re-fits from them; re-fitting is cheap
    (a sort) and avoids storing derived state that could disagree with the data. Pickle
    works too. Sorting each column drops the pairing of values across columns, which no
    univariate test uses.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import UnivariateReference
    >>> rng = np.random.default_rng(0)
    >>> ref = UnivariateReference(rng.normal(size=(5000, 3)),
    ...                           feature_names=["brightness", "contrast", "sharpness"])
    >>> window = rng.normal(size=(1000, 3)) + [0.0, 0.0, 0.3]
    >>> ref.ks(window).drifted.tolist()
    [False, False, True]
    >>> ref.wasserstein(window).drifted.tolist()
    [False, False, True]
    >>> ref.quantiles([0.05, 0.95]).shape
    (2, 3)
    """

    def __init__(self, x_ref, *, feature_names=None, psi_bins: int = 10):
        ref = as_columns(x_ref, "x_ref")
        self.psi_bins = check_bins(psi_bins)
        n, k = ref.shape
        if feature_names is None:
            feature_names = [f"f{i}" for i in range(k)]
        feature_names = [str(f) for f in feature_names]
        if len(feature_names) != k:
            raise ValueError(f"{len(feature_names)} feature names for {k} columns")
        self.feature_names = feature_names
        self._sorted = sorted_columns(ref)
        self._mean = ref.mean(axis=0)
        self._denominator = std_denominator(self._mean, ref.std(axis=0))
        self._edges, self._ref_props = fit_histograms(self._sorted, self.psi_bins)
        self._ranked = SortedReference(self._sorted)

    @property
    def n_ref(self) -> int:
        return self._sorted.shape[1]

    @property
    def n_features(self) -> int:
        return self._sorted.shape[0]

    # --- serialisation -------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays that :meth:`from_arrays` re-fits from (e.g. for ``np.savez``)."""
        return {"x_ref_sorted": self._sorted.T.copy(),
                "feature_names": np.array(self.feature_names, dtype=str),
                "psi_bins": np.array(self.psi_bins)}

    @classmethod
    def from_arrays(cls, arrays) -> "UnivariateReference":
        return cls(arrays["x_ref_sorted"], feature_names=[str(f) for f in arrays["feature_names"]],
                   psi_bins=int(arrays["psi_bins"]))

    # --- helpers -------------------------------------------------------------------------
    def _current(self, x_cur) -> np.ndarray:
        cur = as_columns(x_cur, "x_cur")
        check_width(cur, self.n_features, "x_cur")
        return cur

    def quantiles(self, q) -> np.ndarray:
        """Reference quantiles per feature: shape ``(len(q), k)``, or ``(k,)`` for scalar q.

        Linear interpolation (numpy's default); for dashboards' reference bands.
        """
        q = as_unit_values(q, "q")
        return np.quantile(self._sorted, q, axis=1)

    # --- tests -----------------------------------------------------------------------------
    def ks(self, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni",
           method: str = "auto") -> FeatureTestResult:
        """Kolmogorov-Smirnov test of ``x_cur`` against the reference (see ``ks_test``)."""
        check_choice(method, "method", KS_METHODS)
        alpha = check_alpha(alpha)
        check_correction(correction)
        return self._ks(self._pooled(x_cur), alpha, correction, method)

    def cvm(self, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni",
            method: str = "auto") -> FeatureTestResult:
        """Cramér-von Mises test of ``x_cur`` against the reference (see ``cvm_test``)."""
        check_choice(method, "method", CVM_METHODS)
        alpha = check_alpha(alpha)
        check_correction(correction)
        return self._cvm(self._pooled(x_cur), alpha, correction, method)

    def anderson(self, x_cur, *, alpha: float = 0.05,
                 correction: str = "bonferroni") -> FeatureTestResult:
        """Anderson-Darling test of ``x_cur`` against the reference (see ``anderson_test``)."""
        alpha = check_alpha(alpha)
        check_correction(correction)
        return self._anderson(self._pooled(x_cur), alpha, correction)

    def psi(self, x_cur, *, threshold: float = 0.2) -> FeatureTestResult:
        """Population stability index on the fitted bins (see ``psi_test``)."""
        threshold = check_threshold(threshold)
        return self._psi(self._current(x_cur).T, threshold)

    def jensen_shannon(self, x_cur, *, threshold: float = 0.1) -> FeatureTestResult:
        """Jensen-Shannon distance on the fitted bins (see ``jensen_shannon_test``)."""
        threshold = check_threshold(threshold)
        cur = self._current(x_cur)
        stat = js_from_proportions(self._ref_props, current_proportions(self._edges, cur.T))
        return threshold_result("jensen_shannon", stat, threshold=threshold, n_ref=self.n_ref,
                                n_cur=cur.shape[0], what="the Jensen-Shannon distance")

    def hellinger(self, x_cur, *, threshold: float = 0.1) -> FeatureTestResult:
        """Hellinger distance on the fitted bins (see ``hellinger_test``)."""
        threshold = check_threshold(threshold)
        cur = self._current(x_cur)
        stat = hellinger_from_proportions(self._ref_props,
                                          current_proportions(self._edges, cur.T))
        return threshold_result("hellinger", stat, threshold=threshold, n_ref=self.n_ref,
                                n_cur=cur.shape[0], what="the Hellinger distance")

    def wasserstein(self, x_cur, *, threshold: float = 0.1) -> FeatureTestResult:
        """Normed Wasserstein-1 distance (see ``wasserstein_test``)."""
        threshold = check_threshold(threshold)
        cur = self._current(x_cur)
        return self._wasserstein(np.sort(cur.T, axis=1), threshold)

    def evaluate(self, x_cur, *, tests=("ks", "psi", "wasserstein"), alpha: float = 0.05,
                 correction: str = "bonferroni", thresholds=None) -> dict[str, FeatureTestResult]:
        """Run several tests on one window, sorting it once.

        Parameters
        ----------
        tests : sequence of str
            Names from ``UNIVARIATE_TESTS``.
        alpha, correction : as for the tests with p-values (correction across features).
        thresholds : mapping, optional
            Threshold per threshold-only test name (defaults: psi 0.2, wasserstein 0.1,
            jensen_shannon 0.1, hellinger 0.1).

        Returns
        -------
        dict
            ``{name: FeatureTestResult}`` in the order asked; identical to calling the
            methods one by one.
        """
        unknown = [t for t in tests if t not in UNIVARIATE_TESTS]
        if unknown:
            raise ValueError(f"unknown tests {unknown}; choose from {UNIVARIATE_TESTS}")
        alpha = check_alpha(alpha)
        check_correction(correction)
        th = {"psi": 0.2, "wasserstein": 0.1, "jensen_shannon": 0.1, "hellinger": 0.1}
        th.update({k: check_threshold(v) for k, v in (thresholds or {}).items()})
        cur = self._current(x_cur)
        cur_sorted = sorted_columns(cur)
        pooled = Pooled(self._ranked, cur_sorted)
        out = {}
        for name in tests:
            if name == "ks":
                out[name] = self._ks(pooled, alpha, correction, "auto")
            elif name == "cvm":
                out[name] = self._cvm(pooled, alpha, correction, "auto")
            elif name == "anderson":
                out[name] = self._anderson(pooled, alpha, correction)
            elif name == "psi":
                out[name] = self._psi(cur_sorted, th["psi"])
            elif name == "wasserstein":
                out[name] = self._wasserstein(cur_sorted, th["wasserstein"])
            elif name == "jensen_shannon":
                out[name] = self.jensen_shannon(cur, threshold=th["jensen_shannon"])
            else:
                out[name] = self.hellinger(cur, threshold=th["hellinger"])
        return out

    # --- cores on a window placed in the reference (rank tests) or sorted (the others) ------
    def _pooled(self, x_cur) -> Pooled:
        return Pooled(self._ranked, sorted_columns(self._current(x_cur)))

    def _ks(self, pooled, alpha, correction, method):
        d, p, note = ks_from_pooled(pooled, method)
        return p_value_result("ks", d, p, alpha=alpha, correction=correction,
                              n_ref=self.n_ref, n_cur=pooled.cur_sorted.shape[1], note=note)

    def _cvm(self, pooled, alpha, correction, method):
        t, p, note = cvm_from_pooled(pooled, method)
        return p_value_result("cvm", t, p, alpha=alpha, correction=correction,
                              n_ref=self.n_ref, n_cur=pooled.cur_sorted.shape[1], note=note)

    def _anderson(self, pooled, alpha, correction):
        stat, p, note = anderson_from_pooled(pooled)
        return p_value_result("anderson", stat, p, alpha=alpha, correction=correction,
                              n_ref=self.n_ref, n_cur=pooled.cur_sorted.shape[1], note=note)

    def _psi(self, cur_cols, threshold):
        stat = psi_from_proportions(self._ref_props, current_proportions(self._edges, cur_cols))
        return threshold_result("psi", stat, threshold=threshold, n_ref=self.n_ref,
                                n_cur=cur_cols.shape[1], what="the population stability index")

    def _wasserstein(self, cur_sorted, threshold):
        stat = wasserstein_from_sorted(self._sorted, cur_sorted) / self._denominator
        return threshold_result("wasserstein", stat, threshold=threshold, n_ref=self.n_ref,
                                n_cur=cur_sorted.shape[1],
                                what="the Wasserstein-1 distance in reference standard deviations")
