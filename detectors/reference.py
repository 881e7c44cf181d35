"""A reference fitted once and evaluated against many windows (the daemon's hot path)."""

from __future__ import annotations

import numpy as np

from detectors._pooled import Pooled, SortedReference, sorted_columns
from detectors._univariate_common import p_value_result, threshold_result
from detectors.anderson import anderson_from_pooled
from detectors.binning import current_proportions, fit_histograms
from detectors.cvm import CVM_METHODS, cvm_from_pooled
from detectors.divergence import hellinger_from_proportions, js_from_proportions
from detectors.ks import KS_METHODS, ks_from_pooled
from detectors.psi import psi_from_proportions
from detectors.result import FeatureTestResult
from detectors.validation import (
    as_columns,
    as_unit_values,
    check_alpha,
    check_bins,
    check_choice,
    check_correction,
    check_threshold,
    check_width,
)
from detectors.wasserstein import std_denominator, wasserstein_from_sorted


class PlacedWindow:
    """A window validated, sorted and placed in one reference once, for all its tests.

    Made by :meth:`UnivariateReference.place`; every test method of that reference takes it in
    place of the raw window and returns exactly what it returns for the raw window. Several
    tests of one window then share one validation, one sort per column (every test reads the
    sorted rows: the binned tests too, as binary searches of sorted values are ~3x faster) and
    one placement in the reference (the pooled ranks of KS, Cramér-von Mises and
    Anderson-Darling), made when one of those first needs it.

    Attributes
    ----------
    reference : the :class:`UnivariateReference` it was placed in (the only one that takes it).
    sorted : ``(k, n_cur)`` the validated window's columns as sorted, contiguous rows (a copy:
        changing the caller's array afterwards changes nothing here).
    """

    __slots__ = ("reference", "sorted", "_pooled")

    def __init__(self, reference: UnivariateReference, cur_sorted: np.ndarray):
        self.reference = reference
        self.sorted = cur_sorted
        self._pooled: Pooled | None = None

    @property
    def n_cur(self) -> int:
        return self.sorted.shape[1]

    @property
    def pooled(self) -> Pooled:
        """The window's counts against the reference, shared by the rank tests (made once)."""
        if self._pooled is None:
            self._pooled = Pooled(self.reference._ranked, self.sorted)
        return self._pooled


class UnivariateReference:
    """Reference sample fitted once for every univariate test.

    Fitting sorts each column and computes what every window reuses: the PSI / JS /
    Hellinger bin edges and reference histograms, the mean and standard deviation used to
    normalise Wasserstein, and the within-reference counts that KS, Cramér-von Mises and
    Anderson-Darling share. Every method returns exactly what the matching pure function
    (``ks_test``, ...) returns for ``(x_ref, x_cur)``: both run the same code on the same
    sorted columns. A window tested several times is best placed once (:meth:`place`) and the
    :class:`PlacedWindow` passed to every method: it is validated, sorted and placed in the
    reference once for all of them, with the same results.

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
    >>> placed = ref.place(window)            # sorted and placed once, for every test below
    >>> ref.ks(placed).drifted.tolist(), ref.cvm(placed).drifted.tolist()
    ([False, False, True], [False, False, True])
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
        return {
            "x_ref_sorted": self._sorted.T.copy(),
            "feature_names": np.array(self.feature_names, dtype=str),
            "psi_bins": np.array(self.psi_bins),
        }

    @classmethod
    def from_arrays(cls, arrays) -> UnivariateReference:
        return cls(
            arrays["x_ref_sorted"],
            feature_names=[str(f) for f in arrays["feature_names"]],
            psi_bins=int(arrays["psi_bins"]),
        )

    # --- windows -------------------------------------------------------------------------
    def place(self, x_cur) -> PlacedWindow:
        """Validate ``x_cur`` (shape ``(n_cur, k)`` or ``(n_cur,)``) once for several tests.

        Returns a :class:`PlacedWindow` that every test method takes instead of ``x_cur``: the
        window sorted once, and placed in the reference once when a rank test first needs it.
        """
        cur = as_columns(x_cur, "x_cur")
        check_width(cur, self.n_features, "x_cur")
        return PlacedWindow(self, sorted_columns(cur))

    def _placed(self, x_cur) -> PlacedWindow:
        if isinstance(x_cur, PlacedWindow):
            if x_cur.reference is not self:
                raise ValueError("x_cur was placed in another reference")
            return x_cur
        return self.place(x_cur)

    def quantiles(self, q) -> np.ndarray:
        """Reference quantiles per feature: shape ``(len(q), k)``, or ``(k,)`` for scalar q.

        Linear interpolation (numpy's default); for dashboards' reference bands.
        """
        q = as_unit_values(q, "q")
        return np.quantile(self._sorted, q, axis=1)

    # --- tests -----------------------------------------------------------------------------
    def ks(
        self, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni", method: str = "auto"
    ) -> FeatureTestResult:
        """Kolmogorov-Smirnov test of ``x_cur`` against the reference (see ``ks_test``)."""
        check_choice(method, "method", KS_METHODS)
        alpha = check_alpha(alpha)
        check_correction(correction)
        return self._ks(self._placed(x_cur).pooled, alpha, correction, method)

    def cvm(
        self, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni", method: str = "auto"
    ) -> FeatureTestResult:
        """Cramér-von Mises test of ``x_cur`` against the reference (see ``cvm_test``)."""
        check_choice(method, "method", CVM_METHODS)
        alpha = check_alpha(alpha)
        check_correction(correction)
        return self._cvm(self._placed(x_cur).pooled, alpha, correction, method)

    def anderson(
        self, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni"
    ) -> FeatureTestResult:
        """Anderson-Darling test of ``x_cur`` against the reference (see ``anderson_test``)."""
        alpha = check_alpha(alpha)
        check_correction(correction)
        return self._anderson(self._placed(x_cur).pooled, alpha, correction)

    def psi(self, x_cur, *, threshold: float = 0.2) -> FeatureTestResult:
        """Population stability index on the fitted bins (see ``psi_test``)."""
        threshold = check_threshold(threshold)
        return self._psi(self._placed(x_cur).sorted, threshold)

    def jensen_shannon(self, x_cur, *, threshold: float = 0.1) -> FeatureTestResult:
        """Jensen-Shannon distance on the fitted bins (see ``jensen_shannon_test``)."""
        threshold = check_threshold(threshold)
        cur = self._placed(x_cur)
        stat = js_from_proportions(self._ref_props, current_proportions(self._edges, cur.sorted))
        return threshold_result(
            "jensen_shannon",
            stat,
            threshold=threshold,
            n_ref=self.n_ref,
            n_cur=cur.n_cur,
            what="the Jensen-Shannon distance",
        )

    def hellinger(self, x_cur, *, threshold: float = 0.1) -> FeatureTestResult:
        """Hellinger distance on the fitted bins (see ``hellinger_test``)."""
        threshold = check_threshold(threshold)
        cur = self._placed(x_cur)
        stat = hellinger_from_proportions(
            self._ref_props, current_proportions(self._edges, cur.sorted)
        )
        return threshold_result(
            "hellinger",
            stat,
            threshold=threshold,
            n_ref=self.n_ref,
            n_cur=cur.n_cur,
            what="the Hellinger distance",
        )

    def wasserstein(self, x_cur, *, threshold: float = 0.1) -> FeatureTestResult:
        """Normed Wasserstein-1 distance (see ``wasserstein_test``)."""
        threshold = check_threshold(threshold)
        return self._wasserstein(self._placed(x_cur).sorted, threshold)

    # --- cores on a window placed in the reference (rank tests) or sorted (the others) ------
    def _ks(self, pooled, alpha, correction, method):
        d, p, note = ks_from_pooled(pooled, method)
        return p_value_result(
            "ks",
            d,
            p,
            alpha=alpha,
            correction=correction,
            n_ref=self.n_ref,
            n_cur=pooled.cur_sorted.shape[1],
            note=note,
        )

    def _cvm(self, pooled, alpha, correction, method):
        t, p, note = cvm_from_pooled(pooled, method)
        return p_value_result(
            "cvm",
            t,
            p,
            alpha=alpha,
            correction=correction,
            n_ref=self.n_ref,
            n_cur=pooled.cur_sorted.shape[1],
            note=note,
        )

    def _anderson(self, pooled, alpha, correction):
        stat, p, note = anderson_from_pooled(pooled)
        return p_value_result(
            "anderson",
            stat,
            p,
            alpha=alpha,
            correction=correction,
            n_ref=self.n_ref,
            n_cur=pooled.cur_sorted.shape[1],
            note=note,
        )

    def _psi(self, cur_cols, threshold):
        stat = psi_from_proportions(self._ref_props, current_proportions(self._edges, cur_cols))
        return threshold_result(
            "psi",
            stat,
            threshold=threshold,
            n_ref=self.n_ref,
            n_cur=cur_cols.shape[1],
            what="the population stability index",
        )

    def _wasserstein(self, cur_sorted, threshold):
        stat = wasserstein_from_sorted(self._sorted, cur_sorted) / self._denominator
        return threshold_result(
            "wasserstein",
            stat,
            threshold=threshold,
            n_ref=self.n_ref,
            n_cur=cur_sorted.shape[1],
            what="the Wasserstein-1 distance in reference standard deviations",
        )
