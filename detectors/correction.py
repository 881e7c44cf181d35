"""Multiple-testing correction across features (and, if the caller wishes, across streams)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.validation import CORRECTION_METHODS, as_unit_values, check_alpha, check_choice

__all__ = ["CORRECTION_METHODS", "Correction", "correct"]


@dataclass(frozen=True)
class Correction:
    """Result of :func:`correct`.

    Attributes
    ----------
    drifted : bool array, same shape as the p-values: ``adjusted_p_value <= threshold`` (the
        hypothesis of no drift is rejected).
    adjusted_p_value : the corrected p-values (clipped to 1).
    threshold : the level ``alpha`` that ``adjusted_p_value`` is compared with.
    raw_threshold : the equivalent cut-off on the *raw* p-values, per family (shape of the
        p-values without the last axis): ``alpha / m`` for Bonferroni, the Benjamini-Hochberg
        step-up cut-off ``p_(i*)`` (0.0 when nothing is rejected) for BH, ``alpha`` for none.
    """

    drifted: np.ndarray
    adjusted_p_value: np.ndarray
    threshold: float
    raw_threshold: np.ndarray | float


def correct(p_values, *, alpha: float = 0.05, method: str = "bonferroni") -> Correction:
    """Correct p-values for testing many features (or streams) at once.

    Parameters
    ----------
    p_values : array_like
        Raw p-values in [0, 1]. 1-D: one family. 2-D: one family per row (the correction runs
        along the last axis), which is how to correct many windows in one call.
    alpha : float
        Family-wise error rate (Bonferroni) or false discovery rate (BH), in (0, 1).
    method : {"bonferroni", "bh", "none"}
        ``"bonferroni"``: ``adjusted = min(1, m * p)``; controls the family-wise error rate
        under any dependence. ``"bh"``: Benjamini-Hochberg step-up; controls the false
        discovery rate for independent or positively dependent tests. ``"none"``: no
        correction.

    Returns
    -------
    Correction
        ``drifted``, ``adjusted_p_value``, ``threshold`` (= alpha), ``raw_threshold``.

    Notes
    -----
    With ``m`` p-values sorted ``p_(1) <= ... <= p_(m)``, the BH adjusted p-value is
    ``q_(i) = min_{j >= i} min(1, m p_(j) / j)`` (the same as
    ``scipy.stats.false_discovery_control(p, method="bh")``), and ``q_(i) <= alpha`` rejects
    exactly the hypotheses the step-up rule rejects. When every null hypothesis is true, BH's
    family-wise error rate equals its FDR, so it is at most ``alpha`` as well.

    Examples
    --------
    >>> from detectors import correct
    >>> c = correct([0.01, 0.04, 0.03, 0.5], alpha=0.05, method="bh")
    >>> c.adjusted_p_value.round(4).tolist()
    [0.04, 0.0533, 0.0533, 0.5]
    >>> c.drifted.tolist()
    [True, False, False, False]
    >>> correct([0.01, 0.04], method="bonferroni").adjusted_p_value.tolist()
    [0.02, 0.08]
    """
    check_choice(method, "method", CORRECTION_METHODS)
    alpha = check_alpha(alpha)
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim not in (1, 2) or p.shape[-1] == 0:
        raise ValueError(f"p_values must be a non-empty 1-D or 2-D array, got shape {p.shape}")
    p = as_unit_values(p, "p_values")
    m = p.shape[-1]
    if method == "none":
        adjusted = p.copy()
        raw = alpha
    elif method == "bonferroni":
        adjusted = np.minimum(p * m, 1.0)
        raw = alpha / m
    else:
        order = np.argsort(p, axis=-1, kind="stable")
        ps = np.take_along_axis(p, order, axis=-1)
        ranks = np.arange(1, m + 1, dtype=np.float64)
        q = ps * (m / ranks)
        q = np.minimum.accumulate(q[..., ::-1], axis=-1)[..., ::-1]
        q = np.minimum(q, 1.0)
        adjusted = np.empty_like(q)
        np.put_along_axis(adjusted, order, q, axis=-1)
        passing = np.where(ps <= ranks * (alpha / m), ps, 0.0)
        raw = passing.max(axis=-1)
    return Correction(
        drifted=adjusted <= alpha, adjusted_p_value=adjusted, threshold=alpha, raw_threshold=raw
    )
