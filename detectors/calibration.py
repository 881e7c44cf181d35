"""Thresholds calibrated to an expected run length between false alarms.

A per-window test at level alpha, evaluated every ``stride`` frames on a sliding window of
``window`` frames, fires on unshifted data about once every ``1 / alpha`` evaluations, and
its firings come in clusters (overlapping windows share frames). This module picks the
threshold on the statistic from the schedule itself, by simulation on the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from detectors.ks import ks_p_value
from detectors.validation import as_columns, check_int, check_number, make_rng


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of :func:`calibrate_threshold`.

    Attributes
    ----------
    threshold : alarm when ``statistic_fn(window) > threshold``.
    target_run_length : promised mean number of evaluations between false alarms.
    window, stride : the schedule it was calibrated for (frames).
    block_evaluations : evaluations per simulated stream (``L``).
    n_blocks : simulated streams.
    block_alarm_rate : ``q = L / (target + L)``, the tail level of the block maxima used.
    block_maxima : the simulated per-stream maxima (diagnostics; their upper tail is the
        threshold's sampling error).
    """

    threshold: float
    target_run_length: float
    window: int
    stride: int
    block_evaluations: int
    n_blocks: int
    block_alarm_rate: float
    block_maxima: np.ndarray


def calibrate_threshold(
    x_ref,
    statistic_fn,
    *,
    window: int,
    stride: int,
    target_run_length: float = 10_000,
    block_evaluations: int | None = None,
    n_blocks: int | None = None,
    resample_block: int = 1,
    vectorized: bool = False,
    seed: int | None = 0,
) -> CalibrationResult:
    """Calibrate a drift threshold to a mean run length between false alarms.

    Parameters
    ----------
    x_ref : array_like, shape (n_ref, k) or (n_ref,)
        Reference frames' features, in time order if ``resample_block > 1``.
    statistic_fn : callable
        ``statistic_fn(w) -> float`` for one window ``w`` of shape ``(window, k)``; larger
        means more drift (e.g. ``lambda w: ref.ks(w).statistic.max()`` or the negative log of
        the smallest p-value). With ``vectorized=True`` it receives ``(b, window, k)`` and
        returns ``(b,)``.
    window, stride : int
        The daemon's schedule: each evaluation looks at the last ``window`` frames, and an
        evaluation happens every ``stride`` frames (``stride < window`` overlaps).
    target_run_length : float
        Promised expected number of evaluations between false alarms on unshifted data.
    block_evaluations : int, optional
        Evaluations per simulated stream ``L`` (default: ``max(50, 10 * ceil(window /
        stride))``, capped at ``target / 4``); it must span many window lengths so that
        alarm clusters rarely straddle two blocks.
    n_blocks : int, optional
        Simulated streams (default ``ceil(30 / q)``, about 30 blocks beyond the threshold).
        The cost is ``n_blocks * L`` statistic evaluations, about ``30 * target``.
    resample_block : int
        1 draws frames i.i.d. from the reference (bootstrap). A larger value draws runs of
        this many consecutive reference frames (moving-block bootstrap), which keeps the
        autocorrelation of a time-ordered reference: use it when consecutive frames of a
        camera are correlated, or the threshold will be too low.
    vectorized : bool
        Whether ``statistic_fn`` takes a batch of windows.
    seed : int or None
        Seed of the generator owned by this call.

    Returns
    -------
    CalibrationResult

    Notes
    -----
    Each simulated stream is ``window + (L - 1) * stride`` resampled frames, evaluated on the
    exact sliding schedule, and contributes its maximum statistic ``M``. If a stream of ``L``
    evaluations contains an alarm with probability ``q = P(M > threshold)``, and blocks of
    ``L`` evaluations in a long stream are nearly independent (``L`` much longer than the
    correlation span ``window / stride``), the number of blocks until the first alarm is
    geometric, so the run length ``N`` satisfies ``E[N] >= L (1 / q - 1)``. Taking the
    threshold as the ``1 - q`` quantile of the simulated maxima with ``q = L / (target + L)``
    makes ``E[N] >= target`` (in fact about ``target + L / 2``). Because whole streams are
    simulated, the correlation between overlapping windows is accounted for exactly; no
    independence between evaluations is assumed.

    Assumptions: live unshifted frames are exchangeable with reference frames (or, with
    ``resample_block``, share their short-range dependence); the reference is large compared
    with a window (a window that resamples a small reference looks less variable than the
    live process).

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import calibrate_threshold
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(20_000, 1))
    >>> cal = calibrate_threshold(ref, lambda w: abs(w.mean(axis=(1, 2))) * np.sqrt(50),
    ...                           window=50, stride=10, target_run_length=1000,
    ...                           vectorized=True, seed=1)
    >>> cal.block_evaluations, cal.n_blocks
    (50, 630)
    >>> 2.5 < cal.threshold < 4.0   # a z-score threshold, far above 1.96
    True
    """
    ref = as_columns(x_ref, "x_ref", keep_dtype=True)  # rank codes stay integers: faster sorts
    window = check_int(window, "window")
    stride = check_int(stride, "stride")
    resample_block = check_int(resample_block, "resample_block")
    if resample_block > ref.shape[0]:
        raise ValueError("resample_block must not exceed the reference length")
    target = check_number(target_run_length, "target_run_length", at_least=4.0)
    if block_evaluations is None:
        block_evaluations = min(max(50, 10 * math.ceil(window / stride)), max(1, int(target // 4)))
    L = check_int(block_evaluations, "block_evaluations")
    q = L / (target + L)
    if n_blocks is None:
        n_blocks = math.ceil(30 / q)
    n_blocks = check_int(n_blocks, "n_blocks")
    if n_blocks * q < 1:
        raise ValueError(
            f"n_blocks={n_blocks} is too few for tail level q={q:.3g}: need at "
            f"least {math.ceil(1 / q)} (30 / q recommended)"
        )
    if not callable(statistic_fn):
        raise ValueError("statistic_fn must be callable")

    rng = make_rng(seed)
    n_frames = window + (L - 1) * stride
    maxima = np.empty(n_blocks)
    for b in range(n_blocks):
        stream = ref[_resample_indices(rng, ref.shape[0], n_frames, resample_block)]
        windows = sliding_window_view(stream, window, axis=0)[::stride]  # (L, k, window)
        windows = np.swapaxes(windows, 1, 2)
        if vectorized:
            stats = np.asarray(statistic_fn(windows), dtype=np.float64)
            if stats.shape != (L,):
                raise ValueError(
                    f"vectorized statistic_fn returned shape {stats.shape}, expected ({L},)"
                )
        else:
            stats = np.array([float(statistic_fn(w)) for w in windows])
        if not np.all(np.isfinite(stats)):
            raise ValueError("statistic_fn returned non-finite values")
        maxima[b] = stats.max()
    threshold = float(np.quantile(maxima, 1.0 - q, method="higher"))
    return CalibrationResult(
        threshold=threshold,
        target_run_length=target,
        window=window,
        stride=stride,
        block_evaluations=L,
        n_blocks=n_blocks,
        block_alarm_rate=q,
        block_maxima=maxima,
    )


def _resample_indices(rng: np.random.Generator, n: int, size: int, block: int) -> np.ndarray:
    if block == 1:
        return rng.integers(0, n, size=size)
    starts = rng.integers(0, n - block + 1, size=math.ceil(size / block))
    return (starts[:, None] + np.arange(block)).ravel()[:size]


@dataclass(frozen=True)
class KSCalibration:
    """Outcome of :func:`calibrate_ks`: a threshold on the largest per-feature KS statistic.

    Attributes
    ----------
    statistic_threshold : alarm when ``max_k D_k > statistic_threshold``.
    level : the exact two-sided KS p-value of a single feature at that statistic; alarming when
        any feature's p-value is below it is the same rule. Compare with ``alpha / k``
        (Bonferroni), which ignores the schedule.
    n_ref, window : the sample sizes the threshold holds for.
    calibration : the underlying :class:`CalibrationResult`.
    """

    statistic_threshold: float
    level: float
    n_ref: int
    window: int
    calibration: CalibrationResult


def ks_rank_codes(x_ref) -> tuple[np.ndarray, int]:
    """Each value's position in its own sorted column, as one integer per value.

    Returns ``(codes, shift)`` with ``code = (less << shift) | equal``, where ``less`` counts
    the column's values below it and ``equal`` those equal to it: sorting codes sorts values,
    and a window's KS statistic against the whole column follows from its codes alone (see
    :func:`max_ks_statistic`).
    """
    x = np.asarray(x_ref, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    shift = int(n).bit_length()
    codes = np.empty(x.shape, dtype=np.int64)
    for c in range(x.shape[1]):
        col = np.sort(x[:, c])
        less = np.searchsorted(col, x[:, c], side="left")
        codes[:, c] = (less << shift) | (np.searchsorted(col, x[:, c], side="right") - less)
    return codes, shift


def max_ks_statistic(
    codes: np.ndarray, n_ref: int, shift: int, ref_counts: np.ndarray | None = None
) -> np.ndarray:
    """Largest KS statistic over features for windows of reference codes.

    ``codes`` has shape ``(b, window, k)`` (from :func:`ks_rank_codes` of the reference the
    statistic is taken against); returns ``(b,)``. Same counting as :func:`detectors.ks_test`
    (``max(F_ref - F_cur)`` just below a window value, ``max(F_cur - F_ref)`` at it), exact.

    ``ref_counts``, shape ``(k, n_ref + 1)``, optionally replaces the reference by a resample of
    it: ``ref_counts[c, i]`` is how many resampled values lie below the ``i``-th smallest value
    of column ``c`` (default: ``i`` itself, the reference unchanged).
    """
    w = codes.shape[1]
    s = np.sort(np.swapaxes(codes, 1, 2), axis=-1)  # (b, k, w)
    j = np.arange(w)
    # in place: this is the calibration's inner loop, run ~30 x target_run_length times
    less = s >> shift  # reference values < x_j
    at_most = np.bitwise_and(s, (1 << shift) - 1, out=s)  # reference values == x_j
    at_most += less
    if ref_counts is not None:  # look the counts up in the resample, one flat gather each
        offset = (np.arange(codes.shape[2]) * (n_ref + 1))[:, None].astype(less.dtype)
        flat = ref_counts.ravel()
        less = np.take(flat, less + offset)
        at_most += offset
        at_most = np.take(flat, at_most)
    less *= w
    less -= j * n_ref  # n_ref w (F_ref - F_cur) below x_j
    up = less.max(axis=(1, 2))
    at_most *= w
    np.subtract((j + 1) * n_ref, at_most, out=at_most)  # n_ref w (F_cur - F_ref) at x_j
    down = at_most.max(axis=(1, 2))
    return np.maximum(np.maximum(up, down), 0) / (n_ref * w)


def calibrate_ks(
    x_ref,
    *,
    window: int,
    stride: int,
    target_run_length: float = 10_000,
    resample_block: int = 1,
    n_blocks: int | None = None,
    seed: int | None = 0,
) -> KSCalibration:
    """Calibrate per-feature KS tests on a sliding schedule to a run length between false alarms.

    The evaluation fires when any feature's KS statistic against ``x_ref`` exceeds the returned
    threshold; on streams from the process the reference was drawn from, the expected number of
    evaluations between firings is then at least ``target_run_length``, on average over
    references. Simulated by :func:`calibrate_threshold` on the exact ``window`` / ``stride``
    schedule, with the correlation between features kept (whole frames are resampled) and
    between overlapping windows accounted for.

    Each simulated stream is compared with its own bootstrap resample of the reference (a
    double bootstrap): the live reference is itself one sample of the process, and its
    sampling error, fixed for a camera's life, raises every window's statistic. Without it a
    threshold calibrated on 4,000 frames for 100 evaluations delivered 81 on one reference and
    160 on another. One reference's own run length still varies around the promise.

    Work happens on integer rank codes (no floating-point sort of the reference per window),
    about ``30 * target_run_length`` window evaluations in all.

    Parameters
    ----------
    x_ref : array_like, shape (n_ref, k)
        Reference frames' features (time order matters only with ``resample_block > 1``).
    window, stride, target_run_length, resample_block, n_blocks, seed :
        As for :func:`calibrate_threshold`.

    Returns
    -------
    KSCalibration

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import calibrate_ks
    >>> ref = np.random.default_rng(0).normal(size=(5000, 4))
    >>> cal = calibrate_ks(ref, window=100, stride=25, target_run_length=500, seed=1)
    >>> bool(cal.level < 0.05 / 4)   # stricter than Bonferroni for one look
    True
    """
    codes, shift = ks_rank_codes(x_ref)
    n_ref, k = codes.shape
    small = n_ref << shift < 2**31 and n_ref * (window + 1) < 2**31
    if small:
        codes = codes.astype(np.int32)  # half the memory traffic; sorts twice as fast
    resample_block = check_int(resample_block, "resample_block")
    # each simulated stream gets its own resample of the reference (the double bootstrap above)
    order = np.argsort(codes, axis=0, kind="stable").T  # (k, n_ref): rows in value order
    rng = make_rng(seed, stream=1)

    def statistic(windows):
        weights = np.bincount(_resample_indices(rng, n_ref, n_ref, resample_block), minlength=n_ref)
        counts = np.zeros((k, n_ref + 1), dtype=codes.dtype)
        np.cumsum(weights[order], axis=1, out=counts[:, 1:])
        return max_ks_statistic(windows, n_ref, shift, counts)

    result = calibrate_threshold(
        codes,
        statistic,
        window=window,
        stride=stride,
        target_run_length=target_run_length,
        n_blocks=n_blocks,
        resample_block=resample_block,
        vectorized=True,
        seed=seed,
    )
    return KSCalibration(
        statistic_threshold=result.threshold,
        level=ks_p_value(n_ref, window, result.threshold),
        n_ref=n_ref,
        window=window,
        calibration=result,
    )
