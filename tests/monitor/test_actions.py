"""Drift events through Actions.on_verdict: open, close, persistence across a restart, HTTP routes.

No broker here: selection has a zero budget and reports are off, so nothing is fetched; the real
pipeline (broker, Label Studio, Alertmanager payloads) is tests/integration/test_actions.py.
"""

import json

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.actions import Actions
from monitor.config import config_from_dict
from monitor.engine import FeatureOutcome, Verdict
from monitor.engine import TestOutcome as Outcome
from monitor.http import Request
from monitor.reference import Reference
from monitor.streams import FrameRef, WindowSnapshot

NAMES = ("brightness_mean", "contrast_rms")


def make_config(tmp_path, **actions):
    return config_from_dict({"actions": {"enabled": True, "state_dir": str(tmp_path / "state"),
                                         "relabel": {"sinks": []}, "report": {"enabled": False},
                                         "selection": {"max_per_event": 0},
                                         "tickets": {"token": "tok", "sinks": []}} | actions,
                             "hysteresis": {"k": 1, "m": 1, "recover": 2}})


def verdict(stream, drifted, changed, fired, t):
    ks = Outcome("ks", 0.9 if fired else 0.1, 1e-6 if fired else 0.6, 0.05, fired, "bonferroni", "",
                     (FeatureOutcome("brightness_mean", 0.9 if fired else 0.1, 1e-6 if fired else 0.6, fired),
                      FeatureOutcome("contrast_rms", 0.1, 0.7, False)))
    return Verdict(stream, t, stream, 1, 100, 50, (ks,), fired, drifted, changed)


def window(stream, shift=0.0):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 2)).astype(np.float32) + [shift, 0]
    refs = [FrameRef(f"{stream}-{i}", stream, 1000.0 + i, "frames", 0, i, None) for i in range(50)]
    ref = Reference(features=rng.normal(size=(100, 2)).astype(np.float32), feature_names=NAMES, stream=stream)
    return WindowSnapshot(stream=stream, rows=rows, refs=refs, embeddings=None, feature_names=NAMES, reference=ref)


def get(actions, path, query=""):
    routes = actions.routes()
    for (method, prefix), route in sorted(routes.items(), key=lambda kv: -len(kv[0][1])):
        if method == "GET" and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
            return route(Request("GET", path, query, {}, b""))
    raise AssertionError(path)


def test_events_open_close_and_survive_a_restart(tmp_path):
    config = make_config(tmp_path)
    reg = CollectorRegistry()
    a = Actions(config, reg)
    a.on_verdict(verdict("cam-1", False, False, False, 1.0), window("cam-1"))
    a.on_verdict(verdict("cam-1", True, True, True, 2.0), window("cam-1", 3.0))
    a.on_verdict(verdict("cam-1", True, False, True, 3.0), window("cam-1", 3.0))  # still drifted: same event
    a.on_verdict(verdict("cam-2", False, False, False, 3.0), window("cam-2"))
    events = get(a, "/events").body["events"]
    assert len(events) == 1 and events[0]["stream"] == "cam-1" and events[0]["status"] == "open"
    eid = events[0]["id"]
    full = get(a, f"/events/{eid}").body
    assert full["fired"][0]["feature"] == "brightness_mean" and full["fired"][0]["p_value"] == 1e-6
    assert full["shifts"]["brightness_mean"]["z"] > 2
    assert len(full["window"]["refs"]) == 50 and full["window"]["refs"][0]["offset"] == 0
    assert full["healthy_refs"]  # frames of the healthy window seen before the drift
    assert get(a, f"/events/{eid}/report").status == 404  # reports are off
    assert get(a, "/events/nope").status == 404
    assert reg.get_sample_value("driftmon_drift_events_total", {"stream": "cam-1"}) == 1
    assert reg.get_sample_value("driftmon_drift_events_open") == 1
    a.close()

    # restart: the event is still open; a fresh drifted transition joins it instead of opening another
    b = Actions(config, CollectorRegistry())
    assert get(b, "/events", "status=open").body["events"][0]["id"] == eid
    b.on_verdict(verdict("cam-1", False, False, True, 10.0), window("cam-1", 3.0))
    b.on_verdict(verdict("cam-1", True, True, True, 11.0), window("cam-1", 3.0))
    assert [e["id"] for e in get(b, "/events").body["events"]] == [eid]
    b.on_verdict(verdict("cam-1", False, True, False, 12.0), window("cam-1"))  # recovered
    closed = get(b, f"/events/{eid}").body
    assert closed["status"] == "closed" and closed["closed_at"] == 12.0 and closed["close_reason"] == "recovered"
    b.close()


def test_an_event_carried_over_a_restart_closes_after_clean_evaluations(tmp_path):
    config = make_config(tmp_path)
    a = Actions(config, CollectorRegistry())
    a.on_verdict(verdict("cam-1", True, True, True, 2.0), window("cam-1", 3.0))
    a.close()
    b = Actions(config, CollectorRegistry())
    # after a restart hysteresis starts clean, so "not drifted" alone proves nothing; `recover`
    # (2) evaluations that did not fire do
    b.on_verdict(verdict("cam-1", False, False, False, 10.0), window("cam-1"))
    assert get(b, "/events", "status=open").body["events"]
    b.on_verdict(verdict("cam-1", False, False, False, 11.0), window("cam-1"))
    assert get(b, "/events", "status=open").body["events"] == []
    assert get(b, "/events", "status=closed").body["events"][0]["close_reason"] == "recovered after a restart"
    assert get(b, "/events", "status=bogus").status == 400
    b.close()


def test_alertmanager_route_checks_token_then_payload(tmp_path):
    a = Actions(make_config(tmp_path), CollectorRegistry())
    route = a.routes()[("POST", "/alerts/alertmanager")]
    body = json.dumps({"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "labels": {"alertname": "DriftmonStreamDrifted", "stream": "cam-1"}, "annotations": {},
         "startsAt": "2026-11-27T18:40:00Z", "fingerprint": "abc"}]}).encode()
    assert route(Request("POST", "/alerts/alertmanager", "", {}, body)).status == 401
    assert route(Request("POST", "/alerts/alertmanager", "", {"authorization": "Bearer nope"}, body)).status == 401
    assert route(Request("POST", "/alerts/alertmanager", "", {"authorization": "Bearer tok"}, b"{}")).status == 400
    assert a.tickets.list() == []
    ok = route(Request("POST", "/alerts/alertmanager", "", {"authorization": "Bearer tok"}, body))
    assert ok.status == 200 and ok.body["tickets"] == [{"id": "drift-abc", "action": "created"}]
    a.close()
