"""The daemon end to end through the real broker: frames in, evaluations, metrics and commits
out."""

import json
import urllib.request

import numpy as np
import pytest
from kafka import KafkaConsumer

from monitor.reference.collect import build_embedder_from, from_dir, make_reference
from monitor.reference.store import ReferenceStore
from monitor.sim.fleet import encode

from .conftest import build_references, camera_frames, daemon_config, end_offsets, send_frames

REF_FRAMES = 150
LIVE_FRAMES = 250
DRIFTS = {1: ("dusk", 3), 4: ("defocus_blur", 3)}
# the frames consumer (kafka.client): kafka-python by default, librdkafka opt-in
CLIENTS = pytest.mark.parametrize("client", ["kafka-python", "confluent"])


def live_frames(fleet):
    """50 healthy frames per camera, then the DRIFTS cameras shift for the rest of LIVE_FRAMES."""
    live = []
    for cam in fleet:
        live += list(camera_frames(cam, range(REF_FRAMES, REF_FRAMES + 50)))
    for i, (shift, severity) in DRIFTS.items():
        fleet[i].set_shift(shift, severity)
    for cam in fleet:
        live += list(camera_frames(cam, range(REF_FRAMES + 50, REF_FRAMES + LIVE_FRAMES)))
    return live


def bad_records():
    jpeg = encode(np.full((64, 64, 3), 128, np.uint8))
    return [
        (b"cam-bad", jpeg[: len(jpeg) // 2], [("camera_id", b"cam-bad")]),  # truncated upload
        (b"cam-bad", b"", []),  # empty value
        (b"cam-bad", b"this is not an image", []),
        (
            b"cam-bad",
            b'{"camera_id": "cam-bad", "image_b64": "!!!"}',
            [("content-type", b"application/json")],
        ),
        (None, jpeg, []),  # no camera id anywhere
        (
            b"cam-bad",
            b'{"camera_id": "c", "uri": "file:///etc/passwd"}',
            [("content-type", b"application/json")],
        ),
    ]


@CLIENTS
def test_end_to_end_drift_metrics_dead_letters_and_commits(
    broker, topic, small_fleet, tmp_path, run_daemon, client
):
    config = daemon_config(broker, topic, tmp_path)  # reference path replaced below
    refs = build_references(tmp_path, small_fleet, config, REF_FRAMES)
    config = daemon_config(broker, topic, refs, kafka={"client": client})

    live = live_frames(small_fleet)
    bad = bad_records()
    send_frames(broker, topic, live[:600] + bad[:3] + live[600:] + bad[3:])
    total = len(live) + len(bad)

    d = run_daemon(config)
    assert d.wait_for(
        lambda: (
            d.value("driftmon_frames_total", outcome="processed")
            + d.value("driftmon_frames_total", outcome="dead_lettered")
            >= total
        )
    ), "not all frames handled"
    assert d.wait_for(lambda: d.daemon.ready(), timeout=10)

    # the lag is read from the broker for every partition (a sample, not an absent one), and is
    # nothing once every frame is handled
    def lag(p):
        return d.registry.get_sample_value(
            "driftmon_consumer_lag_records", {"topic": topic, "partition": str(p)}
        )

    assert d.wait_for(lambda: all(lag(p) == 0 for p in range(3)), timeout=10), [
        lag(p) for p in range(3)
    ]

    # every frame counted once, every bad record dead-lettered by reason
    assert d.value("driftmon_frames_total", outcome="processed") == len(live)
    assert d.value("driftmon_frames_total", outcome="dead_lettered") == len(bad)
    reasons = {
        r: d.value("driftmon_bad_records_total", reason=r)
        for r in (
            "corrupt",
            "empty",
            "unsupported_format",
            "bad_envelope",
            "bad_header",
            "uri_not_allowed",
        )
    }
    assert reasons == {
        "corrupt": 1,
        "empty": 1,
        "unsupported_format": 1,
        "bad_envelope": 1,
        "bad_header": 1,
        "uri_not_allowed": 1,
    }

    # drifted cameras flagged, healthy ones not
    drifted = {cam.camera_id for i, cam in enumerate(small_fleet) if i in DRIFTS}
    for cam in small_fleet:
        flagged = d.value("driftmon_stream_drifted", stream=cam.camera_id)
        assert flagged == (1.0 if cam.camera_id in drifted else 0.0), cam.camera_id
        assert d.value("driftmon_stream_frames_total", stream=cam.camera_id) == LIVE_FRAMES
        assert d.value("driftmon_stream_evaluations_total", stream=cam.camera_id) >= 6

    # HTTP surface
    base = f"http://127.0.0.1:{d.daemon.port}"
    status = json.load(urllib.request.urlopen(f"{base}/status"))
    assert sorted(status["streams_drifted"]) == sorted(drifted)
    dusk = status["streams"][small_fleet[1].camera_id]["last_evaluation"]
    ks = next(t for t in dusk["tests"] if t["name"] == "ks")
    assert "brightness_mean" in ks["drifted_features"]
    metrics_text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    drifted = f'driftmon_stream_drifted{{stream="{small_fleet[1].camera_id}"}} 1.0'
    assert drifted in metrics_text
    assert urllib.request.urlopen(f"{base}/healthz").status == 200
    assert urllib.request.urlopen(f"{base}/readyz").status == 200
    d.stop()

    # dead letters carry the error and the origin
    dlq = KafkaConsumer(
        f"{topic}.dlq",
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        fetch_max_wait_ms=20,
    )
    letters = list(dlq)
    dlq.close()
    assert len(letters) == len(bad)
    for letter in letters:
        h = dict(letter.headers)
        assert h["driftmon_origin_topic"] == topic.encode()
        assert int(h["driftmon_origin_offset"]) >= 0 and h["driftmon_error"]

    # offsets committed: the group's committed offsets reach the end of every partition
    probe = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=config.kafka.group_id, enable_auto_commit=False
    )
    ends = end_offsets(broker, topic, 3)
    assert {tp: probe.committed(tp) or 0 for tp in ends} == ends
    probe.close()


def test_restarted_group_does_not_reread_committed_frames(
    broker, topic, small_fleet, tmp_path, run_daemon
):
    cam = small_fleet[0]
    store = ReferenceStore(tmp_path / "refs")
    d = tmp_path / "ref"
    d.mkdir()
    for t in range(60):
        (d / f"{t}.jpg").write_bytes(encode(cam.frame(t)))
    config = daemon_config(broker, topic, tmp_path)
    embedder = build_embedder_from(config)
    store.add(
        make_reference(
            from_dir(d, config, progress=False, embedder=embedder),
            stream=None,
            source="test",
            config=config,
            embedder=embedder,
        )
    )
    config = daemon_config(broker, topic, store.path)
    send_frames(broker, topic, camera_frames(cam, range(60, 100)))

    first = run_daemon(config)
    assert first.wait_for(lambda: first.value("driftmon_frames_total", outcome="processed") == 40)
    first.stop()
    send_frames(broker, topic, camera_frames(cam, range(100, 110)))
    second = run_daemon(config)
    assert second.wait_for(lambda: second.value("driftmon_frames_total", outcome="processed") >= 10)
    assert second.wait_for(lambda: second.value("driftmon_commits_total", result="ok") >= 1)
    # give a wrongly re-read backlog time to show up before judging
    assert not second.wait_for(
        lambda: second.value("driftmon_frames_total", outcome="processed") > 10, timeout=3
    )
    assert second.value("driftmon_frames_total", outcome="processed") == 10


def test_the_calibrated_defaults_from_reference_build_to_verdicts(
    broker, topic, small_fleet, tmp_path, run_daemon
):
    # the default voters: each camera's window judged against its reference's own spans, with the
    # threshold of one false alarm per 30 days at the reference's frame rate
    config = daemon_config(broker, topic, tmp_path)
    refs = build_references(tmp_path, small_fleet, config, REF_FRAMES)
    config = daemon_config(broker, topic, refs)
    assert config.voting_tests == ("shift", "emb_shift", "view")

    live = live_frames(small_fleet)
    send_frames(broker, topic, live)

    d = run_daemon(config)
    assert d.wait_for(lambda: d.value("driftmon_frames_total", outcome="processed") >= len(live))
    status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{d.daemon.port}/status"))
    drifted = {cam.camera_id for i, cam in enumerate(small_fleet) if i in DRIFTS}
    assert sorted(status["streams_drifted"]) == sorted(drifted)
    for cam in small_fleet:
        last = status["streams"][cam.camera_id]["last_evaluation"]
        shift = next(t for t in last["tests"] if t["name"] == "shift")
        assert (
            "for one false alarm per 30 days" in shift["p_value_note"]
            and last["context"] in shift["p_value_note"]
        )
        assert shift["drifted"] is (cam.camera_id in drifted)
        assert (
            d.value("driftmon_stream_test_threshold", stream=cam.camera_id, test="shift")
            == shift["threshold"]
            > 4
        )


@CLIENTS
def test_frames_above_the_analysis_rate_are_counted_and_committed_but_not_decoded(
    broker, topic, small_fleet, tmp_path, run_daemon, client
):
    # two cameras at 5 fps by their ts headers, analysed at 1 fps: every fifth frame
    cams = small_fleet[:2]
    store = ReferenceStore(tmp_path / "refs")
    d = tmp_path / "ref"
    d.mkdir()
    for t in range(60):
        (d / f"{t}.jpg").write_bytes(encode(cams[0].frame(t)))
    stats_only = {"embedding": {"enabled": False}}
    config = daemon_config(broker, topic, tmp_path, **stats_only)
    store.add(
        make_reference(
            from_dir(d, config, progress=False),
            stream=None,
            source="test",
            config=config,
            embedder=None,
        )
    )
    config = daemon_config(
        broker,
        topic,
        store.path,
        source={"max_fps_per_stream": 1.0},
        kafka={"client": client},
        **stats_only,
    )
    start_ms = 1_790_000_000_000

    def at_5fps(cam, t, value=None):
        key = cam.camera_id.encode()
        ts = str(start_ms + 200 * t).encode()
        if value is None:
            return key, encode(cam.frame(t)), [("camera_id", key), ("ts", ts)]
        return key, value, [("camera_id", key), ("ts", ts)]

    records = []
    for cam in cams:
        for t in range(100):
            records.append(at_5fps(cam, t))
            if t == 1:  # a broken frame between two skipped ones: never decoded, so never noticed
                broken = encode(cam.frame(t))[:500]
                records.append(at_5fps(cam, t, broken))
    send_frames(broker, topic, records)

    daemon = run_daemon(config)
    assert daemon.wait_for(
        lambda: (
            daemon.value("driftmon_frames_total", outcome="processed")
            + daemon.value("driftmon_frames_total", outcome="rate_limited")
            >= len(records)
        )
    ), "not all frames handled"
    assert daemon.value("driftmon_frames_total", outcome="processed") == 2 * 20
    assert daemon.value("driftmon_frames_total", outcome="rate_limited") == 2 * 81
    assert daemon.value("driftmon_frames_total", outcome="dead_lettered") == 0
    assert daemon.value("driftmon_bad_records_total", reason="corrupt") == 0
    for cam in cams:
        # every frame counted for the stream, only the analysed ones in its window (size 100)
        assert daemon.value("driftmon_stream_frames_total", stream=cam.camera_id) == 101
        assert daemon.value("driftmon_stream_window_fill_ratio", stream=cam.camera_id) == 0.2
    assert daemon.wait_for(lambda: daemon.value("driftmon_commits_total", result="ok") >= 1)
    daemon.stop()

    # skipped frames are committed like the others: nothing is read again
    probe = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, group_id=config.kafka.group_id, enable_auto_commit=False
    )
    ends = end_offsets(broker, topic, 3)
    assert {tp: probe.committed(tp) or 0 for tp in ends} == ends
    probe.close()
