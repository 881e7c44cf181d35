"""Soak: stream many small frames across many cameras through the real broker into `driftmon run`.

    python benchmarks/soak.py                      # 1,000,000 frames, 1,000 cameras
    python benchmarks/soak.py --frames 200000      # scaled down
    python benchmarks/soak.py --frames 50000 --rate 1500 --json out.json

What it measures, from outside the daemon (nothing in the daemon is instrumented for it):

- throughput: records the daemon finished (driftmon_frames_total, processed + dead-lettered) per
  second, between the first and the last record it finished;
- per-frame latency: the producer keeps the broker's CreateTime of every ``--sample``-th record (its
  partition, offset and timestamp, from the send acknowledgement). A probe reads the group's
  committed offsets every ``--probe-s`` seconds; a record's offsets are committed only after it was
  routed and evaluated, so "first probe at which committed > offset" minus its CreateTime is an
  upper bound of its produce-to-processed latency (resolution: the probe period plus a commit);
- resident memory of the daemon process (VmRSS from /proc), sampled every second with the frame
  count at that moment; growth per 100k frames is the least-squares slope of RSS against frames
  after ``--warmup`` (a fraction of the run).

The producer is paced at ``--rate`` frames/s (a separate process, so it competes for the CPUs like
a real fleet would not; on a 2-core machine the broker, the producer and the daemon share them).
Statistics only (embedding.enabled: false): the embedding stage is measured by
benchmarks/embed_throughput.py.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitor.sim.broker import Broker, free_port  # noqa: E402


def tiny_jpegs(n: int = 64, width: int = 64, height: int = 48) -> list[bytes]:
    from monitor.sim.fleet import encode

    rng = np.random.default_rng(7)
    out = []
    for i in range(n):
        base = np.full((height, width, 3), 80 + (i % 40), np.uint8)
        out.append(
            encode(base + rng.integers(0, 30, (height, width, 3), dtype=np.uint8), quality=80)
        )
    return out


def _producer(
    bootstrap: str, topic: str, frames: int, cameras: int, rate: float, sample: int, out: str
) -> None:
    from kafka import KafkaProducer

    jpegs = tiny_jpegs()
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024, acks=1
    )
    samples: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def keep(md):
        with lock:
            samples.append((md.partition, md.offset, md.timestamp))

    t0 = time.monotonic()
    for i in range(frames):
        cam = f"cam-{i % cameras:05d}"
        fut = producer.send(
            topic,
            key=cam.encode(),
            value=jpegs[(i * 7919) % len(jpegs)],
            headers=[("camera_id", cam.encode())],
        )
        if i % sample == 0:
            fut.add_callback(keep)
        if i % 500 == 499:
            ahead = (i + 1) / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    producer.close()
    Path(out).write_text(json.dumps({"samples": samples, "seconds": time.monotonic() - t0}))


def _scrape(port: int) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith("driftmon_frames_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--cameras", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--rate", type=float, default=1500.0, help="produced frames per second")
    ap.add_argument("--sample", type=int, default=50, help="keep the latency of every n-th frame")
    ap.add_argument("--probe-s", type=float, default=0.25)
    ap.add_argument(
        "--warmup", type=float, default=0.2, help="fraction of frames before memory is judged"
    )
    ap.add_argument("--max-poll-records", type=int, default=500)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)

    from monitor.config import config_from_dict
    from monitor.reference.collect import from_dir, make_reference
    from monitor.reference.store import ReferenceStore

    with tempfile.TemporaryDirectory() as tmp, Broker(log_path=f"{tmp}/tansu.log") as broker:
        tmp = Path(tmp)
        topic = "frames-soak"
        broker.create_topic(topic, args.partitions)
        broker.create_topic(f"{topic}.dlq", 1)
        (tmp / "ref").mkdir()
        for i, data in enumerate(tiny_jpegs() * 2):
            (tmp / "ref" / f"{i:04d}.jpg").write_bytes(data)
        cfg_ref = config_from_dict(
            {"embedding": {"enabled": False}, "decode": {"analysis_size": 64}}
        )
        store = ReferenceStore(tmp / "refs")
        store.add(
            make_reference(
                from_dir(tmp / "ref", cfg_ref, progress=False),
                stream=None,
                source="soak",
                config=cfg_ref,
                embedder=None,
            )
        )
        port = free_port()
        group = "soak"
        config = {
            "kafka": {
                "bootstrap_servers": [broker.bootstrap],
                "topics": [topic],
                "group_id": group,
                "dead_letter_topic": f"{topic}.dlq",
                "max_poll_records": args.max_poll_records,
                "fetch_max_wait_ms": 50,
                "lag_interval_s": 5,
            },
            "reference": {"path": str(store.path)},
            "embedding": {"enabled": False},
            "window": {"size": 100, "evaluate_every": 50},
            "decode": {"analysis_size": 64, "workers": 2},
            "http": {"port": port},
            "log_level": "ERROR",
        }
        (tmp / "soak.yaml").write_text(yaml.safe_dump(config))
        daemon = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "monitor.service.cli",
                "run",
                "--config",
                str(tmp / "soak.yaml"),
            ],
            stdout=open(tmp / "daemon.log", "wb"),
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    _scrape(port)
                    break
                except OSError:
                    if time.monotonic() > deadline or daemon.poll() is not None:
                        raise SystemExit(
                            f"daemon did not start:\n{(tmp / 'daemon.log').read_text()[-3000:]}"
                        ) from None
                    time.sleep(0.5)

            producer = mp.get_context("spawn").Process(
                target=_producer,
                args=(
                    broker.bootstrap,
                    topic,
                    args.frames,
                    args.cameras,
                    args.rate,
                    args.sample,
                    str(tmp / "produced.json"),
                ),
            )
            from kafka import KafkaConsumer, TopicPartition

            # a consumer of the group that never subscribes: it only reads the committed offsets
            reader = KafkaConsumer(
                bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False
            )
            tps = [TopicPartition(topic, p) for p in range(args.partitions)]
            probes: list[tuple[float, dict[int, int]]] = []
            memory: list[tuple[float, float, int]] = []  # (time, frames finished, RSS KiB)
            stop = threading.Event()

            def probe() -> None:
                while not stop.is_set():
                    try:
                        probes.append(
                            (time.time(), {tp.partition: reader.committed(tp) or 0 for tp in tps})
                        )
                    except Exception:  # noqa: BLE001 - a missed probe only coarsens the bound
                        pass
                    stop.wait(args.probe_s)

            prober = threading.Thread(target=probe, daemon=True)
            t_start = time.time()
            producer.start()
            prober.start()
            done = 0.0
            first_done_t = None
            last_print = 0.0
            while done < args.frames:
                if daemon.poll() is not None:
                    raise SystemExit(
                        "daemon exited "
                        f"{daemon.returncode}:\n{(tmp / 'daemon.log').read_text()[-3000:]}"
                    )
                now = time.time()
                done = _scrape(port)
                if done > 0 and first_done_t is None:
                    first_done_t = now
                memory.append((now, done, _rss_kib(daemon.pid)))
                if now - last_print > 30:
                    print(
                        f"[{now - t_start:6.0f}s] {done:,.0f} frames, RSS "
                        f"{memory[-1][2] / 1024:.0f} MiB",
                        flush=True,
                    )
                    last_print = now
                if now - t_start > 3 * args.frames / args.rate + 600:
                    raise SystemExit("soak did not finish in time")
                time.sleep(1.0)
            t_end = time.time()
            producer.join(60)
            time.sleep(2 * args.probe_s + 1)
            stop.set()
            prober.join(5)
            reader.close()
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()

        produced = json.loads((tmp / "produced.json").read_text())
        latencies = []
        times = np.array([t for t, _ in probes])
        for p, o, ts_ms in produced["samples"]:
            done_at = next((t for t, c in probes if c.get(p, 0) > o), None)
            if done_at is not None:
                latencies.append(done_at - ts_ms / 1000.0)
        lat = np.array(latencies)
        mem = np.array(memory, dtype=float)
        warm = mem[mem[:, 1] >= args.warmup * args.frames]
        # steady state: frames produced after the daemon had finished the warm-up share (the first
        # seconds include the group join, during which the producer builds a backlog)
        warm_t = warm[0, 0] if len(warm) else t_start
        steady = np.array(
            [
                done_at - ts_ms / 1000.0
                for (p, o, ts_ms) in produced["samples"]
                if ts_ms / 1000.0 >= warm_t
                for done_at in [next((t for t, c in probes if c.get(p, 0) > o), None)]
                if done_at is not None
            ]
        )
        slope = (
            float(np.polyfit(warm[:, 1], warm[:, 2], 1)[0]) * 100_000 / 1024
            if len(warm) > 2
            else float("nan")
        )
        figures = {
            "frames": args.frames,
            "cameras": args.cameras,
            "partitions": args.partitions,
            "rate_target": args.rate,
            "producer_seconds": round(produced["seconds"], 1),
            "throughput_fps": round(args.frames / (t_end - first_done_t), 1),
            "wall_seconds": round(t_end - t_start, 1),
            "latency_samples": int(len(lat)),
            "latency_probe_s": args.probe_s,
            "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
            "latency_p99_s": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
            "latency_max_s": round(float(lat.max()), 3) if len(lat) else None,
            "steady_latency_samples": int(len(steady)),
            "steady_latency_p50_s": round(float(np.percentile(steady, 50)), 3)
            if len(steady)
            else None,
            "steady_latency_p99_s": round(float(np.percentile(steady, 99)), 3)
            if len(steady)
            else None,
            "rss_start_mib": round(mem[0, 2] / 1024, 1),
            "rss_after_warmup_mib": round(warm[0, 2] / 1024, 1),
            "rss_end_mib": round(mem[-1, 2] / 1024, 1),
            "rss_max_mib": round(mem[:, 2].max() / 1024, 1),
            "rss_growth_mib_per_100k_frames_after_warmup": round(slope, 3),
            "probes": len(times),
            "machine": f"{os.cpu_count()} CPUs, {os.uname().machine}, CPU only",
        }
        print(json.dumps(figures, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
