"""A frame's context: the condition of the camera's normal life it was taken in.

A camera's normal life has day and night (often an infrared, greyscale mode), weather, seasons. A
reference that holds several contexts judges each window against the frames of its own context:
a camera whose reference holds its nights is not drifted at night, while a day camera turning dark
at noon is. A frame's context is, in order:

1. the producer's own label, when the frame carries one (header ``context``, or the JSON
   envelope's ``context``): producers that know (a weather feed, the camera's IR switch) say so;
2. else derived from the frame (``context.*`` configuration): ``ir`` when the frame has no colour
   (an infrared night mode, or a monochrome camera: its saturation and colourfulness are those of
   a grey image), and ``day``/``night`` by the local hour of its event time when
   ``context.day_hours`` is set; joined with ``/`` (``night/ir``); ``default`` when nothing applies.

Examples
--------
>>> from monitor.config import ContextConfig
>>> row = np.zeros(len(FEATURE_NAMES), np.float32)        # no colour at all
>>> frame_context(row, 0.0, "", ContextConfig())
'ir'
>>> frame_context(row, 0.0, "rain", ContextConfig())
'rain'
>>> day = ContextConfig(infrared=False, day_hours=(7, 19), timezone="UTC")
>>> frame_context(row, 12 * 3600.0, "", day), frame_context(row, 23 * 3600.0, "", day)
('day', 'night')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

from monitor.config import ContextConfig
from monitor.pipeline.features import FEATURE_NAMES

DEFAULT = "default"
#: A frame with less colour than this (mean HSV saturation, Hasler-Süsstrunk colourfulness) is grey.
GREY_SATURATION, GREY_COLOURFULNESS = 0.03, 3.0


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def frame_context(
    row: np.ndarray,
    ts: float,
    label: str,
    config: ContextConfig,
    names: tuple[str, ...] = FEATURE_NAMES,
) -> str:
    """The context of one frame from its image statistics ``row`` (columns ``names``), event time
    ``ts`` and the producer's ``label`` (module docstring). Without saturation and colourfulness
    among ``names`` no frame is told to be infrared."""
    if label:
        return label
    parts = []
    if config.day_hours:
        start, end = config.day_hours
        hour = datetime.fromtimestamp(ts, _zone(config.timezone)).hour
        parts.append("day" if start <= hour < end else "night")
    if config.infrared and _grey(row, names):
        parts.append("ir")
    return "/".join(parts) or DEFAULT


def _grey(row: np.ndarray, names: tuple[str, ...]) -> bool:
    if "saturation_mean" not in names or "colourfulness" not in names:
        return False
    return bool(
        row[names.index("saturation_mean")] < GREY_SATURATION
        and row[names.index("colourfulness")] < GREY_COLOURFULNESS
    )


def window_context(contexts: Sequence[str]) -> str:
    """A window's context: the most common of its frames' (the newest wins a tie)."""
    if not contexts:
        return DEFAULT
    counts = Counter(contexts)
    best = max(counts.values())
    return next(c for c in reversed(contexts) if counts[c] == best)
