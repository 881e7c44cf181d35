"""Shared plumbing for the univariate tests: result assembly (input checks: ``validation``).

Kept private: the public surface is the test functions, ``correct`` and
``UnivariateReference``.
"""

from __future__ import annotations

import numpy as np

from detectors.correction import correct
from detectors.result import FeatureTestResult


def p_value_result(
    method: str,
    statistic: np.ndarray,
    p_value: np.ndarray,
    *,
    alpha: float,
    correction: str,
    n_ref: int,
    n_cur: int,
    note: str,
) -> FeatureTestResult:
    """Correct ``p_value`` across features and build the result."""
    c = correct(p_value, alpha=alpha, method=correction)
    return FeatureTestResult(
        method=method,
        statistic=statistic,
        p_value=p_value,
        adjusted_p_value=c.adjusted_p_value,
        threshold=alpha,
        drifted=c.drifted,
        n_ref=n_ref,
        n_cur=n_cur,
        correction=correction,
        p_value_note=note,
    )


def threshold_result(
    method: str, statistic: np.ndarray, *, threshold: float, n_ref: int, n_cur: int, what: str
) -> FeatureTestResult:
    """Build the result of a threshold-only test (drifted where statistic >= threshold)."""
    return FeatureTestResult(
        method=method,
        statistic=statistic,
        p_value=None,
        adjusted_p_value=None,
        threshold=threshold,
        drifted=statistic >= threshold,
        n_ref=n_ref,
        n_cur=n_cur,
        correction="none",
        p_value_note=f"no p-value: {what} is compared with a fixed threshold",
    )
