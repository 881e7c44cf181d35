"""Everything derived from a reference's frames, in two steps.

1. :func:`fit_reference` fits what a reference *stores*, once: the PCA of its embeddings. It
   returns a new :class:`~monitor.reference.store.Reference`; a reference is never changed after
   it. ``driftmon reference build`` and ``promote`` run it, and the daemon for a reference built
   elsewhere. Deterministic: the same frames give the same arrays.
2. :class:`PreparedReference` builds what the tests *keep in memory* for every window of a stream,
   once per reference version: sorted columns and bins for the image statistics; the per-component
   sorted columns and the MMD kernel block of a seeded subsample for the embeddings; the model
   outputs' summaries; and, per context and window length, the span nulls of the calibrated tests
   (``detectors.span``) with the threshold that the false-alarm target gives them.

:func:`support` says what a reference can support: its time span, contiguous segments, effective
independent stretches per context, and whether that is enough for the configured target.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
from dataclasses import dataclass, field

import numpy as np

from detectors.mmd import MMDReference
from detectors.reduce import PCA
from detectors.reference import UnivariateReference
from detectors.span import PRIOR_SPANS, SpanNull, effective_tests, fit_span_null, threshold
from monitor.config import Config
from monitor.pipeline.context import DEFAULT
from monitor.pipeline.drift_tests import EMBEDDINGS, LAYOUTS, REGISTRY, STATISTICS
from monitor.pipeline.features import FEATURE_RESOLUTION
from monitor.pipeline.predictions import FittedPredictions
from monitor.reference.store import Reference
from monitor.reference.timing import segments

log = logging.getLogger(__name__)

#: Every random draw of preparing (the MMD subsample) starts from this seed, so the same reference
#: prepares the same way wherever it is prepared.
SEED = 0
#: The calibrated embedding test looks at the leading principal components that explain this share
#: of the reference's embedding variance (the minor ones are fitted to the reference's own noise).
EMBEDDING_VARIANCE = 0.9
#: A context needs this many windows' worth of reference frames to be judged on its own.
CONTEXT_MIN_WINDOWS = 2
#: A context's scales are at least this share of each feature's spread over the whole reference: a
#: feature constant in one context (no colour in an infrared night) still has a finite scale.
CONTEXT_FLOOR = 0.01
#: Below this many nearly independent stretches a reference cannot hold the false-alarm target
#: (benchmarks/span_calibration.py: references of 5-40 stretches of slowly wandering synthetic
#: cameras fired 2-45x as often as promised; 50 or more held it within 1.5x).
SUPPORTED_SPANS = 50.0
#: What a reference built before the edge-layout maps is told (reference build, config check, log).
MAPLESS = (
    "built before the edge-layout maps: windows are judged without the `view` test (a knocked or "
    "turned camera); rebuild it to use it"
)
#: The smallest move of a window's mean alignment with the edge template worth calling a shift
#: (the `view` test's floor; an alignment is a correlation, in [-1, 1]).
ALIGNMENT_RESOLUTION = 0.002


def tested_features(config: Config, all_features: tuple[str, ...]) -> tuple[str, ...]:
    """The image statistics the tests look at: ``tests.features``, or every one."""
    return tuple(config.tests.features) or all_features


def judged_features(
    reference: Reference, config: Config, all_features: tuple[str, ...]
) -> tuple[str, ...]:
    """The tested statistics ``reference`` holds, which windows against it are judged on. One
    built before a statistic was added lacks it and is judged without it; those named in
    ``tests.features`` must all be there (else ``BadReference``, naming them)."""
    names = tested_features(config, all_features)
    if config.tests.features:
        reference.columns(names)
    return reference.held(names)


def pca_components(config: Config, embeddings: np.ndarray) -> int:
    """Principal components kept: the configured number, at most the embedding's dimension and one
    fewer than the reference's frames."""
    return min(config.embedding.pca_components, embeddings.shape[1], len(embeddings) - 1)


def fit_reference(reference: Reference, config: Config) -> Reference:
    """``reference`` with the PCA of its embeddings fitted, when it has embeddings and no PCA yet.
    Returns the same object when nothing was missing, else a new one."""
    emb = reference.embeddings
    if emb is not None and reference.pca is None and len(emb) >= 2:
        return dataclasses.replace(reference, pca=PCA().fit(emb, pca_components(config, emb)))
    return reference


def frame_rate(reference: Reference, config: Config) -> float:
    """Frames per second of the reference's camera: measured from its times when they are seconds,
    else ``tests.assumed_fps``."""
    t = reference.times
    if t is not None and reference.time_unit == "s" and len(t) > 1:
        steps = np.diff(t)
        steps = steps[steps > 0]
        if len(steps):
            return float(1.0 / np.median(steps))
    return config.tests.assumed_fps


def analysed_step(fps: float, config: Config) -> int:
    """Camera frames per analysed frame: the stream's analysis rate (``source.max_fps_per_stream``)
    keeps about one frame in this many of a camera at ``fps`` (1: every frame)."""
    rate = config.source.max_fps_per_stream
    return max(1, round(fps / rate)) if rate > 0 else 1


def window_alpha(config: Config, fps: float) -> float:
    """Per-window false-alarm probability of the calibrated voting tests together: one false alarm
    per ``tests.false_alarm_days`` of evaluations at ``fps`` on the configured schedule. Hysteresis
    is not credited: it only adds margin (docs/detectors.md)."""
    evaluations_per_day = 86_400.0 * fps / config.evaluation_stride
    return min(0.5, 1.0 / (config.tests.false_alarm_days * evaluations_per_day))


@dataclass
class PreparedReference:
    """A fitted reference made ready for every window of its streams (module docstring)."""

    reference: Reference
    feature_names: tuple[str, ...]
    config: Config
    embeddings: bool = False  # prepare the embedding tests' parts
    layouts: bool = False  # prepare the `view` test's edge template, when the reference has maps
    univariate: UnivariateReference = field(init=False)
    predictions: FittedPredictions | None = field(init=False)
    pca: PCA | None = field(init=False, default=None)
    mmd: MMDReference | None = field(init=False, default=None)
    reduced_ks: UnivariateReference | None = field(init=False, default=None)
    components: int = field(init=False, default=0)  # leading PCs the calibrated embedding test uses
    # unit vector: the reference's mean edge-layout map, centred (None: no maps, or no `view`)
    template: np.ndarray | None = field(init=False, default=None)
    fps: float = field(init=False)
    # the analysis rate keeps one live frame in `step`: the span nulls are fitted on every `step`-th
    # frame of the reference, and evaluations happen at `analysed_fps`
    step: int = field(init=False)
    # per consumed kind (statistics, embeddings): the calibrated tests' |z| threshold from the
    # target
    z_thresholds: dict[str, float] = field(init=False)
    _nulls: dict[tuple[str, str, int], tuple[SpanNull, str]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        ref, config = self.reference, self.config
        self.univariate = UnivariateReference(
            ref.columns(self.feature_names),
            feature_names=list(self.feature_names),
            psi_bins=config.tests.psi_bins,
        )
        self.predictions = (
            FittedPredictions(ref.predictions) if ref.predictions is not None else None
        )
        if self.embeddings and ref.embeddings is not None and ref.pca is not None:
            self.pca = ref.pca
            reduced = self.pca.transform(ref.embeddings)
            # sorted once here, not per window: ks_dims compares every window with these columns
            self.reduced_ks = UnivariateReference(
                reduced, feature_names=[f"pc{i:02d}" for i in range(reduced.shape[1])]
            )
            size = config.embedding.mmd_reference_size
            sample = reduced
            if len(sample) > size:  # seeded, so a restart prepares the same kernel block
                sample = sample[
                    np.random.default_rng(SEED).choice(len(sample), size, replace=False)
                ]
            self.mmd = MMDReference(sample, dtype="float32")
            ratio = self.pca.explained_variance_ratio_
            assert ratio is not None  # a stored reference's PCA is fitted
            share = np.cumsum(ratio) / max(ratio.sum(), 1e-12)
            self.components = min(len(share), int(np.searchsorted(share, EMBEDDING_VARIANCE)) + 1)
        self.fps = frame_rate(ref, config)
        self.step = analysed_step(self.fps, config)
        if self.layouts and ref.layouts is not None:
            self.template = _unit(np.sum(self._chunk_sums, axis=0))
        self.z_thresholds = self._thresholds()

    @property
    def analysed_fps(self) -> float:
        """Frames a second a stream judged against this reference analyses."""
        return self.fps / self.step

    @property
    def stream(self) -> str:
        return self.reference.stream or "*"

    def alignment(self, layouts: np.ndarray) -> np.ndarray:
        """How well each frame's edges line up with the reference's: the correlation of its
        edge-layout map with the template, in [-1, 1]."""
        assert self.template is not None  # prepared with the reference's maps
        return _unit(layouts) @ self.template

    @functools.cached_property
    def reference_alignment(self) -> np.ndarray:
        """Each reference frame's alignment with the template of the *other* frames: its chunk of
        a window's worth of the camera's frames left out, as a live window's frames are not in the
        template. With them in, the reference would line up with itself better than any live
        window can, and every window would read as a turn."""
        assert self.reference.layouts is not None
        total = np.sum(self._chunk_sums, axis=0)
        return np.concatenate(
            [
                _unit(self.reference.layouts[at]) @ _unit(total - part)
                for at, part in zip(self._chunks, self._chunk_sums, strict=True)
            ]
        )

    @functools.cached_property
    def _chunks(self) -> list[slice]:
        """The reference's frames in chunks of a window's worth of the camera's frames, at least
        two, so every frame has a template of others."""
        assert self.reference.layouts is not None
        n = len(self.reference.layouts)
        size = min(self.config.window.size * self.step, -(-n // 2))
        return [slice(start, start + size) for start in range(0, n, size)]

    @functools.cached_property
    def _chunk_sums(self) -> list[np.ndarray]:
        """Each chunk's unit edge-layout maps summed: the template's parts, a chunk at a time
        (a long reference's maps in float64 at once would take 4.6 KB a frame)."""
        assert self.reference.layouts is not None
        return [_unit(self.reference.layouts[at]).sum(axis=0) for at in self._chunks]

    def _thresholds(self) -> dict[str, float]:
        """The |z| each calibrated test fires at. The target's per-window false-alarm probability is
        split evenly between the calibrated voting tests that run on this reference (like alpha
        between tests with p-values; the `view` test does not run on a reference built before the
        edge-layout maps), and each test's share across its effective independent features: the
        image statistics' by the eigenvalues of their correlation in the reference
        (``detectors.span.effective_tests``), the embedding components kept as they are
        (uncorrelated by construction), the view's one alignment."""
        features = {
            STATISTICS: effective_tests(self.reference.columns(self.feature_names)),
            EMBEDDINGS: float(self.components),
            LAYOUTS: 1.0 if self.template is not None else 0.0,
        }
        voting = [
            t
            for t in self.config.voting_tests
            if REGISTRY[t].calibrated and features[REGISTRY[t].consumes] > 0
        ]
        share = window_alpha(self.config, self.analysed_fps) / max(1, len(voting))
        return {kind: threshold(share, count) for kind, count in features.items()}

    def null(self, kind: str, context: str, n: int) -> tuple[SpanNull, str]:
        """The span null of the image statistics (``kind="statistics"``) or of the leading embedding
        components (``"embeddings"``) for windows of ``n`` frames in ``context``, and the context it
        holds for: the whole reference (``"*"``) when the reference has too few frames of that
        one."""
        key = (kind, context, n)
        if key not in self._nulls:
            frames = self._context_frames(context, n)
            used = context if frames is not None else "*"
            idx = frames if frames is not None else np.arange(self.reference.n_frames)
            x = self._columns(kind)[idx]
            times = None if self.reference.times is None else self.reference.times[idx]
            segs = (
                None
                if times is None
                else _cut_at_context_changes(segments(times, len(idx)), self._labels(idx))
            )
            if segs is not None and self.step > 1:
                x, segs = _thinned(x, segs, self.step)
            self._nulls[key] = (
                fit_span_null(x, segs, n, prior_spans=PRIOR_SPANS, floor=self._floor(kind)),
                used,
            )
        return self._nulls[key]

    def _floor(self, kind: str) -> np.ndarray:
        """The smallest scale of each feature: its resolution (image statistics,
        ``FEATURE_RESOLUTION``), and a share of its spread over the whole reference."""
        floor = CONTEXT_FLOOR * self._whole_sd(kind)
        if kind == STATISTICS:
            resolution = np.array([FEATURE_RESOLUTION.get(n, 0.0) for n in self.feature_names])
            floor = np.hypot(floor, resolution)
        if kind == LAYOUTS:
            floor = np.hypot(floor, ALIGNMENT_RESOLUTION)
        return floor

    def _whole_sd(self, kind: str) -> np.ndarray:
        """Per-frame spread of each feature over the whole reference, every context together."""
        return self._columns(kind).std(axis=0)

    def _columns(self, kind: str) -> np.ndarray:
        """The reference's image statistics (``kind="statistics"``), its leading embedding
        components (``"embeddings"``), or each frame's alignment with the others' edge template
        (``"layouts"``)."""
        if kind == STATISTICS:
            return self.reference.columns(self.feature_names)
        if kind == LAYOUTS:
            return self.reference_alignment[:, None]
        # the calibrated embedding test runs only on a reference prepared with its PCA
        assert self.pca is not None and self.reference.embeddings is not None
        return self.pca.transform(self.reference.embeddings)[:, : self.components]

    def _labels(self, idx: np.ndarray) -> np.ndarray | None:
        c = self.reference.contexts
        return None if c is None else c[idx]

    def holds(self, context: str, n: int) -> bool:
        """Whether windows of ``n`` frames in ``context`` are judged against frames of it (else
        against the whole reference). Asked on every evaluation: a lookup, not a scan."""
        if self.reference.contexts is None:
            return context == DEFAULT
        return self._context_sizes.get(context, 0) >= CONTEXT_MIN_WINDOWS * n * self.step

    @functools.cached_property
    def _context_sizes(self) -> dict[str, int]:
        """Frames of each context in the reference (one with contexts: ``holds`` asks first)."""
        assert self.reference.contexts is not None
        labels, counts = np.unique(self.reference.contexts, return_counts=True)
        return dict(zip(labels.tolist(), counts.tolist(), strict=True))

    def _context_frames(self, context: str, n: int) -> np.ndarray | None:
        """Indices of the reference's frames of ``context``, when there are enough of them; None to
        fall back to the whole reference."""
        if not self.holds(context, n):
            return None
        labels = self.reference.contexts
        n_ref = self.reference.n_frames
        return np.arange(n_ref) if labels is None else np.flatnonzero(labels == context)


def _unit(maps: np.ndarray) -> np.ndarray:
    """Edge-layout maps (one per row, or one) centred and scaled to unit length, so an alignment is
    a correlation: brighter or busier frames with their edges in the same places align fully."""
    x = np.asarray(maps, dtype=np.float64)
    x = x - x.mean(axis=-1, keepdims=True)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _thinned(
    x: np.ndarray, segs: list[np.ndarray], step: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Every ``step``-th frame of each contiguous segment, as the analysis rate keeps a camera's
    frames, and the segments as runs of the rows kept; ``x`` as it is when fewer than 2 would be
    kept."""
    kept = [s[::step] for s in segs]
    sizes = [len(s) for s in kept]
    if sum(sizes) < 2:
        return x, segs
    bounds = np.cumsum([0, *sizes])
    runs = [np.arange(a, b) for a, b in itertools.pairwise(bounds)]
    return x[np.concatenate(kept)], runs


def _cut_at_context_changes(segs: list[np.ndarray], labels: np.ndarray | None) -> list[np.ndarray]:
    if labels is None:
        return segs
    out = []
    for s in segs:
        cuts = np.flatnonzero(labels[s][1:] != labels[s][:-1]) + 1
        out.extend(np.split(s, cuts))
    return out


@dataclass(frozen=True)
class ContextSupport:
    frames: int
    effective_spans: float  # nearly independent stretches of the image statistics (median feature)


@dataclass(frozen=True)
class Support:
    """What a reference can support for the configured window and false-alarm target."""

    frames: int
    ordered: bool
    time_source: str
    span_s: float | None  # seconds from first to last frame (None when its times are not seconds)
    span_frames: float | None  # frame numbers from first to last (when its times are frame numbers)
    segments: int
    fps: float
    effective_spans: float
    window_alpha: float
    z_threshold: float  # of the image statistics' calibrated test
    contexts: dict[str, ContextSupport]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self) | {"warnings": list(self.warnings)}


def support(reference: Reference, config: Config, feature_names: tuple[str, ...]) -> Support:
    """What ``reference`` can support for ``config``'s window and target (module docstring)."""
    embeddings = reference.embeddings is not None and any(
        REGISTRY[t].consumes == EMBEDDINGS for t in config.active_tests
    )
    judged = judged_features(reference, config, feature_names)
    prepared = PreparedReference(
        fit_reference(reference, config), judged, config, embeddings=embeddings
    )
    n = config.window.size
    frames_per_window = n * prepared.step  # of the reference's camera, at the analysis rate
    times = reference.times
    ordered = times is not None
    segs = segments(times, reference.n_frames) if times is not None else []
    extent = float(times[-1] - times[0]) if times is not None else None
    span_s = extent if reference.time_unit == "s" else None
    span_frames = extent + 1 if extent is not None and reference.time_unit == "frames" else None
    contexts: dict[str, ContextSupport] = {}
    labels = (
        reference.contexts
        if reference.contexts is not None
        else np.full(reference.n_frames, DEFAULT)
    )
    for context in sorted(set(labels.tolist())):
        null, used = prepared.null(STATISTICS, context, n)
        if used == context:
            contexts[context] = ContextSupport(
                int((labels == context).sum()), round(null.effective_spans, 2)
            )
    whole, _ = prepared.null(STATISTICS, "*" if reference.contexts is not None else DEFAULT, n)
    warnings = []
    if reference.n_frames < frames_per_window:
        warnings.append(
            f"{reference.n_frames} frames is fewer than one window of {n}"
            + (f" analysed frames ({frames_per_window})" if prepared.step > 1 else "")
            + ": build it from a longer stretch"
        )
    if not ordered:
        warnings.append(
            "the frames have no order (a bag): every window is judged as if it moved like a single "
            "frame, the conservative choice; build it from a topic, a clip or named frames to let "
            "driftmon measure how this camera's windows really wander"
        )
    elif whole.effective_spans < SUPPORTED_SPANS:
        # in the camera's frames: the span nulls count analysed ones
        correlated = float(np.median(whole.correlation_frames)) * prepared.step
        need = math.ceil(SUPPORTED_SPANS * correlated)
        warnings.append(
            f"about {whole.effective_spans:.1f} independent stretches of this camera (frames stay "
            f"correlated for ~{correlated:.0f} frames): too few to hold "
            f"the false-alarm target (fewer than {SUPPORTED_SPANS:.0f}: healthy windows outside "
            "what it saw can fire), and its windows are judged partly as single frames (less "
            f"sensitive); at least {need} frames of healthy operation "
            f"(~{need / prepared.fps / 60:.0f} min at {prepared.fps:g} fps) would let it speak for "
            "itself"
        )
    lacking = [n for n in tested_features(config, feature_names) if n not in judged]
    if lacking:
        warnings.append(
            f"built before the statistic(s) {lacking} existed: windows are judged without them; "
            "rebuild it to use them"
        )
    if config.uses_layouts and reference.layouts is None:
        warnings.append(MAPLESS)
    for context in sorted(set(labels.tolist()) - set(contexts)):
        warnings.append(
            f"context {context!r} has too few frames ({int((labels == context).sum())} < "
            f"{CONTEXT_MIN_WINDOWS * frames_per_window}) to be judged on its own: its windows use "
            "the whole reference"
        )
    return Support(
        reference.n_frames,
        ordered,
        reference.time_source or "none",
        span_s,
        span_frames,
        len(segs),
        round(prepared.fps, 3),
        round(whole.effective_spans, 2),
        window_alpha(config, prepared.analysed_fps),
        round(prepared.z_thresholds[STATISTICS], 3),
        contexts,
        tuple(warnings),
    )
