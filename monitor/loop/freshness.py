"""How fresh a reference is: the time of the newest frame it holds.

A reference built from a topic or timestamped files knows when its frames were captured; one built
from an unordered bag of images only knows when it was built, which is then the best figure (and
an optimistic one: the frames may be older).
"""

from __future__ import annotations

from monitor.reference.store import Reference


def data_time(reference: Reference) -> float:
    """When the newest frame of ``reference`` was captured (epoch seconds), else when it was
    built."""
    if reference.time_range is not None and reference.time_unit == "s":
        newest = float(reference.time_range[1])
        if newest > 0:
            return newest
    return float(reference.created_at)
