"""Labels back from a real Label Studio (1.23) server.

The relabel sink creates the project (with overlap: a share of the tasks for two annotators) and
delivers frames with the model's predictions; two users annotate them through Label Studio's API
(a second user is created with ``POST /api/users``; the test's admin token submits on its behalf
with ``completed_by``), one edits an answer, one skips a frame; on a box project a pre-annotation is
accepted with Label Studio's bulk "predictions to annotations" action. Then: the project carries the
overlap settings, :class:`LabelStudioLabels` reads back exactly the submitted answers, the model's
error and the annotators' kappa are the numbers worked out by hand, and the webhooks Label Studio
itself sent (to a real HTTP receiver here) parse to the same labels.

Label Studio refuses webhooks to loopback addresses unless ``SSRF_PROTECTION_ENABLED=false``,
which the server here is started with. Without Label Studio installed the test skips.
"""

import dataclasses
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from monitor.actions.sinks import LabelStudioSink
from monitor.config import LabelStudioConfig
from monitor.loop.label_studio import LabelStudioLabels, parse_webhook
from monitor.loop.labels import (
    Outcome,
    agreement,
    consensus,
    frame_outcome,
    summarize,
)
from tests.monitor.actions.conftest import drift_event, sample

from .labelstudio import LS_TOKEN

CLASSES = ("day", "night")
CHOICES_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="when" toName="image">'
    '<Choice value="day"/><Choice value="night"/></Choices></View>'
)
BOXES_CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="car"/><Label value="person"/></RectangleLabels></View>'
)
W, H = 64, 48
HOOK_TOKEN = "ls-hook-s3cret"


@pytest.fixture
def ls(label_studio_hooks):
    """Label Studio, its webhooks allowed to reach this test's loopback receiver."""
    return label_studio_hooks


class HookReceiver:
    """A real HTTP server on loopback keeping the raw bodies Label Studio's webhook POSTs."""

    def __init__(self):
        self.bodies: list[bytes] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                outer.auth.append(self.headers.get("Authorization"))
                outer.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/labels/label-studio"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def actions(self):
        return [json.loads(b)["action"] for b in self.bodies]

    def wait_for(self, n, timeout=30.0):
        deadline = time.monotonic() + timeout
        while len(self.bodies) < n:
            assert time.monotonic() < deadline, f"{len(self.bodies)} of {n} webhooks arrived"
            time.sleep(0.05)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def png():
    img = np.zeros((H, W, 3), np.uint8)
    img[10:30, 5:40] = 200
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def deliver(ls, config, predictions):
    """The project created by the relabel sink, one task per prediction; task id by frame key."""
    sink = LabelStudioSink(config)
    event = drift_event(stream=f"cam-{uuid.uuid4().hex[:4]}", frames=len(predictions))
    samples = [
        dataclasses.replace(sample(event, i), predictions=p) for i, p in enumerate(predictions)
    ]
    for s in samples:
        sink.deliver(s, lambda _: png())
    pid = sink.ensure_project()
    tasks = ls.call("GET", f"/api/tasks?project={pid}&fields=all&page_size=100")
    ids = {t["data"]["driftmon_key"]: t["id"] for t in tasks["tasks"]}
    return pid, [s.key for s in samples], ids


def second_user(ls):
    email = f"annotator-{uuid.uuid4().hex[:6]}@example.com"
    user = ls.call("POST", "/api/users", {"email": email, "username": email.split("@")[0]})
    return user["id"]


def choice(value):
    return [
        {"from_name": "when", "to_name": "image", "type": "choices", "value": {"choices": [value]}}
    ]


def annotate(ls, task_id, result, user=None, **extra):
    body = {"result": result} | ({"completed_by": user} if user is not None else {}) | extra
    return ls.call("POST", f"/api/tasks/{task_id}/annotations", body)


def test_class_labels_come_back_with_the_models_error_and_the_annotators_kappa(ls):
    config = LabelStudioConfig(
        url=ls.url,
        token=LS_TOKEN,
        project_title=f"classes {uuid.uuid4().hex[:6]}",
        label_config=CHOICES_CONFIG,
        overlap=0.5,
    )
    # the model says: night, day, night, day
    preds = [
        {"probs": [0.2, 0.8]},
        {"probs": [0.9, 0.1]},
        {"probs": [0.3, 0.7]},
        {"probs": [0.6, 0.4]},
    ]
    receiver = HookReceiver()
    try:
        # a webhook on the project before anyone labels (the sink creates the project first)
        pid = LabelStudioSink(config).ensure_project()
        ls.call(
            "POST",
            "/api/webhooks",
            {
                "url": receiver.url,
                "project": pid,
                "send_payload": True,
                "send_for_all_actions": False,
                "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"],
                "headers": {"Authorization": f"Token {HOOK_TOKEN}"},
            },
        )
        pid2, keys, ids = deliver(ls, config, preds)
        assert pid2 == pid and sorted(ids) == sorted(keys)

        project = ls.call("GET", f"/api/projects/{pid}")
        assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (2, 50)

        admin = ls.call("GET", "/api/current-user/whoami")["id"]
        u2 = second_user(ls)
        # admin: night, day, night, night (then edited to day); u2 on frames 0-2: night, day,
        # day, and skips frame 3
        a = [
            annotate(ls, ids[k], choice(v))
            for k, v in zip(keys, ["night", "day", "night", "night"], strict=True)
        ]
        ls.call("PATCH", f"/api/annotations/{a[3]['id']}", {"result": choice("day")})
        b = [
            annotate(ls, ids[k], choice(v), user=u2)
            for k, v in zip(keys[:3], ["night", "day", "day"], strict=True)
        ]
        skipped = annotate(ls, ids[keys[3]], [], user=u2, was_cancelled=True)
        assert skipped["was_cancelled"] is True

        labels = LabelStudioLabels(config).fetch()
        got = {(lb.key, lb.annotator, lb.annotation_id, lb.classes) for lb in labels}
        assert got == {
            (keys[0], str(admin), str(a[0]["id"]), ("night",)),
            (keys[1], str(admin), str(a[1]["id"]), ("day",)),
            (keys[2], str(admin), str(a[2]["id"]), ("night",)),
            (keys[3], str(admin), str(a[3]["id"]), ("day",)),  # the edited answer
            (keys[0], str(u2), str(b[0]["id"]), ("night",)),
            (keys[1], str(u2), str(b[1]["id"]), ("day",)),
            (keys[2], str(u2), str(b[2]["id"]), ("day",)),
        }  # the skip is no label
        assert all(lb.boxes is None and lb.updated_at > 1.7e9 for lb in labels)

        # the model on the latest answer per frame: night ok, day ok, night vs day wrong, day ok
        latest = consensus(labels)
        assert {k: lb.annotator for k, lb in latest.items()} == {
            keys[0]: str(u2),
            keys[1]: str(u2),
            keys[2]: str(u2),
            keys[3]: str(admin),
        }
        outcomes = [frame_outcome(p, latest[k], CLASSES) for k, p in zip(keys, preds, strict=True)]
        assert outcomes == [Outcome("class", e, 1) for e in (0, 0, 1, 0)]
        s = summarize(outcomes)
        assert (s.frames, s.frame_errors, s.error_rate) == (4, 1, 0.25)

        # agreement on frames 0-2: (night, night), (day, day), (night, day): p_o 2/3; admin says
        # night 2/3, u2 1/3: p_e = 2/3*1/3 + 1/3*2/3 = 4/9; kappa = (2/3 - 4/9) / (5/9) = 0.4
        ag = agreement(labels)
        assert (ag.frames, ag.class_frames) == (3, 3)
        assert ag.kappa == pytest.approx(0.4) and ag.observed == pytest.approx(2 / 3)

        # what Label Studio itself sent: 7 annotations created (the skip too), 1 updated
        receiver.wait_for(9)
        assert sorted(receiver.actions()) == ["ANNOTATION_CREATED"] * 8 + ["ANNOTATION_UPDATED"]
        assert set(receiver.auth) == {f"Token {HOOK_TOKEN}"}
        hooked = [lb for body in receiver.bodies for lb in parse_webhook(body)]
        assert len(hooked) == 8  # not the skip
        # the newest version of each annotation is what the API returns
        newest = {lb.annotation_id: lb for lb in sorted(hooked, key=lambda lb: lb.updated_at)}
        assert sorted(newest.values(), key=lambda lb: lb.annotation_id) == sorted(
            labels, key=lambda lb: lb.annotation_id
        )
    finally:
        receiver.close()


def test_box_labels_come_back_in_pixels_and_are_matched_to_the_models_detections(ls):
    config = LabelStudioConfig(
        url=ls.url,
        token=LS_TOKEN,
        project_title=f"boxes {uuid.uuid4().hex[:6]}",
        label_config=BOXES_CONFIG,
        overlap=0.5,
    )
    preds = [
        {"detections": [{"label": "car", "score": 0.9, "box": [8, 12, 40, 36]}]},
        {"detections": [{"label": "person", "score": 0.8, "box": [0, 0, 16, 24]}]},
    ]
    pid, keys, ids = deliver(ls, config, preds)
    project = ls.call("GET", f"/api/projects/{pid}")
    assert (project["maximum_annotations"], project["overlap_cohort_percentage"]) == (2, 50)

    def rect(label, x0, y0, x1, y1):  # pixels -> Label Studio's percent of the image
        return {
            "from_name": "label",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": W,
            "original_height": H,
            "image_rotation": 0,
            "value": {
                "x": 100 * x0 / W,
                "y": 100 * y0 / H,
                "width": 100 * (x1 - x0) / W,
                "height": 100 * (y1 - y0) / H,
                "rotation": 0,
                "rectanglelabels": [label],
            },
        }

    receiver = HookReceiver()
    try:
        ls.call(
            "POST",
            "/api/webhooks",
            {
                "url": receiver.url,
                "project": pid,
                "send_payload": True,
                "send_for_all_actions": False,
                "actions": ["ANNOTATION_CREATED", "ANNOTATIONS_CREATED"],
            },
        )
        # frame 0: the annotator accepts the model's pre-annotation (Label Studio's bulk action
        # "predictions to annotations": an ANNOTATIONS_CREATED webhook), the car where the model
        # saw it (TP); frame 1: a car drawn by hand where the model saw a person (FP + FN)
        done = ls.call(
            "POST",
            f"/api/dm/actions?id=predictions_to_annotations&project={pid}",
            {"selectedItems": {"all": False, "included": [ids[keys[0]]]}},
        )
        assert done["detail"] == "Created 1 annotations"
        annotate(ls, ids[keys[1]], [rect("car", 0, 0, 16, 24)])
        labels = {lb.key: lb for lb in LabelStudioLabels(config).fetch()}
        receiver.wait_for(2)
        assert sorted(receiver.actions()) == ["ANNOTATIONS_CREATED", "ANNOTATION_CREATED"]
        hooked = [lb for body in receiver.bodies for lb in parse_webhook(body)]
        assert sorted(hooked, key=lambda lb: lb.key) == sorted(
            labels.values(), key=lambda lb: lb.key
        )
    finally:
        receiver.close()
    car = labels[keys[0]].boxes
    assert car is not None and len(car) == 1
    assert car[0].label == "car" and (car[0].x0, car[0].y0, car[0].x1, car[0].y1) == pytest.approx(
        (8, 12, 40, 36)
    )
    (other,) = labels[keys[1]].boxes or ()
    assert other.label == "car"
    assert (other.x0, other.y0, other.x1, other.y1) == pytest.approx((0, 0, 16, 24))
    outcomes = [frame_outcome(p, labels[k], CLASSES) for k, p in zip(keys, preds, strict=True)]
    assert outcomes == [Outcome("boxes", 0, 1), Outcome("boxes", 2, 2)]
    s = summarize(outcomes)
    assert (s.frame_error_rate, s.error_rate) == (0.5, pytest.approx(2 / 3))
