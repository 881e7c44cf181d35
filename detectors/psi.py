"""Population stability index over reference-quantile bins (threshold test, no p-value)."""

from __future__ import annotations

import numpy as np

from detectors._univariate_common import threshold_result
from detectors.binning import current_proportions, fit_histograms
from detectors.result import FeatureTestResult
from detectors.validation import as_pair, check_bins, check_threshold

#: Proportions below this are raised to it before the logarithm (empty bins).
PSI_EPSILON = 1e-4


def psi_from_proportions(ref_props, cur_props) -> np.ndarray:
    out = np.empty(len(ref_props))
    for i, (pr, pc) in enumerate(zip(ref_props, cur_props, strict=True)):
        pr = np.maximum(pr, PSI_EPSILON)
        pc = np.maximum(pc, PSI_EPSILON)
        out[i] = np.sum((pc - pr) * np.log(pc / pr))
    return out


def psi_test(x_ref, x_cur, *, threshold: float = 0.2, bins: int = 10) -> FeatureTestResult:
    """Population stability index of every column, on reference-quantile bins.

    Parameters
    ----------
    x_ref, x_cur : array_like, shape (n, k) or (n,)
        Reference and current samples.
    threshold : float
        ``drifted`` where PSI >= threshold. Rule of thumb: < 0.1 stable, 0.1-0.2 moderate,
        >= 0.2 significant shift.
    bins : int
        Number of reference-quantile bins ``B`` (>= 2); see
        :func:`detectors.binning.reference_edges` for the two extra out-of-range bins and for
        how ties merge bins.

    Returns
    -------
    FeatureTestResult
        ``p_value`` is ``None``: PSI is compared with a fixed threshold.

    Notes
    -----
    ``PSI = sum_b (c_b - r_b) ln(c_b / r_b)`` where ``r_b``, ``c_b`` are the reference and
    current proportions in bin ``b``, each first raised to at least ``PSI_EPSILON = 1e-4``
    (no renormalisation) so that empty bins give a large but finite term. PSI is the
    symmetrised Kullback-Leibler divergence of the binned distributions. It has no
    calibrated null distribution: under no drift its expected value is roughly
    ``(B - 1)(1/n_ref + 1/n_cur)``, so small windows inflate it.

    A constant reference column has bins ``< c``, ``= c``, ``> c``: an identical current
    column gives PSI = 0, any current mass away from ``c`` gives a large PSI.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import psi_test
    >>> ref = np.arange(10.0)               # bins [0, 4.5) and [4.5, 9] with bins=2
    >>> res = psi_test(ref, np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), bins=2)
    >>> float(res.statistic[0])
    0.0
    >>> res = psi_test(ref, np.array([0.0, 1, 2, 3, 4, 5, 6, 7, 1, 2]), bins=2)
    >>> round(float(res.statistic[0]), 6)   # 0.2 ln(0.7/0.5) - 0.2 ln(0.3/0.5) = 0.2 ln(7/3)
    0.16946
    """
    threshold = check_threshold(threshold)
    bins = check_bins(bins)
    ref, cur = as_pair(x_ref, x_cur)
    edges, ref_props = fit_histograms(np.sort(ref.T, axis=1), bins)
    stat = psi_from_proportions(ref_props, current_proportions(edges, cur.T))
    return threshold_result(
        "psi",
        stat,
        threshold=threshold,
        n_ref=ref.shape[0],
        n_cur=cur.shape[0],
        what="the population stability index",
    )
