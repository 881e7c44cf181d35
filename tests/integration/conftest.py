"""Integration tests run against a real Kafka-protocol broker (Tansu) started on a free port.

The tests of the pipeline's mechanics use iid synthetic cameras (``dynamics="iid"``): their
references are a few seconds of one camera, far too short for a living camera's day, clouds and
traffic. Living cameras are judged in test_living_fleet.py, with references that cover their day.
"""

import json
import threading
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.actions.coordinator import Actions
from monitor.config import config_from_dict
from monitor.reference.collect import build_embedder_from, from_dir, make_reference
from monitor.reference.store import Reference, ReferenceStore
from monitor.service.daemon import Daemon
from monitor.sim.broker import Broker
from monitor.sim.fleet import Camera, encode, make_fleet

from .labelstudio import LS_BIN, LabelStudio


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    with Broker(log_path=str(tmp_path_factory.mktemp("broker") / "tansu.log")) as b:
        yield b


@pytest.fixture
def topic(broker):
    """A fresh topic (3 partitions) per test, so tests never see each other's records."""
    name = f"frames-{uuid.uuid4().hex[:8]}"
    broker.create_topic(name, partitions=3)
    broker.create_topic(f"{name}.dlq", partitions=1)
    return name


def daemon_config(broker, topic, reference, group=None, **overrides):
    cfg = {
        "kafka": {
            "bootstrap_servers": [broker.bootstrap],
            "topics": [topic],
            "group_id": group or f"g-{topic}",
            "dead_letter_topic": f"{topic}.dlq",
            "fetch_max_wait_ms": 20,
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
            "lag_interval_s": 0.5,
        },
        "reference": {"path": str(reference)},
        "window": {"size": 100, "evaluate_every": 25},
        "hysteresis": {"k": 2, "m": 3, "recover": 3},
        "decode": {"analysis_size": 320, "workers": 2},
        "http": {"host": "127.0.0.1", "port": 0},
    }
    for section, values in overrides.items():
        cfg.setdefault(section, {}).update(values)
    return config_from_dict(cfg)


class RunningDaemon:
    """A daemon in a background thread with its own metrics registry, and its HTTP API."""

    wait_s = 90.0

    def __init__(self, config, registry=None, **wiring):
        self.registry = CollectorRegistry() if registry is None else registry
        self.daemon = Daemon(config, registry=self.registry, **wiring)
        started = threading.Event()
        self.thread = threading.Thread(
            target=self.daemon.run, kwargs={"ready_event": started}, daemon=True
        )
        self.thread.start()
        assert started.wait(30), "daemon did not start"
        self.port = self.daemon.port
        self.base = f"http://127.0.0.1:{self.port}"

    def value(self, name, **labels):
        return self.registry.get_sample_value(name, labels) or 0.0

    def wait_for(self, predicate, timeout=None):
        deadline = time.monotonic() + (self.wait_s if timeout is None else timeout)
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return False

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as res:
            return res.status, res.headers.get("Content-Type"), res.read()

    def get_json(self, path):
        return json.loads(self.get(path)[2])

    def post(self, path, body, token=None):
        """POST JSON; returns (status, JSON answer), error answers included."""
        headers = {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {token}"} if token else {}
        )
        req = urllib.request.Request(self.base + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.status, json.loads(res.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self):
        self.daemon.stop()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "daemon did not stop"


class ActionsDaemon(RunningDaemon):
    """The daemon with Actions wired in as `driftmon run` wires them (Actions on the daemon's
    registry, their routes on the daemon's HTTP server)."""

    wait_s = 150.0  # evidence and relabel deliveries come well after the frames are judged

    def __init__(self, config, drain_s=30.0):
        registry = CollectorRegistry()
        self.actions = Actions(config, registry)
        self.drain_s = drain_s
        super().__init__(
            config,
            registry,
            on_evaluation=self.actions.on_evaluation,
            routes=self.actions.routes(),
            on_hand_over=self.actions.on_hand_over,
        )

    def stop(self):
        try:
            super().stop()
        finally:  # the action workers are closed even when the daemon thread hangs
            self.actions.close(drain_s=self.drain_s)


@pytest.fixture
def run_daemon():
    running = []

    def start(config):
        d = RunningDaemon(config)
        running.append(d)
        return d

    yield start
    for d in running:
        if d.thread.is_alive():
            d.stop()


def send_frames(broker, topic, items):
    """items: (camera_id, jpeg bytes, frame_id) triples, or (key, value, headers) raw tuples."""
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, linger_ms=5, max_request_size=8 << 20
    )
    for key, value, headers in items:
        producer.send(topic, key=key, value=value, headers=headers)
    producer.flush()
    producer.close()


def camera_frames(camera: Camera, ts: range):
    for t in ts:
        yield (
            camera.camera_id.encode(),
            encode(camera.frame(t)),
            [
                ("camera_id", camera.camera_id.encode()),
                ("frame_id", f"{camera.camera_id}-{t}".encode()),
            ],
        )


def build_references(tmp_path, fleet, config, frames):
    """One reference per camera from its first ``frames`` healthy frames, written as JPEGs and
    built the way ``driftmon reference build --from-dir`` does (embeddings when ``config`` has
    them)."""
    store = ReferenceStore(tmp_path / "refs")
    embedder = build_embedder_from(config)
    for cam in fleet:
        d = tmp_path / "ref-frames" / cam.camera_id
        d.mkdir(parents=True)
        for t in range(frames):
            (d / f"{t:04d}.jpg").write_bytes(encode(cam.frame(t)))
        got = from_dir(d, config, progress=False, embedder=embedder)
        store.add(
            make_reference(
                got, stream=cam.camera_id, source=f"dir:{d}", config=config, embedder=embedder
            )
        )
    return store.path


def register_training(tmp_path, references):
    """The model's training set as ``driftmon training build`` stores it: here every camera's
    reference frames (statistics, embeddings, times) in one training reference; returns its
    store."""
    store = ReferenceStore(references)
    refs = [store.load_latest(stream) for stream in store.streams()]
    first = refs[0]
    training = ReferenceStore(tmp_path / "training")
    training.add(
        Reference(
            features=np.vstack([r.features for r in refs]),
            feature_names=first.feature_names,
            source="tests: the cameras' reference frames",
            time_range=(
                min(r.time_range[0] for r in refs),
                max(r.time_range[1] for r in refs),
            )
            if all(r.time_range for r in refs)
            else None,
            embeddings=np.vstack([r.embeddings for r in refs]),
            embedder=first.embedder,
            extra={"role": "training"},
        )
    )
    return training.path


def end_offsets(broker, topic, partitions):
    """The offset after the last record of each partition, found by reading them: Tansu's
    ListOffsets under-reports the end of partitions written in multi-record batches."""
    from kafka import KafkaConsumer, TopicPartition

    reader = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        consumer_timeout_ms=2000,
        fetch_max_wait_ms=20,
        auto_offset_reset="earliest",
    )
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    reader.assign(tps)
    ends = {tp: 0 for tp in tps}
    for r in reader:
        ends[TopicPartition(r.topic, r.partition)] = r.offset + 1
    reader.close()
    return ends


@pytest.fixture
def small_fleet():
    return make_fleet(6, seed=11, width=640, height=360, dynamics="iid")


def _label_studio(tmp_path_factory, env=None):
    if not LS_BIN.exists():
        pytest.skip(
            f"Label Studio is not installed at {LS_BIN}: run `bash deploy/label-studio/setup.sh`"
        )
    return LabelStudio(tmp_path_factory.mktemp("label-studio"), env)


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """A real Label Studio server (not waited for: relabel sinks retry until it answers)."""
    ls = _label_studio(tmp_path_factory)
    yield ls
    ls.stop()


@pytest.fixture(scope="module")
def label_studio_hooks(tmp_path_factory):
    """A real Label Studio server whose webhooks may call loopback addresses: it refuses
    reserved networks unless SSRF_PROTECTION_ENABLED=false (docs/data-loop.md)."""
    ls = _label_studio(tmp_path_factory, {"SSRF_PROTECTION_ENABLED": "false"})
    try:
        ls.wait_ready()
        yield ls
    finally:
        ls.stop()
