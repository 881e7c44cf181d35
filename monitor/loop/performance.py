"""The model's accuracy estimated from its own confidences, before any label arrives.

Confidence-based performance estimation (CBPE): if a classifier is calibrated, i.e. right with
probability ``c`` whenever its top-class probability is ``c``, then its expected top-1 accuracy
on a set of frames is the mean of their confidences,

    E[accuracy] = (1/n) * sum_i P(correct | c_i) = (1/n) * sum_i g(c_i),

with ``g`` the identity for a calibrated model and, for one that is not, a monotone map ``g``
fitted on labelled frames (:class:`Calibration`, isotonic regression). The estimate follows
*covariate* shift (inputs get harder, confidences drop) as long as ``g`` holds; it cannot see a
change of ``g`` itself (concept shift: the same confidence now means a lower chance of being
right), nor a model miscalibrated in a way the labelled frames did not show.

This covers classification (``probs``) only. A detector's score is not the probability that the
frame's top-1 prediction is right, and what precision a score threshold gives depends on matching
boxes to ground truth; no estimate is made for detections (:func:`estimate_window` returns None
for windows without probability vectors).

numpy only, so the daemon can run it per evaluation at the cost of a mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from monitor.pipeline.predictions import Prediction, PredictionWindow

# Fewer labelled frames than this: Calibration.fit keeps the identity (no evidence to map with).
MIN_LABELLED = 50
# Every block of the isotonic map holds at least this many labelled frames, so one unlucky run
# of right or wrong answers does not become a step.
MIN_BLOCK = 20
# Fewer frames with a confidence in a window than this: no estimate.
MIN_FRAMES = 10
# The calibration check's two-sided band: z for 99%, so a calibrated model is flagged in ~1% of
# checks.
CHECK_Z = 2.576


def _confidences(confidences: np.ndarray) -> np.ndarray:
    c = np.asarray(confidences, dtype=np.float64).ravel()
    if np.any((c[np.isfinite(c)] < 0.0) | (c[np.isfinite(c)] > 1.0)):
        raise ValueError("confidences must lie in [0, 1]")
    return c


def _blocks(
    x: np.ndarray, y: np.ndarray, min_block: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool-adjacent-violators on ``y`` ordered by ``x``, then blocks smaller than ``min_block``
    merged into their nearer neighbour (in value). Returns each block's mean ``x``, mean ``y``
    (both non-decreasing) and size, blocks in increasing ``x``. Equal ``x`` always share a block,
    so the map is a function."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    # Start from one block per distinct x (ties pooled): [sum x, sum y, count].
    starts = np.flatnonzero(np.r_[True, np.diff(x) > 0])
    sx = np.add.reduceat(x, starts)
    sy = np.add.reduceat(y, starts)
    cnt = np.diff(np.r_[starts, len(x)]).astype(np.float64)
    stack: list[list[float]] = []
    for block in zip(sx.tolist(), sy.tolist(), cnt.tolist(), strict=True):
        stack.append(list(block))
        while len(stack) > 1 and stack[-2][1] / stack[-2][2] > stack[-1][1] / stack[-1][2]:
            top = stack.pop()
            stack[-1] = [a + b for a, b in zip(stack[-1], top, strict=True)]
    # Merging two adjacent blocks gives a value between theirs, so the order is kept.
    while len(stack) > 1:
        sizes = [b[2] for b in stack]
        i = int(np.argmin(sizes))
        if sizes[i] >= min_block:
            break
        value = stack[i][1] / stack[i][2]
        if i == 0:
            j = 1
        elif i == len(stack) - 1:
            j = i - 1
        else:
            left = value - stack[i - 1][1] / stack[i - 1][2]
            right = stack[i + 1][1] / stack[i + 1][2] - value
            j = i - 1 if left <= right else i + 1
        lo, hi = min(i, j), max(i, j)
        stack[lo] = [a + b for a, b in zip(stack[lo], stack[hi], strict=True)]
        del stack[hi]
    b = np.asarray(stack)
    return b[:, 0] / b[:, 2], b[:, 1] / b[:, 2], b[:, 2].astype(np.int64)


def pool_adjacent_violators(x: np.ndarray, y: np.ndarray, min_block: int = 1) -> np.ndarray:
    """The isotonic (non-decreasing in ``x``) least-squares fit of ``y``, one value per point in
    the input order; with ``min_block`` > 1, blocks are merged until each holds that many points.

    >>> pool_adjacent_violators(np.array([1, 2, 3, 4]), np.array([1.0, 0.0, 1.0, 1.0]))
    array([0.5, 0.5, 1. , 1. ])
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("x and y must be non-empty and of the same length")
    _, by, sizes = _blocks(x, y, min_block)
    values = np.empty(len(x))
    values[np.argsort(x, kind="stable")] = np.repeat(by, sizes)  # blocks are runs of sorted x
    return values


@dataclass(frozen=True)
class Calibration:
    """A monotone map from the model's confidence to its probability of being right, fitted on
    labelled frames; the identity when there were too few (``fitted`` False).

    Knots sit at each block's mean confidence and accuracy; between them the map is linear, above
    the last it is flat, and below the first it falls in proportion to the confidence (a line
    through the origin and the first knot). That last part is an assumption, not a fit: when
    confidences drop below what the labelled frames covered, the labels say nothing about them,
    and a flat map would keep the estimate up exactly when the model gets worse.
    """

    knots_x: tuple[float, ...] = ()  # block mean confidences, increasing
    knots_y: tuple[float, ...] = ()  # block accuracies, non-decreasing
    n: int = 0  # labelled frames it was fitted on

    @property
    def fitted(self) -> bool:
        return len(self.knots_x) > 0

    @classmethod
    def fit(
        cls,
        confidences: np.ndarray,
        correct: np.ndarray,
        *,
        min_labelled: int = MIN_LABELLED,
        min_block: int = MIN_BLOCK,
    ) -> Calibration:
        """Isotonic regression of ``correct`` (0/1) on ``confidences`` by pool-adjacent-violators,
        each block holding at least ``min_block`` frames; the identity below ``min_labelled``
        frames. Frames with a NaN confidence are left out."""
        c = _confidences(confidences)
        y = np.asarray(correct, dtype=np.float64).ravel()
        if len(c) != len(y):
            raise ValueError("confidences and correct must have the same length")
        keep = np.isfinite(c)
        c, y = c[keep], y[keep]
        if len(c) < min_labelled:
            return cls(n=int(len(c)))
        bx, by, _ = _blocks(c, y, min_block)
        return cls(tuple(bx.tolist()), tuple(by.tolist()), int(len(c)))

    def apply(self, confidences: np.ndarray) -> np.ndarray:
        """Each confidence's probability of being right under this map (NaN stays NaN)."""
        c = _confidences(confidences)
        if not self.fitted:
            return c.copy()
        # Below the labelled range: proportional to the confidence, through the lowest knot.
        xs, ys = self.knots_x, self.knots_y
        if xs[0] > 0.0:
            xs, ys = (0.0, *xs), (0.0, *ys)
        out = np.interp(c, xs, ys)
        out[~np.isfinite(c)] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"knots_x": list(self.knots_x), "knots_y": list(self.knots_y), "n": self.n}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        x = tuple(float(v) for v in d.get("knots_x", ()))
        y = tuple(float(v) for v in d.get("knots_y", ()))
        if len(x) != len(y) or any(b < a for a, b in zip(x, x[1:], strict=False)):
            raise ValueError("calibration knots must be paired and increasing")
        return cls(x, y, int(d.get("n", 0)))


def expected_accuracy(confidences: np.ndarray, calibration: Calibration | None = None) -> float:
    """The expected top-1 accuracy: the mean (calibrated) confidence of the predicted class.
    NaN confidences (frames without probs) are left out; ValueError when none is left.

    >>> expected_accuracy(np.array([0.75, 0.5, np.nan]))
    0.625
    """
    c = _confidences(confidences)
    c = c[np.isfinite(c)]
    if len(c) == 0:
        raise ValueError("no confidence to estimate from")
    p = calibration.apply(c) if calibration is not None else c
    return float(p.mean())


def _labelled(confidences: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labelled frames with a finite confidence: (confidences, correct as 0/1 floats)."""
    c = _confidences(confidences)
    y = np.asarray(correct, dtype=np.float64).ravel()
    if len(c) != len(y):
        raise ValueError("confidences and correct must have the same length")
    keep = np.isfinite(c)
    if not keep.any():
        raise ValueError("no labelled frame with a confidence")
    return c[keep], y[keep]


def calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with equal-mass bins: frames sorted by confidence and cut into
    ``bins`` groups of (nearly) equal size, then ``sum_b (n_b / n) |mean conf_b - accuracy_b|``.

    Equal mass rather than equal width because confidences crowd near 1: equal-width bins leave
    most bins empty or with a handful of frames. Like every binned ECE it is biased upward by
    sampling noise (about ``sqrt(p (1 - p) / n_b)`` per bin), so compare it across sets of similar
    size, or use :func:`check_calibration` for a decision.

    >>> calibration_error(np.array([0.5, 0.5, 0.75, 0.75]), np.array([1, 1, 1, 0]), bins=2)
    0.375
    """
    c, y = _labelled(confidences, correct)
    if bins < 1:
        raise ValueError("bins must be at least 1")
    order = np.argsort(c, kind="stable")
    total = 0.0
    for idx in np.array_split(order, min(bins, len(c))):
        total += len(idx) * abs(float(c[idx].mean()) - float(y[idx].mean()))
    return total / len(c)


@dataclass(frozen=True)
class CalibrationCheck:
    """Whether the model's confidences can be taken at face value on a labelled set.

    ``calibrated`` is True when the labelled accuracy lies within ``bound`` of the estimate, where
    ``bound`` is the two-sided 99% band of the labelled accuracy *if* each frame were right with
    probability equal to its (calibrated) confidence: ``z * sqrt(sum p_i (1 - p_i)) / n``. A
    calibrated model is thus flagged in about 1% of checks; an overconfident one is caught once its
    gap exceeds the band (about 9 points at n = 100, 4 at n = 500, for confidences around 0.85).
    It checks the *mean*, which is what the accuracy estimate needs; a model over- and
    under-confident in equal measure at different confidences passes, and ``ece`` is there to show
    it. Through a fitted :class:`Calibration` the band ignores the map's own fitting noise, so an
    unchanged model is flagged more often than 1% (about 8% for a map from 500 labels checked on
    500 new ones, benchmarks/estimated_performance.py).
    """

    n: int
    ece: float  # equal-mass, 10 bins
    estimated: float  # expected accuracy from the confidences
    labelled: float  # the accuracy on the labels
    bound: float
    calibrated: bool


def check_calibration(
    confidences: np.ndarray,
    correct: np.ndarray,
    calibration: Calibration | None = None,
    *,
    z: float = CHECK_Z,
    bins: int = 10,
) -> CalibrationCheck:
    """Compares the estimated with the labelled accuracy on frames with labels (``correct``: the
    model's top-1 prediction matched the label). With ``calibration``, the mapped confidences are
    checked (e.g. a map fitted on older labels, checked on new ones)."""
    c, y = _labelled(confidences, correct)
    p = calibration.apply(c) if calibration is not None else c
    n = len(p)
    estimated = float(p.mean())
    labelled = float(y.mean())
    bound = z * math.sqrt(float(np.sum(p * (1.0 - p)))) / n
    return CalibrationCheck(
        n=n,
        ece=calibration_error(p, y, bins),
        estimated=estimated,
        labelled=labelled,
        bound=bound,
        calibrated=abs(estimated - labelled) <= bound,
    )


@dataclass(frozen=True)
class AccuracyEstimate:
    """A set of frames' estimated accuracy; ``sd`` is the standard deviation the labelled accuracy
    of these same frames would have around it if the (calibrated) confidences were right, so a
    labelled figure within about ``2 * sd`` agrees with the estimate."""

    accuracy: float
    n: int  # frames with a confidence (probs), the ones used
    sd: float
    calibrated: bool  # a fitted Calibration was applied


def estimate_accuracy(
    confidences: np.ndarray,
    calibration: Calibration | None = None,
    *,
    min_frames: int = MIN_FRAMES,
) -> AccuracyEstimate | None:
    """The estimate with its count and spread: ``confidences`` holds the top-class probability of
    each frame, NaN where a frame had no probability vector (no predictions, or detections: see
    :func:`classification_confidences`). None with fewer than ``min_frames`` finite ones."""
    c = _confidences(confidences)
    c = c[np.isfinite(c)]
    if len(c) < min_frames:
        return None
    p = calibration.apply(c) if calibration is not None else c
    n = len(p)
    return AccuracyEstimate(
        accuracy=float(p.mean()),
        n=n,
        sd=math.sqrt(float(np.sum(p * (1.0 - p)))) / n,
        calibrated=calibration is not None and calibration.fitted,
    )


def estimate_window(
    window: PredictionWindow | np.ndarray,
    calibration: Calibration | None = None,
    *,
    min_frames: int = MIN_FRAMES,
) -> float | None:
    """What the daemon exports per evaluation: the estimated accuracy of a window's frames with
    class probabilities (a :class:`~monitor.pipeline.predictions.PredictionWindow`, or their
    confidences with NaN where none); None below ``min_frames`` such frames, so a detector's
    window has none. :func:`estimate_accuracy` gives the count and spread too."""
    c = (
        np.asarray(window, dtype=np.float64)
        if isinstance(window, np.ndarray)
        else classification_confidences(window.items)
    )
    estimate = estimate_accuracy(c, calibration, min_frames=min_frames)
    return None if estimate is None else estimate.accuracy


def classification_confidences(items: Sequence[Prediction | None]) -> np.ndarray:
    """Per frame, the top-class probability where it carried a probability vector, NaN otherwise
    (no predictions, or detections, whose scores CBPE does not cover)."""
    return np.array(
        [p.confidence if p is not None and p.probs is not None else np.nan for p in items],
        dtype=np.float64,
    )
