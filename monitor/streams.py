"""Streams: route each frame to its stream and keep that stream's bounded window.

Memory per stream is fixed: a ring buffer of ``window.size`` feature rows and, aligned with it, the
references of those frames (no pixels: a frame is fetched again from its claim check or its
Kafka offset when it is selected for relabelling); nothing grows with frames processed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor.config import SourceConfig, WindowConfig
from monitor.source import Frame


def stream_key(frame: Frame, source: SourceConfig) -> str:
    return source.stream_key.format(camera_id=frame.camera_id, site=frame.site or "unknown",
                                    model_version=frame.model_version or "unknown")


def frame_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


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


@dataclass(frozen=True)
class WindowSnapshot:
    """A stream's window at an evaluation, for what acts on the verdict (events, selection)."""

    stream: str
    rows: np.ndarray  # (n, len(feature_names)) image statistics, oldest first
    refs: list[FrameRef | None]  # aligned with rows
    embeddings: np.ndarray | None  # (n, dim) raw embeddings aligned with rows, when enabled
    feature_names: tuple[str, ...]
    reference: Any  # monitor.reference.Reference the window was judged against


class Window:
    """The newest ``size`` feature rows of one stream (and their frames' references), sliding or
    tumbling."""

    def __init__(self, n_features: int, config: WindowConfig, embedding_dim: int = 0):
        self.config = config
        self._rows = np.zeros((config.size, n_features), dtype=np.float32)
        self._emb = np.zeros((config.size, embedding_dim), dtype=np.float32) if embedding_dim else None
        self._refs: list[FrameRef | None] = [None] * config.size
        self._next = 0  # ring position of the next row
        self.filled = 0
        self.since_evaluation = 0

    def append(self, row: np.ndarray, ref: FrameRef | None = None, embedding: np.ndarray | None = None) -> None:
        self._rows[self._next] = row
        self._refs[self._next] = ref
        if self._emb is not None:
            self._emb[self._next] = embedding
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

    def _ordered(self, ring: np.ndarray) -> np.ndarray:
        if self.filled < self.config.size:
            return ring[: self.filled].copy()
        return np.roll(ring, -self._next, axis=0)

    def refs(self) -> list[FrameRef | None]:
        """The window's frame references, oldest first, aligned with :meth:`values`."""
        if self.filled < self.config.size:
            return self._refs[: self.filled]
        return self._refs[self._next:] + self._refs[: self._next]

    def mark_evaluated(self) -> None:
        self.since_evaluation = 0
        if self.config.mode == "tumbling":
            self.filled = 0
            self._next = 0


@dataclass
class StreamState:
    key: str
    window: Window
    frames: int = 0
    identical_frames: int = 0
    last_ts: float = 0.0
    last_digest: bytes = b""
    last_evaluated_at: float = 0.0
    verdict: Any = None  # the newest engine.Verdict
    detector_state: Any = None  # the engine's per-stream state (hysteresis)
    reference: Any = None  # the engine's fitted reference for this stream

    def observe(self, frame: Frame, row: np.ndarray, digest: bytes, embedding: np.ndarray | None = None) -> bool:
        """Add one frame; returns True when its bytes equal the previous frame's (a frozen feed)."""
        identical = digest == self.last_digest
        self.last_digest = digest
        self.identical_frames += identical
        self.frames += 1
        self.last_ts = max(self.last_ts, frame.ts)
        self.window.append(row, FrameRef(frame.frame_id, frame.camera_id, frame.ts, frame.origin.topic,
                                         frame.origin.partition, frame.origin.offset, frame.uri), embedding)
        return identical


@dataclass
class Streams:
    """Every stream this process has seen."""

    n_features: int
    window: WindowConfig
    source: SourceConfig
    embedding_dim: int = 0
    states: dict[str, StreamState] = field(default_factory=dict)

    def get(self, key: str) -> StreamState:
        state = self.states.get(key)
        if state is None:
            state = StreamState(key, Window(self.n_features, self.window, self.embedding_dim))
            self.states[key] = state
        return state

    def route(self, frame: Frame) -> StreamState:
        return self.get(stream_key(frame, self.source))

    def __len__(self) -> int:
        return len(self.states)
