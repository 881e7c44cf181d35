"""Drift events belong to the fleet, not a replica: two replicas in one consumer group share
``actions.state_dir`` (and a Kafka checkpoint store), on the real broker.

A camera drifts while one replica owns it: one event, served identically by both replicas'
``/events``; an Alertmanager alert posted to either replica is one ticket linked to that event,
updated — not duplicated — when posted to the other. Then the owner stops mid-drift: the other
takes the camera over with its detection state and continues the same event (no second one), and
closes it when the camera recovers; the ticket resolves on the survivor.
"""

import json

from monitor.sim.fleet import make_fleet

from .conftest import ActionsDaemon, build_references, camera_frames, daemon_config, send_frames
from .test_actions import TOKEN, alertmanager_payload

REF_FRAMES = 80
DRIFTING = 1  # the camera that drifts; the others keep both replicas busy with partitions


def settings(tmp_path, topic):
    return {
        "embedding": {"enabled": False},
        "window": {"size": 40, "evaluate_every": 10},
        "checkpoint": {"store": "kafka", "topic": f"{topic}.state", "interval_s": 1.0},
        "actions": {
            "enabled": True,
            "state_dir": str(tmp_path / "shared-state"),
            "selection": {"max_per_event": 4, "max_per_day": 100, "pool_factor": 2},
            "report": {"enabled": False},
            "retry": {"attempts": 10, "backoff_s": 0.2, "max_backoff_s": 1.0},
            "tickets": {"token": TOKEN, "sinks": ["directory"]},
        },
    }


def frames(cams, start, n):
    return [f for cam in cams for f in camera_frames(cam, range(start, start + n))]


def owns(replica, stream):
    return stream in replica.daemon.status()["streams"]


def assigned(replica):
    consumer = replica.daemon._consumer
    return consumer is not None and bool(consumer.assignment())


def events_of(replica, stream):
    return replica.get_json(f"/events?stream={stream}")["events"]


def test_two_replicas_share_one_event_and_one_ticket_across_a_handover(broker, topic, tmp_path):
    fleet = make_fleet(4, seed=21, width=320, height=240, dynamics="iid")
    cam = fleet[DRIFTING].camera_id
    base = daemon_config(broker, topic, tmp_path, **settings(tmp_path, topic))
    refs = build_references(tmp_path, fleet, base, REF_FRAMES)
    group = f"g-{topic}-replicas"

    def replica():
        return ActionsDaemon(
            daemon_config(broker, topic, refs, group=group, **settings(tmp_path, topic)),
            drain_s=5.0,
        )

    a = replica()
    b = None
    try:
        b = replica()
        # both in the group, each with partitions (a join takes about half the session timeout)
        assert a.wait_for(lambda: assigned(a) and assigned(b), 120), (
            "the replicas did not split the partitions"
        )
        healthy = frames(fleet, REF_FRAMES, 40)
        fleet[DRIFTING].set_shift("dusk", 4)
        drifting = frames([fleet[DRIFTING]], REF_FRAMES + 40, 60)
        send_frames(broker, topic, healthy + drifting)
        total = len(healthy) + len(drifting)

        def processed():
            return sum(d.value("driftmon_frames_total", outcome="processed") for d in (a, b))

        assert a.wait_for(lambda: processed() >= total), "not all frames processed"
        owner, other = (a, b) if owns(a, cam) else (b, a)
        assert owns(owner, cam) and not owns(other, cam)

        # one event, opened by the owner, seen by both
        assert owner.wait_for(lambda: len(events_of(owner, cam)) == 1)
        eid = events_of(owner, cam)[0]["id"]
        assert owner.wait_for(
            lambda: owner.get_json(f"/events/{eid}")["evidence"]["status"] == "done"
        ), "evidence not written"
        assert other.wait_for(lambda: other.get_json("/events") == owner.get_json("/events"), 10), (
            "the replicas serve different events"
        )
        assert other.get_json(f"/events/{eid}") == owner.get_json(f"/events/{eid}")
        assert other.get_json(f"/events/{eid}")["status"] == "open"
        assert owner.value("driftmon_drift_events_total", stream=cam) == 1
        assert other.value("driftmon_drift_events_total", stream=cam) == 0
        samples = owner.get_json(f"/events/{eid}")["samples"]
        assert 1 <= len(samples) <= 4

        # an alert posted to the replica that does not own the camera: one ticket, linked
        fp = "9a8b7c6d5e4f3a2b"
        firing, starts = alertmanager_payload(cam, fp)
        status, answer = other.post("/alerts/alertmanager", firing, TOKEN)
        assert status == 200 and answer["tickets"] == [{"id": f"drift-{fp}", "action": "created"}]
        # the same alert to the owner updates it
        status, answer = owner.post("/alerts/alertmanager", firing, TOKEN)
        assert status == 200 and answer["tickets"] == [{"id": f"drift-{fp}", "action": "updated"}]
        for d in (a, b):
            assert [t["id"] for t in d.get_json("/tickets")["tickets"]] == [f"drift-{fp}"]
            ticket = d.get_json(f"/tickets/drift-{fp}")
            assert [e["id"] for e in ticket["events"]] == [eid]
            assert ticket["notifications"] == 2 and ticket["samples_total"] == len(samples)
        tickets_dir = tmp_path / "shared-state" / "tickets"
        assert owner.wait_for(owner.actions.idle) and other.wait_for(other.actions.idle)
        saved = json.loads((tickets_dir / f"drift-{fp}.json").read_text())
        assert saved["notifications"] == 2  # the directory sinks did not write an older version

        # the owner stops mid-drift: the other takes the camera over and continues the event
        owner.stop()
        still = frames([fleet[DRIFTING]], REF_FRAMES + 100, 30)
        send_frames(broker, topic, still)
        assert other.wait_for(lambda: owns(other, cam), 120), "the camera was not taken over"
        assert other.wait_for(lambda: other.daemon.status()["streams"][cam]["frames"] >= 130)
        assert other.daemon.status()["streams"][cam]["drifted"]
        assert [e["id"] for e in events_of(other, cam)] == [eid]
        assert events_of(other, cam)[0]["status"] == "open"
        assert other.value("driftmon_drift_events_total", stream=cam) == 0

        # the camera recovers: the new owner closes the same event; still one event
        fleet[DRIFTING].set_shift(None)
        send_frames(broker, topic, frames([fleet[DRIFTING]], REF_FRAMES + 130, 80))
        assert other.wait_for(lambda: events_of(other, cam)[0]["status"] == "closed"), (
            "the new owner did not close the event"
        )
        assert [e["id"] for e in events_of(other, cam)] == [eid]
        assert other.value("driftmon_drift_events_total", stream=cam) == 0
        assert other.value("driftmon_drift_events_closed_total", stream=cam) == 1

        resolved, _ = alertmanager_payload(cam, fp, "resolved", starts)
        status, answer = other.post("/alerts/alertmanager", resolved, TOKEN)
        assert answer["tickets"] == [{"id": f"drift-{fp}", "action": "resolved"}]
        assert [t["id"] for t in other.get_json("/tickets")["tickets"]] == [f"drift-{fp}"]
        assert other.get_json(f"/tickets/drift-{fp}")["notifications"] == 3
        # the ledger holds each selected frame once
        ledger = (tmp_path / "shared-state" / "queued.jsonl").read_text().splitlines()
        keys = [json.loads(line)["key"] for line in ledger]
        assert sorted(keys) == sorted(s["key"] for s in samples)
    finally:
        for d in (a, b):
            if d is not None and d.thread.is_alive():
                d.stop()
