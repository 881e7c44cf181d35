"""Drift events through Actions.on_evaluation: open, close, persistence across a restart, HTTP
routes, evaluations from every kind of test, and failures inside actions.

No broker here: selection has a zero budget and reports are off, so nothing is fetched; the real
pipeline (broker, Label Studio, Alertmanager payloads) is tests/integration/test_actions.py.
"""

import json
import time

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.actions import explain
from monitor.actions.coordinator import Actions
from monitor.actions.tickets import condition, suggest
from monitor.config import config_from_dict
from monitor.files import REFRESH_S
from monitor.pipeline.drift_tests import FeatureOutcome
from monitor.pipeline.drift_tests import TestOutcome as Outcome
from monitor.pipeline.engine import Engine, Evaluation
from monitor.pipeline.features import FEATURE_NAMES
from monitor.pipeline.predictions import Prediction, PredictionWindow, reference_predictions
from monitor.pipeline.streams import FrameRef, WindowSnapshot
from monitor.reference.store import Reference
from monitor.service.http import Request

NAMES = ("brightness_mean", "contrast_rms")
EMBEDDER = {
    "architecture": "test-encoder",
    "weights_sha256": "0" * 64,
    "input_size": 32,
    "normalisation": "none",
    "output_dim": 8,
}


def make_config(tmp_path, **actions):
    return config_from_dict(
        {
            "actions": {
                "enabled": True,
                "state_dir": str(tmp_path / "state"),
                "relabel": {"sinks": []},
                "report": {"enabled": False},
                "selection": {"max_per_event": 0},
                "tickets": {"token": "tok", "sinks": []},
            }
            | actions,
            "hysteresis": {"k": 1, "m": 1, "recover": 2},
        }
    )


def evaluation(stream, drifted, changed, fired, t):
    ks = Outcome(
        "ks",
        0.9 if fired else 0.1,
        1e-6 if fired else 0.6,
        0.05,
        fired,
        "bonferroni",
        "",
        (
            FeatureOutcome("brightness_mean", 0.9 if fired else 0.1, 1e-6 if fired else 0.6, fired),
            FeatureOutcome("contrast_rms", 0.1, 0.7, False),
        ),
    )
    return Evaluation(stream, t, stream, 1, 100, 50, (ks,), fired, drifted, changed)


def window(stream, shift=0.0, config=None):
    """A 50-frame window of two statistics (and embeddings, as by default) and the reference it is
    judged against, prepared by the engine as the daemon prepares it."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(50, 2)).astype(np.float32) + [shift, 0]
    refs = [FrameRef(f"{stream}-{i}", stream, 1000.0 + i, "frames", 0, i, None) for i in range(50)]
    ref = Reference(
        features=rng.normal(size=(100, 2)).astype(np.float32),
        feature_names=NAMES,
        stream=stream,
        embeddings=rng.normal(size=(100, 8)).astype(np.float32),
        embedder=EMBEDDER,
    )
    prepared = Engine(config or config_from_dict({}), NAMES).prepare(ref)
    return WindowSnapshot(
        stream=stream,
        rows=rows,
        refs=refs,
        embeddings=rng.normal(size=(50, 8)).astype(np.float32),
        feature_names=NAMES,
        prepared=prepared,
    )


def get(actions, path, query=""):
    routes = actions.routes()
    for (method, prefix), route in sorted(routes.items(), key=lambda kv: -len(kv[0][1])):
        if method == "GET" and (
            path == prefix or (prefix.endswith("/") and path.startswith(prefix))
        ):
            return route(Request("GET", path, query, {}, b""))
    raise AssertionError(path)


def test_events_open_close_and_survive_a_restart(tmp_path):
    config = make_config(tmp_path)
    reg = CollectorRegistry()
    a = Actions(config, reg)
    a.on_evaluation(evaluation("cam-1", False, False, False, 1.0), window("cam-1"))
    a.on_evaluation(evaluation("cam-1", True, True, True, 2.0), window("cam-1", 3.0))
    a.on_evaluation(
        evaluation("cam-1", True, False, True, 3.0), window("cam-1", 3.0)
    )  # still drifted: same event
    a.on_evaluation(evaluation("cam-2", False, False, False, 3.0), window("cam-2"))
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

    # restart: the event is still open; a fresh drifted transition joins it instead of opening
    # another
    b = Actions(config, CollectorRegistry())
    assert get(b, "/events", "status=open").body["events"][0]["id"] == eid
    b.on_evaluation(evaluation("cam-1", False, False, True, 10.0), window("cam-1", 3.0))
    b.on_evaluation(evaluation("cam-1", True, True, True, 11.0), window("cam-1", 3.0))
    assert [e["id"] for e in get(b, "/events").body["events"]] == [eid]
    b.on_evaluation(evaluation("cam-1", False, True, False, 12.0), window("cam-1"))  # recovered
    closed = get(b, f"/events/{eid}").body
    assert (
        closed["status"] == "closed"
        and closed["closed_at"] == 12.0
        and closed["close_reason"] == "recovered"
    )
    b.close()


def test_an_event_carried_over_a_restart_closes_after_clean_evaluations(tmp_path):
    config = make_config(tmp_path)
    a = Actions(config, CollectorRegistry())
    a.on_evaluation(evaluation("cam-1", True, True, True, 2.0), window("cam-1", 3.0))
    a.close()
    b = Actions(config, CollectorRegistry())
    # after a restart hysteresis starts clean, so "not drifted" alone proves nothing; `recover`
    # (2) evaluations that did not fire do
    b.on_evaluation(evaluation("cam-1", False, False, False, 10.0), window("cam-1"))
    assert get(b, "/events", "status=open").body["events"]
    b.on_evaluation(evaluation("cam-1", False, False, False, 11.0), window("cam-1"))
    assert get(b, "/events", "status=open").body["events"] == []
    assert (
        get(b, "/events", "status=closed").body["events"][0]["close_reason"]
        == "recovered after a restart"
    )
    assert get(b, "/events", "status=bogus").status == 400
    b.close()


def test_alertmanager_route_checks_token_then_payload(tmp_path):
    a = Actions(make_config(tmp_path), CollectorRegistry())
    route = a.routes()[("POST", "/alerts/alertmanager")]
    body = json.dumps(
        {
            "version": "4",
            "status": "firing",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "DriftmonStreamDrifted", "stream": "cam-1"},
                    "annotations": {},
                    "startsAt": "2026-11-27T18:40:00Z",
                    "fingerprint": "abc",
                }
            ],
        }
    ).encode()
    assert route(Request("POST", "/alerts/alertmanager", "", {}, body)).status == 401
    assert (
        route(
            Request("POST", "/alerts/alertmanager", "", {"authorization": "Bearer nope"}, body)
        ).status
        == 401
    )
    assert (
        route(
            Request("POST", "/alerts/alertmanager", "", {"authorization": "Bearer tok"}, b"{}")
        ).status
        == 400
    )
    assert a.tickets.list() == []
    ok = route(Request("POST", "/alerts/alertmanager", "", {"authorization": "Bearer tok"}, body))
    assert ok.status == 200 and ok.body["tickets"] == [{"id": "drift-abc", "action": "created"}]
    a.close()


def every_kind(stream):
    """A real evaluation of the default tests on a window where image statistics, embeddings and the
    model's outputs all moved, with the window and the reference it was judged against."""
    rng = np.random.default_rng(3)
    config = config_from_dict({})
    k = len(FEATURE_NAMES)
    ref_rows = rng.normal(100, 5, size=(300, k)).astype(np.float32)
    rows = rng.normal(100, 5, size=(80, k)).astype(np.float32)
    rows[:, FEATURE_NAMES.index("noise_sigma")] += 40  # far beyond the reference's spread
    ref_emb = rng.normal(size=(300, 8)).astype(np.float32)
    emb = rng.normal(size=(80, 8)).astype(np.float32) + 2.5

    def preds(n, mix, peak):
        out = []
        for c in rng.choice(3, size=n, p=mix):
            logits = rng.normal(size=3)
            logits[c] += peak
            p = np.exp(logits) / np.exp(logits).sum()
            out.append(Prediction(str(int(np.argmax(p))), float(p.max()), p.astype(np.float32)))
        return out

    predictions = reference_predictions(preds(300, [0.6, 0.3, 0.1], 4.0))
    ref = Reference(
        features=ref_rows,
        feature_names=FEATURE_NAMES,
        stream=stream,
        embeddings=ref_emb,
        embedder=EMBEDDER,
        predictions=predictions,
    )
    engine = Engine(config, FEATURE_NAMES)
    prepared = engine.prepare(ref)
    window_preds = PredictionWindow(preds(80, [0.1, 0.2, 0.7], 0.5))
    judged = engine.run_tests(prepared, rows, emb, window_preds)
    evaluation = Evaluation(
        stream, 50.0, stream, 1, 300, 80, judged.tests, judged.drifted, True, True
    )
    refs = [FrameRef(f"{stream}-{i}", stream, 1000.0 + i, "frames", 0, i, None) for i in range(80)]
    return evaluation, WindowSnapshot(
        stream, rows, refs, emb, FEATURE_NAMES, prepared, window_preds
    )


def test_a_verdict_from_every_kind_of_test_opens_one_event_named_in_words(tmp_path):
    evaluation, snapshot = every_kind("cam-9")
    drifted = {t.name for t in evaluation.tests if t.drifted}
    assert {"ks", "mmd", "ks_dims", "pred_class", "confidence", "probs_ks"} <= drifted, drifted
    reg = CollectorRegistry()
    a = Actions(make_config(tmp_path), reg)
    a.on_evaluation(evaluation, snapshot)
    events = get(a, "/events").body["events"]
    assert (
        len(events) == 1
        and reg.get_sample_value("driftmon_action_errors_total", {"stage": "evaluation"}) == 0
    )
    event = get(a, f"/events/{events[0]['id']}").body
    kinds = {f["kind"] for f in event["fired"]}
    assert kinds == {"statistics", "embeddings", "predictions"}
    shifts = event["shifts"]
    assert shifts["noise_sigma"]["what"] == "sensor noise" and shifts["noise_sigma"]["z"] > 5
    assert (
        shifts["embeddings"]["what"] == "the embedding distribution (MMD)"
        and shifts["embeddings"]["p_value"] < 0.05
    )
    pcs = [f for f in shifts if explain.component_index(f) is not None]
    assert pcs and all(
        shifts[f]["what"].startswith("principal component ") and shifts[f]["z"] is not None
        for f in pcs
    )
    assert shifts["predicted_class"]["what"] == "the predicted-class mix"
    shares = {
        r["class"]: r for r in shifts["predicted_class"]["shares"][:2]
    }  # the two that moved most
    assert shares["0"]["window_share"] < shares["0"]["reference_share"]
    assert shares["2"]["window_share"] > shares["2"]["reference_share"]
    assert shifts["confidence"]["z"] < 0  # the model became unsure
    collect = suggest("cam-9", [a.events.get(event["id"])], 0, 0.0, 86_400)[0]
    assert collect.conditions[0].startswith("noisier frames") and len(collect.conditions) == 3
    assert any("in the embeddings" in c for c in collect.conditions)
    assert condition("confidence", shifts["confidence"]["z"], "predictions").startswith(
        "frames the model is less sure"
    )
    assert (
        condition("predicted_class", None, "predictions") == "a different mix of predicted classes"
    )
    a.close()


def test_a_failure_inside_actions_is_counted_and_the_event_opens_at_the_next_evaluation(
    tmp_path, monkeypatch
):
    reg = CollectorRegistry()
    a = Actions(make_config(tmp_path), reg)
    real = explain.measure

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in describing a shift")

    monkeypatch.setattr(explain, "measure", broken)
    a.on_evaluation(
        evaluation("cam-1", True, True, True, 2.0), window("cam-1", 3.0)
    )  # does not raise
    assert get(a, "/events").body["events"] == []
    assert reg.get_sample_value("driftmon_action_errors_total", {"stage": "open_event"}) == 1
    a.on_evaluation(
        evaluation("cam-1", True, False, True, 3.0), window("cam-1", 3.0)
    )  # still broken: still pending
    assert reg.get_sample_value("driftmon_action_errors_total", {"stage": "open_event"}) == 2
    monkeypatch.setattr(explain, "measure", real)
    a.on_evaluation(evaluation("cam-1", True, False, True, 4.0), window("cam-1", 3.0))
    events = get(a, "/events").body["events"]
    assert (
        len(events) == 1 and events[0]["opened_at"] == 2.0
    )  # the evaluation that declared the drift
    a.close()


def test_every_kind_of_feature_gets_its_metric_series_and_selection_ignores_non_statistics():
    from monitor.actions.selection import score_window
    from monitor.config import MetricsConfig
    from monitor.service.metrics import Metrics

    evaluation, snapshot = every_kind("cam-9")
    reg = CollectorRegistry()
    Metrics(MetricsConfig(), reg).observe_evaluation(evaluation, None)
    for test, feature in (
        ("ks", "noise_sigma"),
        ("mmd", "embeddings"),
        ("ks_dims", "pc00"),
        ("pred_class", "predicted_class"),
        ("probs_ks", "class_2"),
    ):
        labels = {"stream": "cam-9", "test": test, "feature": feature}
        assert reg.get_sample_value("driftmon_stream_feature_statistic", labels) is not None, labels
    # a focus naming embedding components or model outputs judges extremeness on every statistic
    ref_rows = snapshot.reference.columns(FEATURE_NAMES)
    mixed = score_window(
        snapshot.rows, ref_rows, FEATURE_NAMES, focus=["pc00", "embeddings", "predicted_class"]
    )
    every = score_window(snapshot.rows, ref_rows, FEATURE_NAMES)
    assert np.array_equal(mixed.extreme_z, every.extreme_z)


def test_replicas_sharing_a_state_dir_continue_one_event_across_a_handover(tmp_path):
    config = make_config(tmp_path)
    b_metrics = CollectorRegistry()
    a, b = Actions(config, CollectorRegistry()), Actions(config, b_metrics)
    a.on_evaluation(evaluation("cam-1", True, True, True, 2.0), window("cam-1", 3.0))
    (eid,) = [e["id"] for e in get(a, "/events").body["events"]]
    time.sleep(REFRESH_S)  # what another replica wrote is seen this late at most
    assert get(b, "/events").body == get(a, "/events").body  # b serves a's event
    # the stream moves to b, its detection state with it (still drifted, no transition): b
    # continues a's event instead of opening another
    a.on_hand_over(["cam-1"])
    b.on_evaluation(evaluation("cam-1", True, False, True, 3.0), window("cam-1", 3.0))
    assert [e["id"] for e in get(b, "/events").body["events"]] == [eid]
    assert not b_metrics.get_sample_value("driftmon_drift_events_total", {"stream": "cam-1"})
    assert b_metrics.get_sample_value("driftmon_drift_events_open") == 1  # the fleet's
    # and closes it when the stream recovers there
    b.on_evaluation(evaluation("cam-1", False, True, False, 4.0), window("cam-1"))
    time.sleep(REFRESH_S)
    closed = get(a, f"/events/{eid}").body  # seen by a too
    assert closed["status"] == "closed" and closed["close_reason"] == "recovered"
    a.close()
    b.close()


def test_a_handed_over_event_closes_after_clean_evaluations_on_its_new_owner(tmp_path):
    config = make_config(tmp_path)
    a, b = Actions(config, CollectorRegistry()), Actions(config, CollectorRegistry())
    a.on_evaluation(evaluation("cam-1", True, True, True, 2.0), window("cam-1", 3.0))
    a.on_hand_over(["cam-1"])
    time.sleep(REFRESH_S)
    # b took the stream over without its state (no checkpoint store): `recover` clean
    # evaluations close the event, as after a restart
    b.on_evaluation(evaluation("cam-1", False, False, False, 10.0), window("cam-1"))
    assert get(b, "/events", "status=open").body["events"]
    b.on_evaluation(evaluation("cam-1", False, False, False, 11.0), window("cam-1"))
    time.sleep(REFRESH_S)
    (closed,) = get(a, "/events").body["events"]
    assert closed["status"] == "closed" and closed["close_reason"] == "recovered after a handover"
    a.close()
    b.close()


def test_an_event_against_a_reference_built_before_a_statistic_gets_its_evidence(tmp_path):
    # the window holds a statistic its reference predates (an upgrade added it): the windows were
    # judged without it, and the event's frames are selected and reported without it, not failed
    import cv2

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(4)
    snap = window("cam-1", 3.0)
    refs = []
    for r in snap.refs:
        path = frames / f"{r.frame_id}.jpg"
        cv2.imwrite(str(path), rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        refs.append(FrameRef(r.frame_id, r.camera_id, r.ts, "", 0, r.offset, path.as_uri()))
    old = Reference(
        features=snap.prepared.reference.features[:, :1],
        feature_names=NAMES[:1],
        stream="cam-1",
        embeddings=snap.prepared.reference.embeddings,
        embedder=EMBEDDER,
    )
    config = config_from_dict(
        {
            "source": {"allowed_roots": [str(frames)]},
            "actions": {
                "enabled": True,
                "state_dir": str(tmp_path / "state"),
                "relabel": {"sinks": []},
                "selection": {"max_per_event": 5},
                "tickets": {"token": "tok", "sinks": []},
            },
            "hysteresis": {"k": 1, "m": 1, "recover": 2},
        }
    )
    prepared = Engine(config, NAMES).prepare(old)
    assert prepared.feature_names == NAMES[:1]
    a = Actions(config, CollectorRegistry())
    a.on_evaluation(
        evaluation("cam-1", True, True, True, 2.0),
        WindowSnapshot("cam-1", snap.rows, refs, snap.embeddings, NAMES, prepared),
    )
    a.close(drain_s=60.0)
    (event,) = get(a, "/events").body["events"]
    full = get(a, f"/events/{event['id']}").body
    assert full["evidence"]["status"] == "done", full["evidence"]
    assert full["evidence"]["error"] is None
    assert len(full["samples"]) == 5
