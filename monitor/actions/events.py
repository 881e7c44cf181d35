"""Drift events: one per stretch of time a stream is declared drifted (after hysteresis).

An event opens when a stream's evaluation turns drifted and closes when it recovers. It records what
fired (tests, features, statistics, p-values), the reference it was judged against, and the
references of the window's frames (no pixels). Each event is one JSON file in
``<state_dir>/events/`` (written atomically) plus the window's rows in an ``.npz`` beside it,
so events, and whether they are open, survive a restart.

The store is shared by the consume loop (open/close), the evidence worker (report, samples) and
HTTP threads (reads); every access goes through its lock, and readers get copies.
"""

from __future__ import annotations

import copy
import hashlib
import io
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from monitor.actions.explain import describe, kind_of
from monitor.files import atomic_write_bytes, atomic_write_json, load_json_dir

SCHEMA = "driftmon.event/v1"


def event_id(stream: str, opened_at: float) -> str:
    """``evt-20261127T184000Z-1a2b3c4d``: sortable by time, unique per stream and instant."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(opened_at))
    digest = hashlib.sha1(f"{stream}\0{opened_at!r}".encode()).hexdigest()[:8]
    return f"evt-{stamp}-{digest}"


def fired_from(evaluation: Any, vote: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every (test, feature) that drifted on this evaluation, with its statistic and adjusted p-value,
    the kind of input it judged (statistics, embeddings, predictions) and what it is in words."""
    out = []
    for t in evaluation.tests:
        for f in t.features:
            if f.drifted:
                out.append({"test": t.name, "feature": f.feature, "kind": kind_of(t.name),
                            "what": describe(t.name, f.feature), "statistic": f.statistic, "p_value": f.p_value,
                            "threshold": t.threshold, "correction": t.correction, "voting": t.name in vote})
    return out


def ref_dict(ref: Any) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"frame_id": ref.frame_id, "camera_id": ref.camera_id, "ts": ref.ts, "topic": ref.topic,
            "partition": ref.partition, "offset": ref.offset, "uri": ref.uri}


def summary(event: dict[str, Any]) -> dict[str, Any]:
    """An event without its bulky parts (window frame references, sample details), for lists."""
    out = {k: v for k, v in event.items() if k not in ("window", "samples", "tests")}
    out["window"] = {k: v for k, v in event.get("window", {}).items() if k != "refs"}
    out["samples"] = len(event.get("samples", []))
    return out


class EventStore:
    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._events: dict[str, dict[str, Any]] = {}
        self._open: dict[str, str] = {}  # stream -> id of its open event
        for event in load_json_dir(self.dir, "evt-*.json", "drift event"):
            self._events[event["id"]] = event
            if event["status"] == "open":
                self._open[event["stream"]] = event["id"]

    # --- reads ---------------------------------------------------------------------------------

    def get(self, eid: str) -> dict[str, Any] | None:
        with self._lock:
            e = self._events.get(eid)
            return copy.deepcopy(e) if e is not None else None

    def list(self, stream: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            found = [summary(e) for e in self._events.values()
                     if (stream is None or e["stream"] == stream) and (status is None or e["status"] == status)]
        return sorted(found, key=lambda e: (e["opened_at"], e["id"]))

    def open_for(self, stream: str) -> str | None:
        with self._lock:
            return self._open.get(stream)

    def open_count(self) -> int:
        with self._lock:
            return len(self._open)

    def overlapping(self, stream: str, start: float, end: float | None) -> list[dict[str, Any]]:
        """Events of ``stream`` open at any time in [start, end] (end None: now)."""
        end = time.time() if end is None else end
        with self._lock:
            found = [copy.deepcopy(e) for e in self._events.values()
                     if e["stream"] == stream and e["opened_at"] <= end
                     and (e.get("closed_at") is None or e["closed_at"] >= start)]
        return sorted(found, key=lambda e: e["opened_at"])

    def window_arrays(self, eid: str) -> dict[str, np.ndarray]:
        path = self.dir / f"{eid}.npz"
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    # --- writes ----------------------------------------------------------------------------------

    def create(self, event: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.dir / f"{event['id']}.npz", buf.getvalue())
        with self._lock:
            self._events[event["id"]] = event
            if event["status"] == "open":
                self._open[event["stream"]] = event["id"]
            self._save(event)

    def update(self, eid: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply ``change`` to the event under the lock and persist it; returns a copy."""
        with self._lock:
            event = self._events[eid]
            change(event)
            if event["status"] != "open" and self._open.get(event["stream"]) == eid:
                del self._open[event["stream"]]
            self._save(event)
            return copy.deepcopy(event)

    def _save(self, event: dict[str, Any]) -> None:
        atomic_write_json(self.dir / f"{event['id']}.json", event)
