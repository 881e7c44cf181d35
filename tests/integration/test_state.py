"""State survives restarts and moves between replicas through the checkpoint store."""

import io
import json
import signal
import subprocess
import sys
import time
import urllib.request
from urllib.parse import quote

import numpy as np
import pytest
import yaml
from kafka import KafkaConsumer

from monitor.sim.broker import free_port
from monitor.sim.fleet import make_fleet

from .conftest import build_references, camera_frames, daemon_config, end_offsets, send_frames

REF_FRAMES = 80
DRIFT = {1: ("dusk", 4), 5: ("defocus_blur", 4)}


def phase(fleet, start, n):
    return [f for cam in fleet for f in camera_frames(cam, range(start, start + n))]


def overrides(**checkpoint):
    return {
        "embedding": {"enabled": False},
        "window": {"size": 40, "evaluate_every": 10},
        "checkpoint": checkpoint,
    }


def frames_by_stream(*daemons):
    """Per stream, the frames counted by whichever daemon owns it now (exactly one must)."""
    seen = {}
    for d in daemons:
        for key, s in d.daemon.status()["streams"].items():
            assert key not in seen, f"{key} is owned by two replicas"
            seen[key] = s["frames"]
    return seen


def drifted(*daemons):
    return sorted(
        k for d in daemons for k, s in d.daemon.status()["streams"].items() if s["drifted"]
    )


@pytest.fixture
def fleet():
    cams = make_fleet(8, seed=21, width=320, height=240, dynamics="iid")
    return cams


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_replicas_split_cameras_and_hand_state_over(
    broker, topic, tmp_path, fleet, run_daemon, client
):
    base = daemon_config(broker, topic, tmp_path, **overrides())
    refs = build_references(tmp_path, fleet, base, REF_FRAMES)
    shared = overrides(store="kafka", topic=f"{topic}.state", interval_s=1.0)
    shared["kafka"] = {"client": client}
    group = f"g-{topic}-fleet"

    # phase 1: one replica; phase 2: a second joins; phase 3: the first leaves
    send_frames(broker, topic, phase(fleet, REF_FRAMES, 30))
    first = run_daemon(daemon_config(broker, topic, refs, group=group, **shared))
    assert first.wait_for(lambda: sum(frames_by_stream(first).values()) == 8 * 30)
    second = run_daemon(daemon_config(broker, topic, refs, group=group, **shared))
    for i, (shift, severity) in DRIFT.items():
        fleet[i].set_shift(shift, severity)
    send_frames(broker, topic, phase(fleet, REF_FRAMES + 30, 40))
    # a join needs the first replica's rejoin too: generous on a loaded machine
    ok = second.wait_for(lambda: len(second.daemon.status()["streams"]) > 0, timeout=180)
    assert ok, (
        "the second replica got no camera; assignments: "
        f"{first.daemon._consumer.assignment()} / {second.daemon._consumer.assignment()}"
    )
    assert first.wait_for(lambda: sum(frames_by_stream(first, second).values()) == 8 * 70)
    split = (len(first.daemon.status()["streams"]), len(second.daemon.status()["streams"]))
    assert min(split) > 0, split
    first.stop()
    send_frames(broker, topic, phase(fleet, REF_FRAMES + 70, 30))
    assert second.wait_for(lambda: sum(frames_by_stream(second).values()) == 8 * 100)

    # the same input through one process, from the start, in its own group
    single = run_daemon(
        daemon_config(broker, topic, refs, group=f"g-{topic}-single", **overrides())
    )
    assert single.wait_for(lambda: sum(frames_by_stream(single).values()) == 8 * 100)
    assert frames_by_stream(second) == frames_by_stream(single) == {c.camera_id: 100 for c in fleet}
    # the fleet-wide evaluation equals one process's, and holds the drifted cameras
    assert drifted(second) == drifted(single)
    assert {fleet[i].camera_id for i in DRIFT} <= set(drifted(single))
    # nothing lost either: what the replicas absorbed adds up to the input (re-reads were skipped)
    assert (
        second.value("driftmon_frames_total", outcome="processed")
        + first.value("driftmon_frames_total", outcome="processed")
        == 8 * 100
    )


def status(port):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2))


def wait_status(port, predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            s = status(port)
            if predicate(s):
                return s
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError("condition not reached")


def checkpointed_drifted(path) -> bool:
    """Whether the stream checkpoint at ``path`` (the file store's) holds a declared drift."""
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
    except (OSError, ValueError, KeyError):  # not written yet
        return False
    return bool((meta.get("hysteresis") or {}).get("drifted"))


def test_sigkill_restart_keeps_the_drift_and_counts_every_frame_once(
    broker, topic, tmp_path, fleet
):
    fleet = fleet[:4]
    refs = build_references(
        tmp_path, fleet, daemon_config(broker, topic, tmp_path, **overrides()), REF_FRAMES
    )
    port = free_port()
    cfg = tmp_path / "driftmon.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "kafka": {
                    "bootstrap_servers": [broker.bootstrap],
                    "topics": [topic],
                    "group_id": f"kill-{topic}",
                    "fetch_max_wait_ms": 20,
                    "session_timeout_ms": 6000,
                    "heartbeat_interval_ms": 1000,
                    "dead_letter_topic": "",
                    "max_poll_records": 20,
                },
                "reference": {"path": str(refs)},
                "http": {"port": port},
                "embedding": {"enabled": False},
                "window": {"size": 40, "evaluate_every": 10},
                "hysteresis": {"k": 2, "m": 3, "recover": 3},
                "checkpoint": {"store": "file", "path": str(tmp_path / "state"), "interval_s": 1.0},
            }
        )
    )
    cmd = [sys.executable, "-m", "monitor.service.cli", "run", "--config", str(cfg)]
    fleet[1].set_shift("dusk", 4)
    send_frames(broker, topic, phase(fleet, REF_FRAMES, 80))

    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_status(
            port,
            lambda s: (
                fleet[1].camera_id in s["streams_drifted"]
                and sum(x["frames"] for x in s["streams"].values()) >= 200
            ),
        )
        # wait for a checkpoint that covers the drift declaration
        state = tmp_path / "state" / f"{quote(fleet[1].camera_id, safe='')}.state"
        deadline = time.monotonic() + 30
        while not checkpointed_drifted(state):
            assert time.monotonic() < deadline, "no checkpoint holds the drift declaration"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        send_frames(broker, topic, phase(fleet, REF_FRAMES + 80, 20))
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # the drifted camera is drifted again as soon as its state is restored: no re-learning,
        # no half-filled window to re-alarm on
        s = wait_status(port, lambda s: fleet[1].camera_id in s["streams"])
        restored = s["streams"][fleet[1].camera_id]
        assert restored["drifted"] is True and restored["window_fill"] == 1.0
        s = wait_status(port, lambda s: sum(x["frames"] for x in s["streams"].values()) >= 4 * 100)
        # every frame counted exactly once across the kill: re-read frames were skipped
        assert {k: v["frames"] for k, v in s["streams"].items()} == {
            c.camera_id: 100 for c in fleet
        }
        assert s["streams_drifted"] == [fleet[1].camera_id]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        replayed = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith('driftmon_frames_total{outcome="replayed"}')
        )
        print(f"frames re-read after SIGKILL and skipped: {replayed:.0f}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def checkpointed_frames(path) -> int:
    """Frames counted in the stream checkpoint at ``path`` (0 before the first)."""
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
            return int(json.loads(bytes(z["meta"]).decode())["frames"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_feed_that_goes_quiet_is_checkpointed_and_committed_to_its_last_frame(
    broker, topic, tmp_path, fleet, run_daemon
):
    """With a checkpoint store, offsets are committed only with a checkpoint; the poll loop takes
    it when due even when no frame comes any more, so the last batches are not left uncommitted
    (re-read after a restart) until the camera sends again."""
    fleet = fleet[:2]
    state = tmp_path / "state"
    refs = build_references(
        tmp_path, fleet, daemon_config(broker, topic, tmp_path, **overrides()), REF_FRAMES
    )
    config = daemon_config(
        broker, topic, refs, **overrides(store="file", path=str(state), interval_s=1.0)
    )
    d = run_daemon(config)
    sent = phase(fleet, REF_FRAMES, 45)
    send_frames(broker, topic, sent)  # then nothing more
    assert d.wait_for(lambda: d.value("driftmon_frames_total", outcome="processed") >= len(sent))
    ends = end_offsets(broker, topic, 3)
    probe = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=config.kafka.group_id, enable_auto_commit=False
    )
    try:
        assert d.wait_for(
            lambda: {tp: probe.committed(tp) or 0 for tp in ends} == ends, timeout=15
        ), "the quiet feed's last offsets were not committed"
    finally:
        probe.close()
    for cam in fleet:
        assert checkpointed_frames(state / f"{quote(cam.camera_id, safe='')}.state") == 45
