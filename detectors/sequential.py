"""Sequential change detectors (CUSUM, Page-Hinkley) on per-feature summaries.

Each ``update`` takes one value per feature (e.g. a window's mean brightness and mean
sharpness) and tests all features at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detectors.base import StatefulDetector
from detectors.validation import as_vector, check_choice, check_int, check_number


@dataclass(frozen=True)
class SequentialResult:
    """Outcome of one ``update``.

    Attributes
    ----------
    drifted : bool array (n_features,): a change was detected at this update (the feature's
        detector then restarts).
    statistic : float array (n_features,): the decision statistic *before* any restart
        (compare with the detector's threshold).
    """

    drifted: np.ndarray
    statistic: np.ndarray

    @property
    def any_drifted(self) -> bool:
        """True when any feature drifted at this update."""
        return bool(np.any(self.drifted))


class Cusum(StatefulDetector):
    """Two-sided tabular CUSUM on standardised values, vectorised over features.

    Parameters
    ----------
    mean, std : array_like (n_features,)
        In-control mean and standard deviation of the monitored summary (estimate them on
        the reference, e.g. over reference windows of the size the daemon uses).
    k : float
        Allowance, in standard deviations (half the shift to detect fastest; 0.5 for a
        one-sigma shift).
    h : float
        Decision interval, in standard deviations. ``k = 0.5, h = 5`` gives an in-control
        average run length of about 465 updates (two-sided, i.i.d. normal summaries;
        Montgomery, *Introduction to Statistical Quality Control*, table 9.3) and detects a
        one-sigma shift after about 10.

    Notes
    -----
    With ``z_t = (x_t - mean) / std``: ``S+_t = max(0, S+_{t-1} + z_t - k)``,
    ``S-_t = max(0, S-_{t-1} - z_t - k)``; a change is detected when ``max(S+, S-) > h``,
    after which that feature's sums restart at 0. Assumes independent summaries between
    updates; summaries of overlapping windows are positively correlated, which shortens the
    in-control run length (use non-overlapping windows, or raise ``h``). Standard deviations
    below 1e-12 are floored to avoid division by zero (a constant summary then detects any
    change). ``reset()`` restarts every feature (a :class:`~detectors.base.StatefulDetector`).

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import Cusum
    >>> rng = np.random.default_rng(11)
    >>> x = np.r_[rng.normal(0, 1, 200), rng.normal(2, 1, 100)]  # step at index 200
    >>> cusum = Cusum(mean=[0.0], std=[1.0], k=0.5, h=5.0)
    >>> [i for i, v in enumerate(x) if cusum.update([v]).drifted[0]][:1]
    [203]
    """

    def __init__(self, mean, std, *, k: float = 0.5, h: float = 5.0):
        self.mean = as_vector(mean, "mean")
        std = as_vector(std, "std", len(self.mean))
        if np.any(std < 0):
            raise ValueError("std must be >= 0")
        self.std = np.maximum(std, 1e-12)
        self.k = check_number(k, "k", at_least=0.0)
        self.h = check_number(h, "h", above=0.0)
        self._reset()

    def _reset(self) -> None:
        n = len(self.mean)
        self._pos = np.zeros(n)
        self._neg = np.zeros(n)
        self._drifted = np.zeros(n, dtype=bool)
        self.n_updates = 0

    @property
    def drifted(self) -> np.ndarray:
        """Features in which the latest update detected a change (read-only copy)."""
        return self._drifted.copy()

    def update(self, x) -> SequentialResult:
        """Feed one summary per feature."""
        z = (as_vector(x, "x", len(self.mean)) - self.mean) / self.std
        self._pos = np.maximum(0.0, self._pos + z - self.k)
        self._neg = np.maximum(0.0, self._neg - z - self.k)
        stat = np.maximum(self._pos, self._neg)
        self._drifted = stat > self.h
        self._pos[self._drifted] = 0.0
        self._neg[self._drifted] = 0.0
        self.n_updates += 1
        return SequentialResult(drifted=self._drifted.copy(), statistic=stat)


class PageHinkley(StatefulDetector):
    """Page-Hinkley test for a change in the mean, vectorised over features.

    Parameters
    ----------
    n_features : int
        Number of monitored summaries.
    delta : float
        Magnitude of changes to tolerate (in the data's units).
    threshold : float
        Detection threshold ``lambda`` on the cumulative deviation (data's units).
    min_instances : int
        Updates before detection is allowed (the running mean must settle).
    alpha : float
        Forgetting factor on the cumulative sums, in (0, 1]; 1 means no forgetting.
    mode : {"both", "up", "down"}
        Which direction of change to detect.

    Notes
    -----
    With ``xbar_t`` the running mean since the last restart and ``d_t = x_t - xbar_t``:
    ``U_t = alpha U_{t-1} + d_t - delta`` (increase) with running minimum ``m_t``, and
    ``L_t = alpha L_{t-1} + d_t + delta`` (decrease) with running maximum ``M_t``. A change
    is detected when ``U_t - m_t > lambda`` or ``M_t - L_t > lambda`` (and at least
    ``min_instances`` updates were seen); the feature's state then restarts. Unlike CUSUM it
    needs no in-control mean, only its scale in ``delta`` and ``threshold``. ``reset()``
    restarts every feature (a :class:`~detectors.base.StatefulDetector`).

    Examples
    --------
    >>> import numpy as np
    >>> from detectors import PageHinkley
    >>> rng = np.random.default_rng(11)
    >>> x = np.r_[rng.normal(0, 1, 200), rng.normal(2, 1, 100)]  # step at index 200
    >>> ph = PageHinkley(n_features=1, delta=0.1, threshold=10.0)
    >>> [i for i, v in enumerate(x) if ph.update([v]).drifted[0]][:1]
    [204]
    """

    def __init__(
        self,
        n_features: int,
        *,
        delta: float = 0.005,
        threshold: float = 50.0,
        min_instances: int = 30,
        alpha: float = 1 - 1e-4,
        mode: str = "both",
    ):
        self.n_features = check_int(n_features, "n_features")
        self.delta = check_number(delta, "delta", at_least=0.0)
        self.threshold = check_number(threshold, "threshold", above=0.0)
        self.min_instances = check_int(min_instances, "min_instances")
        self.alpha = check_number(alpha, "alpha", above=0.0, at_most=1.0)
        self.mode = check_choice(mode, "mode", ("both", "up", "down"))
        self._reset()

    def _reset(self) -> None:
        n = self.n_features
        self._count = np.zeros(n)
        self._mean = np.zeros(n)
        self._up = np.zeros(n)
        self._up_min = np.zeros(n)
        self._down = np.zeros(n)
        self._down_max = np.zeros(n)
        self._drifted = np.zeros(n, dtype=bool)

    @property
    def drifted(self) -> np.ndarray:
        """Features in which the latest update detected a change (read-only copy)."""
        return self._drifted.copy()

    def update(self, x) -> SequentialResult:
        """Feed one summary per feature."""
        x = as_vector(x, "x", self.n_features)
        self._count += 1
        self._mean += (x - self._mean) / self._count
        dev = x - self._mean
        self._up = self.alpha * self._up + dev - self.delta
        self._down = self.alpha * self._down + dev + self.delta
        self._up_min = np.minimum(self._up_min, self._up)
        self._down_max = np.maximum(self._down_max, self._down)
        up_stat = self._up - self._up_min
        down_stat = self._down_max - self._down
        if self.mode == "up":
            stat = up_stat
        elif self.mode == "down":
            stat = down_stat
        else:
            stat = np.maximum(up_stat, down_stat)
        self._drifted = (stat > self.threshold) & (self._count >= self.min_instances)
        d = self._drifted
        if d.any():
            for arr in (
                self._count,
                self._mean,
                self._up,
                self._up_min,
                self._down,
                self._down_max,
            ):
                arr[d] = 0.0
        return SequentialResult(drifted=d.copy(), statistic=stat)
