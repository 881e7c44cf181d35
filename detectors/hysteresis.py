"""k-of-m hysteresis: turn per-evaluation verdicts into a stable drift state."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from detectors.base import StatefulDetector
from detectors.validation import check_int


@dataclass(frozen=True)
class HysteresisResult:
    """Outcome of one :meth:`Hysteresis.update`.

    Attributes
    ----------
    drifted : the state after this evaluation.
    changed : True when this evaluation flipped the state (entered or left drift); the
        daemon acts (events, alerts) on these transitions only.
    """

    drifted: bool
    changed: bool


class Hysteresis(StatefulDetector):
    """Declare drift when the window drifted in at least ``k`` of the last ``m`` evaluations;
    recover after ``recover`` consecutive clean evaluations.

    Parameters
    ----------
    k : int
        Drifted windows needed among the last ``m`` evaluations to enter the drifted state
        (``1 <= k <= m``).
    m : int
        Length of the look-back window, in evaluations.
    recover : int
        Consecutive clean evaluations needed to leave the drifted state (>= 1).

    Notes
    -----
    While not drifted, the detector keeps the last ``m`` verdicts and enters drift on the
    evaluation that makes the count of drifted windows reach ``k``. While drifted, a drifted
    window resets the clean streak; ``recover`` clean evaluations in a row end the drift and
    clear the look-back window, so a new declaration needs ``k`` fresh drifted windows.

    If windows drifted independently with probability ``p`` (they do not when windows
    overlap), the chance that a given evaluation completes a declaration is about
    ``C(m-1, k-1) p^k``: with ``p = 0.05``, ``k = 3``, ``m = 5`` that is ~7.5e-4, against
    0.05 without hysteresis. For a guarantee under overlapping windows, calibrate the
    per-evaluation threshold instead (``calibrate_threshold``).

    A :class:`~detectors.base.StatefulDetector`: all mutable state is created in ``_reset()``,
    so after ``reset()`` the detector equals a new one.

    Examples
    --------
    >>> from detectors import Hysteresis
    >>> h = Hysteresis(k=2, m=3, recover=2)
    >>> [h.update(f).drifted for f in [True, False, True, True, False, False, False]]
    [False, False, True, True, True, False, False]
    >>> h = Hysteresis(k=2, m=3, recover=2)
    >>> [h.update(f).changed for f in [True, True, False, False]]
    [False, True, False, True]
    """

    def __init__(self, k: int = 3, m: int = 5, recover: int = 3):
        k, m, recover = check_int(k, "k"), check_int(m, "m"), check_int(recover, "recover")
        if k > m:
            raise ValueError(f"k must be <= m, got k={k}, m={m}")
        self.k = k
        self.m = m
        self.recover = recover
        self._reset()

    def _reset(self) -> None:
        self._recent: deque[bool] = deque(maxlen=self.m)
        self._drifted = False
        self._clean_streak = 0

    @property
    def drifted(self) -> bool:
        """The current state (read-only)."""
        return self._drifted

    def update(self, window_drifted: bool) -> HysteresisResult:
        """Feed one evaluation's verdict (did the window drift?); return the state after it."""
        window_drifted = bool(window_drifted)
        was = self._drifted
        self._recent.append(window_drifted)
        if not self._drifted:
            if sum(self._recent) >= self.k:
                self._drifted = True
                self._clean_streak = 0
        elif window_drifted:
            self._clean_streak = 0
        else:
            self._clean_streak += 1
            if self._clean_streak >= self.recover:
                self._drifted = False
                self._clean_streak = 0
                self._recent.clear()
        return HysteresisResult(drifted=self._drifted, changed=self._drifted != was)

    def get_state(self) -> dict:
        """Plain-data state, for checkpointing (restore with :meth:`set_state`)."""
        return {
            "recent": list(self._recent),
            "drifted": self._drifted,
            "clean_streak": self._clean_streak,
        }

    def set_state(self, state: dict) -> None:
        self._reset()
        self._recent.extend(bool(v) for v in state["recent"])
        self._drifted = bool(state["drifted"])
        self._clean_streak = int(state["clean_streak"])

    def __repr__(self) -> str:
        return f"Hysteresis(k={self.k}, m={self.m}, recover={self.recover})"
