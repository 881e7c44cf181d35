"""Jensen-Shannon distance and Hellinger distance on reference-quantile histograms."""

from __future__ import annotations

import numpy as np

from detectors._univariate_common import threshold_result
from detectors.binning import current_proportions, fit_histograms
from detectors.result import FeatureTestResult
from detectors.validation import as_pair, check_bins, check_threshold


def js_from_proportions(ref_props, cur_props) -> np.ndarray:
    """Jensen-Shannon distance (natural log), as ``scipy.spatial.distance.jensenshannon``."""
    out = np.empty(len(ref_props))
    for i, (p, q) in enumerate(zip(ref_props, cur_props, strict=True)):
        m = 0.5 * (p + q)
        # x ln(x/m), with 0 ln 0 = 0; m > 0 wherever p > 0 or q > 0
        kl_p = np.sum(p[p > 0] * np.log(p[p > 0] / m[p > 0]))
        kl_q = np.sum(q[q > 0] * np.log(q[q > 0] / m[q > 0]))
        out[i] = np.sqrt(max(0.5 * (kl_p + kl_q), 0.0))
    return out


def hellinger_from_proportions(ref_props, cur_props) -> np.ndarray:
    out = np.empty(len(ref_props))
    for i, (p, q) in enumerate(zip(ref_props, cur_props, strict=True)):
        out[i] = np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2))
    return out


def _histograms(x_ref, x_cur, bins):
    ref, cur = as_pair(x_ref, x_cur)
    edges, ref_props = fit_histograms(np.sort(ref.T, axis=1), bins)
    return ref.shape[0], cur.shape[0], ref_props, current_proportions(edges, cur.T)


def jensen_shannon_test(
    x_ref, x_cur, *, threshold: float = 0.1, bins: int = 10
) -> FeatureTestResult:
    """Jensen-Shannon distance between reference-binned histograms of every column.

    Parameters
    ----------
    x_ref, x_cur : array_like, shape (n, k) or (n,)
        Reference and current samples.
    threshold : float
        ``drifted`` where the distance >= threshold (0.1 is Evidently's default).
    bins : int
        Reference-quantile bins, as in :func:`detectors.psi_test` (same edges).

    Notes
    -----
    ``JS(P, Q) = sqrt((KL(P||M) + KL(Q||M)) / 2)`` with ``M = (P + Q) / 2``, natural
    logarithm, so ``0 <= JS <= sqrt(ln 2) ~ 0.833``. This is the *distance* returned by
    ``scipy.spatial.distance.jensenshannon(p, q)``. Empty bins need no epsilon (``0 ln 0 =
    0``, and ``M > 0`` wherever either histogram is non-zero). No p-value.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import jensen_shannon_test
    >>> ref = np.arange(10.0)
    >>> res = jensen_shannon_test(ref, np.full(10, 9.0), bins=2)  # all mass in the top bin
    >>> round(float(res.statistic[0]), 6)  # (.5,.5) vs (0,1): sqrt((ln(4/3) + ln(4/3) / 2) / 2)
    0.464501
    """
    threshold = check_threshold(threshold)
    bins = check_bins(bins)
    n_ref, n_cur, pr, pc = _histograms(x_ref, x_cur, bins)
    return threshold_result(
        "jensen_shannon",
        js_from_proportions(pr, pc),
        threshold=threshold,
        n_ref=n_ref,
        n_cur=n_cur,
        what="the Jensen-Shannon distance",
    )


def hellinger_test(x_ref, x_cur, *, threshold: float = 0.1, bins: int = 10) -> FeatureTestResult:
    """Hellinger distance between reference-binned histograms of every column.

    Parameters
    ----------
    x_ref, x_cur : array_like, shape (n, k) or (n,)
        Reference and current samples.
    threshold : float
        ``drifted`` where the distance >= threshold (0.1 is Evidently's default).
    bins : int
        Reference-quantile bins, as in :func:`detectors.psi_test` (same edges).

    Notes
    -----
    ``H(P, Q) = sqrt(sum_b (sqrt(p_b) - sqrt(q_b))^2 / 2) = sqrt(1 - sum_b sqrt(p_b q_b))``,
    in [0, 1]; computed in the first form, which cannot go negative by rounding. No p-value.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import hellinger_test
    >>> ref = np.arange(10.0)
    >>> res = hellinger_test(ref, np.full(10, 9.0), bins=2)  # (.5, .5) vs (0, 1)
    >>> round(float(res.statistic[0]), 6)                     # sqrt(1 - sqrt(.5))
    0.541196
    """
    threshold = check_threshold(threshold)
    bins = check_bins(bins)
    n_ref, n_cur, pr, pc = _histograms(x_ref, x_cur, bins)
    return threshold_result(
        "hellinger",
        hellinger_from_proportions(pr, pc),
        threshold=threshold,
        n_ref=n_ref,
        n_cur=n_cur,
        what="the Hellinger distance",
    )
