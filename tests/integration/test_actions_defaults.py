"""Actions on with every other setting at its default (embeddings on, every default test), on the
real broker: a drift of the image statistics, the embeddings and the model's outputs opens one
event described in words, with its report, its queued frames and a linked ticket; and a failure
inside actions never stops the consume loop — frames are judged and offsets committed, and the
event opens once actions work again; and references and a training set built before a statistic
existed serve a daemon that has it."""

import base64
import json
from dataclasses import replace

import numpy as np
from kafka import KafkaConsumer

from monitor.actions import explain
from monitor.reference.collect import build_embedder_from, from_topic, make_reference
from monitor.reference.store import ReferenceStore
from monitor.sim.fleet import encode, make_fleet

from .conftest import (
    ActionsDaemon,
    build_references,
    camera_frames,
    daemon_config,
    end_offsets,
    register_training,
    send_frames,
)
from .test_actions import TOKEN, alertmanager_payload

JSON = [("content-type", b"application/json")]
HEALTHY_MIX, SHIFTED_MIX = [0.5, 0.3, 0.2], [0.1, 0.2, 0.7]


def actions_config(broker, topic, refs, tmp_path, **overrides):
    """Defaults everywhere but the broker, the references and actions (directory sinks)."""
    return daemon_config(
        broker,
        topic,
        refs,
        actions={
            "enabled": True,
            "state_dir": str(tmp_path / "state"),
            "queue_size": 16,
            "selection": {"max_per_event": 5, "max_per_day": 100, "pool_factor": 3},
            "report": {"contact_sheet_frames": 4, "reference_frames": 2, "thumbnail_px": 64},
            "retry": {"attempts": 20, "backoff_s": 0.2, "max_backoff_s": 1.0},
            "relabel": {"sinks": ["directory"], "directory": str(tmp_path / "export")},
            "tickets": {
                "token": TOKEN,
                "sinks": ["directory"],
                "directory": str(tmp_path / "tickets"),
            },
        },
        **overrides,
    )


def envelopes(cam, ts, mix, rng):
    """JSON envelopes: the frame inline and the model's class probabilities drawn from ``mix``."""
    for t in ts:
        c = int(rng.choice(3, p=mix))
        probs = rng.dirichlet([1.0, 1.0, 1.0]) * 0.3
        probs[c] += 0.7
        value = json.dumps(
            {
                "camera_id": cam.camera_id,
                "frame_id": f"{cam.camera_id}-{t}",
                "image_b64": base64.b64encode(encode(cam.frame(t))).decode(),
                "predictions": {"probs": probs.tolist()},
            }
        ).encode()
        yield cam.camera_id.encode(), value, JSON


def healthy_beside_a_drift(healthy, drifting, shift, severity):
    """Frames 150-399 of both cameras (after their 150 reference frames), ``drifting`` shifted
    from frame 250."""
    frames = list(camera_frames(healthy, range(150, 400)))
    frames += list(camera_frames(drifting, range(150, 250)))
    drifting.set_shift(shift, severity)
    return frames + list(camera_frames(drifting, range(250, 400)))


def the_event(d, frames, stream):
    """Once the daemon has processed ``frames``: the one drift event, which is ``stream``'s, after
    its evidence is no longer pending."""
    assert d.wait_for(lambda: d.value("driftmon_frames_total", outcome="processed") >= len(frames))
    events = d.get_json("/events")["events"]
    assert [e["stream"] for e in events] == [stream]
    eid = events[0]["id"]
    assert d.wait_for(lambda: d.get_json(f"/events/{eid}")["evidence"]["status"] != "pending")
    return d.get_json(f"/events/{eid}")


def test_model_output_and_image_drift_with_actions_on_opens_one_event_described_in_words(
    broker, topic, tmp_path
):
    fleet = make_fleet(2, seed=5, width=480, height=270, dynamics="iid")
    healthy, drifting = fleet
    rng = np.random.default_rng(5)
    ref_topic = f"{topic}-ref"
    broker.create_topic(ref_topic, partitions=1)
    send_frames(
        broker,
        ref_topic,
        [r for cam in fleet for r in envelopes(cam, range(150), HEALTHY_MIX, rng)],
    )
    config = actions_config(broker, topic, tmp_path, tmp_path)
    embedder = build_embedder_from(config)
    got = from_topic(config, ref_topic, None, None, progress=False, embedder=embedder)
    store = ReferenceStore(tmp_path / "refs")
    for cam in fleet:  # per-camera references carrying embeddings and the model's outputs
        mask = np.array([s == cam.camera_id for s in got.streams])
        store.add(
            make_reference(
                got,
                mask=mask,
                stream=cam.camera_id,
                source=f"kafka:{ref_topic}",
                config=config,
                embedder=embedder,
            )
        )
    config = actions_config(broker, topic, store.path, tmp_path)

    live = list(envelopes(healthy, range(150, 450), HEALTHY_MIX, rng)) + list(
        envelopes(drifting, range(150, 250), HEALTHY_MIX, rng)
    )
    drifting.set_shift("gaussian_noise", 3)
    live += list(envelopes(drifting, range(250, 450), SHIFTED_MIX, rng))
    send_frames(broker, topic, live)

    d = ActionsDaemon(config, drain_s=10)
    try:
        event = the_event(d, live, drifting.camera_id)
        eid = event["id"]
        assert event["evidence"]["status"] == "done"
        assert {f["kind"] for f in event["fired"]} >= {"statistics", "predictions"}
        assert event["shifts"]["noise_sigma"]["z"] > 3
        assert event["shifts"]["predicted_class"]["what"] == "the predicted-class mix"
        assert event["evidence"]["error"] is None and 1 <= len(event["samples"]) <= 5
        status, _, page = d.get(f"/events/{eid}/report")
        assert status == 200 and "the predicted-class mix" in page.decode()

        body, _ = alertmanager_payload(drifting.camera_id, "0a1b2c3d4e5f6071")
        status, answer = d.post("/alerts/alertmanager", body, TOKEN)
        assert status == 200 and answer["tickets"][0]["action"] == "created"
        ticket = d.get_json(f"/tickets/{answer['tickets'][0]['id']}")
        assert [e["id"] for e in ticket["events"]] == [eid]
        assert "the predicted-class mix" in ticket["events"][0]["fired"]
        assert "noisier frames" in ticket["suggested_actions"][0]["text"]
        assert d.value("driftmon_action_errors_total", stage="evaluation") == 0
        assert d.value("driftmon_action_errors_total", stage="open_event") == 0
        assert d.thread.is_alive()
    finally:
        d.stop()


def test_a_failure_inside_actions_leaves_the_daemon_consuming_and_committing(
    broker, topic, tmp_path, monkeypatch
):
    fleet = make_fleet(2, seed=9, width=480, height=270, dynamics="iid")
    healthy, drifting = fleet
    refs = build_references(tmp_path, fleet, daemon_config(broker, topic, tmp_path), 150)
    config = actions_config(broker, topic, refs, tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug inside actions")

    real = explain.measure
    monkeypatch.setattr(explain, "measure", broken)
    first = healthy_beside_a_drift(healthy, drifting, "defocus_blur", 4)
    send_frames(broker, topic, first)
    d = ActionsDaemon(config, drain_s=10)
    try:
        assert d.wait_for(
            lambda: d.value("driftmon_frames_total", outcome="processed") >= len(first)
        )
        assert (
            d.value("driftmon_stream_drifted", stream=drifting.camera_id) == 1
        )  # detection went on
        assert d.value("driftmon_action_errors_total", stage="open_event") >= 1
        assert d.get_json("/events")["events"] == []
        declared_at = d.value(
            "driftmon_stream_drifted_since_timestamp_seconds", stream=drifting.camera_id
        )
        probe = KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=config.kafka.group_id,
            enable_auto_commit=False,
        )
        ends = end_offsets(broker, topic, 3)
        assert d.wait_for(lambda: {tp: probe.committed(tp) or 0 for tp in ends} == ends), (
            "offsets not committed"
        )
        probe.close()

        monkeypatch.setattr(
            explain, "measure", real
        )  # actions work again: the next evaluation opens it
        more = list(camera_frames(drifting, range(400, 450)))
        send_frames(broker, topic, more)
        assert d.wait_for(lambda: len(d.get_json("/events")["events"]) == 1)
        event = d.get_json("/events")["events"][0]
        assert event["stream"] == drifting.camera_id and event["opened_at"] == declared_at
        assert d.thread.is_alive()
    finally:
        d.stop()


def test_stores_built_before_a_statistic_existed_serve_an_upgraded_daemon(broker, topic, tmp_path):
    # An upgrade added an image statistic; the references and the training set were built before
    # it. The daemon starts, judges on what they hold, and a drift's event gets all its evidence.
    fleet = make_fleet(2, seed=13, width=480, height=270, dynamics="iid")
    healthy, drifting = fleet
    built = ReferenceStore(
        build_references(tmp_path, fleet, daemon_config(broker, topic, tmp_path), 150)
    )
    old = ReferenceStore(tmp_path / "old-refs")
    for stream in built.streams():
        ref = built.load_latest(stream)
        old.add(replace(ref, features=ref.features[:, :-1], feature_names=ref.feature_names[:-1]))
    training = register_training(tmp_path, old.path)
    config = actions_config(broker, topic, old.path, tmp_path, training={"path": str(training)})

    live = healthy_beside_a_drift(healthy, drifting, "gaussian_noise", 3)
    send_frames(broker, topic, live)
    d = ActionsDaemon(config, drain_s=10)
    try:
        event = the_event(d, live, drifting.camera_id)
        assert event["evidence"]["status"] == "done" and event["evidence"]["error"] is None
        assert 1 <= len(event["samples"]) <= 5
        assert d.get(f"/events/{event['id']}/report")[0] == 200
        assert d.value("driftmon_stream_training_coverage_ratio", stream=healthy.camera_id) > 0.5
        assert d.value("driftmon_action_errors_total", stage="evaluation") == 0
        assert d.thread.is_alive()
    finally:
        d.stop()
