"""``driftmon demo``: the whole system on one laptop, no cluster.

Starts the embedded broker and a fleet of living synthetic cameras (each looking at a real
photograph through a day and night cycle compressed into a few minutes, with an infrared night,
clouds, traffic and rain showers), publishes the *past three days* of every camera's frames, with
the producers' context labels, and builds each camera's reference from that topic with
``reference build``'s own code, and registers those days of every camera as the model's training
set. Then it runs the daemon and streams *today* live. After a while some
cameras develop faults (out of focus, sensor noise, knocked to a new view, something over the lens)
while the others stay healthy through dusk and the night. Now and then a camera sends a truncated
JPEG, which the daemon dead-letters without stopping.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from monitor.config import config_from_dict
from monitor.files import JSONObject
from monitor.loop.coverage import ROLE
from monitor.pipeline.drift_tests import REGISTRY
from monitor.reference.collect import build_embedder_from, from_topic, make_reference
from monitor.reference.store import ReferenceStore
from monitor.service.daemon import Daemon
from monitor.sim.broker import Broker
from monitor.sim.fleet import Camera, encode, make_fleet
from monitor.sim.world import Living

WIDTH, HEIGHT = 320, 180
DAY_S = 180.0  # one simulated day: three minutes
START_HOUR = 15.0  # today starts mid-afternoon: dusk comes ~25 s in, the night lasts ~1.5 minutes
# Days of every camera the references hold. One or two days are a thin sample of a camera's weather
# (a sunnier afternoon than any it saw is declared: `reference build` warns about such support);
# three days of its gentle clouds and showers keep the demo's healthy cameras quiet.
REFERENCE_DAYS = 3
CLOUDS = 0.04
# (camera index, shift, severity): applied after --drift-after seconds
DRIFTS = (
    (1, "defocus_blur", 3),
    (3, "gaussian_noise", 3),
    (5, "knocked", 3),
    (7, "lens_covered", 3),
)
CORRUPT_EVERY = 150  # one truncated JPEG per this many frames
EPOCH_S = 1_790_000_000.0  # the simulated clock's zero


def demo_config(bootstrap: str, reference: str, port: int) -> JSONObject:
    return {
        "kafka": {
            "bootstrap_servers": [bootstrap],
            "topics": ["frames"],
            "group_id": "driftmon-demo",
            "dead_letter_topic": "driftmon.deadletter",
            "fetch_max_wait_ms": 20,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "lag_interval_s": 2.0,
        },
        "reference": {"path": reference},
        # short windows, so a fault is declared within ~20 s; the hysteresis is derived from them
        "window": {"size": 60, "evaluate_every": 20},
        "http": {"host": "127.0.0.1", "port": port},
    }


def frame_record(cam: Camera, t: int, data: bytes) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """What a camera's producer sends: the JPEG, its camera and frame ids, its event time on the
    simulated clock, and the context it knows (time of day, rain)."""
    return (
        cam.camera_id.encode(),
        data,
        [
            ("camera_id", cam.camera_id.encode()),
            ("frame_id", f"{cam.camera_id}-{t}".encode()),
            ("ts", str(int((EPOCH_S + t / cam.fps) * 1000)).encode()),
            ("context", cam.context(t).label.encode()),
        ],
    )


def publish_yesterday(bootstrap: str, cameras: list[Camera], frames: int) -> None:
    """The past days, as fast as they render: every camera's frames ``0 .. frames`` on
    ``frames.yesterday``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_request_size=8 << 20)
    with ThreadPoolExecutor(2) as pool:
        for start in range(0, frames, 50):
            batch = [(cam, t) for t in range(start, min(frames, start + 50)) for cam in cameras]
            for (cam, t), data in zip(
                batch, pool.map(lambda job: encode(job[0].frame(job[1])), batch), strict=True
            ):
                key, value, headers = frame_record(cam, t, data)
                producer.send("frames.yesterday", key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def build_references(
    bootstrap: str, cameras: list[Camera], workdir: Path, config_dict: JSONObject
) -> tuple[str, str]:
    """Each camera's reference from yesterday's topic, as `reference build --from-topic
    --per-stream` makes them: times and the producers' context labels included; and the model's
    training set, as `training build --from-topic` registers it: every camera's past days (their
    nights and showers included). Returns the two stores."""
    config = config_from_dict({k: v for k, v in config_dict.items() if k != "reference"})
    embedder = build_embedder_from(config)
    got = from_topic(config, "frames.yesterday", None, None, progress=False, embedder=embedder)
    store = ReferenceStore(workdir / "references")
    streams = np.array(got.streams)
    for cam in cameras:
        ref = make_reference(
            got,
            mask=streams == cam.camera_id,
            stream=cam.camera_id,
            source="kafka:frames.yesterday",
            config=config,
            embedder=embedder,
        )
        store.add(ref)
        contexts = ", ".join(f"{c} {n}" for c, n in sorted(ref.describe()["contexts"].items()))
        print(
            f"  {cam.camera_id} ({cam.scene}): {ref.n_frames} frames; contexts: {contexts}",
            flush=True,
        )
    training = ReferenceStore(workdir / "training")
    everything = make_reference(
        got, stream=None, source="kafka:frames.yesterday", config=config, embedder=embedder
    )
    training.add(replace(everything, extra=everything.extra | {"role": ROLE}))
    print(f"  training set: {everything.n_frames} frames of every camera", flush=True)
    return str(store.path), str(training.path)


class Producer:
    """Sends every camera's frames of today at ``fps`` (real time) until stopped; cameras can be
    shifted meanwhile."""

    def __init__(self, bootstrap: str, cameras: list[Camera], fps: float, first_frame: int):
        from kafka import KafkaProducer

        self.cameras, self.fps, self.first_frame = cameras, fps, first_frame
        self.sent = 0
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def _run(self) -> None:
        t = self.first_frame
        period = 1.0 / self.fps
        with ThreadPoolExecutor(2) as pool:
            while not self._stop.is_set():
                tick = time.monotonic()
                images = list(pool.map(lambda c, t=t: encode(c.frame(t)), self.cameras))
                for cam, data in zip(self.cameras, images, strict=True):
                    if self.sent % CORRUPT_EVERY == CORRUPT_EVERY - 1:
                        data = data[: len(data) // 3]  # a truncated upload
                    key, value, headers = frame_record(cam, t, data)
                    self._producer.send("frames", key=key, value=value, headers=headers)
                    self.sent += 1
                t += 1
                self._stop.wait(max(0.0, period - (time.monotonic() - tick)))
        self._producer.flush()
        self._producer.close()

    def clock(self, cam: Camera) -> str:
        """Today's simulated time of day and context at the camera's newest frame."""
        t = self.first_frame + self.sent // max(1, len(self.cameras))
        hour = (START_HOUR + 24.0 * (t / cam.fps) / DAY_S) % 24.0
        return f"{int(hour):02d}:{int(hour % 1 * 60):02d} ({cam.context(t).label})"

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
        covered = (
            f"; {s['training_coverage']:.0%} within the training set"
            if s.get("training_coverage") is not None
            else ""
        )
        if s["drifted"] and evaluation:
            moved = sorted(
                {
                    f
                    for t in evaluation["tests"]
                    if REGISTRY[t["name"]].calibrated
                    for f in t["drifted_features"]
                }
            )
            why = ", ".join(moved[:3]) + ("..." if len(moved) > 3 else "")
            parts.append(f"{cam.camera_id}: DRIFTED ({why or 'held by hysteresis'}{covered})")
        elif evaluation:
            parts.append(
                f"{cam.camera_id}: ok (judged against its {evaluation['context']!r} frames"
                f"{covered})"
            )
        else:
            parts.append(f"{cam.camera_id}: filling {s['window_fill']:.0%}")
    return "\n  ".join(parts)


def run_demo(
    *, cameras: int, fps: float, drift_after: float, duration: float, port: int, workdir: str | None
) -> int:
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
        fleet = make_fleet(
            cameras,
            seed=2026,
            width=WIDTH,
            height=HEIGHT,
            fps=fps,
            dynamics=Living(day_s=DAY_S, start_hour=START_HOUR, clouds=CLOUDS),
        )
        past = REFERENCE_DAYS * int(DAY_S * fps)
        broker.create_topic("frames.yesterday", partitions=1)
        print(
            f"publishing the last {REFERENCE_DAYS} days: {cameras} cameras x {past} frames (nights "
            "included)...",
            flush=True,
        )
        publish_yesterday(broker.bootstrap, fleet, past)
        print("building each camera's reference from yesterday's topic...", flush=True)
        cfg = demo_config(broker.bootstrap, "", port)
        cfg["reference"]["path"], training = build_references(broker.bootstrap, fleet, work, cfg)
        cfg["training"] = {"path": training}
        daemon = Daemon(config_from_dict(cfg))
        started = threading.Event()
        thread = threading.Thread(
            target=daemon.run, kwargs={"ready_event": started}, name="driftmon", daemon=True
        )
        thread.start()
        started.wait(30)
        url = f"http://127.0.0.1:{daemon.port}"
        print(f"\ndaemon running:  {url}/metrics  {url}/status  {url}/readyz", flush=True)
        producer = Producer(broker.bootstrap, fleet, fps, first_frame=past).start()
        print(
            f"{cameras} cameras streaming today live, {WIDTH}x{HEIGHT} JPEGs at {fps:g} fps each "
            f"(a day lasts {DAY_S / 60:g} minutes: dusk and the night come soon); faults on some "
            f"after {drift_after:g}s. Ctrl-C stops.\n",
            flush=True,
        )
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
                        print(
                            f">>> {fleet[index].camera_id} now sees: {shift} (severity {severity})",
                            flush=True,
                        )
            st = daemon.status()
            print(
                f"[{elapsed:5.0f}s] {producer.clock(fleet[0])}: sent {producer.sent} frames, "
                f"drifted: {st['streams_drifted'] or 'none'}\n  {summary_line(daemon, fleet)}",
                flush=True,
            )
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
