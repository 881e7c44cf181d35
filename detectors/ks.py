"""Two-sample Kolmogorov-Smirnov test, vectorised across features.

The statistic is computed here from integer counts; the p-value follows
``scipy.stats.ks_2samp`` exactly (same ``method`` semantics, same exact and asymptotic
maths), so results agree with scipy to floating-point precision.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

from detectors._pooled import Pooled, pooled_columns
from detectors._univariate_common import p_value_result
from detectors.result import FeatureTestResult
from detectors.validation import as_pair, check_alpha, check_choice, check_correction

KS_METHODS = ("auto", "exact", "asymp")
#: ``method="auto"`` is exact when both samples have at most this many rows (as in scipy).
MAX_AUTO_EXACT_N = 10_000

try:  # scipy's compiled exact kernel: the maths ks_2samp itself runs.
    from scipy.stats._stats_py import _attempt_exact_2kssamp as _scipy_exact
except ImportError:  # pragma: no cover - a future scipy may move it; fall back below.
    _scipy_exact = None


def ks_statistic_counts(pooled: Pooled) -> np.ndarray:
    """Return ``h`` with ``D = h / lcm(n_ref, n_cur)`` for each column, exactly (integers).

    Between consecutive current points the reference ECDF can only rise, so
    ``max(F_ref - F_cur)`` is reached just below a current point and ``max(F_cur - F_ref)``
    at a current point: the counts of reference values below / at most each current point
    suffice, with ties handled by the strict / non-strict count.
    """
    n1 = pooled.ref.shape[1]
    n2 = pooled.cur_sorted.shape[1]
    j = np.arange(n2, dtype=np.int64)
    # n1 * n2 * (F_ref - F_cur) just below x_j, and n1 * n2 * (F_cur - F_ref) at x_j
    up = (pooled.ref_less * n2 - j * n1).max(axis=1)
    down = ((j + 1) * n1 - pooled.ref_less_equal * n2).max(axis=1)
    return np.maximum(np.maximum(up, down), 0) // math.gcd(n1, n2)


def ks_from_pooled(pooled: Pooled, method: str):
    """Statistic, p-value and note for every column; the core of every KS entry point."""
    n1 = pooled.ref.shape[1]
    n2 = pooled.cur_sorted.shape[1]
    h = ks_statistic_counts(pooled)
    lcm = (n1 // math.gcd(n1, n2)) * n2
    d = h / lcm
    mode = method
    if mode == "auto":
        mode = "exact" if max(n1, n2) <= MAX_AUTO_EXACT_N else "asymp"
    elif mode == "exact":
        g = math.gcd(n1, n2)
        if n1 // g >= np.iinfo(np.int32).max / (n2 // g):  # lcm too large: scipy goes asymp
            mode = "asymp"
    if mode == "exact":
        p = np.empty(len(h))
        exact_ok = np.ones(len(h), dtype=bool)
        for c, hc in enumerate(h.tolist()):
            ok, pc = _exact_p(n1, n2, hc)
            p[c], exact_ok[c] = pc, ok
        if exact_ok.all():
            note = "exact"
        else:
            note = "exact; asymptotic where the exact computation failed (as scipy does)"
            p[~exact_ok] = _asymp_p(n1, n2, d[~exact_ok])
    else:
        p = _asymp_p(n1, n2, d)
        note = "asymptotic (Smirnov distribution with n = round(n_ref n_cur / (n_ref + n_cur)))"
    return d, np.clip(p, 0.0, 1.0), note


def ks_p_value(n_ref: int, n_cur: int, statistic: float) -> float:
    """Two-sided p-value of one KS statistic ``D`` for these sample sizes (``method="auto"``)."""
    g = math.gcd(n_ref, n_cur)
    lcm = (n_ref // g) * n_cur
    h = int(round(statistic * lcm))
    if max(n_ref, n_cur) <= MAX_AUTO_EXACT_N:
        ok, p = _exact_p(n_ref, n_cur, h)
        if ok:
            return min(1.0, max(0.0, p))
    return float(np.clip(_asymp_p(n_ref, n_cur, np.array([h / lcm]))[0], 0.0, 1.0))


def _asymp_p(n1: int, n2: int, d: np.ndarray) -> np.ndarray:
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return np.asarray(stats.kstwo.sf(d, np.round(en)), dtype=np.float64)


@lru_cache(maxsize=65_536)
def _exact_p(n1: int, n2: int, h: int) -> tuple[bool, float]:
    """Exact two-sided p-value for ``D = h / lcm``; cached, as it depends on nothing else.

    A daemon evaluating fixed-size windows against one reference sees the same few hundred
    values of ``h`` again and again, so after warm-up the exact p-value costs a dict lookup.
    """
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    if h == 0:
        return True, 1.0
    if _scipy_exact is not None:
        ok, _, p = _scipy_exact(n1, n2, g, h / lcm, "two-sided")
        if ok:
            return True, float(p)
        return False, float("nan")
    # Fallback (no private kernel): ks_2samp on two samples whose statistic is exactly h/lcm.
    return True, float(stats.ks_2samp(*_samples_with_statistic(n1, n2, h), method="exact").pvalue)


def _samples_with_statistic(n1: int, n2: int, h: int):  # pragma: no cover - fallback only
    """Samples of sizes n1, n2 with KS statistic h/lcm (only used without scipy's kernel)."""
    g = math.gcd(n1, n2)
    best = None
    # Put a reference points below everything and b current points there too; choose (a, b)
    # with a*n2 - b*n1 == h*g, then the rest interleaved at a larger common value.
    for a in range(n1 + 1):
        num = a * n2 - h * g
        if num >= 0 and num % n1 == 0 and num // n1 <= n2:
            best = (a, num // n1)
            break
    if best is None:
        raise RuntimeError("no samples realise this KS statistic")
    a, b = best
    x = np.r_[np.zeros(a), np.ones(n1 - a)]
    y = np.r_[np.zeros(b), np.ones(n2 - b)]
    return x, y


def ks_test(
    x_ref, x_cur, *, alpha: float = 0.05, correction: str = "bonferroni", method: str = "auto"
) -> FeatureTestResult:
    """Two-sample Kolmogorov-Smirnov test on every column.

    Parameters
    ----------
    x_ref : array_like, shape (n_ref, k) or (n_ref,)
        Reference sample; a 1-D array is one feature.
    x_cur : array_like, shape (n_cur, k) or (n_cur,)
        Current window, same number of features.
    alpha : float
        Level applied to the corrected p-values.
    correction : {"bonferroni", "bh", "none"}
        Correction across the ``k`` features (see :func:`detectors.correct`).
    method : {"auto", "exact", "asymp"}
        As in ``scipy.stats.ks_2samp``: ``"auto"`` is exact when both samples have at most
        10,000 rows, else asymptotic; ``"exact"`` falls back to asymptotic where the exact
        computation is impossible (lcm too large) or fails numerically.

    Returns
    -------
    FeatureTestResult
        ``statistic`` = D, the largest absolute difference between the two empirical CDFs;
        ``p_value`` as ``scipy.stats.ks_2samp(x_ref[:, i], x_cur[:, i], method=method)``.

    Notes
    -----
    ``D = sup_t |F_ref(t) - F_cur(t)|``. Under H0 (both samples i.i.d. from one *continuous*
    distribution) the exact null distribution of D is computed by counting lattice paths
    (Hodges 1958), the asymptotic one is Smirnov's with ``n = round(n_ref n_cur /
    (n_ref + n_cur))``. With ties (discrete features) the test is conservative: the
    false-alarm rate is at most ``alpha``. Windows of one stream are not independent of each
    other; this is a per-window test (see ``Hysteresis`` and ``calibrate_threshold``).

    Exact p-values are cached per ``(n_ref, n_cur, h)`` (``D = h / lcm``), which makes repeated
    evaluation against one reference cheap (see ``UnivariateReference``).

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import ks_test
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(500, 2))
    >>> cur = np.c_[rng.normal(size=200), rng.normal(0.5, 1.0, size=200)]
    >>> res = ks_test(ref, cur, alpha=0.05)
    >>> res.drifted.tolist()
    [False, True]
    >>> res.p_value_note
    'exact'
    """
    check_choice(method, "method", KS_METHODS)
    alpha = check_alpha(alpha)
    check_correction(correction)
    ref, cur = as_pair(x_ref, x_cur)
    d, p, note = ks_from_pooled(pooled_columns(ref, cur), method)
    return p_value_result(
        "ks",
        d,
        p,
        alpha=alpha,
        correction=correction,
        n_ref=ref.shape[0],
        n_cur=cur.shape[0],
        note=note,
    )
