"""What fetching a 1080p frame from Kafka costs, per client, with the consumer doing nothing else.

    python benchmarks/consumer_fetch.py [--records 3000] [--size-kib 300] [--rounds 2]

Fills a 4-partition topic on the embedded broker (Tansu, this machine) with ``--records`` random
values of ``--size-kib`` (a 1080p JPEG is ~300 KiB), then reads them all from the start with
kafka-python's ``KafkaConsumer`` and with librdkafka's (``confluent-kafka``) consumer, alternately,
``--rounds`` times each. Prints records/s and the process's CPU ms per record (all threads: both
clients fetch on background threads). This is the floor of a record that the daemon's analysis rate
skips (``source.max_fps_per_stream``): it is fetched, counted and committed, never decoded.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.sim.broker import Broker  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def kafka_python(bootstrap: str, topic: str, n: int) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=8 << 20,
    )
    seen = 0
    while seen < n:
        seen += sum(len(b) for b in consumer.poll(timeout_ms=1000, max_records=500).values())
    consumer.close()


def confluent(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fetch-benchmark",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "max.partition.fetch.bytes": 8 << 20,
            "queued.max.messages.kbytes": 16 << 10,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    seen = 0
    while seen < n:
        seen += sum(m.error() is None for m in consumer.consume(500, 1.0))
    consumer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=3000)
    p.add_argument("--size-kib", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    from kafka import KafkaProducer

    value = os.urandom(args.size_kib * 1024)
    with Broker() as broker:
        broker.create_topic("fetch", partitions=4)
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap, linger_ms=20, max_request_size=16 << 20
        )
        for i in range(args.records):
            producer.send("fetch", key=b"cam-%03d" % (i % 300), value=value)
        producer.flush()
        producer.close()
        print(f"{args.records} records of {args.size_kib} KiB, load {os.getloadavg()[0]:.1f}")
        for _ in range(args.rounds):
            for name, read in (("kafka-python", kafka_python), ("confluent-kafka", confluent)):
                t, c = time.perf_counter(), cpu()
                read(broker.bootstrap, "fetch", args.records)
                wall, used = time.perf_counter() - t, cpu() - c
                print(
                    f"{name:>16}: {args.records / wall:7.0f} records/s, "
                    f"{used * 1000 / args.records:.3f} CPU ms per record",
                    flush=True,
                )


if __name__ == "__main__":
    main()
