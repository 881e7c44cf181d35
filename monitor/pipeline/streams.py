"""Streams: route each frame to its stream and keep that stream's bounded window.

Memory per stream is fixed: a ring buffer of ``window.size`` feature rows and, aligned with it, the
references of those frames (no pixels: a frame is fetched again from its claim check or its
Kafka offset when it is selected for relabelling); nothing grows with frames processed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import crc32c
import numpy as np

from monitor.config import SourceConfig, WindowConfig
from monitor.files import JSONObject
from monitor.pipeline.predictions import Prediction, PredictionWindow, derive
from monitor.pipeline.source import Frame

if TYPE_CHECKING:  # the stages after this one, named in its records' types only
    from detectors.hysteresis import Hysteresis
    from monitor.pipeline.engine import Evaluation
    from monitor.reference.fit import PreparedReference
    from monitor.reference.store import Reference

log = logging.getLogger(__name__)

#: Evaluations a stream remembers for its drift reports: 6 hours of one every 30 s, 1 hour of one
#: every 10 s (about 70 bytes per image statistic each, so ~1.5 MB per 1,000 evaluations of 20).
HISTORY = 720


def stream_key(frame: Frame, source: SourceConfig) -> str:
    return source.stream_key.format(
        camera_id=frame.camera_id,
        site=frame.site or "unknown",
        model_version=frame.model_version or "unknown",
    )


def frame_digest(data: bytes) -> bytes:
    """Length + CRC-32C of the encoded frame: enough to tell a frozen feed (byte-identical frames)
    at ~0.02 ms for a 300 KB JPEG, where a cryptographic hash costs ~0.6 ms on the hot path."""
    return len(data).to_bytes(8, "little") + crc32c.crc32c(data).to_bytes(4, "little")


def image_digest(frame: Frame) -> bytes | None:
    """:func:`frame_digest` of the image a frame carries, decoded or not: an envelope's inline image
    is digested as its base64 text (the same image, the same text), so frames skipped before their
    image was decoded are compared like the others. None for a claim check whose file was not read
    (skipped by the analysis rate): such a stream's frozen-feed check compares analysed frames."""
    if frame.pending_path is not None:
        return None
    if frame.pending_b64 is not None:
        return frame_digest(frame.pending_b64.encode("ascii", "replace"))
    return frame_digest(frame.data)


@dataclass(frozen=True)
class FrameRef:
    """Enough to find a frame again later (for relabelling), without keeping its pixels."""

    frame_id: str
    camera_id: str
    ts: float
    topic: str
    partition: int
    offset: int
    uri: str | None
    context: str = ""  # the frame's context (monitor.pipeline.context)


@dataclass(frozen=True)
class WindowSnapshot:
    """A stream's window at an evaluation, for what acts on the evaluation (events, selection)."""

    stream: str
    rows: np.ndarray  # (n, len(feature_names)) image statistics, oldest first
    refs: list[FrameRef | None]  # aligned with rows
    embeddings: np.ndarray | None  # (n, dim) raw embeddings aligned with rows, when enabled
    feature_names: tuple[str, ...]
    prepared: PreparedReference  # what the window was judged against (its PCA included)
    predictions: PredictionWindow | None = None  # the model outputs aligned with rows
    history: Recent | None = None  # the stream's recent evaluations, this one included
    covered: np.ndarray | None = None  # per frame: the training set covers it (monitor.loop)
    layouts: np.ndarray | None = None  # (n, cells) the frames' edge-layout maps, when kept

    @property
    def reference(self) -> Reference:
        """The reference the window was judged against."""
        return self.prepared.reference


class Window:
    """The newest ``size`` feature rows of one stream (and their frames' references), sliding or
    tumbling."""

    def __init__(
        self, n_features: int, config: WindowConfig, embedding_dim: int = 0, layout_size: int = 0
    ):
        self.config = config
        self._rows = np.zeros((config.size, n_features), dtype=np.float32)
        self._emb = (
            np.zeros((config.size, embedding_dim), dtype=np.float32) if embedding_dim else None
        )
        # the frames' edge-layout maps, kept when the `view` test runs
        self._layouts = np.zeros((config.size, layout_size), np.uint8) if layout_size else None
        self._refs: list[FrameRef | None] = [None] * config.size
        self._preds: list[Prediction | None] = [
            None
        ] * config.size  # the model's outputs, when sent
        self._next = 0  # ring position of the next row
        self.filled = 0
        self.since_evaluation = 0

    def append(
        self,
        row: np.ndarray,
        ref: FrameRef | None = None,
        embedding: np.ndarray | None = None,
        prediction: Prediction | None = None,
        layout: np.ndarray | None = None,
    ) -> None:
        self._rows[self._next] = row
        self._refs[self._next] = ref
        self._preds[self._next] = prediction
        if self._emb is not None:
            self._emb[self._next] = embedding
        if self._layouts is not None:
            if layout is None:  # a blank map would read as a turned camera
                raise ValueError("this window keeps edge-layout maps: append each frame's")
            self._layouts[self._next] = layout
        self._next = (self._next + 1) % self.config.size
        self.filled = min(self.filled + 1, self.config.size)
        self.since_evaluation += 1

    @property
    def fill_ratio(self) -> float:
        return self.filled / self.config.size

    def due(self) -> bool:
        if self.filled < self.config.size:
            return False
        if self.config.mode == "tumbling":
            return self.since_evaluation >= self.config.size
        return self.since_evaluation >= self.config.evaluate_every

    def values(self) -> np.ndarray:
        """The window's rows, oldest first (a copy)."""
        return self._ordered(self._rows)

    def embeddings(self) -> np.ndarray | None:
        """The window's embeddings, oldest first (a copy), aligned with :meth:`values`."""
        return None if self._emb is None else self._ordered(self._emb)

    def layouts(self) -> np.ndarray | None:
        """The window's edge-layout maps, oldest first (a copy), aligned with :meth:`values`."""
        return None if self._layouts is None else self._ordered(self._layouts)

    def _ordered(self, ring: np.ndarray) -> np.ndarray:
        if self.filled < self.config.size:
            return ring[: self.filled].copy()
        return np.roll(ring, -self._next, axis=0)

    def refs(self) -> list[FrameRef | None]:
        """The window's frame references, oldest first, aligned with :meth:`values`."""
        return self._ordered_list(self._refs)

    def contexts(self) -> list[str]:
        """The window's frames' contexts, oldest first, aligned with :meth:`values`."""
        return [r.context if r is not None else "" for r in self.refs()]

    def predictions(self) -> PredictionWindow:
        """The window's frames' model outputs, oldest first, aligned with :meth:`values`."""
        return PredictionWindow(self._ordered_list(self._preds))

    def _ordered_list(self, ring: list) -> list:
        if self.filled < self.config.size:
            return ring[: self.filled]
        return ring[self._next :] + ring[: self._next]

    def mark_evaluated(self) -> None:
        self.since_evaluation = 0
        if self.config.mode == "tumbling":
            self.filled = 0
            self._next = 0


@dataclass(frozen=True)
class Recent:
    """A stream's recent evaluations, oldest first: per evaluation, the newest frame's event time,
    the window's mean per image statistic (the series exported as
    ``driftmon_stream_feature_window_mean``), the mean of the frames that arrived since the
    evaluation before (non-overlapping blocks: where a change shows as a step), their number, and
    whether a voting test drifted on the window."""

    times: np.ndarray  # (m,) seconds since the epoch
    window_means: np.ndarray  # (m, k)
    block_means: np.ndarray  # (m, k)
    block_frames: np.ndarray  # (m,)
    drifted: np.ndarray  # (m,) bool


class History:
    """The newest ``size`` evaluations of one stream (:class:`Recent`), bounded."""

    def __init__(self, size: int):
        self._entries: deque[tuple[float, np.ndarray, np.ndarray, int, bool]] = deque(maxlen=size)

    def add(self, at: float, rows: np.ndarray, new_frames: int, drifted: bool) -> None:
        """One evaluation of the window ``rows`` (oldest first), ``new_frames`` of them new since
        the evaluation before."""
        new = max(1, min(new_frames, len(rows)))
        self._entries.append(
            (
                at,
                rows.mean(axis=0, dtype=np.float64).astype(np.float32),
                rows[-new:].mean(axis=0, dtype=np.float64).astype(np.float32),
                new,
                drifted,
            )
        )

    def __len__(self) -> int:
        return len(self._entries)

    def recent(self) -> Recent | None:
        """The history as arrays; None before a first evaluation."""
        if not self._entries:
            return None
        times, window, block, frames, drifted = zip(*self._entries, strict=True)
        return Recent(
            np.array(times),
            np.vstack(window),
            np.vstack(block),
            np.array(frames),
            np.array(drifted, dtype=bool),
        )


@dataclass
class StreamState:
    key: str
    window: Window
    frames: int = 0
    identical_frames: int = 0
    last_ts: float = 0.0
    last_digest: bytes = b""
    last_evaluated_at: float = 0.0
    evaluation: Evaluation | None = None  # the newest
    evaluation_dict: JSONObject | None = None  # the same, as plain data for /status
    # the data loop's figures on the newest window (monitor.loop.watch), for /status
    training_coverage: float | None = None
    estimated_accuracy: float | None = None
    detector_state: Hysteresis | None = None  # the engine's per-stream state
    reference: PreparedReference | None = None  # what this stream is judged against
    # the newest offset absorbed per (topic, partition): frames re-read after a crash are skipped
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    dirty: bool = False  # changed since its last checkpoint
    # the newest evaluations, for a drift report's pictures over time and its change point; in
    # memory only (a restart or handover starts it afresh)
    history: History = field(default_factory=lambda: History(HISTORY))

    def absorbed(self, frame: Frame) -> bool:
        """True when this frame is already in the state (re-read after a restart or handover)."""
        o = frame.origin
        return self.offsets.get((o.topic, o.partition), -1) >= o.offset

    def receive(self, frame: Frame, digest: bytes | None) -> bool:
        """Count one frame of the stream, analysed or not (its offset, its time, its digest, None
        when its image was not read); returns True when its bytes equal the previous read frame's
        (a frozen feed)."""
        o = frame.origin
        tp = (o.topic, o.partition)
        self.offsets[tp] = max(self.offsets.get(tp, -1), o.offset)
        self.dirty = True
        identical = digest is not None and digest == self.last_digest
        if digest is not None:
            self.last_digest = digest
        self.identical_frames += identical
        self.frames += 1
        self.last_ts = max(self.last_ts, frame.ts)
        return identical

    def observe(
        self,
        frame: Frame,
        row: np.ndarray,
        digest: bytes | None,
        embedding: np.ndarray | None = None,
        context: str = "",
        layout: np.ndarray | None = None,
    ) -> bool:
        """Count one analysed frame (of ``context``) and add it to the window; returns True when its
        bytes equal the previous frame's (a frozen feed)."""
        identical = self.receive(frame, digest)
        self.window.append(
            row,
            FrameRef(
                frame.frame_id,
                frame.camera_id,
                frame.ts,
                frame.origin.topic,
                frame.origin.partition,
                frame.origin.offset,
                frame.uri,
                context,
            ),
            embedding,
            derive(frame.predictions),
            layout,
        )
        return identical

    # --- checkpoints ---------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Everything needed to continue this stream elsewhere (no pixels, no fitted reference)."""
        w = self.window
        meta = {
            "version": 1,
            "key": self.key,
            "frames": self.frames,
            "identical_frames": self.identical_frames,
            "last_ts": self.last_ts,
            "last_digest": self.last_digest.hex(),
            "last_evaluated_at": self.last_evaluated_at,
            "since_evaluation": w.since_evaluation,
            "offsets": [[t, p, o] for (t, p), o in self.offsets.items()],
            "hysteresis": self.detector_state.get_state()
            if self.detector_state is not None
            else None,
            "refs": [dataclasses.astuple(r) if r is not None else None for r in w.refs()],
            # label, confidence (null: none), length of its probability vector in `pred_probs` (0:
            # none)
            "predictions": [
                None
                if p is None
                else [
                    p.label,
                    None if p.confidence != p.confidence else p.confidence,
                    0 if p.probs is None else len(p.probs),
                ]
                for p in w.predictions().items
            ],
        }
        arrays = {"rows": w.values(), "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        vectors = [p.probs for p in w.predictions().items if p is not None and p.probs is not None]
        # binary, all vectors end to end: a 1000-class model's window is 800 KB, not 4 MB of JSON
        if vectors:
            arrays["pred_probs"] = np.concatenate(vectors).astype(np.float32)
        emb = w.embeddings()
        if emb is not None:
            arrays["embeddings"] = emb
        layouts = w.layouts()
        if layouts is not None:
            arrays["layouts"] = layouts
        buf = io.BytesIO()
        # numpy's stub types **kwds and allow_pickle alike, so mypy matches arrays to that bool
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        return buf.getvalue()

    def restore(self, data: bytes) -> JSONObject | None:
        """Load a checkpoint into this (fresh) state; returns the saved hysteresis state, which the
        engine applies (it owns the detector's parameters)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            rows = z["rows"]
            emb = z["embeddings"] if "embeddings" in z.files else None
            layouts = z["layouts"] if "layouts" in z.files else None
            flat = z["pred_probs"] if "pred_probs" in z.files else np.zeros(0, np.float32)
        w = self.window
        if not (_fits(rows, w._rows) and _fits(emb, w._emb) and _fits(layouts, w._layouts)):
            # an upgrade added a statistic or the layout maps, or the embedder changed: the
            # window's frames cannot be judged any more, but the stream's place in its partitions
            # and its drift state still hold (a declared camera stays declared, re-read frames are
            # still skipped)
            log.warning(
                "stream %s: the checkpoint's window does not fit this configuration (statistics, "
                "embeddings or layout maps changed): its frames are dropped, its offsets and drift "
                "state kept",
                self.key,
            )
            self._restore_position(meta)
            return meta["hysteresis"]
        refs = [FrameRef(*r) if r is not None else None for r in meta["refs"]]
        preds: list[Prediction | None] = []
        at = 0
        for p in meta.get("predictions") or [None] * len(refs):
            if p is None:
                preds.append(None)
                continue
            label, conf, k = p
            preds.append(
                Prediction(
                    label,
                    float("nan") if conf is None else conf,
                    flat[at : at + k].copy() if k else None,
                )
            )
            at += k
        keep = slice(max(0, len(rows) - w.config.size), len(rows))
        for i in range(keep.start, keep.stop):
            w.append(
                rows[i],
                refs[i],
                None if emb is None else emb[i],
                preds[i],
                None if layouts is None else layouts[i],
            )
        w.since_evaluation = min(meta["since_evaluation"], w.filled)
        self._restore_position(meta)
        return meta["hysteresis"]

    def _restore_position(self, meta: JSONObject) -> None:
        """The counters, the last frame seen and the offsets absorbed, from a checkpoint's meta."""
        self.frames, self.identical_frames = meta["frames"], meta["identical_frames"]
        self.last_ts, self.last_evaluated_at = meta["last_ts"], meta["last_evaluated_at"]
        self.last_digest = bytes.fromhex(meta["last_digest"])
        self.offsets = {(t, p): o for t, p, o in meta["offsets"]}


def _fits(saved: np.ndarray | None, ring: np.ndarray | None) -> bool:
    """Whether a checkpoint's per-frame vectors fill a window's ring: both absent, or as wide."""
    if saved is None or ring is None:
        return saved is None and ring is None
    return saved.shape[1] == ring.shape[1]


@dataclass
class Streams:
    """Every stream this process has seen."""

    n_features: int
    window: WindowConfig
    source: SourceConfig
    embedding_dim: int = 0
    layout_size: int = 0  # cells of the frames' edge-layout maps, when the `view` test runs
    states: dict[str, StreamState] = field(default_factory=dict)

    def new_state(self, key: str) -> StreamState:
        """A fresh state for ``key``, not yet tracked."""
        return StreamState(
            key, Window(self.n_features, self.window, self.embedding_dim, self.layout_size)
        )

    def get(self, key: str) -> StreamState:
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = self.new_state(key)
        return state

    def __len__(self) -> int:
        return len(self.states)
