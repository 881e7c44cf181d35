"""Whole-daemon throughput from the broker vs bare reduced decode of the same frames.

    python benchmarks/throughput.py [--frames 2000] [--width 1920 --height 1080] [--workers 1 2]
        [--camera-fps 5 --max-fps-per-stream 1]

1. Makes 1080p JPEGs from the synthetic fleet (real photographs, q90).
2. Bare decode: ``cv2.imdecode(..., IMREAD_REDUCED_COLOR_4)`` (1920 -> 480 px) of every frame, on
   as many threads as the daemon gets workers — the floor any pipeline pays.
3. The daemon: a real broker on loopback is filled with the same frames, then the daemon
   (in-process; statistics only, and statistics + embeddings) consumes them from the start;
   frames/s from its first to its last handled record, and the resident memory sampled during
   the run. With ``--camera-fps`` every camera's frames carry event times that far apart, and
   ``--max-fps-per-stream`` sets the daemon's analysis rate: records/s then counts the frames
   skipped by the rate (handled, not decoded) with those analysed.
4. Drift evaluation: every per-feature test of the engine on a 5,000-frame reference vs a
   1,000-frame window.

Prints every figure and the daemon/bare-decode ratio for each worker count, by wall time and by
CPU time per frame (the daemon's process: consumer, analysis, HTTP; the broker's CPU, which shares
these 2 cores here but not in production, is printed apart). Targets: statistics only >= 0.70 of
bare decode; statistics + embeddings >= 60 frames/s on 1080p.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import config_from_dict  # noqa: E402
from monitor.pipeline.engine import Engine  # noqa: E402
from monitor.pipeline.features import FEATURE_NAMES  # noqa: E402
from monitor.reference.collect import Collector, build_embedder_from, make_reference  # noqa: E402
from monitor.reference.store import Reference  # noqa: E402
from monitor.sim.broker import Broker  # noqa: E402
from monitor.sim.fleet import encode, make_fleet  # noqa: E402


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_frames(n_unique: int, width: int, height: int) -> list[tuple[str, bytes]]:
    fleet = make_fleet(8, seed=7, width=width, height=height, dynamics="iid")
    per_cam = max(1, n_unique // len(fleet))
    with ThreadPoolExecutor(2) as pool:
        jobs = [(cam, t) for t in range(per_cam) for cam in fleet]
        data = list(pool.map(lambda job: encode(job[0].frame(job[1])), jobs))
    return [(cam.camera_id, d) for (cam, _), d in zip(jobs, data, strict=True)]


def shared_reference(frames: list[tuple[str, bytes]], analysis_size: int, directory: Path) -> Path:
    """One shared reference of ``frames`` with embeddings, built the way ``driftmon reference
    build`` builds it, saved in ``directory``."""
    config = config_from_dict({"decode": {"analysis_size": analysis_size}})
    embedder = build_embedder_from(config)
    with ThreadPoolExecutor(2) as pool:
        collector = Collector(config, embedder, pool)
        collector.add([(d, 0.0, cam) for cam, d in frames])
    ref = make_reference(
        collector.out, stream=None, source="benchmark", config=config, embedder=embedder
    )
    return ref.save(directory / "ref.npz")


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time of this process (or ``pid``), all threads."""
    fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_decode_fps(frames: list[bytes], threads: int, rounds: int = 3) -> tuple[float, float]:
    """Best frames/s over ``rounds``, and CPU ms per frame."""

    def one(data: bytes) -> np.ndarray:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_4)

    best = 0.0
    cpu0 = cpu_seconds()
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(rounds):
            t = time.perf_counter()
            list(pool.map(one, frames))
            best = max(best, len(frames) / (time.perf_counter() - t))
    return best, (cpu_seconds() - cpu0) * 1000 / (rounds * len(frames))


def daemon_fps(
    broker: Broker,
    frames: list[tuple[str, bytes]],
    total: int,
    workers: int,
    reference_path: str,
    analysis_size: int,
    embeddings: bool,
    camera_fps: float = 0.0,
    max_fps_per_stream: float = 0.0,
    client: str = "kafka-python",
) -> tuple[float, list[float], float, float]:
    from kafka import KafkaProducer
    from prometheus_client import CollectorRegistry

    from monitor.service.daemon import Daemon

    topic = f"bench-{workers}-{int(embeddings)}-{int(time.time())}"
    broker.create_topic(topic, partitions=4)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, linger_ms=20, max_request_size=16 << 20
    )
    sent: dict[str, int] = {}  # per camera, for its frames' event times
    start_ms = int(time.time() * 1000)
    for i in range(total):
        cam, data = frames[i % len(frames)]
        headers = [("camera_id", cam.encode())]
        if camera_fps:
            ts_ms = start_ms + int(sent.get(cam, 0) * 1000 / camera_fps)
            headers.append(("ts", str(ts_ms).encode()))
        sent[cam] = sent.get(cam, 0) + 1
        producer.send(topic, key=cam.encode(), value=data, headers=headers)
    producer.flush()
    producer.close()

    config = config_from_dict(
        {
            "kafka": {
                "bootstrap_servers": [broker.bootstrap],
                "topics": [topic],
                "group_id": topic,
                "fetch_max_wait_ms": 20,
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000,
                "max_poll_records": 200,
                "dead_letter_topic": "",
                "client": client,
            },
            "reference": {"path": reference_path},
            "decode": {"workers": workers, "analysis_size": analysis_size},
            "embedding": {"enabled": embeddings},
            "window": {"size": 200, "evaluate_every": 50},
            "source": {"max_fps_per_stream": max_fps_per_stream},
            "http": {"port": 0},
        }
    )
    registry = CollectorRegistry()
    daemon = Daemon(config, registry=registry)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()

    def processed() -> float:  # analysed, or skipped by the analysis rate
        return sum(
            registry.get_sample_value("driftmon_frames_total", {"outcome": outcome}) or 0.0
            for outcome in ("processed", "rate_limited")
        )

    while processed() == 0:  # group join, first fetch
        time.sleep(0.01)
    start, start_count = time.perf_counter(), processed()
    cpu0, broker0 = cpu_seconds(), cpu_seconds(broker.pid)
    memory = []
    next_sample = 0.0
    while processed() < total:
        now = time.perf_counter()
        if now >= next_sample:
            memory.append(rss_mib())
            next_sample = now + 0.5
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    n = total - start_count
    cpu_ms = (cpu_seconds() - cpu0) * 1000 / n
    broker_ms = (cpu_seconds(broker.pid) - broker0) * 1000 / n
    memory.append(rss_mib())
    daemon.stop()
    thread.join(timeout=30)
    return n / elapsed, memory, cpu_ms, broker_ms


def evaluation_ms(repeats: int = 30) -> float:
    rng = np.random.default_rng(0)
    config = config_from_dict({"embedding": {"enabled": False}})
    engine = Engine(config, FEATURE_NAMES)
    ref = Reference(
        features=rng.normal(size=(5000, len(FEATURE_NAMES))).astype(np.float32),
        feature_names=FEATURE_NAMES,
    )
    fitted = engine.prepare(ref)
    window = rng.normal(size=(1000, len(FEATURE_NAMES))).astype(np.float32)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        engine.run_tests(fitted, window)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=2000, help="records the daemon consumes per run")
    p.add_argument("--unique", type=int, default=240, help="distinct JPEGs (cycled to --frames)")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--analysis-size", type=int, default=480)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument(
        "--embeddings",
        type=lambda v: v == "on",
        nargs="+",
        default=[False, True],
        metavar="{off,on}",
        help="run the daemon without and/or with embeddings",
    )
    p.add_argument(
        "--camera-fps",
        type=float,
        default=0.0,
        help="event times per camera this far apart (ts headers); 0: none (record timestamps)",
    )
    p.add_argument(
        "--max-fps-per-stream",
        type=float,
        default=0.0,
        help="the daemon's source.max_fps_per_stream (0: every frame analysed)",
    )
    p.add_argument(
        "--client",
        nargs="+",
        default=["kafka-python"],
        choices=["kafka-python", "confluent"],
        help="the daemon's kafka.client (each one is run)",
    )
    args = p.parse_args()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}, opencv {cv2.__version__}, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    frames = make_frames(args.unique, args.width, args.height)
    sizes = [len(d) for _, d in frames]
    print(
        f"{len(frames)} distinct {args.width}x{args.height} JPEGs, mean "
        f"{np.mean(sizes) / 1024:.0f} KiB"
    )

    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        ref_path = shared_reference(frames, args.analysis_size, Path(tmp))
        print(
            f"\n{'mode':>12} {'workers':>7} {'bare fps':>9} {'daemon fps':>11} {'ratio':>6} "
            f"{'bare CPU ms':>12} {'daemon CPU ms':>14} {'CPU ratio':>9} {'broker CPU ms':>14} "
            f"{'RSS MiB':>12}"
        )
        for client, embeddings, workers in [
            (c, e, w) for c in args.client for e in args.embeddings for w in args.workers
        ]:
            # bare decode measured before and after the daemon run: the machine's load drifts
            before, cpu_before = bare_decode_fps([d for _, d in frames], workers)
            fps, memory, cpu_ms, broker_ms = daemon_fps(
                broker,
                frames,
                args.frames,
                workers,
                str(ref_path),
                args.analysis_size,
                embeddings,
                args.camera_fps,
                args.max_fps_per_stream,
                client,
            )
            after, cpu_after = bare_decode_fps([d for _, d in frames], workers)
            bare, bare_cpu = (before + after) / 2, (cpu_before + cpu_after) / 2
            mode = ("stats+embed" if embeddings else "stats") + (
                "/ck" if client == "confluent" else ""
            )
            print(
                f"{mode:>12} {workers:>7} {bare:>9.1f} {fps:>11.1f} {fps / bare:>6.2f} "
                f"{bare_cpu:>12.2f} {cpu_ms:>14.2f} {bare_cpu / cpu_ms:>9.2f} "
                f"{broker_ms:>14.2f} {memory[0]:>5.0f}..{memory[-1]:<5.0f}",
                flush=True,
            )
    print(
        f"\ndrift evaluation, all per-feature tests, 5000 ref x 1000 window x {len(FEATURE_NAMES)} "
        f"features: {evaluation_ms():.1f} ms (median of 30)"
    )


if __name__ == "__main__":
    main()
