"""One sentence per drift event that a person can act on: what changed, by how much in units of the
camera's normal variation, since when, the likely cause, and what was queued.

    "Sensor noise up 41x its normal spread and sharpness up 6.3x since 08:08:15 — sensor noise:
    a gain or noise-filter change, low light, or rain; 13 frames queued"

- *What, and how much*: :func:`effects`, every image statistic (and leading embedding component)
  ranked by the calibrated distance of the ``shift`` tests — how far the window mean moved, signed,
  in units of how far the reference's own windows wander — one comparable scale for all of them;
  embeddings and the model's outputs in words.
- *Since when*: :func:`estimate_change`, where the top statistics changed level in the stream's
  recent history (the means of the frames between evaluations), else in the window.
- *Likely cause*: :func:`likely_cause`, the :data:`CAUSES` entry whose signature (which statistics
  move which way, how much) is most like how they moved; benchmarks/headlines.py scores it.

The same sentence is the event's log line, the refresh ticket's title, the report's title and
heading, and (through a metric's label) the drift alert's summary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from monitor.actions.explain import describe
from monitor.files import JSONObject
from monitor.pipeline.drift_tests import EMBEDDINGS, LAYOUTS, STATISTICS

if TYPE_CHECKING:
    from monitor.pipeline.engine import Evaluation
    from monitor.pipeline.streams import WindowSnapshot


@dataclass(frozen=True)
class Cause:
    """A likely cause and the signature of how it moves the image statistics: per statistic, the
    expected direction and weight (``signed``: + up, - down), or a weight for a move either way
    (``either``). ``family`` is its short name (benchmarks/headlines.py scores against it)."""

    family: str
    text: str
    signed: dict[str, float]
    either: dict[str, float] = field(default_factory=dict)


#: The causes a headline can name. The one whose signature points most the way the statistics
#: moved (cosine) is named, when it points that way clearly enough (:data:`CAUSE_MIN_SIMILARITY`).
CAUSES: tuple[Cause, ...] = (
    Cause(
        "resolution",
        "a resolution, crop or stream-profile change",
        {},
        {"width": 1.0, "height": 1.0, "aspect_ratio": 1.0},
    ),
    Cause(
        "less_light",
        "less light: dusk, a lost light, an exposure change or something over the lens",
        {
            "brightness_mean": -1.0,
            "underexposed_fraction": 1.0,
            "brightness_std": -0.4,
            "luma_entropy": -0.4,
            "saturation_mean": -0.3,
            "colourfulness": -0.3,
            "edge_density": -0.5,
        },
    ),
    Cause(
        "more_light",
        "more light: glare, sun or an exposure change",
        {"brightness_mean": 1.0, "overexposed_fraction": 1.0, "saturation_mean": -0.3},
    ),
    Cause(
        "blur",
        "defocus, a dirty or wet lens, or motion blur",
        {
            "sharpness_laplacian_var": -1.0,
            "edge_density": -1.0,
            "noise_sigma": -0.5,
            "encoded_bytes_per_pixel": -0.5,
        },
    ),
    Cause(
        "noise",
        "sensor noise: a gain or noise-filter change, low light, or rain",
        {
            "noise_sigma": 1.0,
            "sharpness_laplacian_var": 0.7,
            "encoded_bytes_per_pixel": 0.6,
            "edge_density": 0.3,
        },
    ),
    Cause(
        "haze",
        "fog, haze, glare or a smeared window (flattened contrast)",
        {
            "contrast_rms": -1.0,
            "brightness_std": -1.0,
            "luma_entropy": -0.8,
            "saturation_mean": -0.7,
            "colourfulness": -0.7,
            # flattened contrast also loses edges and detail, less than a blur does
            "edge_density": -0.6,
            "sharpness_laplacian_var": -0.4,
            "noise_sigma": -0.4,
            "encoded_bytes_per_pixel": -0.4,
        },
    ),
    Cause(
        "compression",
        "stronger compression: an encoder or bitrate change",
        {"encoded_bytes_per_pixel": -1.0, "noise_sigma": -0.3, "sharpness_laplacian_var": -0.2},
    ),
    Cause(
        "colour",
        "washed-out colour: fog, an infrared mode or a colour-pipeline change",
        {"saturation_mean": -1.0, "colourfulness": -1.0},
    ),
    Cause(
        "colour_cast",
        "a colour cast: white balance or a firmware colour change",
        {},
        {
            "hue_cos": 1.0,
            "hue_sin": 1.0,
            "red_share": 0.7,
            "green_share": 0.7,
            "blue_share": 0.7,
            "colourfulness": 0.5,
            "saturation_mean": 0.5,
        },
    ),
    Cause(
        "view",
        "the view changed: the camera moved, or something blocks or clutters it",
        {},
        {"edge_layout": 1.0, "embeddings": 1.0, "edge_density": 0.4, "luma_entropy": 0.4},
    ),
)
CAUSE_MIN_SIMILARITY = 0.4
EMBEDDING_CAUSE = (
    "the scene's content or the camera's view changed (moved, obstructed, new objects)"
)
PREDICTION_CAUSE = "the model's outputs changed"


#: The calibrated tests, by the kind of input whose distance they measure.
CALIBRATED = {STATISTICS: "shift", EMBEDDINGS: "emb_shift", LAYOUTS: "view"}


@dataclass(frozen=True)
class Effect:
    """How far one image statistic (or leading embedding component) moved: the window mean's
    signed distance from the reference mean in units of how far the reference's windows wander
    (``scale``), against the ``threshold`` the calibrated test fires at."""

    feature: str
    what: str
    kind: str  # statistics or embeddings
    distance: float  # signed: (window mean - reference mean) / scale
    drifted: bool
    reference_mean: float
    scale: float
    threshold: float

    @property
    def band(self) -> tuple[float, float]:
        """Where a window mean stays without drifting, in the feature's own units."""
        half = self.threshold * self.scale
        return self.reference_mean - half, self.reference_mean + half

    def to_dict(self) -> JSONObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: JSONObject) -> Effect:
        return cls(**d)


@dataclass(frozen=True)
class Change:
    """When the drift began. ``at``: event time of the last frame before the change (None when
    unknown); ``before``: True when the change is older than what was searched, so ``at`` is only
    a bound ("since before"); ``window_index``: the window's first frame after the change (0 when
    the whole window is after it)."""

    at: float | None
    before: bool = False
    window_index: int = 0

    def to_dict(self) -> JSONObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: JSONObject) -> Change:
        return cls(**d)


def effects(evaluation: Evaluation, snapshot: WindowSnapshot) -> tuple[Effect, ...]:
    """Every feature of the calibrated tests that ran on the window, most moved first."""
    prepared = snapshot.prepared
    out: list[Effect] = []
    for outcome in evaluation.tests:
        kind = next((k for k, name in CALIBRATED.items() if name == outcome.name), None)
        if kind is None:
            continue
        x = _calibrated_input(kind, snapshot)
        if x is None:
            continue
        null, _ = prepared.null(kind, evaluation.context, len(x))
        signed = null.z(x)
        threshold = prepared.z_thresholds[kind]
        for j, f in enumerate(outcome.features):
            out.append(
                Effect(
                    f.feature,
                    describe(outcome.name, f.feature),
                    kind,
                    float(signed[j]),
                    f.drifted,
                    float(null.mean[j]),
                    float(null.scale[j]),
                    threshold,
                )
            )
    return tuple(sorted(out, key=lambda e: -abs(e.distance)))


def _calibrated_input(kind: str, snapshot: WindowSnapshot) -> np.ndarray | None:
    """The window's columns the calibrated test of ``kind`` judged, as it judged them."""
    prepared = snapshot.prepared
    if kind == STATISTICS:
        cols = [snapshot.feature_names.index(f) for f in prepared.feature_names]
        return np.asarray(snapshot.rows, dtype=np.float64)[:, cols]
    if kind == LAYOUTS:
        if snapshot.layouts is None or prepared.template is None:
            return None
        return prepared.alignment(snapshot.layouts)[:, None]
    if snapshot.embeddings is None or prepared.pca is None:
        return None
    reduced = prepared.pca.transform(np.asarray(snapshot.embeddings, dtype=np.float32))
    return reduced[:, : prepared.components]


def estimate_change(
    top: Sequence[Effect], snapshot: WindowSnapshot, window_times: Sequence[float | None]
) -> Change:
    """When the ``top`` effects' statistics changed level (module docstring).

    Searched in the stream's history of block means (the frames between two evaluations) from two
    windows before the evaluations that drifted in a row up to now, when the history reaches that
    far; else in the window's own frames. The split is :func:`change_point`'s; it is kept only when
    the stretch before it was within the band of a healthy window (otherwise the change is older
    than the search, and the answer is "since before" its start)."""
    stats = [e for e in top if e.kind == STATISTICS]
    if not stats:
        return Change(None)
    cols = [snapshot.feature_names.index(e.feature) for e in stats]
    mean = np.array([e.reference_mean for e in stats])
    half = np.array([e.threshold * e.scale for e in stats])
    n = len(snapshot.rows)
    recent = snapshot.history
    if recent is not None and len(recent.times) >= 3:
        per_block = max(1.0, float(np.median(recent.block_frames)))
        run = _trailing_run(recent.drifted)
        lo = max(0, len(recent.times) - run - 2 * math.ceil(n / per_block))
        series = recent.block_means[lo:, cols].astype(np.float64)
        frames = recent.block_frames[lo:].astype(np.float64)
        times = recent.times[lo:]
        split = change_point(series)
        if split and not _healthy(series[:split], frames[:split], mean, half, n):
            # a change inside a block can leave that block on the healthy side of the split,
            # mixed: then the change came within it, after the block before
            split -= 1
        if split and _healthy(series[:split], frames[:split], mean, half, n):
            at = float(times[split - 1])
            first_after = next(
                (i for i, t in enumerate(window_times) if t is not None and t > at), 0
            )
            return Change(at, False, first_after)
        return Change(float(times[0]), True, 0)
    rows = np.asarray(snapshot.rows, dtype=np.float64)[:, cols]
    split = change_point(rows)
    if split and _healthy(rows[:split], np.ones(split), mean, half, n):
        return Change(window_times[split - 1], False, split)
    return Change(window_times[0] if window_times else None, True, 0)


def _trailing_run(flags: np.ndarray) -> int:
    """How many of the newest ``flags`` are True in a row."""
    false = np.flatnonzero(~flags)
    return len(flags) if not len(false) else len(flags) - 1 - int(false[-1])


def _healthy(
    series: np.ndarray, frames: np.ndarray, mean: np.ndarray, half: np.ndarray, n: int
) -> bool:
    """The frames of ``series`` (rows weighted by ``frames``) together look like a healthy window:
    their mean within the band, widened for a stretch shorter than a window (a mean of fewer
    frames wanders more, by about the square root of the ratio)."""
    count = float(frames.sum())
    if count <= 0:
        return False
    m = (series * frames[:, None]).sum(axis=0) / count
    widen = math.sqrt(max(1.0, n / count))
    return bool(np.all(np.abs(m - mean) <= half * widen))


def change_point(values: np.ndarray) -> int:
    """Index of the first row after the level change in ``values`` ``(n, k)`` (each column
    standardised, changes summed): the split that maximises the between-segment difference of
    means weighted by ``sqrt(i (n - i) / n)`` (a CUSUM split). 0 when the series is too short.

    >>> noise = np.random.default_rng(0).normal(size=(50, 1))
    >>> change_point(np.r_[np.zeros(30), np.ones(20) * 5][:, None] + noise)
    30
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 3:
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


def likely_cause(effects: Sequence[Effect], embeddings: bool, predictions: bool) -> tuple[str, str]:
    """The family and words of the :data:`CAUSES` entry whose signature is most like how the
    drifted features moved: each statistic's move beyond its threshold, on a log scale so that one
    huge move does not drown the rest (the embeddings' largest component move counts as the
    pseudo-statistic ``embeddings``). When none is like it, the kind of input that drifted."""
    moves: dict[str, float] = {}
    for e in effects:
        if not e.drifted or abs(e.distance) <= e.threshold:
            continue
        size = math.log(abs(e.distance) / e.threshold)
        if e.kind in (STATISTICS, LAYOUTS):
            moves[e.feature] = math.copysign(size, e.distance)
        else:
            moves["embeddings"] = max(moves.get("embeddings", 0.0), size)
    best, similarity = None, 0.0
    norm = math.sqrt(sum(v * v for v in moves.values()))
    for cause in CAUSES:
        dot = sum(w * moves.get(f, 0.0) for f, w in cause.signed.items()) + sum(
            w * abs(moves.get(f, 0.0)) for f, w in cause.either.items()
        )
        weight = math.sqrt(
            sum(w * w for w in cause.signed.values()) + sum(w * w for w in cause.either.values())
        )
        score = dot / (norm * weight) if norm > 0 else 0.0
        if score > similarity:
            best, similarity = cause, score
    if best is not None and similarity >= CAUSE_MIN_SIMILARITY:
        return best.family, best.text
    if embeddings:
        return "view", EMBEDDING_CAUSE
    if predictions:
        return "outputs", PREDICTION_CAUSE
    return "unknown", "no known pattern: look at the ranked statistics"


def _amount(distance: float) -> str:
    way = "up" if distance > 0 else "down"
    size = abs(distance)
    return f"{way} {size:.0f}x" if size >= 10 else f"{way} {size:.1f}x"


def headline(
    drifted: Sequence[Effect],
    change: Change,
    *,
    embeddings: bool,
    predictions: bool,
) -> str:
    """The sentence (module docstring) as the event opens: the two most moved drifted image
    statistics (in units of their normal spread), since when, and the likely cause."""
    stats = [e for e in drifted if e.kind == STATISTICS][:2]
    if stats:
        what = " and ".join(
            f"{e.what} {_amount(e.distance)}{' its normal spread' if i == 0 else ''}"
            for i, e in enumerate(stats)
        )
        what = what[0].upper() + what[1:]
    elif any(e.kind == LAYOUTS for e in drifted):
        what = "The view moved: its edges left the places where the reference's are"
    elif embeddings:
        what = "The scene's content (embeddings) moved away from the reference"
    elif predictions:
        what = "The model's outputs moved away from the reference"
    else:
        what = "The camera drifted"
    when = ""
    if change.at is not None:
        at = clock(change.at)
        when = f" since before {at}" if change.before else f" since {at}"
    return f"{what}{when} — {likely_cause(drifted, embeddings, predictions)[1]}"


def clock(t: float) -> str:
    """An event time as the headline and the report say it: HH:MM:SS, UTC."""
    return time.strftime("%H:%M:%S", time.gmtime(t))


def with_queued(sentence: str, queued: int) -> str:
    """The headline once frames were selected: with how many were queued for relabelling."""
    return f"{sentence}; {queued} frame{'s' if queued != 1 else ''} queued"
