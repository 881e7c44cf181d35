"""Named, frozen results shared by every drift test.

Every test returns one of these instead of a tuple, so fields can be added without breaking
callers (see scipy's ``ks_2samp(...).pvalue``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class FeatureTestResult:
    """A univariate test run on every column (feature) at once.

    Attributes
    ----------
    method : short test name, e.g. ``"ks"``.
    statistic : per-feature statistic, shape ``(n_features,)``.
    p_value : per-feature raw p-values, or ``None`` for a threshold-only test.
    adjusted_p_value : p-values after the correction across features (``None`` without p-values).
    threshold : what ``drifted`` compares against: the significance level ``alpha`` applied to
        ``adjusted_p_value`` for a test with p-values, else the threshold on ``statistic``.
    drifted : per-feature verdict, shape ``(n_features,)``.
    n_ref, n_cur : sample sizes.
    correction : ``"bonferroni"``, ``"bh"`` or ``"none"`` (``"none"`` for threshold tests).
    p_value_note : how the p-value was obtained (``"exact"``, ``"asymptotic"``,
        ``"clipped to [0.001, 0.25]"``, ``"permutation"``) or why there is none.
    """

    method: str
    statistic: np.ndarray
    p_value: np.ndarray | None
    adjusted_p_value: np.ndarray | None
    threshold: float
    drifted: np.ndarray
    n_ref: int
    n_cur: int
    correction: str = "none"
    p_value_note: str = ""

    @property
    def any_drifted(self) -> bool:
        """True when any feature drifted."""
        return bool(np.any(self.drifted))


@dataclass(frozen=True)
class MultivariateTestResult:
    """A test on whole vectors (embeddings): one statistic, one verdict."""

    method: str
    statistic: float
    p_value: float | None
    threshold: float
    drifted: bool
    n_ref: int
    n_cur: int
    p_value_note: str = ""
