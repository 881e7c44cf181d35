"""The one protocol of the stateful detectors (as river's ``base/drift_detector.py``)."""

from __future__ import annotations

import abc
from typing import Any


class StatefulDetector(abc.ABC):
    """A detector fed one observation at a time: ``Hysteresis``, ``Cusum``, ``PageHinkley``.

    ``update(x)`` takes one observation and returns a named, frozen result (a tuple could not
    grow a field without breaking callers); ``drifted`` is the verdict after the latest update;
    ``reset()`` forgets every observation. A subclass creates *all* its mutable state in
    ``_reset()`` and calls it from ``__init__``, so a reset detector equals a fresh one. One
    whose state is checkpointed adds ``get_state()`` / ``set_state(state)`` (plain data).
    """

    @abc.abstractmethod
    def update(self, x) -> Any:
        """Feed one observation; return this update's named result."""

    @property
    @abc.abstractmethod
    def drifted(self) -> Any:
        """The verdict after the latest update (read-only)."""

    @abc.abstractmethod
    def _reset(self) -> None:
        """Create every piece of mutable state, as for a fresh detector."""

    def reset(self) -> None:
        """Forget every observation: the detector then equals a fresh one."""
        self._reset()
