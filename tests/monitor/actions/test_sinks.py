"""Relabel sinks without a broker: the relabel record, the directory export, the delivery ledger."""

import csv
import hashlib
import io
import json

import cv2
import numpy as np
import pytest

from monitor.actions.events import DriftEvent
from monitor.actions.sinks import DirectorySink, KeyLedger, SinkError, relabel_record

from .conftest import data, drift_event, sample


def test_key_ledger_survives_a_reload(tmp_path):
    path = tmp_path / "delivered" / "directory.keys"
    ledger = KeyLedger(path)
    ledger.add("cam-1/f1")
    ledger.add("cam-1/f2")
    ledger.add("cam-1/f1")  # once only
    assert "cam-1/f1" in ledger and "cam-1/f3" not in ledger
    assert path.read_text() == "cam-1/f1\ncam-1/f2\n"
    reloaded = KeyLedger(path)
    assert "cam-1/f1" in reloaded and "cam-1/f2" in reloaded and "cam-1/f3" not in reloaded


def test_key_ledger_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "directory.keys"
    path.write_text("cam-1/f1\ncam-1/f12\ncam-1/f1")  # a crash while appending cam-1/f13 tore it
    ledger = KeyLedger(path)
    assert "cam-1/f12" in ledger
    assert "cam-1/f1" in ledger  # from its own complete line
    ledger.add("cam-1/f13")
    assert "cam-1/f13" in KeyLedger(path)


def test_a_torn_key_is_not_a_delivery(tmp_path):
    path = tmp_path / "directory.keys"
    path.write_text("cam-1/f1\ncam-1/f2")  # cam-1/f2 was torn off cam-1/f21: f2 was never delivered
    ledger = KeyLedger(path)
    assert "cam-1/f1" in ledger and "cam-1/f2" not in ledger
    ledger.add("cam-1/f3")
    reloaded = KeyLedger(path)
    assert (
        "cam-1/f3" in reloaded and "cam-1/f2" not in reloaded and "cam-1/f2cam-1/f3" not in reloaded
    )


def test_the_relabel_record_of_a_sample_is_todays():
    event = DriftEvent.from_dict(data("event-v1.json"))
    assert [relabel_record(s) for s in event.samples] == data("relabel-records-v1.json")


def jpeg(width, height, value):
    return cv2.imencode(".jpg", np.full((height, width, 3), value, np.uint8))[1].tobytes()


def test_directory_sink_writes_images_and_manifests(tmp_path):
    event = drift_event()
    first, second = sample(event, 0), sample(event, 2, score=0.5)
    frames = {first.key: jpeg(64, 48, 10), second.key: jpeg(32, 24, 200)}
    sink = DirectorySink(tmp_path)
    for s in (first, second, first):  # delivered again: replaced, not listed twice
        sink.deliver(s, lambda x: frames[x.key])
    out = tmp_path / event.id
    stems = ["cam-1__cam-1-0", "cam-1__cam-1-2"]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{n}.jpg" for n in stems]
    assert (out / "images" / f"{stems[0]}.jpg").read_bytes() == frames[first.key]

    records = [json.loads(line) for line in (out / "driftmon.jsonl").read_text().splitlines()]
    assert [r["key"] for r in records] == [second.key, first.key]
    assert records[1] == relabel_record(first) | {
        "image": f"images/{stems[0]}.jpg",
        "width": 64,
        "height": 48,
        "checksum": hashlib.md5(frames[first.key]).hexdigest(),
    }
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert manifest == [
        {"version": "1.1"},
        {"type": "images"},
        {
            "name": f"images/{stems[1]}",
            "extension": ".jpg",
            "width": 32,
            "height": 24,
            "checksum": hashlib.md5(frames[second.key]).hexdigest(),
        },
        {
            "name": f"images/{stems[0]}",
            "extension": ".jpg",
            "width": 64,
            "height": 48,
            "checksum": hashlib.md5(frames[first.key]).hexdigest(),
        },
    ]
    rows = list(csv.reader(io.StringIO((out / "driftmon.csv").read_text())))
    assert rows == [
        ["image", "event_id", "camera_id", "frame_id", "ts", "score", "reasons", "uri"],
        [
            f"images/{stems[1]}.jpg",
            event.id,
            "cam-1",
            "cam-1-2",
            "1002.0",
            "0.5",
            "far_from_reference; extreme_statistic",
            "file:///frames/cam-1-2.jpg",
        ],
        [
            f"images/{stems[0]}.jpg",
            event.id,
            "cam-1",
            "cam-1-0",
            "1000.0",
            "1.5",
            "far_from_reference; extreme_statistic",
            "file:///frames/cam-1-0.jpg",
        ],
    ]


def test_directory_sink_refuses_bytes_that_do_not_decode(tmp_path):
    event = drift_event()
    with pytest.raises(SinkError, match="do not decode"):
        DirectorySink(tmp_path).deliver(sample(event, 0), lambda s: b"not an image")
    assert not (tmp_path / event.id).exists()
