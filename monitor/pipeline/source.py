"""Kafka source: records in, Frames (or BadRecords, with a reason) out; dead letters out.

The frame contract (see DESIGN.md): key = camera id; value = encoded image bytes with metadata
in headers, or a JSON envelope (``content-type: application/json``) carrying ``image_b64`` or a
claim-check ``uri``. ``file://`` URIs are read only below configured roots, with symlinks and
``..`` resolved first; other schemes are refused until a resolver for them is configured.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from monitor.config import KafkaConfig, SourceConfig
from monitor.errors import InputError
from monitor.files import JSONObject

log = logging.getLogger(__name__)

JSON_CONTENT_TYPES = ("application/json",)


@dataclass(frozen=True)
class Origin:
    topic: str
    partition: int
    offset: int


@dataclass
class Frame:
    """One camera frame as the rest of the pipeline sees it."""

    camera_id: str
    frame_id: str
    ts: float  # event time, seconds since the epoch
    data: bytes  # encoded image
    origin: Origin
    uri: str | None = None
    site: str = ""
    model_version: str = ""
    predictions: JSONObject | None = None
    meta: JSONObject = field(default_factory=dict)
    context: str = ""  # the producer's context label (day, night, rain...), when it sends one
    # an envelope's image_b64, not decoded yet (parse_record(..., defer_image=True)): load_image
    pending_b64: str | None = field(default=None, repr=False)
    # a claim check's file, checked against source.allowed_roots but not read yet: load_image
    pending_path: Path | None = field(default=None, repr=False)


@dataclass
class BadRecord:
    """A record that could not become a frame: counted by reason and dead-lettered."""

    reason: str
    error: str
    origin: Origin
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class RecordError(InputError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def parse_record(record: Any, source: SourceConfig, *, defer_image: bool = False) -> Frame:
    """Turn one kafka-python ConsumerRecord into a Frame, or raise RecordError.

    ``defer_image``: an envelope's ``image_b64`` is kept as text (``Frame.pending_b64``) and decoded
    by :func:`load_image` only for a frame that is to be analysed — 0.7 ms of a 300 KB frame that a
    rate-limited stream skips. Its base64 is then checked only if the frame is loaded. A claim
    check's URI is checked against ``source.allowed_roots`` at once, and its file read only when the
    frame is loaded (``Frame.pending_path``)."""
    origin = Origin(record.topic, record.partition, record.offset)
    headers = _headers(record.headers)
    value = record.value
    if not value:
        raise RecordError("empty", "record value is empty")
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in JSON_CONTENT_TYPES or (not content_type and value[:1] == b"{"):
        return _parse_envelope(record, headers, origin, source, defer_image)
    camera_id = headers.get("camera_id") or _key(record.key)
    if not camera_id:
        raise RecordError("bad_header", "no camera id: neither a record key nor a camera_id header")
    return Frame(
        camera_id=camera_id,
        frame_id=headers.get("frame_id") or f"{origin.topic}-{origin.partition}-{origin.offset}",
        ts=_ts(headers.get("ts"), record.timestamp),
        data=value,
        origin=origin,
        site=headers.get("site", ""),
        model_version=headers.get("model_version", ""),
        context=_context(headers.get("context")),
    )


def _headers(raw: Iterable[tuple[str, bytes]] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in raw or ():
        try:
            out[key.lower()] = value.decode("utf-8") if value is not None else ""
        except (UnicodeDecodeError, AttributeError):
            raise RecordError("bad_header", f"header {key!r} is not UTF-8") from None
    return out


def _context(value: Any) -> str:
    """A producer's context label: a short string (bounded: it becomes a reference's context)."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or len(value) > 64 or not value.isprintable():
        raise RecordError(
            "bad_header", f"context {value!r} must be a printable string of at most 64 characters"
        )
    return value


def _key(key: bytes | None) -> str:
    if key is None:
        return ""
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError("bad_header", "record key is not UTF-8") from None


def _ts(header_ms: Any, record_ms: int | None) -> float:
    if header_ms not in (None, ""):
        try:
            if isinstance(header_ms, bool):
                raise TypeError("a boolean is not a time")
            return int(header_ms) / 1000.0
        except (
            TypeError,
            ValueError,
            OverflowError,
        ):  # OverflowError: an envelope's ts of Infinity
            raise RecordError(
                "bad_header", f"ts {header_ms!r} is not milliseconds since the epoch"
            ) from None
    return (record_ms / 1000.0) if record_ms and record_ms > 0 else time.time()


def _parse_envelope(
    record: Any, headers: dict[str, str], origin: Origin, source: SourceConfig, defer_image: bool
) -> Frame:
    try:
        env = json.loads(record.value)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError("bad_envelope", f"JSON envelope does not parse: {e}") from None
    if not isinstance(env, dict):
        raise RecordError("bad_envelope", "JSON envelope must be an object")
    camera_id = env.get("camera_id") or headers.get("camera_id") or _key(record.key)
    if not isinstance(camera_id, str) or not camera_id:
        raise RecordError("bad_envelope", "no camera_id in envelope, headers or key")
    predictions = env.get("predictions")
    if predictions is not None and not isinstance(predictions, dict):
        raise RecordError("bad_envelope", "predictions must be an object")
    meta = env.get("meta") or {}
    if not isinstance(meta, dict):
        raise RecordError("bad_envelope", "meta must be an object")
    uri = env.get("uri")
    pending, pending_path = None, None
    if "image_b64" in env:
        if not isinstance(env["image_b64"], str):
            raise RecordError("bad_envelope", "image_b64 must be a string")
        if defer_image:
            data, pending = b"", env["image_b64"]
        else:
            data = _b64decode(env["image_b64"])
    elif isinstance(uri, str) and uri:
        if defer_image:
            data, pending_path = b"", claim_check_path(uri, source.allowed_roots)
        else:
            data = read_claim_check(uri, source.allowed_roots)
    else:
        raise RecordError("bad_envelope", "envelope carries neither image_b64 nor uri")
    ts = env.get("ts", headers.get("ts"))
    return Frame(
        camera_id=camera_id,
        frame_id=str(
            env.get("frame_id")
            or headers.get("frame_id")
            or f"{origin.topic}-{origin.partition}-{origin.offset}"
        ),
        ts=_ts(ts, record.timestamp),
        data=data,
        origin=origin,
        uri=uri if isinstance(uri, str) else None,
        site=str(env.get("site") or meta.get("site") or headers.get("site", "")),
        model_version=str(env.get("model_version") or headers.get("model_version", "")),
        predictions=predictions,
        meta=meta,
        context=_context(env.get("context", meta.get("context", headers.get("context")))),
        pending_b64=pending,
        pending_path=pending_path,
    )


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RecordError("bad_envelope", f"image_b64 is not base64: {e}") from None


def load_image(frame: Frame) -> None:
    """Decode the image an envelope carried inline, or read its claim check's file, when parsing
    deferred it (``defer_image``); RecordError (``bad_envelope``, ``uri_unreadable``) when that
    fails."""
    if frame.pending_b64 is not None:
        frame.data, frame.pending_b64 = _b64decode(frame.pending_b64), None
    elif frame.pending_path is not None:
        frame.data, frame.pending_path = _read(frame.pending_path, frame.uri or ""), None


def read_claim_check(uri: str, allowed_roots: Iterable[str]) -> bytes:
    """Read a claim-check ``file://`` URI, only below an allowed root (after resolving links)."""
    return _read(claim_check_path(uri, allowed_roots), uri)


def _read(path: Path, uri: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise RecordError("uri_unreadable", f"{uri}: {e.strerror}") from None


def claim_check_path(uri: str, allowed_roots: Iterable[str]) -> Path:
    """The file a claim-check ``file://`` URI names, refused unless it lies below an allowed root
    (after resolving links)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise RecordError(
            "uri_not_allowed", f"URI scheme {parsed.scheme or '(none)'!r} is not enabled"
        )
    if parsed.netloc not in ("", "localhost"):
        raise RecordError("uri_not_allowed", f"file URI host {parsed.netloc!r} is not local")
    roots = [Path(os.path.realpath(r)) for r in allowed_roots]
    if not roots:
        raise RecordError("uri_not_allowed", "no source.allowed_roots configured for file:// URIs")
    raw_path = unquote(parsed.path)
    if (
        "\x00" in raw_path
    ):  # os.path.realpath raises ValueError on NUL: refuse, never crash the loop
        raise RecordError("uri_not_allowed", f"{uri!r}: path contains a NUL byte")
    path = Path(os.path.realpath(raw_path))
    if not any(path == root or root in path.parents for root in roots):
        raise RecordError("uri_not_allowed", f"{uri} resolves outside source.allowed_roots")
    return path


# --- Kafka clients -------------------------------------------------------------------------


def make_frames_consumer(kafka: KafkaConfig):
    """The daemon's group consumer of frames, on ``kafka.client`` (the other consumers, which
    assign and seek, are kafka-python's)."""
    if kafka.client == "confluent":
        from monitor.pipeline.confluent import ConfluentConsumer

        return ConfluentConsumer(kafka)
    return make_consumer(kafka)


def make_consumer(kafka: KafkaConfig, **overrides: Any):
    from kafka import KafkaConsumer

    opts = kafka.client_options() | dict(
        group_id=kafka.group_id,
        enable_auto_commit=False,  # offsets are committed only after a batch is fully processed
        auto_offset_reset=kafka.auto_offset_reset,
        max_poll_records=kafka.max_poll_records,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
        max_partition_fetch_bytes=kafka.max_partition_fetch_bytes,
        session_timeout_ms=kafka.session_timeout_ms,
        heartbeat_interval_ms=kafka.heartbeat_interval_ms,
        max_poll_interval_ms=kafka.max_poll_interval_ms,
    )
    opts.update(overrides)
    return KafkaConsumer(**opts)


def make_producer(kafka: KafkaConfig, **overrides: Any):
    from kafka import KafkaProducer

    opts = kafka.client_options() | dict(
        acks="all", linger_ms=5, max_request_size=kafka.max_partition_fetch_bytes
    )
    opts.update(overrides)
    return KafkaProducer(**opts)


def dead_letter_headers(bad: BadRecord) -> list[tuple[str, bytes]]:
    """The original headers plus where the record came from and why it was rejected."""
    ours = [
        ("driftmon_error_reason", bad.reason.encode()),
        ("driftmon_error", bad.error.encode("utf-8", "replace")[:1024]),
        ("driftmon_origin_topic", bad.origin.topic.encode()),
        ("driftmon_origin_partition", str(bad.origin.partition).encode()),
        ("driftmon_origin_offset", str(bad.origin.offset).encode()),
    ]
    return [(k, v) for k, v in bad.headers if not k.startswith("driftmon_")] + ours
