"""One replica against a live fleet: does it keep up, and what does each record cost?

    python benchmarks/fleet_throughput.py [--cameras 300] [--camera-fps 5] [--analysis-fps 1]
        [--minutes 30] [--client confluent] [--partitions 8]

A producer process publishes every camera's 1080p JPEGs (real photographs from the synthetic
fleet, q90, ~300 KB) in real time, ``--camera-fps`` frames per camera per second with event-time
headers, into a topic on the embedded broker (Tansu, on this machine). The daemon runs in this
process with the defaults a user gets (statistics + the default embedding, the calibrated tests),
``source.max_fps_per_stream = --analysis-fps`` and ``kafka.client = --client``. Every 10 s the
consumer lag (records published minus records the daemon handled) and the CPU of the daemon, the
broker and the producer are sampled.

The replica keeps up when the lag stays flat: the report gives the lag's slope over the second
half of the run (records per minute; a replica that falls behind grows it by its deficit every
minute) and the CPU per offered record of each process. The broker and the producer share the
machine's cores here; in production they run elsewhere.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import cpu_seconds, make_frames, rss_mib, shared_reference  # noqa: E402

from monitor.config import config_from_dict  # noqa: E402
from monitor.sim.broker import Broker  # noqa: E402


def publish(
    bootstrap: str,
    topic: str,
    frames: list[tuple[str, bytes]],
    cameras: int,
    fps: float,
    seconds: float,
    sent: mp.Value,  # type: ignore[valid-type]
    stop: mp.Event,  # type: ignore[valid-type]
    claim_checks: list[str] | None = None,
) -> None:
    """Every camera publishes ``fps`` frames a second for ``seconds``, spread evenly over each
    tick (cameras are not in phase), with event times from the wall clock: the JPEG itself, or
    with ``claim_checks`` a JSON envelope naming its file."""
    import json

    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 5,
            "message.max.bytes": 16 << 20,
            "queue.buffering.max.kbytes": 1 << 20,
        }
    )
    ids = [f"cam-{i:04d}" for i in range(cameras)]
    t0 = time.time()
    tick = 1.0 / fps
    n = 0
    k = 0
    while not stop.is_set() and time.time() - t0 < seconds:
        for i, cam in enumerate(ids):
            due = t0 + k * tick + tick * i / cameras
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            j = (k * cameras + i) % len(frames)
            ts = str(int(due * 1000)).encode()
            headers = [("camera_id", cam), ("ts", ts)]
            data = frames[j][1]
            if claim_checks is not None:
                data = json.dumps({"camera_id": cam, "uri": claim_checks[j]}).encode()
                headers.append(("content-type", b"application/json"))
            while True:
                try:
                    producer.produce(topic, value=data, key=cam.encode(), headers=headers)
                    break
                except BufferError:  # the broker is behind: wait for deliveries
                    producer.poll(0.05)
            n += 1
            if n % 100 == 0:
                producer.poll(0)
                sent.value = n
        k += 1
    producer.flush(60)
    sent.value = n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=300)
    p.add_argument("--camera-fps", type=float, default=5.0)
    p.add_argument("--analysis-fps", type=float, default=1.0, help="source.max_fps_per_stream")
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--client", default="confluent", choices=["kafka-python", "confluent"])
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="decode.workers")
    p.add_argument("--unique", type=int, default=120, help="distinct JPEGs, cycled")
    p.add_argument(
        "--claim-checks",
        action="store_true",
        help="publish JSON envelopes naming the JPEG's file (a claim check) instead of the JPEG: "
        "the embedded broker keeps topics in memory, so 1080p frames inline fill this machine's "
        "24 GiB in minutes",
    )
    args = p.parse_args()
    offered = args.cameras * args.camera_fps
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}; "
        f"{args.cameras} cameras x {args.camera_fps:g} fps = {offered:.0f} records/s offered, "
        f"{args.cameras * args.analysis_fps:.0f} analysed/s; client {args.client}"
        + ("; claim checks" if args.claim_checks else "; frames inline"),
        flush=True,
    )
    frames = make_frames(args.unique, 1920, 1080)
    print(
        f"{len(frames)} distinct JPEGs, mean {np.mean([len(d) for _, d in frames]) / 1024:.0f} KiB"
    )

    from prometheus_client import CollectorRegistry

    from monitor.service.daemon import Daemon

    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        ref_path = shared_reference(frames, config_from_dict({}).decode.analysis_size, Path(tmp))
        uris = None
        if args.claim_checks:
            images = Path(tmp) / "frames"
            images.mkdir()
            uris = []
            for j, (_, data) in enumerate(frames):
                (images / f"{j}.jpg").write_bytes(data)
                uris.append((images / f"{j}.jpg").as_uri())
        topic = "fleet"
        broker.create_topic(topic, partitions=args.partitions)
        config = config_from_dict(
            {
                "kafka": {
                    "bootstrap_servers": [broker.bootstrap],
                    "topics": [topic],
                    "group_id": "fleet",
                    "fetch_max_wait_ms": 20,
                    "session_timeout_ms": 6000,
                    "heartbeat_interval_ms": 1000,
                    "dead_letter_topic": "",
                    "client": args.client,
                },
                "reference": {"path": str(ref_path)},
                "decode": {"workers": args.workers},
                "source": {
                    "max_fps_per_stream": args.analysis_fps,
                    "allowed_roots": [str(Path(tmp) / "frames")] if uris else [],
                },
                "http": {"port": 0},
                "log_level": "WARNING",
            }
        )
        registry = CollectorRegistry()
        daemon = Daemon(config, registry=registry)
        thread = threading.Thread(target=daemon.run, daemon=True)
        thread.start()

        def handled() -> float:
            return sum(
                registry.get_sample_value("driftmon_frames_total", {"outcome": o}) or 0.0
                for o in ("processed", "rate_limited", "dead_lettered")
            )

        ctx = mp.get_context("spawn")
        sent, stop = ctx.Value("q", 0), ctx.Event()
        seconds = args.minutes * 60
        producer = ctx.Process(
            daemon=True,  # dies with this process: never left publishing into a broker alone
            target=publish,
            args=(
                broker.bootstrap,
                topic,
                frames,
                args.cameras,
                args.camera_fps,
                seconds,
                sent,
                stop,
                uris,
            ),
        )
        producer.start()
        start = time.time()
        cpu0 = (cpu_seconds(), cpu_seconds(broker.pid), cpu_seconds(producer.pid))
        samples = []  # (elapsed s, published, handled, lag)
        producer_cpu = cpu0[2]
        print(
            f"\n{'t (s)':>6} {'published':>10} {'handled':>9} {'lag':>7} {'RSS MiB':>8}", flush=True
        )
        try:
            while True:
                time.sleep(10)
                if not producer.is_alive():  # done publishing: a catch-up is not the steady state
                    break
                elapsed, published, done = time.time() - start, sent.value, handled()
                try:
                    producer_cpu = cpu_seconds(producer.pid)
                except OSError:  # it has just exited
                    pass
                samples.append((elapsed, published, done, published - done))
                print(
                    f"{elapsed:>6.0f} {published:>10} {done:>9.0f} {published - done:>7.0f} "
                    f"{rss_mib():>8.0f}",
                    flush=True,
                )
            cpu1 = (cpu_seconds(), cpu_seconds(broker.pid), producer_cpu)
        finally:
            stop.set()
            producer.join(60)
            daemon.stop()
            thread.join(timeout=60)

    elapsed, published, done, _ = samples[-1]
    half = [s for s in samples if s[0] >= elapsed / 2]
    slope = (
        np.polyfit([s[0] for s in half], [s[3] for s in half], 1)[0] * 60 if len(half) > 1 else 0
    )
    daemon_ms = (cpu1[0] - cpu0[0]) * 1000 / max(done, 1)
    broker_ms = (cpu1[1] - cpu0[1]) * 1000 / max(published, 1)
    producer_ms = (cpu1[2] - cpu0[2]) * 1000 / max(published, 1)
    print(
        f"\n{args.cameras} cameras x {args.camera_fps:g} fps, {args.client}: published "
        f"{published / elapsed:.0f}/s (offered {offered:.0f}/s), handled {done / elapsed:.0f}/s; "
        f"lag at the end {samples[-1][3]:.0f} records, slope over the second half "
        f"{slope:+.0f} records/min; daemon CPU {daemon_ms:.2f} ms per handled record, broker "
        f"{broker_ms:.2f} ms and producer {producer_ms:.2f} ms per published record; "
        + ("KEEPS UP" if abs(slope) < 0.01 * offered * 60 else "FALLS BEHIND"),
        flush=True,
    )


if __name__ == "__main__":
    main()
