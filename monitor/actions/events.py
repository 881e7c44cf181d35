"""Drift events: one per stretch of time a stream is declared drifted (after hysteresis).

An event opens when a stream's evaluation turns drifted and closes when it recovers. It records what
fired (tests, features, statistics, p-values), the reference it was judged against, and the
references of the window's frames (no pixels). Each event is one JSON file in
``<state_dir>/events/`` (written atomically) plus the window's rows in an ``.npz`` beside it,
so events, and whether they are open, survive a restart — and several replicas sharing the
directory see and change the same events (:class:`EventStore`).

A :class:`DriftEvent` is an immutable record with typed parts; its JSON (``to_dict``, the files and
``GET /events/{id}``) is the ``driftmon.event/v1`` format of docs/actions.md. The frames selected
from its window for relabelling are :class:`Sample` records, as the relabel sinks get them. A part
whose JSON is its fields as they are is converted with ``asdict`` and its constructor; only parts
with JSON of their own shape have a ``to_dict``.

The store is shared by the consume loop (open/close), the evidence worker (report, samples) and
HTTP threads (reads); every access goes through its lock, and a change replaces the event with a
new record, so a reader's event never changes under it.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitor.actions.explain import Shift, describe, kind_of
from monitor.actions.headline import Change, Effect
from monitor.actions.selection import PickScores, Reason
from monitor.files import (
    REFRESH_S,
    DirectoryView,
    JSONObject,
    atomic_write_bytes,
    atomic_write_json,
    locked,
    read_json,
)
from monitor.loop.gaps import Gaps
from monitor.loop.labelled import Labelled
from monitor.pipeline.drift_tests import TestOutcome
from monitor.pipeline.streams import FrameRef

if TYPE_CHECKING:
    from monitor.pipeline.engine import Evaluation

log = logging.getLogger(__name__)

SCHEMA = "driftmon.event/v1"
OPEN, CLOSED = "open", "closed"


def event_id(stream: str, opened_at: float) -> str:
    """``evt-20261127T184000Z-1a2b3c4d``: sortable by time, unique per stream and instant."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(opened_at))
    digest = hashlib.sha1(f"{stream}\0{opened_at!r}".encode()).hexdigest()[:8]
    return f"evt-{stamp}-{digest}"


def ref_dict(ref: FrameRef | None) -> JSONObject | None:
    """A frame reference as JSON (None stays None: a window slot without a reference; an empty
    context is left out, as events written before frames had contexts have it)."""
    if ref is None:
        return None
    d = asdict(ref)
    if not d["context"]:
        del d["context"]
    return d


@dataclass(frozen=True)
class ReferenceInfo:
    """The reference a window was judged against: its stream (``*`` when shared), version, size,
    source."""

    stream: str
    version: int
    frames: int
    source: str


@dataclass(frozen=True)
class Fired:
    """One (test, feature) that drifted, with its statistic and adjusted p-value, the kind of input
    it judged (statistics, embeddings, predictions), what it is in words, and whether the test
    votes."""

    test: str
    feature: str
    kind: str
    what: str
    statistic: float
    p_value: float | None
    threshold: float
    correction: str
    voting: bool


def fired_from(evaluation: Evaluation, vote: tuple[str, ...]) -> tuple[Fired, ...]:
    """Every (test, feature) that drifted on this evaluation."""
    return tuple(
        Fired(
            t.name,
            f.feature,
            kind_of(t.name),
            describe(t.name, f.feature),
            f.statistic,
            f.p_value,
            t.threshold,
            t.correction,
            t.name in vote,
        )
        for t in evaluation.tests
        for f in t.features
        if f.drifted
    )


@dataclass(frozen=True)
class EventWindow:
    """The window that declared the drift: its size, time span and frame references (None where a
    frame had none), oldest first, aligned with the rows in the event's ``.npz``."""

    frames: int
    first_ts: float | None
    last_ts: float | None
    refs: tuple[FrameRef | None, ...]

    @classmethod
    def of(cls, refs: list[FrameRef | None], frames: int) -> EventWindow:
        times = [r.ts for r in refs if r is not None]
        return cls(frames, min(times, default=None), max(times, default=None), tuple(refs))

    def to_dict(self) -> JSONObject:
        return {
            "frames": self.frames,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "refs": [ref_dict(r) for r in self.refs],
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> EventWindow:
        return cls(
            d["frames"],
            d["first_ts"],
            d["last_ts"],
            tuple(None if r is None else FrameRef(**r) for r in d["refs"]),
        )


@dataclass(frozen=True)
class Evidence:
    """Where the event's evidence stands: ``pending``, ``done`` or ``failed``, with its files."""

    status: str = "pending"
    report: str | None = None
    contact_sheet: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SelectionSummary:
    """How the event's frames were chosen: the budget, the pool fetched, how many were selected and
    why the others were passed over, the space measured in; or, with no budget, a note saying why.
    In JSON the fields a summary does not have are absent."""

    budget: int
    pool: int | None = None
    selected: int | None = None
    skipped: dict[str, int] | None = None
    space: str | None = None
    note: str | None = None

    def to_dict(self) -> JSONObject:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Origin:
    """Where a frame's Kafka record is."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class Sample:
    """A frame selected for relabelling, as the relabel sinks get it: which frame (``key``:
    camera/frame), of which event, where to read it (``uri``, a claim check, ours when
    ``claim_check_copy``; else ``origin``), why it was picked and its scores, its perceptual hash,
    the model's predictions the record carried, and the reference the window was judged against."""

    key: str
    event_id: str
    stream: str
    camera_id: str
    frame_id: str
    ts: float
    uri: str
    claim_check_copy: bool
    origin: Origin
    reasons: tuple[Reason, ...]
    scores: PickScores
    hash: int
    predictions: JSONObject | None  # the producer's JSON (frame contract), as it came
    reference: ReferenceInfo
    selected_at: float

    def origin_ref(self) -> FrameRef:
        """A reference to the frame's Kafka record alone (no claim check), to read it back from
        there."""
        o = self.origin
        return FrameRef(
            self.frame_id, self.camera_id, self.ts, o.topic, o.partition, o.offset, None
        )

    def to_dict(self) -> JSONObject:
        return {
            "key": self.key,
            "event_id": self.event_id,
            "stream": self.stream,
            "camera_id": self.camera_id,
            "frame_id": self.frame_id,
            "ts": self.ts,
            "uri": self.uri,
            "claim_check_copy": self.claim_check_copy,
            "origin": asdict(self.origin),
            "reasons": [r.to_dict() for r in self.reasons],
            "scores": asdict(self.scores),
            "hash": f"{self.hash:016x}",
            "predictions": self.predictions,
            "reference": asdict(self.reference),
            "selected_at": self.selected_at,
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> Sample:
        return cls(
            d["key"],
            d["event_id"],
            d["stream"],
            d["camera_id"],
            d["frame_id"],
            d["ts"],
            d["uri"],
            d["claim_check_copy"],
            Origin(**d["origin"]),
            tuple(Reason(**r) for r in d["reasons"]),
            PickScores(**d["scores"]),
            int(d["hash"], 16),
            d["predictions"],
            ReferenceInfo(**d["reference"]),
            d["selected_at"],
        )


@dataclass(frozen=True)
class DriftEvent:
    """One drift event (module docstring). ``shifts``: each drifted feature's shift, measured in its
    own space; ``tests``: every test's outcome on the window; ``healthy_refs``: a few frames of the
    stream's last healthy window; ``confirmed_at``: when the stream turned drifted again after a
    restart and joined this event; ``selection`` is None until frames were selected."""

    id: str
    stream: str
    opened_at: float
    reference: ReferenceInfo
    fired: tuple[Fired, ...]
    shifts: dict[str, Shift]
    tests: tuple[TestOutcome, ...]
    feature_names: tuple[str, ...]
    window: EventWindow
    healthy_refs: tuple[FrameRef, ...] = ()
    status: str = OPEN
    closed_at: float | None = None
    close_reason: str | None = None
    evidence: Evidence = field(default_factory=Evidence)
    samples: tuple[Sample, ...] = ()
    selection: SelectionSummary | None = None
    confirmed_at: float | None = None
    # the account a person reads first (monitor.actions.headline); events written before it have
    # none
    headline: str = ""
    effects: tuple[Effect, ...] = ()  # every calibrated feature, most moved first
    change: Change | None = None  # when the drift began
    context: str = ""  # the window's context (monitor.pipeline.context)
    labelled: Labelled | None = None  # what the labels of its queued frames said, once back
    gaps: Gaps | None = None  # the window's frames outside the training set (with one registered)

    @property
    def drifted_effects(self) -> tuple[Effect, ...]:
        return tuple(e for e in self.effects if e.drifted)

    @property
    def is_open(self) -> bool:
        return self.status == OPEN

    def closed(self, at: float, reason: str) -> DriftEvent:
        return replace(self, status=CLOSED, closed_at=at, close_reason=reason)

    def confirmed(self, at: float) -> DriftEvent:
        return replace(self, confirmed_at=at)

    def with_evidence(self, **changes: Any) -> DriftEvent:
        """This event with ``changes`` (fields of :class:`Evidence`) made to its evidence."""
        return replace(self, evidence=replace(self.evidence, **changes))

    def with_selection(self, samples: tuple[Sample, ...], summary: SelectionSummary) -> DriftEvent:
        return replace(self, samples=samples, selection=summary)

    def to_dict(self) -> JSONObject:
        out = {
            "schema": SCHEMA,
            "id": self.id,
            "stream": self.stream,
            "status": self.status,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "reference": asdict(self.reference),
            "fired": [asdict(f) for f in self.fired],
            "shifts": {k: s.to_dict() for k, s in self.shifts.items()},
            "tests": [t.to_dict() for t in self.tests],
            "feature_names": list(self.feature_names),
            "window": self.window.to_dict(),
            "healthy_refs": [ref_dict(r) for r in self.healthy_refs],
            "evidence": asdict(self.evidence),
            "samples": [s.to_dict() for s in self.samples],
        }
        if self.selection is not None:
            out["selection"] = self.selection.to_dict()
        if self.confirmed_at is not None:
            out["confirmed_at"] = self.confirmed_at
        if self.headline:
            out["headline"] = self.headline
            out["effects"] = [e.to_dict() for e in self.effects]
        if self.change is not None:
            out["change"] = self.change.to_dict()
        if self.context:
            out["context"] = self.context
        if self.labelled is not None:
            out["labelled"] = self.labelled.to_dict()
        if self.gaps is not None:
            out["gaps"] = self.gaps.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: JSONObject) -> DriftEvent:
        selection = d.get("selection")
        return cls(
            id=d["id"],
            stream=d["stream"],
            opened_at=d["opened_at"],
            reference=ReferenceInfo(**d["reference"]),
            fired=tuple(Fired(**f) for f in d["fired"]),
            shifts={k: Shift.from_dict(s) for k, s in d["shifts"].items()},
            tests=tuple(TestOutcome.from_dict(t) for t in d["tests"]),
            feature_names=tuple(d["feature_names"]),
            window=EventWindow.from_dict(d["window"]),
            healthy_refs=tuple(FrameRef(**r) for r in d["healthy_refs"]),
            status=d["status"],
            closed_at=d["closed_at"],
            close_reason=d["close_reason"],
            evidence=Evidence(**d["evidence"]),
            samples=tuple(Sample.from_dict(s) for s in d["samples"]),
            selection=None if selection is None else SelectionSummary(**selection),
            confirmed_at=d.get("confirmed_at"),
            headline=d.get("headline", ""),
            effects=tuple(Effect.from_dict(e) for e in d.get("effects", ())),
            change=Change.from_dict(d["change"]) if "change" in d else None,
            context=d.get("context", ""),
            labelled=Labelled.from_dict(d["labelled"]) if "labelled" in d else None,
            gaps=Gaps.from_dict(d["gaps"]) if "gaps" in d else None,
        )

    def summary(self) -> JSONObject:
        """This event's JSON without its bulky parts (window frame references, samples, test
        details), for lists."""
        bulky = ("window", "samples", "tests", "effects")
        out = {k: v for k, v in self.to_dict().items() if k not in bulky}
        out["window"] = {k: v for k, v in self.window.to_dict().items() if k != "refs"}
        out["samples"] = len(self.samples)
        return out


class EventStore:
    """Drift events in a directory, possibly shared by several replicas (docs/actions.md, "Several
    replicas"): every read takes in first what other processes wrote (:class:`DirectoryView`: a
    ``stat`` of the directory when nothing changed), and every write holds the directory's writers'
    lock (``.lock``, an ``flock``) around reading the event fresh from disk, changing it and
    replacing its file, so replicas never undo each other's changes, and a stream never gets a
    second open event."""

    def __init__(self, directory: str | Path, min_interval_s: float = REFRESH_S):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._writers = self.dir / ".lock"
        self._view = DirectoryView(self.dir, "evt-*.json", min_interval_s=min_interval_s)
        self._events: dict[str, DriftEvent] = {}
        self._open: dict[str, str] = {}  # stream -> id of its open event
        with self._lock:
            self._refresh(force=True)

    # --- reads ---------------------------------------------------------------------------------

    def get(self, eid: str) -> DriftEvent | None:
        with self._lock:
            self._refresh()
            return self._events.get(eid)

    def list(self, stream: str | None = None, status: str | None = None) -> list[DriftEvent]:
        with self._lock:
            self._refresh()
            found = [
                e
                for e in self._events.values()
                if (stream is None or e.stream == stream) and (status is None or e.status == status)
            ]
        return sorted(found, key=lambda e: (e.opened_at, e.id))

    def open_for(self, stream: str) -> str | None:
        with self._lock:
            self._refresh()
            return self._open.get(stream)

    def open_count(self) -> int:
        with self._lock:
            self._refresh()
            return len(self._open)

    # builtins.list: inside this class, `list` is the method above
    def overlapping(
        self, stream: str, start: float, end: float | None
    ) -> builtins.list[DriftEvent]:
        """Events of ``stream`` open at any time in [start, end] (end None: now)."""
        end = time.time() if end is None else end
        with self._lock:
            self._refresh()
            found = [
                e
                for e in self._events.values()
                if e.stream == stream
                and e.opened_at <= end
                and (e.closed_at is None or e.closed_at >= start)
            ]
        return sorted(found, key=lambda e: e.opened_at)

    def window_arrays(self, eid: str) -> dict[str, np.ndarray]:
        path = self.dir / f"{eid}.npz"
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # --- writes ----------------------------------------------------------------------------------

    def create(self, event: DriftEvent, arrays: dict[str, np.ndarray]) -> DriftEvent:
        """Write a new open event; returns it, or the event of its stream already open (another
        replica's, opened meanwhile), leaving that one as it is."""
        with self._lock, locked(self._writers):
            self._refresh(force=True)
            already = self._open.get(event.stream)
            if already is not None:
                return self._events[already]
            buf = io.BytesIO()
            # numpy's stub types **kwds and allow_pickle alike, so mypy matches arrays to that bool
            np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
            atomic_write_bytes(self.dir / f"{event.id}.npz", buf.getvalue())
            self._save(event)
            return event

    def update(self, eid: str, change: Callable[[DriftEvent], DriftEvent]) -> DriftEvent:
        """Replace the event by ``change(event)``, the event read fresh from its file under the
        writers' lock, persisted; returns the new event."""
        with self._lock, locked(self._writers):
            path = self.dir / f"{eid}.json"
            data = read_json(path)
            current = DriftEvent.from_dict(data) if data is not None else self._events[eid]
            event = change(current)
            self._save(event)
            return event

    def _refresh(self, force: bool = False) -> None:
        """Take in the events other processes created or changed (under ``_lock``)."""
        changed, gone = self._view.changes(force)
        for path, signature in changed:
            try:
                data = read_json(path)
            except ValueError:
                log.error("drift event file %s does not parse; ignored", path)
                self._view.seen(path, signature)
                continue
            if data is None:
                continue  # removed since listed
            self._remember(DriftEvent.from_dict(data))
            self._view.seen(path, signature)
        for name in gone:
            event = self._events.pop(name.removesuffix(".json"), None)
            if event is not None and self._open.get(event.stream) == event.id:
                del self._open[event.stream]

    def _remember(self, event: DriftEvent) -> None:
        """Keep ``event`` and which event of its stream is open."""
        self._events[event.id] = event
        if event.is_open:
            self._open[event.stream] = event.id
        elif self._open.get(event.stream) == event.id:
            del self._open[event.stream]

    def _save(self, event: DriftEvent) -> None:
        """Write ``event``'s file and keep it (under ``_lock`` and the writers' lock)."""
        path = atomic_write_json(self.dir / f"{event.id}.json", event.to_dict())
        self._view.seen(path)
        self._remember(event)
