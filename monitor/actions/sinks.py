"""Relabel sinks: where frames selected for relabelling go. One interface, configured as a list.

- ``kafka``: one JSON record per frame on ``actions.relabel.topic`` (key: camera id).
- ``label_studio``: a task per frame in a Label Studio project (created when missing), the image
  uploaded to Label Studio itself, the model's predictions as pre-annotations.
- ``directory``: per event, the images plus a CVAT dataset manifest and driftmon's own manifest.

Every sink runs on its own :class:`Worker`: a thread draining a bounded queue, each delivery
retried with exponential backoff, so a slow or broken sink never blocks the consume loop or the
other sinks. A :class:`KeyLedger` per sink remembers what was delivered, so nothing is delivered
twice across restarts; the Label Studio sink also checks the project's existing tasks.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import os
import queue
import threading
import time
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from monitor.actions.events import Sample
from monitor.config import KafkaConfig, LabelStudioConfig, RetryConfig
from monitor.errors import UnavailableError
from monitor.files import JSONObject, atomic_write_text, locked, safe_name
from monitor.retry import Backoff, Stopped, retry

log = logging.getLogger(__name__)

RECORD_SCHEMA = "driftmon.relabel/v1"


class SinkError(UnavailableError):
    """A delivery failed; the worker retries it."""


# --- the worker ----------------------------------------------------------------------------------


class Worker:
    """One background thread draining a bounded queue; each item is retried with backoff.

    ``submit`` never blocks: when the queue is full the item is refused (and counted), and its
    owner keeps it pending for the next start. After ``retry.attempts`` failed tries an item is
    given up (``on_give_up``) and the worker moves on.
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[Any], None],
        retry: RetryConfig,
        maxsize: int,
        *,
        errors: Any = None,
        depth: Any = None,
        on_give_up: Callable[[Any, Exception], None] | None = None,
    ):
        self.name = name
        self.handle = handle
        self.retry = retry
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._errors = errors
        self._depth = depth
        self._on_give_up = on_give_up
        self._stop = threading.Event()
        self._busy = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"driftmon-{name}", daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._error()
            log.warning("%s: queue full (%d), item left pending", self.name, self._queue.maxsize)
            return False
        self._set_depth()
        return True

    def idle(self) -> bool:
        with self._lock:
            return self._queue.empty() and self._busy == 0

    def _set_depth(self) -> None:
        if self._depth is not None:
            self._depth.set(self._queue.qsize())

    def _error(self) -> None:
        if self._errors is not None:
            self._errors.inc()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    item = self._queue.get(timeout=0.2)
                    self._busy += 1
            except queue.Empty:
                continue
            try:
                self._attempt(item)
            finally:
                with self._lock:
                    self._busy -= 1
                self._set_depth()

    def _attempt(self, item: Any) -> None:
        backoff = Backoff(self.retry.backoff_s, self.retry.max_backoff_s, self.retry.attempts)

        def failed(attempt: int, e: BaseException, delay: float | None) -> None:
            self._error()
            if delay is not None:
                log.warning(
                    "%s: try %d failed (%s); retrying in %.1fs", self.name, attempt, e, delay
                )

        try:  # any failure of a sink is retried, then given up
            retry(lambda: self.handle(item), backoff, stop=self._stop, on_failure=failed)
        except Stopped:
            return  # closing: the item stays pending for the next start
        except Exception as e:  # noqa: BLE001 - the last try failed
            log.error("%s: giving up after %d tries: %s", self.name, self.retry.attempts, e)
            if self._on_give_up is not None:
                self._on_give_up(item, e)

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)


class KeyLedger:
    """A persisted set of keys (append-only lines): what a sink has delivered.

    A last line without its newline was torn by a crash mid-append: it is not a key (it may be the
    start of one), and it is cut off before the next key is written.

    Replicas sharing ``actions.state_dir`` share a sink's ledger: reads take in the keys others
    appended (a ``stat`` when there are none), appends hold an ``flock`` on ``<path>.lock``, and
    :meth:`holding` keeps that lock over a whole check-deliver-record, so two replicas never
    deliver one frame to a sink twice.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._writers = self.path.with_name(self.path.name + ".lock")
        self._lock = threading.RLock()
        self._held = False  # the writers' lock is held by :meth:`holding` (under ``_lock``)
        self._keys: set[str] = set()
        self._inode: int | None = None
        self._offset = 0  # bytes of complete lines read
        self._complete: int | None = None  # bytes of complete lines, when a torn line follows them
        with self._lock:
            self._catch_up()

    def _catch_up(self) -> None:
        """Take in the keys appended since last read (under ``_lock``)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if st.st_ino != self._inode or st.st_size < self._offset:
            self._keys.clear()
            self._inode, self._offset = st.st_ino, 0
        if st.st_size == self._offset:
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._keys |= {line.strip() for line in data[:end].decode().splitlines() if line.strip()}
        self._offset += end
        self._complete = self._offset if end < len(data) else None

    def __contains__(self, key: str) -> bool:
        with self._lock:
            self._catch_up()
            return key in self._keys

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the ledger's writers' lock (other threads and processes wait) for the block."""
        with self._lock, locked(self._writers):
            self._held = True
            try:
                yield
            finally:
                self._held = False

    def add(self, key: str) -> None:
        with self._lock, contextlib.ExitStack() as stack:
            if not self._held:
                stack.enter_context(locked(self._writers))
            self._catch_up()
            if key in self._keys:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self._complete is not None:
                os.truncate(self.path, self._complete)
                self._complete = None
            with self.path.open("a") as f:
                f.write(key + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._keys.add(key)
            st = os.stat(self.path)
            self._inode, self._offset = st.st_ino, st.st_size


# --- sinks ---------------------------------------------------------------------------------------


class RelabelSink(Protocol):
    name: str

    def deliver(self, sample: Sample, load: Callable[[Sample], bytes]) -> None:
        """Deliver one selected frame (``load`` returns its encoded bytes); raise to retry."""

    def close(self) -> None: ...


def relabel_record(sample: Sample) -> JSONObject:
    """The JSON record a selected frame becomes (kafka sink, directory manifest)."""
    keys = (
        "event_id",
        "stream",
        "camera_id",
        "frame_id",
        "ts",
        "uri",
        "origin",
        "reasons",
        "scores",
        "predictions",
        "reference",
        "selected_at",
    )
    d = sample.to_dict()
    return {"schema": RECORD_SCHEMA, "key": sample.key} | {k: d[k] for k in keys}


class KafkaSink:
    name = "kafka"

    def __init__(self, kafka: KafkaConfig, topic: str):
        self.kafka = kafka
        self.topic = topic
        self._producer: Any = None

    def deliver(self, sample: Sample, load: Callable[[Sample], bytes]) -> None:
        from kafka.errors import KafkaError

        from monitor.pipeline.source import make_producer

        try:
            if self._producer is None:
                self._producer = make_producer(self.kafka)
            value = json.dumps(relabel_record(sample), sort_keys=True).encode()
            future = self._producer.send(
                self.topic,
                key=sample.camera_id.encode(),
                value=value,
                headers=[
                    ("content-type", b"application/json"),
                    ("driftmon_event_id", sample.event_id.encode()),
                ],
            )
            self._producer.flush(timeout=30)
            future.get(timeout=30)
        except KafkaError as e:
            raise SinkError(f"kafka {self.topic}: {e}") from None

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)


def image_extension(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    if data[:2] == b"BM":
        return ".bmp"
    return ".bin"


def image_size(data: bytes) -> tuple[int, int] | None:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return None if img is None else (int(img.shape[1]), int(img.shape[0]))


class DirectorySink:
    """``<dir>/<event_id>/images/<camera>__<frame>.<ext>`` plus, per event directory:

    - ``manifest.jsonl``: a CVAT dataset manifest (version 1.1, type images: name, extension,
      width, height, checksum), for importing the directory as a CVAT task;
    - ``driftmon.jsonl`` / ``driftmon.csv``: one relabel record per image (reasons, scores).
    """

    name = "directory"

    def __init__(self, directory: str | Path):
        self.dir = Path(directory)
        self._lock = threading.Lock()

    def deliver(self, sample: Sample, load: Callable[[Sample], bytes]) -> None:
        data = load(sample)
        size = image_size(data)
        if size is None:
            raise SinkError(f"{sample.key}: frame bytes do not decode")
        stem = f"{safe_name(sample.camera_id, 60)}__{safe_name(sample.frame_id, 100)}"
        ext = image_extension(data)
        event_dir = self.dir / safe_name(sample.event_id)
        with self._lock:
            from monitor.files import atomic_write_bytes

            atomic_write_bytes(event_dir / "images" / f"{stem}{ext}", data)
            record = relabel_record(sample) | {
                "image": f"images/{stem}{ext}",
                "width": size[0],
                "height": size[1],
                "checksum": hashlib.md5(data).hexdigest(),
            }  # noqa: S324 - CVAT's checksum
            records = [
                r for r in _read_jsonl(event_dir / "driftmon.jsonl") if r["key"] != sample.key
            ] + [record]
            atomic_write_text(
                event_dir / "driftmon.jsonl",
                "".join(json.dumps(r, sort_keys=True) + "\n" for r in records),
            )
            manifest = [{"version": "1.1"}, {"type": "images"}] + [
                {
                    "name": f"images/{Path(r['image']).stem}",
                    "extension": Path(r["image"]).suffix,
                    "width": r["width"],
                    "height": r["height"],
                    "checksum": r["checksum"],
                }
                for r in records
            ]
            atomic_write_text(
                event_dir / "manifest.jsonl", "".join(json.dumps(m) + "\n" for m in manifest)
            )
            out = io.StringIO()
            w = csv.writer(out)
            w.writerow(
                ["image", "event_id", "camera_id", "frame_id", "ts", "score", "reasons", "uri"]
            )
            for r in records:
                w.writerow(
                    [
                        r["image"],
                        r["event_id"],
                        r["camera_id"],
                        r["frame_id"],
                        r["ts"],
                        (r.get("scores") or {}).get("score"),
                        "; ".join(x["code"] for x in r.get("reasons") or []),
                        r.get("uri") or "",
                    ]
                )
            atomic_write_text(event_dir / "driftmon.csv", out.getvalue())

    def close(self) -> None:
        pass


def _read_jsonl(path: Path) -> list[JSONObject]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --- Label Studio --------------------------------------------------------------------------------


def default_label_config(labels: tuple[str, ...]) -> str:
    from xml.sax.saxutils import quoteattr

    items = "".join(f"<Label value={quoteattr(label)}/>" for label in labels)
    return (
        '<View><Image name="image" value="$image"/>'
        f'<RectangleLabels name="label" toName="image">{items}</RectangleLabels>'
        '<Header value="Why this frame: $why"/></View>'
    )


@dataclass(frozen=True)
class Control:
    """A labelling config's control that pre-annotations fill: its type (``rectanglelabels`` or
    ``choices``; None when the config has neither), names and values."""

    type: str | None
    from_name: str | None = None
    to_name: str | None = None
    values: tuple[str, ...] = ()


def _control(label_config: str) -> Control:
    """The first RectangleLabels or Choices control of a labelling config."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as e:
        raise ValueError(f"label_config is not XML: {e}") from None
    for tag in ("RectangleLabels", "Choices"):
        el = root.find(f".//{tag}")
        if el is not None:
            values = tuple(v for c in el if (v := c.get("value")))
            return Control(tag.lower(), el.get("name"), el.get("toName"), values)
    return Control(None)


def pre_annotations(
    predictions: JSONObject | None, control: Control, size: tuple[int, int]
) -> list[JSONObject]:
    """The frame's predictions as Label Studio predictions for ``control`` (empty when they do not
    fit).

    Detections (``{"label", "score", "box": [x1, y1, x2, y2]}``, pixels, or 0..1 when every
    coordinate is) become rectangles in percent of the image; ``probs`` become the most likely
    choice of a Choices control (choices in the config's order). Labels the config lacks are
    dropped.
    """
    if not isinstance(predictions, dict) or control.type is None:
        return []
    values = set(control.values)
    w, h = size
    if control.type == "rectanglelabels" and isinstance(predictions.get("detections"), list):
        results, scores = [], []
        for d in predictions["detections"]:
            if not isinstance(d, dict) or d.get("label") not in values:
                continue
            box = d.get("box")
            if not (
                isinstance(box, list)
                and len(box) == 4
                and all(isinstance(v, (int, float)) for v in box)
            ):
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            sx, sy = (100.0, 100.0) if max(x1, y1, x2, y2) <= 1.0 else (100.0 / w, 100.0 / h)
            score = float(d["score"]) if isinstance(d.get("score"), (int, float)) else None
            results.append(
                {
                    "from_name": control.from_name,
                    "to_name": control.to_name,
                    "type": "rectanglelabels",
                    "original_width": w,
                    "original_height": h,
                    "value": {
                        "x": x1 * sx,
                        "y": y1 * sy,
                        "width": (x2 - x1) * sx,
                        "height": (y2 - y1) * sy,
                        "rotation": 0,
                        "rectanglelabels": [d["label"]],
                    },
                }
                | ({"score": score} if score is not None else {})
            )
            if score is not None:
                scores.append(score)
        if results:
            return [
                {"model_version": "deployed", "result": results}
                | ({"score": min(scores)} if scores else {})
            ]
    if control.type == "choices" and isinstance(predictions.get("probs"), list):
        probs = predictions["probs"]
        if len(probs) == len(control.values) and all(isinstance(p, (int, float)) for p in probs):
            best = int(np.argmax(probs))
            return [
                {
                    "model_version": "deployed",
                    "score": float(probs[best]),
                    "result": [
                        {
                            "from_name": control.from_name,
                            "to_name": control.to_name,
                            "type": "choices",
                            "value": {"choices": [control.values[best]]},
                        }
                    ],
                }
            ]
    return []


class LabelStudioSink:
    """Tasks in a Label Studio project (created with the configured labelling config if missing).

    Each frame is uploaded to Label Studio (``POST
    /api/projects/{id}/import?commit_to_project=false``, multipart), so Label Studio serves the
    image itself to its annotators; then the task is imported as JSON with that upload's URL,
    driftmon's metadata (``driftmon_key``, event, camera, frame, reasons) and the predictions as
    pre-annotations. Before the first delivery the project's existing tasks are listed, and a frame
    whose ``driftmon_key`` is already there is not imported again (the daemon may have stopped
    between Label Studio's answer and its own ledger write).
    """

    name = "label_studio"

    def __init__(self, config: LabelStudioConfig):
        self.config = config
        self.base = config.url.rstrip("/")
        self.label_config = config.label_config or default_label_config(config.labels)
        self.control = _control(self.label_config)
        self.project_id: int | None = None
        self._existing: set[str] | None = None

    # --- HTTP ---

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> Any:
        """One call to Label Studio's API (the sink's and a label reader's); any failure is a
        :class:`SinkError`, so a worker retries it."""
        req = urllib.request.Request(
            self.base + path,
            data=body,
            method=method,
            headers={"Authorization": f"Token {self.config.token}", "Accept": "application/json"}
            | ({"Content-Type": content_type} if body is not None else {}),
        )
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as res:
                payload = res.read()
                status = res.status
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode("utf-8", "replace")
            raise SinkError(f"label studio {method} {path}: HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise SinkError(f"label studio {method} {path}: {e}") from None
        if status not in ok:
            raise SinkError(f"label studio {method} {path}: HTTP {status}")
        return json.loads(payload) if payload else None

    def _json(self, method: str, path: str, obj: Any) -> Any:
        return self.request(method, path, json.dumps(obj).encode())

    # --- project and existing tasks ---

    def find_project(self) -> int | None:
        """The id of the project titled ``project_title``, None when there is none (yet)."""
        if self.project_id is not None:
            return self.project_id
        path = "/api/projects?page_size=100"
        while path:
            page = self.request("GET", path)
            for p in page.get("results", []):
                if p.get("title") == self.config.project_title:
                    self.project_id = int(p["id"])
                    return self.project_id
            nxt = page.get("next")
            path = nxt[nxt.index("/api/") :] if nxt else ""
        return None

    def ensure_project(self) -> int:
        """The project's id, creating it when missing: with ``overlap`` > 0, that share of its
        tasks (Label Studio's ``overlap_cohort_percentage``) is given to two annotators
        (``maximum_annotations``), so labels can be checked against each other."""
        found = self.find_project()
        if found is not None:
            return found
        overlap = (
            {
                "maximum_annotations": 2,
                "overlap_cohort_percentage": round(100 * self.config.overlap),
            }
            if self.config.overlap > 0
            else {}
        )
        created = self._json(
            "POST",
            "/api/projects",
            {
                "title": self.config.project_title,
                "label_config": self.label_config,
                "description": (
                    "Frames driftmon selected from drifted camera windows for relabelling."
                ),
            }
            | overlap,
        )
        self.project_id = int(created["id"])
        log.info(
            "label studio: created project %r (id %d)", self.config.project_title, self.project_id
        )
        return self.project_id

    def existing_keys(self) -> set[str]:
        """``driftmon_key`` of every task in the project."""
        pid = self.ensure_project()
        keys: set[str] = set()
        page = 1
        while True:
            try:
                got = self.request("GET", f"/api/tasks?project={pid}&page={page}&page_size=100")
            except SinkError as e:
                if "HTTP 404" in str(e):  # past the last page
                    break
                raise
            tasks = got.get("tasks", []) if isinstance(got, dict) else got
            keys.update(
                t["data"]["driftmon_key"] for t in tasks if "driftmon_key" in (t.get("data") or {})
            )
            if not tasks or (isinstance(got, dict) and page * 100 >= int(got.get("total", 0))):
                break
            page += 1
        return keys

    # --- delivery ---

    def deliver(self, sample: Sample, load: Callable[[Sample], bytes]) -> None:
        pid = self.ensure_project()
        if self._existing is None:
            self._existing = self.existing_keys()
        if sample.key in self._existing:
            return
        data = load(sample)
        size = image_size(data)
        if size is None:
            raise SinkError(f"{sample.key}: frame bytes do not decode")
        filename = (
            f"{safe_name(sample.camera_id, 60)}__{safe_name(sample.frame_id, 100)}"
            f"{image_extension(data)}"
        )
        body, content_type = _multipart("file", filename, data)
        uploaded = self.request(
            "POST", f"/api/projects/{pid}/import?commit_to_project=false", body, content_type
        )
        upload_id = uploaded["file_upload_ids"][0]
        info = self.request("GET", f"/api/import/file-upload/{upload_id}")
        image_url = "/data/" + str(info["file"]).lstrip("/")
        task = {
            "data": {
                "image": image_url,
                "driftmon_key": sample.key,
                "event_id": sample.event_id,
                "stream": sample.stream,
                "camera_id": sample.camera_id,
                "frame_id": sample.frame_id,
                "ts": sample.ts,
                "source_uri": sample.uri or "",
                "why": "; ".join(r.text for r in sample.reasons),
                "score": sample.scores.score,
            },
            "predictions": pre_annotations(sample.predictions, self.control, size),
        }
        self.request(
            "POST", f"/api/projects/{pid}/import?return_task_ids=true", json.dumps([task]).encode()
        )
        self._existing.add(sample.key)

    def close(self) -> None:
        pass


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    mime = {
        ".jpg": "image/jpeg",
        ".png": "image/png",
        ".webp": "image/webp",
        ".bmp": "image/bmp",
    }.get(Path(filename).suffix, "application/octet-stream")
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\n'
            f"Content-Type: {mime}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def wait_idle(workers: list[Worker], timeout: float, poll: float = 0.1) -> bool:
    """Wait until every worker's queue is drained (for shutdown and tests)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(w.idle() for w in workers):
            return True
        time.sleep(poll)
    return False
