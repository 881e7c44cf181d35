"""The data loop end to end, on the real broker and a real Label Studio server: a drifted camera's
frames are queued in Label Studio (with overlap), annotators submit labels through Label Studio's
API, Label Studio's webhook brings them to driftmon, and driftmon reports the model's error on
those frames beside the baseline and the annotators' agreement, on the event, the ticket and the
metrics; the training coverage and freshness gauges move as the camera drifts."""

import base64
import json
import time
from dataclasses import replace

import numpy as np
import pytest

from monitor.reference.collect import build_embedder_from, from_topic, make_reference
from monitor.reference.store import ReferenceStore
from monitor.sim.fleet import encode, make_fleet

from .conftest import ActionsDaemon, daemon_config, send_frames
from .labelstudio import LS_TOKEN
from .test_actions import TOKEN, alertmanager_payload

JSON = [("content-type", b"application/json")]
CLASSES = ("car", "person", "bike")
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="class" toName="image">'
    + "".join(f'<Choice value="{c}"/>' for c in CLASSES)
    + "</Choices></View>"
)
HOOK_TOKEN = "ls-hook-s3cret"
MAX_QUEUED = 6  # frames queued from the drift event, at most
TWICE = 4  # of which labelled by two annotators
EPOCH_S = 1_800_000_000  # frame t was captured at EPOCH_S + t


def envelopes(cam, ts, right: float, rng):
    """JSON envelopes with the model's class probabilities: the true class is always "car"; the
    model picks it with probability ``right``, confidently either way."""
    for t in ts:
        c = 0 if rng.random() < right else int(rng.integers(1, 3))
        probs = rng.dirichlet([1.0, 1.0, 1.0]) * 0.2
        probs[c] += 0.8
        value = json.dumps(
            {
                "camera_id": cam.camera_id,
                "frame_id": f"{cam.camera_id}-{t}",
                "ts": (EPOCH_S + t) * 1000,  # ms
                "image_b64": base64.b64encode(encode(cam.frame(t))).decode(),
                "predictions": {"probs": probs.tolist()},
            }
        ).encode()
        yield cam.camera_id.encode(), value, JSON


def annotate(ls, task_id, choice):
    """What an annotator's client does: POST an annotation with a Choices result."""
    return ls.call(
        "POST",
        f"/api/tasks/{task_id}/annotations",
        {
            "result": [
                {
                    "from_name": "class",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": [choice]},
                }
            ],
            "was_cancelled": False,
        },
    )


def kappa(a, b):
    """Cohen's kappa, spelled out for the test's own expectation."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in set(a) | set(b))
    return (observed - expected) / (1 - expected)


def test_labels_back_from_label_studio_measure_the_model_on_the_drifted_frames(
    broker,
    topic,
    tmp_path,
    label_studio_hooks,
):
    ls = label_studio_hooks
    fleet = make_fleet(2, seed=21, width=480, height=270, dynamics="iid")
    healthy, drifting = fleet
    rng = np.random.default_rng(21)
    ref_topic = f"{topic}-ref"
    broker.create_topic(ref_topic, partitions=1)
    send_frames(
        broker, ref_topic, [r for cam in fleet for r in envelopes(cam, range(150), 0.95, rng)]
    )
    base = daemon_config(broker, topic, tmp_path)
    embedder = build_embedder_from(base)
    got = from_topic(base, ref_topic, None, None, progress=False, embedder=embedder)
    refs = ReferenceStore(tmp_path / "refs")
    for cam in fleet:
        mask = np.array([s == cam.camera_id for s in got.streams])
        refs.add(
            make_reference(
                got,
                mask=mask,
                stream=cam.camera_id,
                source=f"kafka:{ref_topic}",
                config=base,
                embedder=embedder,
            )
        )
    # the model's training set: the two cameras' healthy frames (the noise to come is not in it)
    training = ReferenceStore(tmp_path / "training")
    trained = make_reference(
        got, stream=None, source=f"kafka:{ref_topic}", config=base, embedder=embedder
    )
    training.add(replace(trained, extra=trained.extra | {"role": "training"}))
    baseline = tmp_path / "baseline.jsonl"
    baseline.write_text(
        "".join(
            json.dumps(
                {
                    "predictions": {"probs": [0.9, 0.05, 0.05] if i else [0.1, 0.8, 0.1]},
                    "label": "car",
                }
            )
            + "\n"
            for i in range(20)
        )
    )  # one frame of twenty wrong: a 5% baseline error

    config = daemon_config(
        broker,
        topic,
        refs.path,
        training={"path": str(training.path)},
        actions={
            "enabled": True,
            "state_dir": str(tmp_path / "state"),
            # the iid camera re-renders one scene: its frames are near duplicates by perceptual
            # hash, and the test needs several of them labelled
            "selection": {
                "max_per_event": MAX_QUEUED,
                "max_per_day": 100,
                "pool_factor": 3,
                "hash_distance": 0,
            },
            "report": {"contact_sheet_frames": 4, "reference_frames": 2, "thumbnail_px": 64},
            "retry": {"attempts": 40, "backoff_s": 0.2, "max_backoff_s": 1.0},
            "relabel": {
                "sinks": ["label_studio"],
                "label_studio": {
                    "url": ls.url,
                    "token": LS_TOKEN,
                    "project_title": f"loop {topic}",
                    "label_config": LABEL_CONFIG,
                    "overlap": 0.5,
                },
            },
            "tickets": {"token": TOKEN, "sinks": ["directory"]},
            "feedback": {
                "poll_interval_s": 0,  # the webhook alone must bring the labels
                "webhook_token": HOOK_TOKEN,
                "baseline": str(baseline),
            },
        },
    )
    live = list(envelopes(healthy, range(150, 450), 0.95, rng)) + list(
        envelopes(drifting, range(150, 250), 0.95, rng)
    )
    drifting.set_shift("gaussian_noise", 4)
    live += list(envelopes(drifting, range(250, 450), 0.5, rng))
    send_frames(broker, topic, live)

    d = ActionsDaemon(config, drain_s=10)
    try:
        assert d.wait_for(
            lambda: d.value("driftmon_frames_total", outcome="processed") >= len(live)
        )
        # coverage: the healthy camera is what the model was trained on; the noisy one is not
        covered = d.value("driftmon_stream_training_coverage_ratio", stream=healthy.camera_id)
        uncovered = d.value("driftmon_stream_training_coverage_ratio", stream=drifting.camera_id)
        assert covered >= 0.8 and uncovered < 0.5, (covered, uncovered)
        # freshness: each stream's reference's newest frame, and the training set's
        newest = EPOCH_S + 149.0
        assert d.value(
            "driftmon_stream_reference_timestamp_seconds", stream=healthy.camera_id
        ) == pytest.approx(newest)
        assert d.value("driftmon_training_timestamp_seconds") == pytest.approx(newest)
        assert d.value("driftmon_baseline_model_error_ratio") == pytest.approx(0.05)

        events = d.get_json("/events")["events"]
        assert [e["stream"] for e in events] == [drifting.camera_id]
        eid = events[0]["id"]
        body, _ = alertmanager_payload(drifting.camera_id, "5f4e3d2c1b0a9988")
        status, answer = d.post("/alerts/alertmanager", body, TOKEN)
        assert status == 200
        tid = answer["tickets"][0]["id"]

        project = next(
            p
            for p in ls.call("GET", "/api/projects?page_size=100")["results"]
            if p["title"] == f"loop {topic}"
        )
        assert project["maximum_annotations"] == 2
        assert project["overlap_cohort_percentage"] == 50
        assert d.wait_for(lambda: d.get_json(f"/events/{eid}")["evidence"]["status"] == "done")
        event = d.get_json(f"/events/{eid}")
        queued = len(event["samples"])
        # the noisy frames outside the training set: grouped, shown in the report, asked for
        assert event["gaps"]["covered"] < 0.5 and event["gaps"]["groups"]
        status, _, page = d.get(f"/events/{eid}/report")
        assert status == 200 and "Outside the training set" in page.decode()
        assert event["gaps"]["groups"][0]["example_frame_id"] in page.decode()
        assert TWICE <= queued <= MAX_QUEUED, d.get_json(f"/events/{eid}").get("selection")
        assert d.wait_for(
            lambda: d.value("driftmon_relabel_frames_total", sink="label_studio") >= queued
        )
        # Label Studio's own webhook, to the daemon, with the bearer token in its headers
        ls.call(
            "POST",
            "/api/webhooks/",
            {
                "project": project["id"],
                "url": f"{d.base}/labels/label-studio",
                "send_payload": True,
                "send_for_all_actions": False,
                "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"],
                "headers": {"Authorization": f"Bearer {HOOK_TOKEN}"},
                "is_active": True,
            },
        )
        tasks = sorted(
            ls.call("GET", f"/api/tasks?project={project['id']}&page_size=100")["tasks"],
            key=lambda t: t["data"]["driftmon_key"],
        )
        assert len(tasks) == queued
        first = ["car", "car", "person", "person"] + ["car"] * (queued - TWICE)
        second = ["car", "person", "person", "person"]
        for task, choice in zip(tasks, first, strict=True):
            annotate(ls, task["id"], choice)
        time.sleep(1.1)  # the second annotator comes later: theirs is the newest label
        for task, choice in zip(tasks[:TWICE], second, strict=True):
            annotate(ls, task["id"], choice)

        # what the test expects, from the predictions the queued frames carried
        event = d.get_json(f"/events/{eid}")
        predicted = {
            s["key"]: CLASSES[int(np.argmax(s["predictions"]["probs"]))] for s in event["samples"]
        }
        truth = {t["data"]["driftmon_key"]: c for t, c in zip(tasks, first, strict=True)}
        truth |= {t["data"]["driftmon_key"]: c for t, c in zip(tasks[:TWICE], second, strict=True)}
        error = sum(predicted[k] != truth[k] for k in truth) / queued

        def labelled():
            return d.get_json(f"/events/{eid}").get("labelled") or {}

        assert d.wait_for(lambda: labelled().get("annotations") == queued + TWICE, timeout=60)
        got_labels = labelled()
        assert got_labels["frames"] == queued and got_labels["measured"] == queued
        assert got_labels["model_error"] == pytest.approx(error)
        assert got_labels["baseline_error"] == pytest.approx(0.05)
        assert got_labels["agreement_frames"] == TWICE
        assert got_labels["kappa"] == pytest.approx(kappa(first[:TWICE], second))
        assert d.value(
            "driftmon_labelled_model_error_ratio", stream=drifting.camera_id
        ) == pytest.approx(error)
        assert d.value("driftmon_labels_total", stream=drifting.camera_id) == queued + TWICE
        # polling Label Studio reads the same annotations the webhook brought: none is new
        assert d.actions.feedback.poll() == 0
        assert d.value("driftmon_label_polls_total", result="ok") == 1

        ticket = d.get_json(f"/tickets/{tid}")
        on_ticket = ticket["events"][0]["labelled"]
        assert on_ticket["model_error"] == pytest.approx(error)
        assert on_ticket["kappa"] == pytest.approx(kappa(first[:TWICE], second))
        assert [a["kind"] for a in ticket["suggested_actions"]][:2] == [
            "collect",
            "collect_uncovered",
        ]
        steps = [s["step"] for s in ticket["cycle"]]
        assert steps == ["event_opened", "frames_queued", "labels_back"]
        md = tmp_path / "state" / "tickets" / f"{tid}.md"
        assert d.wait_for(lambda: md.exists() and "labels back" in md.read_text())
        markdown = md.read_text()
        assert f"model error on the drifted frames: {100 * error:.0f}% vs 5% baseline" in markdown
    finally:
        d.stop()
