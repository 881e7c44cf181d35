"""Fetch a frame again, long after the consume loop let go of its pixels.

Windows keep only frame references (:class:`monitor.pipeline.streams.FrameRef`). A frame selected
for relabelling is read back from where it came from: the Kafka record at its topic/partition/offset
(parsed with the daemon's own :func:`monitor.pipeline.source.parse_record`, so a JSON envelope
yields its predictions too and a claim check is resolved), or, when that record is gone (retention),
its claim-check URI. A reference's frame is read back by its locator (:meth:`read_locator`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from monitor.config import Config, SourceConfig
from monitor.errors import UnavailableError
from monitor.files import JSONObject
from monitor.pipeline.source import RecordError, make_consumer, parse_record, read_claim_check
from monitor.pipeline.streams import FrameRef

log = logging.getLogger(__name__)


class FetchError(UnavailableError):
    pass


@dataclass(frozen=True)
class Fetched:
    data: bytes
    predictions: JSONObject | None
    via: str  # "kafka" or "uri"


class FrameFetcher:
    """Reads frames back by reference; one reusable consumer outside any group. Thread-safe."""

    def __init__(self, config: Config, extra_roots: tuple[str, ...] = (), timeout_s: float = 10.0):
        self.config = config
        self.source = SourceConfig(
            allowed_roots=tuple(config.source.allowed_roots) + tuple(extra_roots),
            stream_key=config.source.stream_key,
        )
        self.timeout_s = timeout_s
        self._consumer: Any = None
        self._lock = threading.Lock()

    def fetch(self, ref: FrameRef) -> Fetched:
        """The frame ``ref`` points to: its Kafka record (topic, partition, offset), else its
        claim-check URI."""
        errors = []
        if ref.topic:
            try:
                return self._from_kafka(ref)
            except (FetchError, RecordError) as e:
                errors.append(f"kafka: {e}")
        if ref.uri:
            try:
                return Fetched(read_claim_check(ref.uri, self.source.allowed_roots), None, "uri")
            except RecordError as e:
                errors.append(f"uri: {e}")
        raise FetchError(
            f"frame {ref.frame_id}: " + ("; ".join(errors) or "no topic/offset and no uri")
        )

    def read_uri(self, uri: str) -> bytes:
        """A claim-check ``file://`` URI, below ``source.allowed_roots`` or driftmon's own store."""
        try:
            return read_claim_check(uri, self.source.allowed_roots)
        except RecordError as e:
            raise FetchError(str(e)) from None

    def read_locator(self, locator: str, source: str) -> bytes:
        """A reference's frame by its locator (``Reference.locators``), for reports. A file below
        the reference's own source directory, or a frame of its own clip, is read as the reference
        build read it (the operator chose them); any other file only as a claim check, below
        ``source.allowed_roots``."""
        if locator.startswith("kafka:"):
            topic, partition, offset = locator[len("kafka:") :].rsplit("/", 2)
            ref = FrameRef(locator, "", 0.0, topic, int(partition), int(offset), None)
            return self._from_kafka(ref).data
        uri, _, frame = locator.partition("#frame=")
        kind, _, root = source.partition(":")
        path = Path(unquote(urlparse(uri).path))
        if frame and kind == "video" and path == Path(root):
            return _clip_frame(path, int(frame))
        if not frame and kind == "dir" and path.is_relative_to(root):
            try:
                return path.read_bytes()
            except OSError as e:
                raise FetchError(f"{path}: {e.strerror}") from None
        return self.read_uri(uri)

    def _from_kafka(self, ref: FrameRef) -> Fetched:
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        tp = TopicPartition(ref.topic, ref.partition)
        offset = ref.offset
        with self._lock:
            try:
                consumer = self._client()
                consumer.assign([tp])
                consumer.seek(tp, offset)
                remaining_ms = int(self.timeout_s * 1000)
                while remaining_ms > 0:
                    polled = consumer.poll(timeout_ms=min(500, remaining_ms), max_records=1)
                    remaining_ms -= 500
                    for record in polled.get(tp, []):
                        if record.offset == offset:
                            frame = parse_record(record, self.source)
                            return Fetched(frame.data, frame.predictions, "kafka")
                        if record.offset > offset:
                            raise FetchError(
                                f"{tp.topic}/{tp.partition}@{offset} is gone (compacted or expired)"
                            )
                        consumer.seek(tp, offset)
            except KafkaError as e:
                self._reset()
                raise FetchError(f"{tp.topic}/{tp.partition}@{offset}: {e}") from None
        raise FetchError(
            f"{tp.topic}/{tp.partition}@{offset}: not read within {self.timeout_s:.0f}s"
        )

    def _client(self) -> Any:
        if self._consumer is None:
            self._consumer = make_consumer(
                self.config.kafka,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                fetch_max_wait_ms=50,
            )
        return self._consumer

    def _reset(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception:  # noqa: BLE001 - closing a broken client must not hide the first error
                log.debug("closing the fetch consumer failed", exc_info=True)
            self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._reset()


def _clip_frame(path: Path, index: int) -> bytes:
    """Frame ``index`` of a recorded clip, as JPEG."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
        encoded, jpeg = cv2.imencode(".jpg", bgr) if ok else (False, None)
    finally:
        cap.release()
    if not encoded or jpeg is None:
        raise FetchError(f"{path}: frame {index} cannot be read")
    return jpeg.tobytes()
