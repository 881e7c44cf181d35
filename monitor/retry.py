"""One way to retry: exponential backoff, bounded or not, that a stop request interrupts.

Used wherever driftmon waits for something flaky: the daemon's first connection to Kafka (for as
long as it takes, alive and not ready meanwhile) and every background delivery of actions (relabel
sinks, tickets, evidence: ``actions.retry.attempts`` tries, then given up until the next start).

Examples
--------
>>> calls = []
>>> def flaky():
...     calls.append(1)
...     if len(calls) < 3:
...         raise ConnectionError("not yet")
...     return "connected"
>>> retry(flaky, Backoff(initial_s=0.0, max_s=0.0, attempts=5), retry_on=(ConnectionError,))
'connected'
>>> len(calls)
3
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays of ``initial_s``, doubling up to ``max_s``; ``attempts`` tries in all (None:
    forever)."""

    initial_s: float
    max_s: float
    attempts: int | None = None

    def delays(self) -> Iterator[float]:
        """The wait after each failed try but the last."""
        delay, tries = self.initial_s, 1
        while self.attempts is None or tries < self.attempts:
            yield delay
            delay, tries = min(delay * 2, self.max_s), tries + 1


class Stopped(Exception):
    """Raised by :func:`retry` when ``stop`` was set while it waited."""


def retry(
    fn: Callable[[], T],
    backoff: Backoff,
    *,
    retry_on: tuple[type[BaseException], ...] = (Exception,),
    stop: threading.Event | None = None,
    on_failure: Callable[[int, BaseException, float | None], None] | None = None,
) -> T:
    """``fn()``, tried again after each failure in ``retry_on`` as ``backoff`` allows.

    ``on_failure(try_number, error, next_delay)`` is called after each failed try (``next_delay``
    None on the last). The last failure is re-raised; :class:`Stopped` is raised when ``stop`` is
    set while waiting. Anything not in ``retry_on`` propagates at once.
    """
    stop = stop or threading.Event()
    delays = backoff.delays()
    tries = 0
    while True:
        tries += 1
        try:
            return fn()
        except retry_on as e:
            delay = next(delays, None)
            if on_failure is not None:
                on_failure(tries, e, delay)
            if delay is None:
                raise
            if stop.wait(delay):
                raise Stopped from e
