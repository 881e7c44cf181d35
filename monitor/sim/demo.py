"""``driftmon demo``: the whole system on one laptop, no cluster.

Starts the embedded broker, a synthetic fleet of cameras made from real photographs, builds a
reference per camera with ``reference build``'s own code, runs the daemon, and after a while
drifts some cameras (dusk, defocus, noise, a knocked camera) while the others stay healthy. Now
and then a camera sends a truncated JPEG, which the daemon dead-letters without stopping.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from monitor.sim.broker import Broker
from monitor.reference.collect import build_embedder_from, from_dir, make_reference
from monitor.config import config_from_dict
from monitor.service.daemon import Daemon
from monitor.sim.fleet import Camera, encode, make_fleet
from monitor.reference.store import ReferenceStore

WIDTH, HEIGHT = 960, 540
REFERENCE_FRAMES = 150
# (camera index, shift, severity): applied after --drift-after seconds
DRIFTS = ((1, "dusk", 3), (3, "defocus_blur", 3), (5, "gaussian_noise", 3), (7, "knocked", 3))
CORRUPT_EVERY = 150  # one truncated JPEG per this many frames


def demo_config(bootstrap: str, reference: str, port: int) -> dict:
    return {
        "kafka": {"bootstrap_servers": [bootstrap], "topics": ["frames"], "group_id": "driftmon-demo",
                  "dead_letter_topic": "driftmon.deadletter", "fetch_max_wait_ms": 20,
                  "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000, "lag_interval_s": 2.0},
        "reference": {"path": reference},
        # overlapping windows are correlated evaluations: 3 of 4 firings (not 2 of 3) before a
        # declaration keeps healthy cameras quiet while a real shift is declared within ~20 s
        "window": {"size": 60, "evaluate_every": 20},
        "hysteresis": {"k": 3, "m": 4, "recover": 3},
        "http": {"host": "127.0.0.1", "port": port},
    }


def build_references(cameras: list[Camera], workdir: Path, config_dict: dict) -> str:
    """Write each camera's healthy frames as JPEGs, then build its reference from that directory."""
    store_dir = workdir / "references"
    config = config_from_dict({k: v for k, v in config_dict.items() if k != "reference"})
    store = ReferenceStore(store_dir)
    embedder = build_embedder_from(config)
    with ThreadPoolExecutor(2) as pool:
        for cam in cameras:
            frames_dir = workdir / "reference-frames" / cam.camera_id
            frames_dir.mkdir(parents=True, exist_ok=True)

            def write(t: int, cam: Camera = cam, frames_dir: Path = frames_dir) -> None:
                (frames_dir / f"{t:05d}.jpg").write_bytes(encode(cam.frame(t)))

            list(pool.map(write, range(REFERENCE_FRAMES)))
            got = from_dir(frames_dir, config, progress=False, embedder=embedder)
            store.add(make_reference(got, stream=cam.camera_id, source=f"dir:{frames_dir}", config=config,
                                     embedder=embedder))
            print(f"  reference for {cam.camera_id} ({cam.scene}): {len(got.rows)} frames", flush=True)
    return str(store_dir)


class Producer:
    """Sends every camera's frames at ``fps`` until stopped; cameras can be shifted meanwhile."""

    def __init__(self, bootstrap: str, cameras: list[Camera], fps: float):
        from kafka import KafkaProducer

        self.cameras, self.fps = cameras, fps
        self.sent = 0
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-producer", daemon=True)

    def start(self) -> "Producer":
        self._thread.start()
        return self

    def _run(self) -> None:
        t = REFERENCE_FRAMES  # live frames continue where the reference's left off
        period = 1.0 / self.fps
        with ThreadPoolExecutor(2) as pool:
            while not self._stop.is_set():
                tick = time.monotonic()
                images = list(pool.map(lambda c: encode(c.frame(t)), self.cameras))
                for cam, data in zip(self.cameras, images):
                    if self.sent % CORRUPT_EVERY == CORRUPT_EVERY - 1:
                        data = data[: len(data) // 3]  # a truncated upload
                    self._producer.send("frames", key=cam.camera_id.encode(), value=data, headers=[
                        ("camera_id", cam.camera_id.encode()), ("frame_id", f"{cam.camera_id}-{t}".encode()),
                        ("ts", str(int(time.time() * 1000)).encode())])
                    self.sent += 1
                t += 1
                self._stop.wait(max(0.0, period - (time.monotonic() - tick)))
        self._producer.flush()
        self._producer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def summary_line(daemon: Daemon, cameras: list[Camera]) -> str:
    status = daemon.status()["streams"]
    parts = []
    for cam in cameras:
        s = status.get(cam.camera_id)
        if s is None:
            parts.append(f"{cam.camera_id}: -")
            continue
        evaluation = s["last_evaluation"]
        if s["drifted"] and evaluation:
            fired = sorted({f for t in evaluation["tests"] if t["name"] == "ks" for f in t["drifted_features"]})
            tests = [t["name"] for t in evaluation["tests"] if t["drifted"] and t["name"] in ("ks", "mmd")]
            why = ", ".join(fired[:3]) + ("..." if len(fired) > 3 else "") if fired else ", ".join(tests)
            parts.append(f"{cam.camera_id}: DRIFTED ({why or 'held by hysteresis'})")
        else:
            parts.append(f"{cam.camera_id}: ok" if evaluation else f"{cam.camera_id}: filling {s['window_fill']:.0%}")
    return "\n  ".join(parts)


def run_demo(*, cameras: int, fps: float, drift_after: float, duration: float, port: int,
             workdir: str | None) -> int:
    own_dir = workdir is None
    work = Path(workdir or tempfile.mkdtemp(prefix="driftmon-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"driftmon demo: working in {work}", flush=True)
    broker = Broker(log_path=str(work / "broker.log")).start()
    producer = daemon = thread = None
    try:
        broker.create_topic("frames", partitions=4)
        broker.create_topic("driftmon.deadletter", partitions=1)
        print(f"broker (Tansu) on {broker.bootstrap}", flush=True)
        fleet = make_fleet(cameras, seed=2026, width=WIDTH, height=HEIGHT)
        print(f"building references for {cameras} cameras ({REFERENCE_FRAMES} frames each)...", flush=True)
        cfg = demo_config(broker.bootstrap, "", port)
        cfg["reference"]["path"] = build_references(fleet, work, cfg)
        daemon = Daemon(config_from_dict(cfg))
        started = threading.Event()
        thread = threading.Thread(target=daemon.run, kwargs={"ready_event": started}, name="driftmon", daemon=True)
        thread.start()
        started.wait(30)
        url = f"http://127.0.0.1:{daemon.port}"
        print(f"\ndaemon running:  {url}/metrics  {url}/status  {url}/readyz", flush=True)
        producer = Producer(broker.bootstrap, fleet, fps).start()
        print(f"{cameras} cameras streaming {WIDTH}x{HEIGHT} JPEGs at {fps:g} fps each; "
              f"drifting some after {drift_after:g}s. Ctrl-C stops.\n", flush=True)
        start = time.monotonic()
        drifted = False
        while duration <= 0 or time.monotonic() - start < duration:
            time.sleep(5)
            elapsed = time.monotonic() - start
            if not drifted and elapsed >= drift_after:
                drifted = True
                for index, shift, severity in DRIFTS:
                    if index < len(fleet):
                        fleet[index].set_shift(shift, severity)
                        print(f">>> {fleet[index].camera_id} now sees: {shift} (severity {severity})", flush=True)
            st = daemon.status()
            print(f"[{elapsed:5.0f}s] sent {producer.sent} frames, drifted: {st['streams_drifted'] or 'none'}\n  "
                  f"{summary_line(daemon, fleet)}", flush=True)
    except KeyboardInterrupt:
        print("\nstopping...", flush=True)
    finally:
        if producer is not None:
            producer.stop()
        if daemon is not None:
            daemon.stop()
        if thread is not None:
            thread.join(timeout=30)
        broker.stop()
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    print("driftmon demo stopped cleanly.", flush=True)
    return 0
