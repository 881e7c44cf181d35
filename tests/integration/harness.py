"""Helpers for the fault, bad-input and security tests: a statistics-only reference, `driftmon run`
as a subprocess, frames with serial numbers, and readers for the dead-letter topic and the group's
committed offsets (the only evidence that survives a SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from monitor.config import config_from_dict
from monitor.reference.collect import from_dir, make_reference
from monitor.reference.store import ReferenceStore
from monitor.sim.broker import free_port
from monitor.sim.fleet import encode

DRIFTMON = [sys.executable, "-m", "monitor.service.cli"]
# Records whose value is this prefix + a serial number are not images: each is dead-lettered
# (reason unsupported_format), and its dead letter names its origin offset. Dead letters are
# acknowledged before the batch's offsets are committed, so they are an exact, kill-proof record
# of which batches a run finished.
MARKER = b"driftmon-test-marker #"


def tiny_jpeg(seed: int, width: int = 64, height: int = 48) -> bytes:
    """A small, valid JPEG whose statistics vary a little with ``seed``."""
    rng = np.random.default_rng(seed)
    base = np.full((height, width, 3), 96 + seed % 32, np.uint8)
    noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)
    return encode(base + noise, quality=80)


def stats_reference(tmp_path: Path, n: int = 60) -> Path:
    """A shared, statistics-only reference store (no embedder: nothing to load at start)."""
    frames = tmp_path / "ref-frames"
    frames.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (frames / f"{i:04d}.jpg").write_bytes(tiny_jpeg(i))
    config = config_from_dict({"embedding": {"enabled": False}, "decode": {"analysis_size": 64}})
    store = ReferenceStore(tmp_path / "refs")
    store.add(
        make_reference(
            from_dir(frames, config, progress=False),
            stream=None,
            source="test",
            config=config,
            embedder=None,
        )
    )
    return store.path


def serial_records(start: int, stop: int, cameras: int = 12, marker_every: int = 4):
    """Records ``start..stop-1``: frame i is from camera ``i % cameras``; every ``marker_every``-th
    is a marker (dead-lettered), the rest tiny valid JPEGs."""
    jpegs = [tiny_jpeg(s) for s in range(8)]
    for i in range(start, stop):
        cam = f"cam-{i % cameras:04d}".encode()
        headers = [("camera_id", cam), ("frame_id", f"f{i}".encode())]
        if marker_every and i % marker_every == marker_every - 1:
            yield cam, MARKER + str(i).encode(), headers
        else:
            yield cam, jpegs[i % len(jpegs)], headers


def produce(bootstrap: str, topic: str, records, *, pace_s: float = 0.0, chunk: int = 50) -> int:
    """Send ``records`` (key, value, headers), flushing every ``chunk`` (pausing ``pace_s``)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    n = 0
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers)
            n += 1
            if n % chunk == 0:
                producer.flush()
                if pace_s:
                    time.sleep(pace_s)
        producer.flush()
    finally:
        producer.close()
    return n


def read_all(bootstrap: str, topic: str, partitions: int = 1, idle_ms: int = 2500) -> list[Any]:
    """Every record of ``topic`` (read until ``idle_ms`` pass with nothing new)."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(
        bootstrap_servers=bootstrap,
        consumer_timeout_ms=idle_ms,
        fetch_max_wait_ms=20,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    reader.assign([TopicPartition(topic, p) for p in range(partitions)])
    records = list(reader)
    reader.close()
    return records


def dead_letters(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """The dead-letter topic ``<topic>.dlq`` as dicts of its driftmon_* headers plus the value."""
    out = []
    for r in read_all(bootstrap, f"{topic}.dlq"):
        h = {k: v.decode("utf-8", "replace") for k, v in r.headers}
        out.append(
            {
                "reason": h.get("driftmon_error_reason"),
                "error": h.get("driftmon_error"),
                "topic": h.get("driftmon_origin_topic"),
                "partition": int(h.get("driftmon_origin_partition", -1)),
                "offset": int(h.get("driftmon_origin_offset", -1)),
                "value": r.value,
                "key": r.key,
                "headers": h,
            }
        )
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (0 where nothing is committed)."""
    from kafka import KafkaConsumer, TopicPartition

    probe = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: probe.committed(TopicPartition(topic, p)) or 0 for p in range(partitions)}
    finally:
        probe.close()


def partition_records(bootstrap: str, topic: str, partitions: int) -> dict[int, list[Any]]:
    by_p: dict[int, list[Any]] = {p: [] for p in range(partitions)}
    for r in read_all(bootstrap, topic, partitions):
        by_p[r.partition].append(r)
    return by_p


class DaemonProcess:
    """``driftmon run`` as a user runs it: a subprocess with a YAML config, HTTP on a free port."""

    def __init__(
        self, tmp_path: Path, name: str, config: dict[str, Any], env: dict[str, str] | None = None
    ):
        self.port = free_port()
        config = json.loads(json.dumps(config))
        config.setdefault("http", {})["port"] = self.port
        self.config_path = tmp_path / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = tmp_path / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            DRIFTMON + ["run", "--config", str(self.config_path)],
            env=os.environ | (env or {}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=timeout
            ) as res:
                return res.status, res.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def status(self) -> dict[str, Any] | None:
        try:
            code, body = self.get("/status")
        except OSError:
            return None
        return json.loads(body) if code == 200 else None

    def metric(self, name: str, **labels: str) -> float:
        """A sample from /metrics (0 when absent)."""
        _, body = self.get("/metrics")
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in body.decode().splitlines():
            if line.startswith(want + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def handled(self) -> float:
        """Records this run finished (processed + dead-lettered), from /metrics."""
        return self.metric("driftmon_frames_total", outcome="processed") + self.metric(
            "driftmon_frames_total", outcome="dead_lettered"
        )

    def wait_for(self, predicate, timeout: float = 60.0, every: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (
                f"driftmon exited with {self.proc.returncode}:\n{self.output()}"
            )
            try:
                if predicate():
                    return True
            except OSError:
                pass
            time.sleep(every)
        return False

    def wait_serving(self, timeout: float = 60.0) -> None:
        assert self.wait_for(lambda: self.get("/healthz")[0] in (200, 503), timeout), self.output()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, grace_s: float) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=grace_s)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def run_config(bootstrap: str, topic: str, reference: Path, group: str, **overrides: Any) -> dict:
    """A small, statistics-only daemon configuration for a test topic."""
    cfg: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": [bootstrap],
            "topics": [topic],
            "group_id": group,
            "dead_letter_topic": f"{topic}.dlq",
            "fetch_max_wait_ms": 20,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "lag_interval_s": 0.5,
            "max_poll_records": 50,
        },
        "reference": {"path": str(reference)},
        "embedding": {"enabled": False},
        "window": {"size": 40, "evaluate_every": 20},
        "decode": {"analysis_size": 64, "workers": 2},
        "log_level": "WARNING",
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg
