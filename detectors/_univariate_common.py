"""Shared plumbing for the univariate tests: input checks and result assembly.

Kept private: the public surface is the test functions, ``correct`` and
``UnivariateReference``.
"""

from __future__ import annotations

import numpy as np

from detectors.correction import CORRECTION_METHODS, correct
from detectors.result import FeatureTestResult


def as_columns(x, name: str) -> np.ndarray:
    """Return ``x`` as a float64 array of shape ``(n, k)``; 1-D input is one column.

    Raises ``ValueError`` for empty input, more than two dimensions, or non-finite values
    (the caller decides how to impute or drop them; a test cannot).
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (n_samples, n_features), got ndim={a.ndim}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; drop or impute them first")
    return a


def check_pair(x_ref: np.ndarray, x_cur: np.ndarray) -> None:
    if x_ref.shape[1] != x_cur.shape[1]:
        raise ValueError(
            f"x_ref has {x_ref.shape[1]} features but x_cur has {x_cur.shape[1]}")


def check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return alpha


def check_correction(correction: str) -> str:
    if correction not in CORRECTION_METHODS:
        raise ValueError(
            f"correction must be one of {CORRECTION_METHODS}, got {correction!r}")
    return correction


def check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not (np.isfinite(threshold) and threshold >= 0.0):
        raise ValueError(f"threshold must be finite and >= 0, got {threshold}")
    return threshold


def check_bins(bins: int) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def p_value_result(method: str, statistic: np.ndarray, p_value: np.ndarray, *, alpha: float,
                   correction: str, n_ref: int, n_cur: int, note: str) -> FeatureTestResult:
    """Correct ``p_value`` across features and build the result."""
    c = correct(p_value, alpha=alpha, method=correction)
    return FeatureTestResult(
        method=method, statistic=statistic, p_value=p_value,
        adjusted_p_value=c.adjusted_p_value, threshold=alpha, drifted=c.rejected,
        n_ref=n_ref, n_cur=n_cur, correction=correction, p_value_note=note)


def threshold_result(method: str, statistic: np.ndarray, *, threshold: float, n_ref: int,
                     n_cur: int, what: str) -> FeatureTestResult:
    """Build the result of a threshold-only test (drifted where statistic >= threshold)."""
    return FeatureTestResult(
        method=method, statistic=statistic, p_value=None, adjusted_p_value=None,
        threshold=threshold, drifted=statistic >= threshold, n_ref=n_ref, n_cur=n_cur,
        correction="none",
        p_value_note=f"no p-value: {what} is compared with a fixed threshold")
