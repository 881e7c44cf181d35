"""Labels taken back: kept once per annotation under their event, measured, on the event, the
ticket (refresh cycle included) and the metrics; the webhook route; the baseline."""

import json
import time
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.actions.events import EventStore
from monitor.actions.metrics import ActionMetrics
from monitor.actions.tickets import TicketBook, markdown, parse_webhook
from monitor.config import config_from_dict
from monitor.errors import InputError
from monitor.loop.baseline import read_baseline
from monitor.loop.feedback import LabelFeedback, refreshes
from monitor.loop.labels import Label
from monitor.reference.store import Reference, ReferenceStore
from monitor.service.http import Request
from tests.monitor.actions.conftest import drift_event, sample

CLASSES = ["car", "person"]
CHOICES = (
    '<View><Image name="image" value="$image"/><Choices name="c" toName="image">'
    '<Choice value="car"/><Choice value="person"/></Choices></View>'
)
HOOK = "hook-token"


def config(tmp_path, **feedback):
    return config_from_dict(
        {
            "actions": {
                "enabled": True,
                "state_dir": str(tmp_path / "state"),
                "relabel": {
                    "sinks": ["kafka"],
                    "label_studio": {"label_config": CHOICES},
                },
                "feedback": {"poll_interval_s": 0, "webhook_token": HOOK} | feedback,
            },
            "reference": {"path": str(tmp_path / "refs")},
            "training": {"path": str(tmp_path / "training")},
        }
    )


def label(key, choice, annotator="1", aid=None, at=1_800_000_100.0):
    return Label(key, annotator, aid or f"{key}#{annotator}", at, classes=(choice,))


class World:
    """An event with four queued frames (the model says "person" on frames 0 and 1, "car" on 2 and
    3), its store, a ticket linking it, and the feedback component."""

    def __init__(self, tmp_path, **feedback):
        self.config = config(tmp_path, **feedback)
        self.events = EventStore(tmp_path / "state" / "events")
        opened = float(int(time.time()) - 600)  # ten minutes ago: tickets link past events
        event = drift_event(opened_at=opened, frames=5)
        probs = [[0.1, 0.9], [0.3, 0.7], [0.8, 0.2], [0.6, 0.4]]
        samples = tuple(
            replace(sample(event, i), predictions={"probs": p}) for i, p in enumerate(probs)
        )
        self.event = self.events.create(replace(event, samples=samples), {"rows": np.zeros((5, 1))})
        self.keys = [s.key for s in samples]
        self.changes = []
        self.tickets = TicketBook(
            tmp_path / "state" / "tickets",
            self.config.actions.tickets,
            events=self.events,
            link=lambda p: "http://driftmon" + p,
            on_change=lambda a, t: self.changes.append((a, t)),
            refreshes=refreshes(self.config),
        )
        hook = {
            "version": "4",
            "groupKey": "g",
            "truncatedAlerts": 0,
            "status": "firing",
            "receiver": "driftmon",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [
                {
                    "status": "firing",
                    "labels": {"alertname": "DriftmonStreamDrifted", "stream": "cam-1"},
                    "annotations": {},
                    "startsAt": datetime.fromtimestamp(opened, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus/graph",
                    "fingerprint": "f00d",
                }
            ],
        }
        self.tid = self.tickets.apply(parse_webhook(json.dumps(hook).encode())).changes[0][0]
        self.registry = CollectorRegistry()
        self.metrics = ActionMetrics(self.registry, 10)
        self.feedback = LabelFeedback(
            self.config, tmp_path / "state", self.events, self.tickets, self.metrics
        )

    def value(self, name, **labels):
        return self.registry.get_sample_value(name, labels)


def test_labels_are_measured_on_the_event_the_ticket_and_the_metrics(tmp_path):
    w = World(tmp_path)
    truth = ["person", "car", "car", "car"]  # the model is wrong on frame 1 only
    taken = w.feedback.ingest(
        [label(k, c) for k, c in zip(w.keys, truth, strict=True)] + [label("cam-9/x", "car")]
    )
    assert taken == 4  # the frame driftmon did not queue is none of its business
    got = w.events.get(w.event.id).labelled
    assert (got.frames, got.annotations, got.measured, got.kind) == (4, 4, 4, "class")
    assert got.model_error == pytest.approx(0.25)
    assert got.agreement_frames == 0 and got.kappa is None
    # the confidences of the predicted classes: 0.9, 0.7, 0.8, 0.6
    assert got.estimated_accuracy == pytest.approx(0.75)
    assert got.calibrated is None  # fewer than 10 frames: not checked
    ticket = w.tickets.get(w.tid)
    assert ticket.events[0].labelled == got
    assert [s.step for s in ticket.cycle] == ["event_opened", "frames_queued", "labels_back"]
    assert ticket.history[-1].action == "relinked" and w.changes[-1][0] == "updated"
    assert "model error on the drifted frames: 25% (4 frame(s))" in markdown(ticket)
    assert w.value("driftmon_labels_total", stream="cam-1") == 4
    assert w.value("driftmon_labelled_model_error_ratio", stream="cam-1") == pytest.approx(0.25)


def test_the_same_annotation_twice_counts_once_and_its_newer_version_wins(tmp_path):
    w = World(tmp_path)
    first = [label(k, "car") for k in w.keys]
    assert w.feedback.ingest(first) == 4
    assert w.feedback.ingest(first) == 0  # polled again, or from another replica: nothing new
    assert w.events.get(w.event.id).labelled.model_error == pytest.approx(0.5)
    # annotator 1 corrects frame 0 to "person" (the model's answer): a newer version
    assert w.feedback.ingest([label(w.keys[0], "person", at=1_800_000_200.0)]) == 1
    got = w.events.get(w.event.id).labelled
    assert got.annotations == 4 and got.model_error == pytest.approx(0.25)
    assert w.value("driftmon_labels_total", stream="cam-1") == 5


def test_two_annotators_of_a_frame_give_the_agreement(tmp_path):
    w = World(tmp_path)
    a = ["car", "car", "person", "person"]
    b = ["car", "person", "person", "person"]
    w.feedback.ingest([label(k, c, "1") for k, c in zip(w.keys, a, strict=True)])
    w.feedback.ingest(
        [label(k, c, "2", at=1_800_000_300.0) for k, c in zip(w.keys, b, strict=True)]
    )
    got = w.events.get(w.event.id).labelled
    # p_o = 3/4; p_e = 0.5 * 0.25 + 0.5 * 0.75 = 0.5; kappa = (0.75 - 0.5) / 0.5
    assert got.agreement_frames == 4 and got.kappa == pytest.approx(0.5)
    assert got.annotations == 8 and got.frames == 4
    # the newest label of each frame is annotator 2's; the model (person, person, car, car) is
    # right on frame 1 only
    assert got.model_error == pytest.approx(0.75)
    assert w.value("driftmon_label_agreement_kappa", stream="cam-1") == pytest.approx(0.5)


def test_the_baseline_is_read_once_and_set_beside_every_event(tmp_path):
    path = tmp_path / "baseline.jsonl"
    rows = [{"predictions": {"probs": [0.9, 0.1]}, "label": "car"}] * 9
    rows += [{"predictions": {"probs": [0.9, 0.1]}, "label": "person"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    w = World(tmp_path, baseline=str(path))
    assert w.value("driftmon_baseline_model_error_ratio") == pytest.approx(0.1)
    w.feedback.ingest([label(k, "car") for k in w.keys])
    assert w.events.get(w.event.id).labelled.baseline_error == pytest.approx(0.1)
    assert "vs 10% baseline" in markdown(w.tickets.get(w.tid))


def test_a_baseline_that_cannot_be_used_names_its_line(tmp_path):
    path = tmp_path / "baseline.jsonl"
    path.write_text('{"predictions": {"probs": [0.9, 0.1]}, "label": "car"}\nnot json\n')
    with pytest.raises(InputError, match=r"^actions\.feedback\.baseline: .* line 2: "):
        read_baseline(config(tmp_path, baseline=str(path)))
    path.write_text('{"label": "car"}\n')
    with pytest.raises(InputError, match="has no frame with predictions"):
        read_baseline(config(tmp_path, baseline=str(path)))


def test_the_baseline_calibrates_the_confidences_of_an_overconfident_model(tmp_path):
    """A model right half the time at confidence 0.9: the baseline's calibration reads 0.9 as
    0.5."""
    path = tmp_path / "baseline.jsonl"
    rows = [
        {"predictions": {"probs": [0.9, 0.1]}, "label": "car" if i % 2 else "person"}
        for i in range(200)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    baseline = read_baseline(config(tmp_path, baseline=str(path)))
    assert baseline.error == pytest.approx(0.5)
    assert baseline.calibration().apply(np.array([0.9]))[0] == pytest.approx(0.5)


def test_label_studios_webhook_route(tmp_path):
    w = World(tmp_path)
    body = json.dumps(
        {
            "action": "ANNOTATION_CREATED",
            "project": {"id": 1},
            "task": {"id": 7, "data": {"driftmon_key": w.keys[1], "image": "/data/x.jpg"}},
            "annotation": {
                "id": 70,
                "task": 7,
                "completed_by": 1,
                "updated_at": "2027-01-15T08:05:00Z",
                "was_cancelled": False,
                "result": [
                    {"from_name": "c", "to_name": "image", "type": "choices",
                     "value": {"choices": ["car"]}}
                ],
            },
        }
    ).encode()  # fmt: skip

    def post(body, token):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return w.feedback.webhook(Request("POST", "/labels/label-studio", "", headers, body))

    assert post(body, None).status == 401 and post(body, "wrong").status == 401
    assert post(b"{not json", HOOK).status == 400
    answer = post(body, HOOK)
    assert answer.status == 200 and answer.body == {"labels": 1}
    assert w.events.get(w.event.id).labelled.model_error == pytest.approx(1.0)  # said "person"
    assert post(body, HOOK).body == {"labels": 0}


def test_the_refresh_cycle_records_a_promoted_reference_and_a_new_training_set(tmp_path):
    w = World(tmp_path)
    since = time.time() - 1
    reference = Reference(features=np.zeros((3, 1), np.float32), feature_names=("x",))
    ReferenceStore(tmp_path / "refs").add(replace(reference, stream="cam-1"))
    ReferenceStore(tmp_path / "training").add(reference)
    ReferenceStore(tmp_path / "refs").add(replace(reference, stream="cam-2"))  # another camera
    steps = refreshes(w.config)("cam-1", since)
    assert [(s.step, s.text) for s in steps] == [
        ("reference_promoted", "reference v1 of cam-1 promoted"),
        ("training_refreshed", "training set v1 registered"),
    ]
    assert refreshes(w.config)("cam-1", time.time() + 60) == []  # nothing written after
