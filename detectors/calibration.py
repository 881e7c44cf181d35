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


def _positive_int(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def calibrate_threshold(x_ref, statistic_fn, *, window: int, stride: int,
                        target_run_length: float = 10_000, block_evaluations: int | None = None,
                        n_blocks: int | None = None, resample_block: int = 1,
                        vectorized: bool = False, seed: int | None = 0) -> CalibrationResult:
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
    ref = np.asarray(x_ref, dtype=np.float64)
    if ref.ndim == 1:
        ref = ref[:, None]
    if ref.ndim != 2 or ref.shape[0] == 0 or not np.all(np.isfinite(ref)):
        raise ValueError("x_ref must be a non-empty finite 1-D or 2-D array")
    window = _positive_int("window", window)
    stride = _positive_int("stride", stride)
    resample_block = _positive_int("resample_block", resample_block)
    if resample_block > ref.shape[0]:
        raise ValueError("resample_block must not exceed the reference length")
    target = float(target_run_length)
    if not (np.isfinite(target) and target >= 4):
        raise ValueError(f"target_run_length must be finite and >= 4, got {target_run_length}")
    if block_evaluations is None:
        block_evaluations = min(max(50, 10 * math.ceil(window / stride)),
                                max(1, int(target // 4)))
    L = _positive_int("block_evaluations", block_evaluations)
    q = L / (target + L)
    if n_blocks is None:
        n_blocks = math.ceil(30 / q)
    n_blocks = _positive_int("n_blocks", n_blocks)
    if n_blocks * q < 1:
        raise ValueError(f"n_blocks={n_blocks} is too few for tail level q={q:.3g}: need at "
                         f"least {math.ceil(1 / q)} (30 / q recommended)")
    if not callable(statistic_fn):
        raise ValueError("statistic_fn must be callable")

    rng = np.random.default_rng(seed)
    n_frames = window + (L - 1) * stride
    maxima = np.empty(n_blocks)
    for b in range(n_blocks):
        stream = ref[_resample_indices(rng, ref.shape[0], n_frames, resample_block)]
        windows = sliding_window_view(stream, window, axis=0)[::stride]  # (L, k, window)
        windows = np.swapaxes(windows, 1, 2)
        if vectorized:
            stats = np.asarray(statistic_fn(windows), dtype=np.float64)
            if stats.shape != (L,):
                raise ValueError(f"vectorized statistic_fn returned shape {stats.shape}, "
                                 f"expected ({L},)")
        else:
            stats = np.array([float(statistic_fn(w)) for w in windows])
        if not np.all(np.isfinite(stats)):
            raise ValueError("statistic_fn returned non-finite values")
        maxima[b] = stats.max()
    threshold = float(np.quantile(maxima, 1.0 - q, method="higher"))
    return CalibrationResult(threshold=threshold, target_run_length=target, window=window,
                             stride=stride, block_evaluations=L, n_blocks=n_blocks,
                             block_alarm_rate=q, block_maxima=maxima)


def _resample_indices(rng: np.random.Generator, n: int, size: int, block: int) -> np.ndarray:
    if block == 1:
        return rng.integers(0, n, size=size)
    starts = rng.integers(0, n - block + 1, size=math.ceil(size / block))
    return (starts[:, None] + np.arange(block)).ravel()[:size]
