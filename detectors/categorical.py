"""Chi-square and G tests of homogeneity for categorical columns (labels, not numbers)."""

from __future__ import annotations

import numpy as np
from scipy import special

from detectors._univariate_common import p_value_result
from detectors.result import FeatureTestResult
from detectors.validation import as_label_columns, check_alpha, check_correction, check_width


def contingency_tables(x_ref, x_cur):
    """Per column, the 2 x K table of counts over the categories seen in either sample."""
    ref = as_label_columns(x_ref, "x_ref")
    cur = as_label_columns(x_cur, "x_cur")
    check_width(cur, ref.shape[1], "x_cur", of="x_ref")
    n1 = ref.shape[0]
    tables = []
    for c in range(ref.shape[1]):
        try:
            _, inv = np.unique(np.concatenate((ref[:, c], cur[:, c])), return_inverse=True)
        except TypeError as exc:  # mixed, unorderable labels
            raise ValueError(f"labels of column {c} cannot be compared: {exc}") from None
        kcat = inv.max() + 1
        tables.append(
            np.stack(
                (np.bincount(inv[:n1], minlength=kcat), np.bincount(inv[n1:], minlength=kcat))
            ).astype(np.float64)
        )
    return ref.shape[0], cur.shape[0], tables


def _power_divergence(tables, lambda_: str):
    stat = np.empty(len(tables))
    p = np.empty(len(tables))
    for i, t in enumerate(tables):
        kcat = t.shape[1]
        if kcat < 2:  # one category in both samples: nothing can differ
            stat[i], p[i] = 0.0, 1.0
            continue
        expected = t.sum(axis=1, keepdims=True) * t.sum(axis=0, keepdims=True) / t.sum()
        if lambda_ == "pearson":
            stat[i] = np.sum((t - expected) ** 2 / expected)
        else:
            stat[i] = 2.0 * np.sum(special.xlogy(t, t / expected))
        p[i] = special.chdtrc(kcat - 1, stat[i])
    return stat, p


_NOTE = (
    "asymptotic chi-square with K - 1 degrees of freedom (K categories seen in either "
    "sample); unreliable when expected counts are below about 5"
)


def chi2_test(
    x_ref, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni"
) -> FeatureTestResult:
    """Pearson chi-square test of homogeneity on every categorical column.

    Parameters
    ----------
    x_ref, x_cur : array_like, shape (n, k) or (n,)
        Category labels (ints, strings, ...); each column is one categorical feature.
    alpha : float
        Level applied to the corrected p-values.
    correction : {"bonferroni", "bh", "none"}
        Correction across features.

    Notes
    -----
    Per column, the 2 x K contingency table of counts (reference row, current row) over the
    K categories seen in *either* sample is compared with its independence expectation
    ``E_ij = R_i C_j / N``: ``X^2 = sum (O - E)^2 / E`` with ``K - 1`` degrees of freedom.
    This is ``scipy.stats.chi2_contingency(table, correction=False)``, i.e.
    ``scipy.stats.chisquare`` / ``power_divergence`` applied to the table with those
    expectations.

    Why a two-sample (homogeneity) test and not a goodness-of-fit test of the window against
    reference proportions: the reference is a sample too, and treating its proportions as
    exact inflates the false-alarm rate by about ``n_cur / n_ref`` of the statistic.

    Unseen categories need no special case: a category present only in the window (or only
    in the reference) has a positive column total, so its expected counts are positive and
    it contributes a finite, typically large, term. A column with a single category overall
    gives statistic 0 and p = 1.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import chi2_test
    >>> ref = np.array(["day"] * 80 + ["night"] * 20)
    >>> cur = np.array(["day"] * 30 + ["night"] * 20 + ["fog"] * 10)
    >>> res = chi2_test(ref, cur)
    >>> res.drifted.tolist(), round(float(res.statistic[0]), 3)
    ([True], 24.242)
    """
    alpha = check_alpha(alpha)
    check_correction(correction)
    n1, n2, tables = contingency_tables(x_ref, x_cur)
    stat, p = _power_divergence(tables, "pearson")
    return p_value_result(
        "chi2", stat, p, alpha=alpha, correction=correction, n_ref=n1, n_cur=n2, note=_NOTE
    )


def g_test(
    x_ref, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni"
) -> FeatureTestResult:
    """G-test (log-likelihood ratio) of homogeneity on every categorical column.

    Parameters
    ----------
    x_ref, x_cur : array_like, shape (n, k) or (n,)
        Category labels; each column is one categorical feature.
    alpha : float
        Level applied to the corrected p-values.
    correction : {"bonferroni", "bh", "none"}
        Correction across features.

    Notes
    -----
    Same 2 x K table and expectations as :func:`chi2_test`, with
    ``G = 2 sum O ln(O / E)`` (``0 ln 0 = 0``), asymptotically chi-square with ``K - 1``
    degrees of freedom: ``scipy.stats.chi2_contingency(table, correction=False,
    lambda_="log-likelihood")``, i.e. ``power_divergence(..., lambda_="log-likelihood")``.
    Unseen categories as in :func:`chi2_test`.

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import g_test
    >>> ref = np.array([0] * 50 + [1] * 50)
    >>> g_test(ref, np.array([0] * 48 + [1] * 52)).drifted.tolist()
    [False]
    """
    alpha = check_alpha(alpha)
    check_correction(correction)
    n1, n2, tables = contingency_tables(x_ref, x_cur)
    stat, p = _power_divergence(tables, "log-likelihood")
    return p_value_result(
        "g_test", stat, p, alpha=alpha, correction=correction, n_ref=n1, n_cur=n2, note=_NOTE
    )
