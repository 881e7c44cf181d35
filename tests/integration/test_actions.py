"""From drift to action, end to end: the real broker, a real Label Studio server, a real HTTP
webhook receiver, and Alertmanager-format payloads.

Some cameras drift; the test asserts one drift event per drifted camera and none for the healthy
ones, an Evidently HTML report that opens and names the drifted statistics, a contact sheet,
relabel records on the Kafka topic, tasks (with the image served by Label Studio and
pre-annotations) in Label Studio, a CVAT-style directory export, and refresh tickets created from
an Alertmanager payload, updated — not duplicated — when it is re-sent and when it resolves. Bad
payloads and wrong tokens get 4xx and change nothing. Then the daemon restarts with a new consumer
group (every frame read and judged again) and its Label Studio ledger deleted: no new event, no
new relabel record, no new Label Studio task.

Label Studio runs from its own virtualenv (``bash deploy/label-studio/setup.sh``); without it the
test skips, saying so.
"""

import base64
import html
import json
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from kafka import KafkaConsumer

from monitor.actions.explain import STATISTIC_WORDS
from monitor.actions.headline import CAUSES as CAUSE_LIST
from monitor.sim.fleet import encode, make_fleet

from . import browser
from .conftest import ActionsDaemon, build_references, daemon_config, send_frames
from .labelstudio import LS_TOKEN

ROOT = Path(__file__).resolve().parents[2]
#: The cameras' frame rate, and when their first frame was captured (the live frames end about
#: now, so the report's pictures over time span the minutes a camera would take).
FPS = 5.0
CAPTURE_START_S = time.time() - 600.0
#: Where screenshots of reports are kept after a run (the browser check's artefact).
ARTEFACTS = ROOT / "build" / "test-artefacts"
TOKEN = "am-s3cret"
REF_FRAMES = 120
HEALTHY = 100
DRIFTED = 150
DRIFTS = {0: ("dusk", 3, "brightness_mean"), 1: ("defocus_blur", 4, "sharpness_laplacian_var")}
#: The likely cause a right headline names, by drifted camera (headline.CAUSES families).
CAUSE_FAMILIES = {0: "less_light", 1: "blur"}
CAUSES = {c.family: c.text for c in CAUSE_LIST}


class Receiver:
    """A tiny real HTTP server on loopback: the ticket webhook's other end."""

    def __init__(self):
        self.posts = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts.append(
                    {"auth": self.headers.get("Authorization"), "body": json.loads(body)}
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def alertmanager_payload(stream, fingerprint, status="firing", starts=None):
    """What Alertmanager (webhook_config, payload version 4) POSTs for the DriftmonStreamDrifted
    rule."""
    starts = starts or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    ends = (
        datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if status == "resolved"
        else "0001-01-01T00:00:00Z"
    )
    labels = {
        "alertname": "DriftmonStreamDrifted",
        "job": "driftmon",
        "namespace": "vision",
        "severity": "warning",
        "stream": stream,
    }
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}/{severity="warning"}:{alertname="DriftmonStreamDrifted"}',
            "truncatedAlerts": 0,
            "status": status,
            "receiver": "driftmon-tickets",
            "groupLabels": {"alertname": "DriftmonStreamDrifted"},
            "commonLabels": labels,
            "commonAnnotations": {"summary": f"Camera {stream} no longer looks like its reference"},
            "externalURL": "http://alertmanager.monitoring:9093",
            "alerts": [
                {
                    "status": status,
                    "labels": labels,
                    "annotations": {
                        "summary": f"Camera {stream} no longer looks like its reference",
                        "runbook_url": "https://example.invalid/runbook",
                    },
                    "startsAt": starts,
                    "endsAt": ends,
                    "generatorURL": "http://prometheus.monitoring:9090/graph?g0.expr=driftmon_stream_drifted",
                    "fingerprint": fingerprint,
                }
            ],
        }
    ).encode(), starts


def frame_records(cam, ts, claims: Path):
    """cam 0: JSON envelopes with the image inline and detections; cam 1: envelopes with a
    claim-check URI; the others: raw JPEG with headers. Frame ``t`` was captured at
    ``CAPTURE_START_S + t / FPS``."""
    index = int(cam.camera_id.rsplit("-", 1)[1])
    for t in ts:
        jpeg = encode(cam.frame(t))
        fid = f"{cam.camera_id}-{t}"
        captured_ms = str(int((CAPTURE_START_S + t / FPS) * 1000))
        if index == 0:
            env = {
                "camera_id": cam.camera_id,
                "frame_id": fid,
                "ts": captured_ms,
                "image_b64": base64.b64encode(jpeg).decode(),
                "predictions": {
                    "detections": [{"label": "object", "score": 0.55, "box": [40, 30, 200, 150]}]
                },
            }
            yield (
                cam.camera_id.encode(),
                json.dumps(env).encode(),
                [("content-type", b"application/json")],
            )
        elif index == 1:
            path = claims / f"{fid}.jpg"
            path.write_bytes(jpeg)
            env = {
                "camera_id": cam.camera_id,
                "frame_id": fid,
                "ts": captured_ms,
                "uri": path.as_uri(),
            }
            yield (
                cam.camera_id.encode(),
                json.dumps(env).encode(),
                [("content-type", b"application/json")],
            )
        else:
            yield (
                cam.camera_id.encode(),
                jpeg,
                [
                    ("camera_id", cam.camera_id.encode()),
                    ("frame_id", fid.encode()),
                    ("ts", captured_ms.encode()),
                ],
            )


def read_topic(broker, topic):
    c = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
        fetch_max_wait_ms=20,
    )
    records = [json.loads(r.value) for r in c]
    c.close()
    return records


def snapshot(directory: Path):
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


class _Html(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = set()
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)

    def handle_data(self, data):
        self.text.append(data)


def opened_as_a_person_would(report: Path, stream: str, said: str, tmp_path: Path) -> None:
    """The report file alone, copied away from the daemon, opened in headless Chromium: every
    image decodes, the headline is the title and is on screen without scrolling. The screenshot
    is kept under build/test-artefacts/."""
    if browser.chromium() is None:
        assert not os.environ.get("CI"), "CI installs chromium (.ci/apt-packages.txt)"
        warnings.warn("no Chromium here: the report was not opened in a browser", stacklevel=2)
        return
    alone = tmp_path / "opened" / stream
    alone.mkdir(parents=True)
    page = alone / "report.html"
    shutil.copyfile(report, page)
    shot = alone / "report.png"
    seen = browser.open_report(page, shot)
    assert seen["images"] >= 3 and seen["loaded"] == seen["images"], seen
    assert seen["title"] == said, seen
    assert isinstance(seen["headline"], str) and seen["headline"].startswith(said), seen
    assert isinstance(seen["headline_bottom"], float | int), seen
    assert 0 < seen["headline_bottom"] <= seen["viewport_height"], seen
    kept = ARTEFACTS / f"report-{stream}.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, kept)


def test_drift_to_events_reports_relabel_queue_and_tickets(broker, topic, tmp_path, label_studio):
    fleet = make_fleet(4, seed=11, width=480, height=270, dynamics="iid")
    claims = tmp_path / "claims"
    claims.mkdir()
    relabel_topic = f"{topic}.relabel"
    broker.create_topic(relabel_topic, partitions=1)
    receiver = Receiver()
    base_config = daemon_config(broker, topic, tmp_path)
    refs = build_references(tmp_path, fleet, base_config, REF_FRAMES)
    state, export, tickets_dir = tmp_path / "state", tmp_path / "export", tmp_path / "tickets"
    project = f"driftmon relabel {uuid.uuid4().hex[:6]}"

    def config(group):
        return daemon_config(
            broker,
            topic,
            refs,
            group=group,
            source={"allowed_roots": [str(claims)]},
            actions={
                "enabled": True,
                "state_dir": str(state),
                "queue_size": 16,
                "selection": {"max_per_event": 5, "max_per_day": 100, "pool_factor": 3},
                "report": {"contact_sheet_frames": 5, "reference_frames": 3, "thumbnail_px": 96},
                "retry": {"attempts": 60, "backoff_s": 0.5, "max_backoff_s": 2.0},
                "relabel": {
                    "sinks": ["kafka", "label_studio", "directory"],
                    "topic": relabel_topic,
                    "directory": str(export),
                    "label_studio": {
                        "url": label_studio.url,
                        "token": LS_TOKEN,
                        "project_title": project,
                        "labels": ["object", "person"],
                    },
                },
                "tickets": {
                    "token": TOKEN,
                    "sinks": ["directory", "webhook"],
                    "directory": str(tickets_dir),
                    "webhook_url": receiver.url,
                    "webhook_token": "hook-token",
                },
            },
        )

    live = []
    for cam in fleet:
        live += list(frame_records(cam, range(REF_FRAMES, REF_FRAMES + HEALTHY), claims))
    for i, (shift, severity, _) in DRIFTS.items():
        fleet[i].set_shift(shift, severity)
    for cam in fleet:
        live += list(
            frame_records(cam, range(REF_FRAMES + HEALTHY, REF_FRAMES + HEALTHY + DRIFTED), claims)
        )
    send_frames(broker, topic, live)

    d = ActionsDaemon(config(f"g-{topic}"))
    try:
        assert d.wait_for(
            lambda: d.value("driftmon_frames_total", outcome="processed") >= len(live)
        ), "not all frames processed"
        drifted = {fleet[i].camera_id: feature for i, (_, _, feature) in DRIFTS.items()}
        causes = {fleet[i].camera_id: CAUSES[family] for i, family in CAUSE_FAMILIES.items()}
        healthy = {cam.camera_id for cam in fleet} - set(drifted)

        # one event per drifted camera, none for healthy ones
        events = d.get_json("/events")["events"]
        assert sorted(e["stream"] for e in events) == sorted(drifted)
        assert all(e["status"] == "open" for e in events)
        for stream in healthy:
            assert d.get_json(f"/events?stream={stream}")["events"] == []
            assert d.value("driftmon_drift_events_total", stream=stream) == 0
        for stream in drifted:
            assert d.value("driftmon_drift_events_total", stream=stream) == 1
        assert d.value("driftmon_drift_events_open") == 2
        by_stream = {e["stream"]: e["id"] for e in events}

        # evidence: the report opens and names the drifted statistics; the contact sheet decodes
        assert d.wait_for(
            lambda: all(
                d.get_json(f"/events/{eid}")["evidence"]["status"] == "done"
                for eid in by_stream.values()
            )
        ), "evidence not written"
        for stream, feature in drifted.items():
            event = d.get_json(f"/events/{by_stream[stream]}")
            assert feature in {f["feature"] for f in event["fired"]}, (stream, event["fired"])
            assert event["evidence"]["error"] is None
            assert event["reference"]["version"] == 1 and len(event["window"]["refs"]) == 100
            status, ctype, body = d.get(f"/events/{by_stream[stream]}/report")
            assert status == 200 and ctype.startswith("text/html")
            page = body.decode()
            parser = _Html()
            parser.feed(page)
            parser.close()
            assert {"html", "body", "table", "script"} <= parser.tags
            summary = page[page.index('id="driftmon-summary"') : page.index("</section>")]
            assert f"<code>{feature}</code>" in summary and stream in summary
            # the headline names a moved statistic in words and the right likely cause; it is the
            # page's title and first heading
            said = event["headline"]
            fired_words = {
                STATISTIC_WORDS[f["feature"]]
                for f in event["fired"]
                if f["feature"] in STATISTIC_WORDS
            }
            assert any(said.lower().startswith(w) for w in fired_words), said
            assert said.endswith(causes[stream]), said
            assert f"<title>{html.escape(said)}</title>" in page
            assert summary.index("driftmon-headline") < summary.index("<table")
            # self-contained: every image is inside the page
            assert re.findall(r'<img src="(?!data:image/)', page) == []
            assert summary.count('<img src="data:image/') >= 3  # timeline, histograms, frames
            assert page.count(feature) > summary.count(feature)  # Evidently's own part names it too
            assert Path(event["evidence"]["report"]).is_file()
            opened_as_a_person_would(Path(event["evidence"]["report"]), stream, said, tmp_path)
            status, ctype, sheet = d.get(f"/events/{by_stream[stream]}/contact-sheet.jpg")
            img = cv2.imdecode(np.frombuffer(sheet, np.uint8), cv2.IMREAD_COLOR)
            assert status == 200 and ctype == "image/jpeg" and img is not None and img.shape[0] > 96

        # selected samples: within budget, each with reasons and scores, no frame twice
        samples = {
            s["key"]: s
            for eid in by_stream.values()
            for s in d.get_json(f"/events/{eid}")["samples"]
        }
        assert all(
            1 <= len(d.get_json(f"/events/{eid}")["samples"]) <= 5 for eid in by_stream.values()
        )
        assert all(s["reasons"] and s["scores"]["score"] > 0 for s in samples.values())
        # from after the change only: frame ids carry the frame's index in the camera's sequence
        assert all(int(k.rsplit("-", 1)[1]) >= REF_FRAMES + HEALTHY for k in samples), sorted(
            samples
        )
        # a fixed camera's frames are near-identical to a 64-bit perceptual hash: the rest are
        # skipped
        assert (
            sum(
                d.value("driftmon_relabel_skipped_frames_total", reason=r)
                for r in ("near_duplicate",)
            )
            >= 1
        )
        cam0 = fleet[0].camera_id
        for s in samples.values():
            assert s["uri"].startswith("file://")
            if s["camera_id"] == cam0:  # arrived inline: copied to the claim-check store
                assert s["claim_check_copy"] and str(state / "frames") in s["uri"]
                assert s["predictions"]["detections"][0]["label"] == "object"
            else:
                assert not s["claim_check_copy"] and str(claims) in s["uri"]

        # the relabel topic: one record per selected frame
        assert d.wait_for(
            lambda: d.value("driftmon_relabel_frames_total", sink="kafka") >= len(samples)
        )
        records = read_topic(broker, relabel_topic)
        assert sorted(r["key"] for r in records) == sorted(samples)
        assert all(
            r["schema"] == "driftmon.relabel/v1"
            and r["event_id"] == by_stream[r["stream"]]
            and r["reasons"]
            and r["scores"]
            and r["origin"]["topic"] == topic
            for r in records
        )

        # Label Studio: a project with one task per frame, the image served by Label Studio itself
        assert d.wait_for(
            lambda: d.value("driftmon_relabel_frames_total", sink="label_studio") >= len(samples),
            timeout=240,
        ), "Label Studio deliveries did not complete"
        projects = [
            p
            for p in label_studio.api("/api/projects?page_size=100")["results"]
            if p["title"] == project
        ]
        assert len(projects) == 1 and "RectangleLabels" in projects[0]["label_config"]
        pid = projects[0]["id"]
        tasks = label_studio.tasks(pid)
        assert sorted(t["data"]["driftmon_key"] for t in tasks) == sorted(samples)
        for t in tasks:
            s = samples[t["data"]["driftmon_key"]]
            served = label_studio.api(t["data"]["image"], raw=True)
            assert served == Path(s["uri"][len("file://") :]).read_bytes()
            assert t["data"]["event_id"] == s["event_id"] and t["data"]["why"]
            if s["camera_id"] == cam0:  # the model's detections as pre-annotations
                assert t["total_predictions"] == 1
                box = t["predictions"][0]["result"][0]
                assert box["type"] == "rectanglelabels" and box["value"]["rectanglelabels"] == [
                    "object"
                ]
                assert box["value"]["x"] == pytest.approx(40 / 480 * 100)

        # directory export: images + a CVAT manifest + driftmon's manifest
        assert d.wait_for(
            lambda: d.value("driftmon_relabel_frames_total", sink="directory") >= len(samples)
        )
        for eid in by_stream.values():
            lines = [
                json.loads(x) for x in (export / eid / "manifest.jsonl").read_text().splitlines()
            ]
            assert lines[:2] == [{"version": "1.1"}, {"type": "images"}]
            assert len(lines) - 2 == len([s for s in samples.values() if s["event_id"] == eid])
            for entry in lines[2:]:
                img = cv2.imread(str(export / eid / (entry["name"] + entry["extension"])))
                assert img is not None and (img.shape[1], img.shape[0]) == (
                    entry["width"],
                    entry["height"],
                )

        # tickets: bad requests first — each refused, nothing written, nothing sent
        fp = "4f3c2a1b0e9d8c7a"
        good, starts = alertmanager_payload(cam0, fp)
        bad = [
            (good, None),
            (good, "wrong-token"),
            (b"{not json", TOKEN),
            (json.dumps({"version": "3", "status": "firing", "alerts": []}).encode(), TOKEN),
            (good.replace(b'"fingerprint": "4f3c2a1b0e9d8c7a"', b'"fingerprint": ""'), TOKEN),
            (good.replace(b'"startsAt": "', b'"startsAt": "not-a-time'), TOKEN),
        ]
        for body, token in bad:
            status, answer = d.post("/alerts/alertmanager", body, token)
            assert 400 <= status < 500 and answer["error"], (status, answer)
        assert (
            d.get_json("/tickets")["tickets"] == []
            and not tickets_dir.exists()
            and receiver.posts == []
        )
        assert d.value("driftmon_alert_webhooks_total", result="unauthorized") == 2
        assert d.value("driftmon_alert_webhooks_total", result="bad_request") == 4

        status, answer = d.post("/alerts/alertmanager", good, TOKEN)
        assert status == 200 and answer["tickets"] == [{"id": f"drift-{fp}", "action": "created"}]
        assert d.wait_for(
            lambda: len(receiver.posts) == 1 and (tickets_dir / f"drift-{fp}.md").exists()
        )
        ticket = json.loads((tickets_dir / f"drift-{fp}.json").read_text())
        assert ticket["status"] == "firing" and ticket["stream"] == cam0
        assert [e["id"] for e in ticket["events"]] == [by_stream[cam0]]
        assert ticket["events"][0]["report_url"].endswith(f"/events/{by_stream[cam0]}/report")
        assert ticket["samples_total"] == len(
            [s for s in samples.values() if s["camera_id"] == cam0]
        )
        kinds = [a["kind"] for a in ticket["suggested_actions"]]
        assert kinds == ["collect", "relabel"]
        assert any(
            c in ticket["suggested_actions"][0]["text"] for c in ("darker scenes", "under-exposed")
        )  # dusk
        assert receiver.posts[0]["auth"] == "Bearer hook-token"
        assert (
            receiver.posts[0]["body"]["action"] == "created"
            and receiver.posts[0]["body"]["ticket"]["id"] == f"drift-{fp}"
        )
        md = (tickets_dir / f"drift-{fp}.md").read_text()
        assert by_stream[cam0] in md and "Suggested actions" in md

        before = snapshot(tickets_dir)
        for body, token in bad:  # also nothing changes once a ticket exists
            assert 400 <= d.post("/alerts/alertmanager", body, token)[0] < 500
        assert snapshot(tickets_dir) == before and len(receiver.posts) == 1

        status, answer = d.post(
            "/alerts/alertmanager", good, TOKEN
        )  # Alertmanager re-sends (repeat_interval)
        assert answer["tickets"] == [{"id": f"drift-{fp}", "action": "updated"}]
        resolved, _ = alertmanager_payload(cam0, fp, "resolved", starts)
        status, answer = d.post("/alerts/alertmanager", resolved, TOKEN)
        assert answer["tickets"] == [{"id": f"drift-{fp}", "action": "resolved"}]
        assert d.wait_for(lambda: len(receiver.posts) == 3)
        assert [p["body"]["action"] for p in receiver.posts] == ["created", "updated", "resolved"]
        assert [t["id"] for t in d.get_json("/tickets")["tickets"]] == [f"drift-{fp}"]
        assert d.wait_for(
            lambda: (
                json.loads((tickets_dir / f"drift-{fp}.json").read_text())["status"] == "resolved"
            )
        )
        ticket = json.loads((tickets_dir / f"drift-{fp}.json").read_text())
        assert ticket["notifications"] == 3 and ticket["resolved_at"] is not None
        assert sorted(p.name for p in tickets_dir.iterdir()) == [
            f"drift-{fp}.json",
            f"drift-{fp}.md",
        ]
        assert d.value("driftmon_tickets_total", action="created") == 1
        assert d.value("driftmon_tickets_total", action="updated") == 1
        assert d.value("driftmon_tickets_total", action="resolved") == 1
        assert d.wait_for(d.actions.idle)
    finally:
        d.stop()

    # restart: a new consumer group reads and judges every frame again, the same drifts are found;
    # the Label Studio ledger is deleted as if the daemon had died between Label Studio's answer and
    # the ledger write. Nothing is duplicated anywhere.
    (state / "delivered" / "label_studio.keys").unlink()
    exported = snapshot(export)
    d2 = ActionsDaemon(config(f"g2-{topic}"))
    try:
        assert d2.wait_for(
            lambda: d2.value("driftmon_frames_total", outcome="processed") >= len(live)
        )
        assert d2.wait_for(
            lambda: all(d2.value("driftmon_stream_drifted", stream=s) == 1 for s in drifted)
        )
        assert d2.wait_for(d2.actions.idle)
        assert sorted(e["id"] for e in d2.get_json("/events")["events"]) == sorted(
            by_stream.values()
        )
        assert all(e["status"] == "open" for e in d2.get_json("/events")["events"])
        assert (
            d2.value("driftmon_drift_events_total", stream=cam0) == 0
        )  # none opened by this process
        assert sorted(r["key"] for r in read_topic(broker, relabel_topic)) == sorted(samples)
        assert sorted(t["data"]["driftmon_key"] for t in label_studio.tasks(pid)) == sorted(samples)
        assert snapshot(export) == exported
        assert [t["id"] for t in d2.get_json("/tickets")["tickets"]] == [f"drift-{fp}"]
    finally:
        d2.stop()
        receiver.close()
