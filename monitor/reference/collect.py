"""Collect image statistics from a directory, a Kafka topic or a recorded clip, with the daemon's
own decode and feature code: what ``driftmon reference build`` and ``driftmon check`` are made of.
Every frame keeps its time (``monitor.reference.timing``): a reference is a stream, not a bag."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from monitor.config import Config
from monitor.errors import InputError
from monitor.pipeline.context import frame_context
from monitor.pipeline.decode import DecodeError, DecodeLimits, decode
from monitor.pipeline.embed import Embedder, build_embedder
from monitor.pipeline.features import FEATURE_NAMES, LAYOUT_SIZE, compute_features
from monitor.pipeline.predictions import Prediction, derive, reference_predictions
from monitor.reference.fit import fit_reference
from monitor.reference.store import Reference
from monitor.reference.timing import TimeUnit, file_times

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
#: embedding.fp16 in the configuration -> build_embedder's fp16
_FP16: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}


@dataclass
class Collected:
    """Statistics (and embeddings) of the frames that decoded, and why the others did not."""

    rows: list[np.ndarray] = field(default_factory=list)
    embeddings: list[np.ndarray] = field(default_factory=list)
    layouts: list[np.ndarray] = field(default_factory=list)  # edge-layout maps, aligned with rows
    times: list[float] = field(
        default_factory=list
    )  # in `time_unit`; meaningless when not `ordered`
    time_unit: TimeUnit = "s"
    time_source: str = "event time"
    ordered: bool = True
    streams: list[str] = field(default_factory=list)
    predictions: list[Prediction | None] = field(
        default_factory=list
    )  # the model's outputs, aligned with rows
    labels: list[str] = field(
        default_factory=list
    )  # the producers' context labels ("": none), aligned with rows
    locators: list[str] = field(default_factory=list)  # where each frame is (Reference.locators)
    errors: dict[str, int] = field(default_factory=dict)

    def contexts(self, config: Config) -> list[str]:
        """Each frame's context (``monitor.pipeline.context``): the producer's label, else derived
        from its statistics and, when its time is a clock time, its hour."""
        clock = self.ordered and self.time_unit == "s"
        settings = config.context if clock else dataclasses.replace(config.context, day_hours=())
        labels = self.labels if len(self.labels) == len(self.rows) else [""] * len(self.rows)
        times = self.times if clock else [0.0] * len(self.rows)
        return [
            frame_context(row, ts, label, settings)
            for row, ts, label in zip(self.rows, times, labels, strict=True)
        ]

    def matrix(self, mask: np.ndarray | None = None) -> np.ndarray:
        m = (
            np.vstack(self.rows).astype(np.float32)
            if self.rows
            else np.zeros((0, len(FEATURE_NAMES)), np.float32)
        )
        return m if mask is None else m[mask]

    def embedding_matrix(self, mask: np.ndarray | None = None) -> np.ndarray | None:
        if not self.embeddings:
            return None
        m = np.vstack(self.embeddings).astype(np.float32)
        return m if mask is None else m[mask]

    def layout_matrix(self) -> np.ndarray | None:
        return np.vstack(self.layouts) if len(self.layouts) == len(self.rows) > 0 else None

    def add_error(self, reason: str) -> None:
        self.errors[reason] = self.errors.get(reason, 0) + 1


class Collector:
    """Decode, statistics and (optionally) embeddings for chunks of encoded frames, on a pool."""

    def __init__(self, config: Config, embedder: Embedder | None, pool: ThreadPoolExecutor):
        self.limits = limits_from(config)
        self.embedder = embedder
        self.pool = pool
        self.out = Collected()

    def _analyse(self, data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
        try:
            decoded = decode(data, self.limits)
        except DecodeError as e:
            return e.reason
        layout = np.empty(LAYOUT_SIZE, np.uint8)
        return compute_features(decoded, layout), layout, decoded.rgb

    def add(self, items: list[tuple], locators: list[str] | None = None) -> None:
        """Frames as (encoded bytes, event time, stream key[, the frame's ``predictions``[, the
        producer's context label]]), and where each can be read again (``locators``)."""
        results = list(self.pool.map(self._analyse, [item[0] for item in items]))
        images = []
        where = locators if locators is not None else [""] * len(items)
        for item, result, locator in zip(items, results, where, strict=True):
            if isinstance(result, str):
                self.out.add_error(result)
                continue
            _, ts, stream = item[:3]
            self.out.locators.append(locator)
            row, layout, rgb = result
            self.out.rows.append(row)
            self.out.layouts.append(layout)
            self.out.times.append(ts)
            self.out.streams.append(stream)
            self.out.predictions.append(derive(item[3]) if len(item) > 3 else None)
            self.out.labels.append(item[4] if len(item) > 4 else "")
            images.append(rgb)
        if self.embedder is not None and images:
            self.out.embeddings.extend(self.embedder.embed_many(images))


def make_reference(
    got: Collected,
    *,
    mask: np.ndarray | None = None,
    stream: str | None,
    source: str,
    config: Config,
    embedder: Embedder | None,
) -> Reference:
    """A reference from collected frames (those in ``mask``), fitted for ``config``
    (:func:`~monitor.reference.fit.fit_reference`): with embeddings, their PCA; with
    ``tests.run_length``, the calibrated threshold; with model outputs, their classes, confidences
    and probability vectors."""
    keep = np.flatnonzero(np.ones(len(got.rows), bool) if mask is None else mask)
    times = np.asarray(got.times, dtype=np.float64)[keep]
    if (
        got.ordered
    ):  # frames in time order: a topic's partitions interleave, a directory's names may not
        order = np.argsort(times, kind="stable")
        keep, times = keep[order], times[order]
    predictions = None
    if len(got.predictions) == len(got.rows):
        predictions = reference_predictions([got.predictions[i] for i in keep])
    embeddings = got.embedding_matrix()
    layouts = got.layout_matrix()
    locators = np.array(got.locators, dtype=str)[keep] if got.locators else None
    ref = Reference(
        features=got.matrix()[keep],
        feature_names=FEATURE_NAMES,
        stream=stream,
        source=source,
        time_range=(float(times[0]), float(times[-1]))
        if got.ordered and got.time_unit == "s" and len(times)
        else None,
        times=times if got.ordered else None,
        time_unit=got.time_unit,
        time_source=got.time_source,
        embeddings=None if embeddings is None else embeddings[keep],
        embedder=embedder.identity.to_dict() if embedder else None,
        predictions=predictions,
        contexts=np.array(got.contexts(config), dtype=str)[keep],
        locators=locators if locators is not None and np.any(locators != "") else None,
        layouts=None if layouts is None else layouts[keep],
    )
    return fit_reference(ref, config)


def build_embedder_from(config: Config) -> Embedder | None:
    """The configured embedder, or None when embeddings are off; problems fail here, at start."""
    e = config.embedding
    if not e.enabled:
        return None
    return build_embedder(
        e.kind,
        path=e.path or None,
        arch=e.arch or None,
        input_size=e.input_size or None,
        threads=e.threads or None,
        device=e.device,
        fp16=_FP16[e.fp16],
    )


def limits_from(config: Config) -> DecodeLimits:
    d = config.decode
    return DecodeLimits(
        max_encoded_bytes=d.max_encoded_bytes,
        max_pixels=d.max_pixels,
        analysis_size=d.analysis_size,
    )


class Progress:
    """One self-overwriting line on stderr when it is a terminal, a log line every 10 s
    otherwise."""

    def __init__(self, label: str, total: int | None, enabled: bool = True):
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self._start = self._last = time.monotonic()
        self._tty = sys.stderr.isatty()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last >= (0.2 if self._tty else 10.0)):
            self._last = now
            self._print(end="\r" if self._tty else "\n")

    def close(self) -> None:
        if self.enabled and self.done:
            self._print(end="\n")

    def _print(self, end: str) -> None:
        rate = self.done / max(time.monotonic() - self._start, 1e-9)
        of = f"/{self.total}" if self.total else ""
        print(
            f"{self.label}: {self.done}{of} frames ({rate:.0f}/s)",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def image_files(directory: str | Path) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise InputError(f"not a directory: {d}")
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def from_dir(
    directory: str | Path,
    config: Config,
    progress: bool = True,
    embedder: Embedder | None = None,
    chunk: int = 64,
    order: Literal["auto", "name", "none"] = "auto",
) -> Collected:
    """Every image below ``directory``, in file-name order, with its time
    (``timing.file_times``)."""
    return _from_files(
        image_files(directory), str(directory), config, progress, embedder, chunk, order
    )


def manifest_files(manifest: str | Path) -> list[Path]:
    """The image paths a manifest lists: one a line, relative to the manifest's directory unless
    absolute; blank lines and ``#`` comments are skipped."""
    path = Path(manifest)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read manifest {path}: {e}") from None
    entries = [line.strip() for line in lines]
    return [path.parent / e for e in entries if e and not e.startswith("#")]


def from_manifest(
    manifest: str | Path,
    config: Config,
    progress: bool = True,
    embedder: Embedder | None = None,
    chunk: int = 64,
    order: Literal["auto", "name", "none"] = "auto",
) -> Collected:
    """The images a manifest lists (:func:`manifest_files`), in its order. A listed file that does
    not exist is refused (a manifest read from the wrong directory would otherwise register a
    fraction of the set); one that exists but does not decode counts as an error, like a
    directory's."""
    files = manifest_files(manifest)
    if not files:
        raise InputError(f"manifest {manifest} lists no image paths")
    missing = [p for p in files if not p.is_file()]
    if missing:
        raise InputError(
            f"manifest {manifest}: {len(missing)} of {len(files)} listed files do not exist "
            f"(first: {missing[0]}); paths are relative to the manifest's directory"
        )
    return _from_files(files, str(manifest), config, progress, embedder, chunk, order)


def _from_files(
    files: list[Path],
    label: str,
    config: Config,
    progress: bool,
    embedder: Embedder | None,
    chunk: int,
    order: Literal["auto", "name", "none"],
) -> Collected:
    timing = file_times(files, order)
    times = timing.times if timing.times is not None else np.zeros(len(files))
    bar = Progress(label, len(files), progress)
    with ThreadPoolExecutor(config.decode.workers) as pool:
        collector = Collector(config, embedder, pool)
        collector.out.time_unit, collector.out.time_source = timing.unit, timing.source
        collector.out.ordered = timing.times is not None
        for i in range(0, len(files), chunk):
            items, where = [], []
            for path, ts in zip(files[i : i + chunk], times[i : i + chunk], strict=True):
                try:
                    items.append((path.read_bytes(), float(ts), ""))
                    where.append(path.resolve().as_uri())
                except OSError:
                    collector.out.add_error("unreadable")
            collector.add(items, where)
            bar.update(len(files[i : i + chunk]))
    bar.close()
    return collector.out


def from_video(
    path: str | Path,
    config: Config,
    progress: bool = True,
    embedder: Embedder | None = None,
    every: int = 1,
    max_frames: int | None = None,
    start_s: float = 0.0,
    quality: int = 90,
    chunk: int = 64,
) -> Collected:
    """Frames of a recorded clip (anything OpenCV reads), every ``every``-th one, at most
    ``max_frames``, timed by frame number over the clip's frame rate from ``start_s``. Each frame is
    JPEG-encoded first (``quality``), so it goes through exactly the decode and statistics that live
    frames from a camera go through."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot read video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if fps <= 0:
        raise InputError(f"{path}: the clip has no frame rate; give frames as a directory instead")
    bar = Progress(str(path), None, progress)
    clip = Path(path).resolve().as_uri()
    index = 0
    try:
        with ThreadPoolExecutor(config.decode.workers) as pool:
            collector = Collector(config, embedder, pool)
            collector.out.time_source = f"clip ({fps:g} fps)"
            items: list[tuple] = []
            where: list[str] = []
            while max_frames is None or len(collector.out.rows) + len(items) < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                if index % every == 0:
                    ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
                    if ok:
                        items.append((jpeg.tobytes(), start_s + index / fps, ""))
                        where.append(f"{clip}#frame={index}")
                    else:
                        collector.out.add_error("unencodable")
                index += 1
                if len(items) >= chunk:
                    collector.add(items, where)
                    bar.update(len(items))
                    items, where = [], []
            collector.add(items, where)
            bar.update(len(items))
    finally:
        cap.release()
    bar.close()
    return collector.out


def from_topic(
    config: Config,
    topic: str,
    start_s: float | None,
    end_s: float | None,
    progress: bool = True,
    embedder: Embedder | None = None,
    idle_timeout_s: float = 5.0,
) -> Collected:
    """Read ``topic`` between event times ``start_s`` and ``end_s`` (all of it when None) without
    joining a consumer group, and collect every frame's statistics and stream key."""
    from kafka import TopicPartition

    from monitor.pipeline.source import RecordError, make_consumer, parse_record
    from monitor.pipeline.streams import stream_key

    consumer = make_consumer(config.kafka, group_id=None, enable_auto_commit=False)
    try:
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        if not partitions:
            raise InputError(f"topic {topic!r} does not exist or has no partitions")
        consumer.assign(partitions)
        end_offsets = consumer.end_offsets(partitions)
        if start_s is not None:
            found = consumer.offsets_for_times({tp: int(start_s * 1000) for tp in partitions})
            for tp in partitions:
                o = found.get(tp)
                consumer.seek(tp, o.offset if o is not None else end_offsets[tp])
        else:
            consumer.seek_to_beginning(*partitions)
        bar = Progress(topic, None, progress)
        pool = ThreadPoolExecutor(config.decode.workers)
        collector = Collector(config, embedder, pool)
        idle_since = time.monotonic()
        while True:
            polled = consumer.poll(timeout_ms=500)
            if not polled:
                # end_offsets is only a lower bound on some brokers: stop when it is passed
                # and the broker has nothing more to give, or when nothing came for a while
                caught_up = all(consumer.position(tp) >= end_offsets[tp] for tp in partitions)
                if caught_up or time.monotonic() - idle_since >= idle_timeout_s:
                    break
                continue
            idle_since = time.monotonic()
            items, where = [], []
            for records in polled.values():
                for r in records:
                    try:
                        frame = parse_record(r, config.source)
                    except RecordError as e:
                        collector.out.add_error(e.reason)
                        continue
                    if (start_s is None or frame.ts >= start_s) and (
                        end_s is None or frame.ts <= end_s
                    ):
                        items.append(
                            (
                                frame.data,
                                frame.ts,
                                stream_key(frame, config.source),
                                frame.predictions,
                                frame.context,
                            )
                        )
                        where.append(frame.uri or f"kafka:{r.topic}/{r.partition}/{r.offset}")
                bar.update(len(records))
            collector.add(items, where)
        pool.shutdown()
        bar.close()
        return collector.out
    finally:
        consumer.close()
