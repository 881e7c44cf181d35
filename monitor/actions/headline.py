"""One sentence per drift event that a person can act on: what changed, by how much in units of the
camera's normal variation, since when, the likely cause, and what was queued.

    "Sensor noise up 41x its normal spread and sharpness up 6x since 08:08:15 — gain or
    noise-filter change, or rain; 13 frames queued"

- *What, and how much*: the drifted image statistics ranked by the calibrated distance of the
  ``shift`` test — how many of the reference's own span-spreads the window mean moved, signed —
  one comparable scale for every statistic; embeddings and the model's outputs in words.
- *Since when*: :func:`change_point`, where in the window the top statistics changed level.
- *Likely cause*: :data:`CAUSES`, patterns of which statistics moved which way.

The same sentence is the event's log line, the refresh ticket's title and the report's heading.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.actions.explain import STATISTIC_WORDS

#: Patterns of moved statistics -> the likely cause, first match wins. A pattern is a tuple of
#: (statistic, direction); it matches when every one of them is among the moved statistics in that
#: direction (+1 up, -1 down).
CAUSES: tuple[tuple[tuple[tuple[str, int], ...], str], ...] = (
    ((("width", 0),), "a resolution or stream-profile change"),
    ((("height", 0),), "a resolution or stream-profile change"),
    ((("aspect_ratio", 0),), "a crop or stream-profile change"),
    ((("noise_sigma", 1),), "gain or noise-filter change, or rain"),
    ((("sharpness_laplacian_var", -1),), "defocus, a dirty or wet lens, or motion blur"),
    ((("contrast_rms", -1), ("brightness_mean", 1)), "fog, haze or a smeared window"),
    (
        (("underexposed_fraction", 1),),
        "less light: dusk, a lost light, an exposure change or something over the lens",
    ),
    (
        (("brightness_mean", -1),),
        "less light: dusk, a lost light, an exposure change or something over the lens",
    ),
    ((("overexposed_fraction", 1),), "more light: glare, sun or an exposure change"),
    ((("brightness_mean", 1),), "more light: glare, sun or an exposure change"),
    ((("encoded_bytes_per_pixel", -1),), "stronger compression: an encoder or bitrate change"),
    (
        (("saturation_mean", -1),),
        "washed-out colour: fog, an infrared mode or a colour-pipeline change",
    ),
    ((("hue_cos", 0),), "a colour cast: white balance or a firmware colour change"),
    ((("hue_sin", 0),), "a colour cast: white balance or a firmware colour change"),
    (
        (("edge_density", 0),),
        "the scene's detail changed: the view moved, or something blocks or clutters it",
    ),
)
EMBEDDING_CAUSE = (
    "the scene's content or the camera's view changed (moved, obstructed, new objects)"
)
PREDICTION_CAUSE = "the model's outputs changed"


@dataclass(frozen=True)
class Moved:
    """One drifted statistic: its name, its signed distance in span-spreads (``shift``'s |z| with
    the direction of the window mean's move), and its words."""

    feature: str
    spreads: float
    what: str


def change_point(values: np.ndarray) -> int:
    """Index of the first frame after the level change in ``values`` ``(n, k)`` (each column
    standardised, changes summed): the split that maximises the between-segment difference of
    means weighted by ``sqrt(i (n - i) / n)`` (a CUSUM split). 0 when the window is too short.

    >>> noise = np.random.default_rng(0).normal(size=(50, 1))
    >>> change_point(np.r_[np.zeros(30), np.ones(20) * 5][:, None] + noise)
    30
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 4:
        return 0
    sd = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    total = z.sum(axis=0)
    i = np.arange(1, n)
    left = np.cumsum(z, axis=0)[:-1]
    diff = (
        np.abs(left / i[:, None] - (total - left) / (n - i)[:, None])
        * np.sqrt(i * (n - i) / n)[:, None]
    )
    return int(np.argmax(diff.sum(axis=1)) + 1)


def likely_cause(moved: Sequence[Moved], embeddings: bool, predictions: bool) -> str:
    """The first pattern of :data:`CAUSES` the moved statistics match; else what moved in words."""
    direction = {m.feature: int(np.sign(m.spreads)) for m in moved}
    for pattern, cause in CAUSES:
        if all(f in direction and (d == 0 or direction[f] == d) for f, d in pattern):
            return cause
    if embeddings:
        return EMBEDDING_CAUSE
    if predictions:
        return PREDICTION_CAUSE
    return "no known pattern: look at the ranked statistics"


def _amount(spreads: float) -> str:
    up = "up" if spreads > 0 else "down"
    size = abs(spreads)
    return (
        f"{up} {size:.0f}x its normal spread"
        if size >= 10
        else f"{up} {size:.1f}x its normal spread"
    )


def headline(
    moved: Sequence[Moved],
    since: float | None,
    *,
    embeddings: bool,
    predictions: bool,
    queued: int | None = None,
) -> str:
    """The sentence (module docstring): the top two statistics by distance, since when, why."""
    top = sorted(moved, key=lambda m: -abs(m.spreads))[:2]
    if top:
        what = " and ".join(f"{m.what} {_amount(m.spreads)}" for m in top)
        what = what[0].upper() + what[1:]
    elif embeddings:
        what = "The embeddings moved away from the reference"
    elif predictions:
        what = "The model's outputs moved away from the reference"
    else:
        what = "The camera drifted"
    when = "" if since is None else time.strftime(" since %H:%M:%S", time.gmtime(since))
    tail = "" if queued is None else f"; {queued} frame{'s' if queued != 1 else ''} queued"
    return f"{what}{when} — {likely_cause(moved, embeddings, predictions)}{tail}"


def moved_statistics(
    names: Sequence[str], spreads: Sequence[float], drifted: Sequence[bool]
) -> list[Moved]:
    """The drifted statistics as :class:`Moved`, named in words."""
    return [
        Moved(n, float(s), STATISTIC_WORDS.get(n, n))
        for n, s, d in zip(names, spreads, drifted, strict=True)
        if d
    ]
