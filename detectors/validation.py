"""Every argument and array check of the library, one implementation each.

Bad input is refused up front with a ``ValueError`` that names the argument (scipy's habit), so a
test never computes on a value it cannot interpret. Checks that relate two arguments of one
function (``k <= m``, a block no longer than the reference) stay with that function.
"""

from __future__ import annotations

import numbers

import numpy as np

#: Multiple-testing corrections :func:`detectors.correct` knows.
CORRECTION_METHODS = ("bonferroni", "bh", "none")


# --- scalars ---------------------------------------------------------------------------------
def check_number(
    value,
    name: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
) -> float:
    """``value`` as a finite float within the given bounds (``above`` and ``below`` are strict)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    bounds = (
        (above, ">", v > above if above is not None else True),
        (at_least, ">=", v >= at_least if at_least is not None else True),
        (below, "<", v < below if below is not None else True),
        (at_most, "<=", v <= at_most if at_most is not None else True),
    )
    if not (np.isfinite(v) and all(ok for _, _, ok in bounds)):
        need = "".join(f" and {op} {b:g}" for b, op, _ in bounds if b is not None)
        raise ValueError(f"{name} must be finite{need}, got {value!r}")
    return v


def check_alpha(alpha, name: str = "alpha") -> float:
    """A significance level (or FDR / FWER level), in (0, 1)."""
    return check_number(alpha, name, above=0.0, below=1.0)


def check_threshold(threshold, name: str = "threshold") -> float:
    """A threshold on a non-negative statistic (a distance, PSI): finite and >= 0."""
    return check_number(threshold, name, at_least=0.0)


def check_int(value, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``.

    Python and numpy integers pass, and floats with a whole value (``100.0``); booleans and
    fractions do not.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        whole = False
    else:
        whole = isinstance(value, numbers.Integral) or float(value).is_integer()
    if not (whole and value >= minimum and (maximum is None or value <= maximum)):
        if maximum is not None:
            need = f"an integer in [{minimum}, {maximum}]"
        else:
            need = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return int(value)


def check_bins(bins, name: str = "bins") -> int:
    """A number of histogram bins (>= 2)."""
    return check_int(bins, name, minimum=2)


def check_choice(value, name: str, choices: tuple) -> str:
    """One of ``choices`` (a method name, a mode...)."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_correction(correction, name: str = "correction") -> str:
    """A name from :data:`CORRECTION_METHODS`."""
    return check_choice(correction, name, CORRECTION_METHODS)


def check_bandwidth(bandwidth, name: str = "bandwidth") -> float | None:
    """A kernel bandwidth: positive and finite, or None (the caller's default)."""
    return None if bandwidth is None else check_number(bandwidth, name, above=0.0)


def make_rng(seed, name: str = "seed", *, stream: int | None = None) -> np.random.Generator:
    """The generator a call owns: ``numpy.random.default_rng(seed)``, with a bad seed refused
    by name. ``stream`` picks an independent stream of the same seed (``[seed, stream]``)."""
    try:
        return np.random.default_rng(seed if stream is None or seed is None else [seed, stream])
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be None, a non-negative integer or a numpy Generator, got {seed!r}"
        ) from None


# --- arrays ----------------------------------------------------------------------------------
def as_columns(x, name: str, *, min_rows: int = 1, keep_dtype: bool = False) -> np.ndarray:
    """``x`` as a finite array of shape ``(n, k)`` with ``n >= min_rows``; 1-D input is one column.

    float64 unless ``keep_dtype`` keeps an integer or float dtype as given (rank codes sort
    faster as integers). Non-finite values are refused: the caller decides how to impute or drop
    them; a test cannot.
    """
    a = np.asarray(x)
    if not (keep_dtype and a.dtype.kind in "iuf"):
        a = np.asarray(a, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be 1-D or 2-D (n_samples, n_features), got ndim={a.ndim}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if a.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {a.shape[0]}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; drop or impute them first")
    return a


def check_width(a: np.ndarray, n_columns: int, name: str, *, of: str = "the reference") -> None:
    """Refuse a 2-D ``a`` whose column count differs from ``n_columns`` (that of ``of``)."""
    if a.shape[1] != n_columns:
        raise ValueError(f"{name} has {a.shape[1]} dimensions (features), {of} has {n_columns}")


def as_pair(x_ref, x_cur, *, min_rows: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Both samples as :func:`as_columns`, with the same number of columns."""
    ref = as_columns(x_ref, "x_ref", min_rows=min_rows)
    cur = as_columns(x_cur, "x_cur", min_rows=min_rows)
    if ref.shape[1] != cur.shape[1]:
        raise ValueError(
            f"x_ref and x_cur must have the same number of dimensions (features), "
            f"got {ref.shape[1]} and {cur.shape[1]}"
        )
    return ref, cur


def as_label_columns(x, name: str) -> np.ndarray:
    """Category labels as a non-empty ``(n, k)`` array (any dtype; NaN refused, not a label)."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D or 2-D array of labels, got shape {a.shape}"
        )
    if a.dtype.kind == "f" and np.any(np.isnan(a)):
        raise ValueError(f"{name} contains NaN; map missing values to a label first")
    return a


def as_vector(x, name: str, n: int | None = None) -> np.ndarray:
    """A finite float vector (a scalar is one value), of length ``n`` when given."""
    v = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if v.ndim != 1 or (n is not None and v.shape[0] != n):
        raise ValueError(f"{name} must be a vector of {n} values, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be finite")
    return v


def as_unit_values(x, name: str) -> np.ndarray:
    """Values that must lie in [0, 1] (p-values, quantile levels), as float64; NaN refused."""
    a = np.asarray(x, dtype=np.float64)
    if np.any(np.isnan(a)) or np.any(a < 0.0) or np.any(a > 1.0):
        raise ValueError(f"{name} must lie in [0, 1]")
    return a
