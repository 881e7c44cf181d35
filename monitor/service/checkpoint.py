"""Checkpoint stores: per-stream state, serialised, that survives restarts and rebalances.

A checkpoint is written before the offsets it covers are committed, and each stream's state
records the last offset it absorbed per partition, so frames re-read after a crash are skipped
instead of counted twice: a restart neither forgets a drift in progress nor double-counts.

Two stores: a directory (one file per stream, atomic replace; put it on a volume) and a compacted
Kafka topic keyed by stream (what lets another replica take a camera over after a rebalance).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from monitor.config import CheckpointConfig, KafkaConfig
from monitor.files import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

#: The longest stream file name kept readable (quoted); longer ones are hashed.
MAX_FILE_STEM = 200
_HASHED = "%sha256-"


class CheckpointStore(Protocol):
    def load_all(self) -> dict[str, bytes]:
        """The newest saved state of every stream."""

    def save(self, states: dict[str, bytes]) -> None:
        """Persist ``states``; durable when it returns."""

    def close(self) -> None: ...


class FileCheckpointStore:
    """One file per stream, named by the quoted stream name; a name too long for a file (a
    directory entry holds 255 bytes) becomes ``%sha256-<digest>``, with the stream's name in a
    ``.key`` file beside it. ``quote`` never writes ``%s``, so the two kinds cannot meet."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def load_all(self) -> dict[str, bytes]:
        states = {}
        for p in self.path.glob("*.state"):
            if p.stem.startswith(_HASHED):
                key = p.with_suffix(".key")
                if not key.is_file():
                    continue  # its name not written yet: a save that did not finish
                stream = key.read_text(encoding="utf-8")
            else:
                stream = unquote(p.stem)
            states[stream] = p.read_bytes()
        return states

    def save(self, states: dict[str, bytes]) -> None:
        for stream, data in states.items():
            name = quote(stream, safe="")
            if len(name) > MAX_FILE_STEM:
                name = _HASHED + hashlib.sha256(stream.encode()).hexdigest()
                key = self.path / f"{name}.key"
                if not key.is_file():
                    atomic_write_text(key, stream)
            atomic_write_bytes(self.path / f"{name}.state", data)

    def close(self) -> None:
        pass


class KafkaCheckpointStore:
    """A compacted topic keyed by stream: the newest record of a key is that stream's state."""

    def __init__(self, kafka: KafkaConfig, topic: str):
        from monitor.pipeline.source import make_producer

        self.kafka = kafka
        self.topic = topic
        self._ensure_topic()
        self._producer = make_producer(kafka, max_request_size=16 << 20)

    def _ensure_topic(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(**self.kafka.client_options())
        try:
            admin.create_topics(
                [NewTopic(self.topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
            )
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def load_all(self, idle_timeout_s: float = 5.0) -> dict[str, bytes]:
        from kafka import TopicPartition

        from monitor.pipeline.source import make_consumer

        consumer = make_consumer(self.kafka, group_id=None, max_partition_fetch_bytes=16 << 20)
        states: dict[str, bytes] = {}
        try:
            partitions = [
                TopicPartition(self.topic, p)
                for p in sorted(consumer.partitions_for_topic(self.topic) or [])
            ]
            if not partitions:
                return states
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            end = consumer.end_offsets(partitions)
            idle_since = time.monotonic()
            while True:
                polled = consumer.poll(timeout_ms=200)
                if polled:
                    idle_since = time.monotonic()
                    for records in polled.values():
                        for r in records:
                            if r.key is not None:
                                states[r.key.decode()] = r.value
                    continue
                # end_offsets is a lower bound on some brokers: stop when past it and quiet
                if (
                    all(consumer.position(tp) >= end[tp] for tp in partitions)
                    or time.monotonic() - idle_since >= idle_timeout_s
                ):
                    return states
        finally:
            consumer.close()

    def save(self, states: dict[str, bytes]) -> None:
        futures = [
            self._producer.send(self.topic, key=stream.encode(), value=data)
            for stream, data in states.items()
        ]
        self._producer.flush()
        for f in futures:
            f.get(timeout=30)  # not acknowledged: the offsets it covers must not be committed

    def close(self) -> None:
        self._producer.close()


def open_store(config: CheckpointConfig, kafka: KafkaConfig) -> CheckpointStore | None:
    if config.store == "file":
        return FileCheckpointStore(config.path)
    if config.store == "kafka":
        return KafkaCheckpointStore(kafka, config.topic)
    return None
