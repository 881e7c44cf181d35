"""The daemon's consumer on librdkafka (``kafka.client: confluent``), behind the part of
kafka-python's ``KafkaConsumer`` interface the daemon uses.

Why: kafka-python receives a fetch 4 KiB at a time and copies each record several times in
Python, ~0.67 CPU ms per 300 KB frame; librdkafka does it in C, ~0.14 ms (docs/benchmarks.md). With
``source.max_fps_per_stream`` most records are fetched only to be counted, so the fetch is the
largest cost per record that remains.

Semantics kept: records keep kafka-python's shape (``topic``, ``partition``, ``offset``,
``timestamp`` in ms, ``key``, ``value``, ``headers``), partitions are kafka-python
``TopicPartition``s, committed offsets are the next offset to read, failures raise kafka-python's
``KafkaError`` (what the daemon retries and counts), and the rebalance listener runs inside
``poll`` on the calling thread, before the partitions move.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from monitor.config import KafkaConfig
from monitor.errors import ConfigError

log = logging.getLogger(__name__)

BROKER_PROBE_S = 5.0  # how often brokers reported all down are asked again


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record, shaped like kafka-python's ``ConsumerRecord``."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms since the epoch (-1: none)
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def client_config(kafka: KafkaConfig) -> dict[str, Any]:
    """librdkafka's names for the settings ``make_consumer`` gives kafka-python."""
    conf: dict[str, Any] = {
        "bootstrap.servers": ",".join(kafka.bootstrap_servers),
        "client.id": kafka.client_id,
        "group.id": kafka.group_id,
        "enable.auto.commit": False,  # offsets are committed only after a batch is processed
        "auto.offset.reset": kafka.auto_offset_reset,
        "fetch.wait.max.ms": kafka.fetch_max_wait_ms,
        "max.partition.fetch.bytes": kafka.max_partition_fetch_bytes,
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
        "max.poll.interval.ms": kafka.max_poll_interval_ms,
        # kafka-python's default assignors, so a mixed group during a client switch agrees
        "partition.assignment.strategy": "range,roundrobin",
        # prefetch at most this much per partition (librdkafka's default is 64 MiB), and fetch
        # again soon after the daemon drains it (the default waits a second)
        "queued.max.messages.kbytes": 16 * 1024,
        "fetch.queue.backoff.ms": 10,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        conf |= {
            "sasl.mechanism": kafka.sasl_mechanism,
            "sasl.username": kafka.sasl_username,
            "sasl.password": kafka.sasl_password,
        }
    for ours, theirs in (
        ("ssl_cafile", "ssl.ca.location"),
        ("ssl_certfile", "ssl.certificate.location"),
        ("ssl_keyfile", "ssl.key.location"),
    ):
        if getattr(kafka, ours):
            conf[theirs] = getattr(kafka, ours)
    if kafka.security_protocol.endswith("SSL"):
        conf["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_check_hostname else "none"
        )
    return conf


def _import() -> Any:
    try:
        import confluent_kafka
    except ImportError:
        raise ConfigError(
            "kafka.client: 'confluent' needs the confluent-kafka package "
            "(pip install 'driftmon[confluent]')"
        ) from None
    return confluent_kafka


class ConfluentConsumer:
    """A group consumer on librdkafka with the daemon's subset of kafka-python's interface."""

    def __init__(self, kafka: KafkaConfig):
        ck = _import()
        self._ck = ck
        self._joined = False
        self._brokers_down = False
        self._next_probe = 0.0
        self._consumer = ck.Consumer(client_config(kafka) | {"error_cb": self._on_error})

    # --- group membership ---------------------------------------------------------------

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        def assigned(_: Any, partitions: list[Any]) -> None:
            self._joined, self._brokers_down = True, False
            if listener is not None:
                listener.on_partitions_assigned({_tp(p) for p in partitions})

        def revoked(_: Any, partitions: list[Any]) -> None:
            # also called when the partitions are lost: no heartbeat answered within the session
            # timeout (a dead or frozen coordinator); not connected until the next assignment
            self._joined = False
            if listener is not None:
                listener.on_partitions_revoked({_tp(p) for p in partitions})

        self._consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked)

    def connected(self) -> bool:
        """Holding an assignment, and the brokers not all down since (librdkafka retries by
        itself). While they are down, a metadata request every few seconds tells when they are
        back, also on a feed that sends nothing."""
        if self._brokers_down and time.monotonic() >= self._next_probe:
            self._next_probe = time.monotonic() + BROKER_PROBE_S
            try:
                self._consumer.list_topics(timeout=1.0)
                self._brokers_down = False
            except self._ck.KafkaException:
                pass
        return self._joined and not self._brokers_down

    def _on_error(self, error: Any) -> None:
        code = error.code()
        if code == self._ck.KafkaError._ALL_BROKERS_DOWN:
            self._brokers_down = True
        log.warning("kafka: %s", error)

    # --- records ------------------------------------------------------------------------

    def poll(self, timeout_ms: int = 0, max_records: int = 500) -> dict[TopicPartition, list]:
        # kafka-python's poll returns as soon as records are there; librdkafka's consume waits
        # for max_records or the timeout: take what is buffered, else wait for the first one only
        messages = self._consumer.consume(max_records, 0)
        if not messages:
            messages = self._consumer.consume(1, timeout_ms / 1000)
            if messages and max_records > 1:
                messages += self._consumer.consume(max_records - 1, 0)
        polled: dict[TopicPartition, list[Record]] = {}
        for m in messages:
            error = m.error()
            if error is not None:
                if error.fatal():
                    raise KafkaError(f"kafka: {error.str()}")
                log.warning("kafka: %s", error.str())  # transient; librdkafka recovers
                continue
            topic, partition = m.topic(), m.partition()
            tp = TopicPartition(topic, partition)
            batch = polled.get(tp)
            if batch is None:
                batch = polled[tp] = []
            batch.append(
                Record(
                    topic,
                    partition,
                    m.offset(),
                    m.timestamp()[1],
                    m.key(),
                    m.value(),
                    m.headers() or [],
                )
            )
        if messages:
            self._brokers_down = False
        return polled

    # --- offsets ------------------------------------------------------------------------

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self._commit(offsets, asynchronous=False)

    def commit_async(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self._commit(offsets, asynchronous=True)

    def _commit(self, offsets: dict[TopicPartition, OffsetAndMetadata], asynchronous: bool) -> None:
        partitions = [
            self._ck.TopicPartition(tp.topic, tp.partition, o.offset) for tp, o in offsets.items()
        ]
        try:
            done = self._consumer.commit(offsets=partitions, asynchronous=asynchronous)
        except self._ck.KafkaException as e:
            raise KafkaError(f"commit failed: {e}") from None
        for p in done or []:
            if p.error is not None:
                raise KafkaError(f"commit of {p.topic}[{p.partition}] failed: {p.error}")

    def assignment(self) -> set[TopicPartition]:
        return {_tp(p) for p in self._consumer.assignment()}

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end as of the last fetch (no request to the broker), or None."""
        _, high = self._consumer.get_watermark_offsets(
            self._ck.TopicPartition(tp.topic, tp.partition), cached=True
        )
        return high if high >= 0 else None

    def position(self, tp: TopicPartition) -> int:
        (p,) = self._consumer.position([self._ck.TopicPartition(tp.topic, tp.partition)])
        if p.offset < 0:
            raise KafkaError(f"no position yet for {tp.topic}[{tp.partition}]")
        return int(p.offset)

    def close(self) -> None:
        self._consumer.close()  # leaves the group at once


def _tp(p: Any) -> TopicPartition:
    return TopicPartition(p.topic, p.partition)
