"""Checkpoint stores: per-stream state, serialised, that survives restarts and rebalances.

A checkpoint is written before the offsets it covers are committed, and each stream's state
records the last offset it absorbed per partition, so frames re-read after a crash are skipped
instead of counted twice: a restart neither forgets a drift in progress nor double-counts.

Two stores: a directory (one file per stream, atomic replace; put it on a volume) and a compacted
Kafka topic keyed by stream (what lets another replica take a camera over after a rebalance).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from monitor.config import CheckpointConfig, KafkaConfig

log = logging.getLogger(__name__)


class CheckpointStore(Protocol):
    def load_all(self) -> dict[str, bytes]:
        """The newest saved state of every stream."""

    def save(self, states: dict[str, bytes]) -> None:
        """Persist ``states``; durable when it returns."""

    def close(self) -> None: ...


class FileCheckpointStore:
    def __init__(self, path: str):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def load_all(self) -> dict[str, bytes]:
        return {unquote(p.stem): p.read_bytes() for p in self.path.glob("*.state")}

    def save(self, states: dict[str, bytes]) -> None:
        for stream, data in states.items():
            target = self.path / f"{quote(stream, safe='')}.state"
            tmp = target.with_suffix(".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(target)

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
