"""Drift events as records and in their store: today's JSON format loads and writes back unchanged,
typed changes are persisted atomically, events reload from disk, open/closed bookkeeping."""

import json
import shutil
import threading
from dataclasses import replace

import numpy as np
import pytest

from monitor.actions.events import DriftEvent, EventStore, Sample, SelectionSummary
from monitor.actions.explain import MeanShift, Shift
from monitor.pipeline.streams import FrameRef

from .conftest import DATA, data, drift_event, sample

TODAY = ["event-v1.json", "event-every-kind-v1.json"]


@pytest.mark.parametrize("name", TODAY)
def test_an_event_in_todays_json_loads_and_writes_back_unchanged(name):
    d = data(name)
    event = DriftEvent.from_dict(d)
    assert event.to_dict() == d
    assert DriftEvent.from_dict(event.to_dict()) == event


def test_todays_event_json_becomes_typed_parts():
    event = DriftEvent.from_dict(data("event-v1.json"))
    assert event.status == "closed" and not event.is_open and event.close_reason == "recovered"
    assert event.confirmed_at == 1800000011.0
    assert event.fired[0].feature == "brightness_mean" and event.fired[0].kind == "statistics"
    assert event.shifts["brightness_mean"].z == pytest.approx(2.891333138247344)
    assert event.reference.version == 1 and event.tests[0].name == "ks"
    assert event.window.refs[3] is None and isinstance(event.window.refs[0], FrameRef)
    assert all(isinstance(r, FrameRef) for r in event.healthy_refs)
    assert event.evidence.status == "done" and event.evidence.report.endswith("report.html")
    assert event.selection == SelectionSummary(4, 15, 4, {"already_queued": 1}, "embedding")
    first = event.samples[0]
    assert (
        isinstance(first, Sample) and first.hash == 0x253549D268CC4C0B and first.origin.offset == 12
    )
    assert [r.code for r in first.reasons] == ["extreme_statistic"] and first.reasons[
        0
    ].feature == "brightness_mean"
    assert first.scores.diversity is None and first.reference == event.reference


def test_every_kind_of_shift_keeps_its_own_fields():
    shifts = DriftEvent.from_dict(data("event-every-kind-v1.json")).shifts
    assert shifts["noise_sigma"].mean is not None and shifts["pc00"].mean is not None
    assert (
        shifts["embeddings"].mean is None
        and shifts["embeddings"].shares is None
        and shifts["embeddings"].z is None
    )
    assert {s.label for s in shifts["predicted_class"].shares} == {"0", "1", "2"}
    assert (
        "shares" not in shifts["noise_sigma"].to_dict()
        and "z" not in shifts["embeddings"].to_dict()
    )
    flat = Shift(
        "ks", "statistics", "sharpness", 0.5, 0.01, MeanShift(3.0, 3.0, 0.0, None)
    )  # no reference spread
    assert flat.to_dict()["z"] is None and Shift.from_dict(flat.to_dict()) == flat


def test_a_fresh_event_has_no_selection_nor_confirmation_in_its_json():
    d = drift_event().to_dict()
    assert "selection" not in d and "confirmed_at" not in d
    assert d["evidence"] == {
        "status": "pending",
        "report": None,
        "contact_sheet": None,
        "error": None,
    }
    assert d["samples"] == [] and d["window"]["refs"][-1] is None
    assert SelectionSummary(0, note="daily budget spent").to_dict() == {
        "budget": 0,
        "note": "daily budget spent",
    }


def test_create_update_and_reload(tmp_path):
    store = EventStore(tmp_path)
    event = drift_event()
    rows = np.arange(10, dtype=np.float32).reshape(5, 2)
    store.create(event, {"rows": rows})
    assert (
        store.get(event.id) == event
        and store.open_for("cam-1") == event.id
        and store.open_count() == 1
    )
    assert json.loads((tmp_path / f"{event.id}.json").read_text()) == event.to_dict()
    assert np.array_equal(store.window_arrays(event.id)["rows"], rows)

    samples = (sample(event, 0), sample(event, 2, score=0.5))
    summary = SelectionSummary(2, 8, 2, {"near_duplicate": 3}, "statistics")
    store.update(event.id, lambda e: e.with_selection(samples, summary))
    store.update(event.id, lambda e: e.with_evidence(status="done", report="/r.html"))
    updated = store.update(event.id, lambda e: e.confirmed(1_800_000_050.0))
    assert (
        updated.samples == samples
        and updated.selection == summary
        and updated.confirmed_at == 1_800_000_050.0
    )
    assert updated.evidence.status == "done" and updated.evidence.report == "/r.html"
    assert updated.evidence.contact_sheet is None
    assert (
        event.samples == () and store.get(event.id) == updated
    )  # a reader's event never changes under it

    reloaded = EventStore(tmp_path)
    assert reloaded.get(event.id) == updated and reloaded.open_for("cam-1") == event.id
    assert json.loads((tmp_path / f"{event.id}.json").read_text()) == updated.to_dict()


def test_open_and_closed_bookkeeping(tmp_path):
    store = EventStore(tmp_path)
    one, two = drift_event("cam-1", 1_800_000_000.0), drift_event("cam-2", 1_800_000_100.0)
    for e in (one, two):
        store.create(e, {"rows": np.zeros((1, 1), np.float32)})
    assert store.open_count() == 2
    closed = store.update(one.id, lambda e: e.closed(1_800_000_200.0, "recovered"))
    assert (
        closed.status == "closed"
        and closed.closed_at == 1_800_000_200.0
        and closed.close_reason == "recovered"
    )
    assert (
        store.open_for("cam-1") is None
        and store.open_for("cam-2") == two.id
        and store.open_count() == 1
    )
    assert [e.id for e in store.list()] == [one.id, two.id]
    assert [e.id for e in store.list(status="open")] == [two.id]
    assert [e.id for e in store.list(stream="cam-1", status="closed")] == [one.id]
    assert store.overlapping("cam-1", 1_800_000_150.0, 1_800_000_300.0) == [closed]
    assert store.overlapping("cam-1", 1_800_000_250.0, None) == []  # closed before the start
    assert store.overlapping("cam-2", 0.0, 1_800_000_050.0) == []  # opened after the end
    reloaded = EventStore(tmp_path)
    assert (
        reloaded.open_count() == 1
        and reloaded.open_for("cam-2") == two.id
        and reloaded.open_for("cam-1") is None
    )


def test_the_store_loads_events_written_by_the_previous_version(tmp_path):
    for name in TODAY:
        d = data(name)
        shutil.copy(DATA / name, tmp_path / f"{d['id']}.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    store = EventStore(tmp_path)
    every_kind = DriftEvent.from_dict(data("event-every-kind-v1.json"))
    assert (
        store.open_for("cam-9") == every_kind.id and store.open_for("cam-1") is None
    )  # event-v1 is closed
    assert {e.id for e in store.list()} == {data(n)["id"] for n in TODAY}
    assert store.get(every_kind.id) == every_kind
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # loading writes nothing


def test_concurrent_updates_are_not_lost(tmp_path):
    store = EventStore(tmp_path)
    event = replace(drift_event(), confirmed_at=0.0)
    store.create(event, {"rows": np.zeros((1, 1), np.float32)})

    def bump():
        for _ in range(50):
            store.update(event.id, lambda e: e.confirmed(e.confirmed_at + 1))

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(event.id).confirmed_at == 400.0
    assert EventStore(tmp_path).get(event.id).confirmed_at == 400.0


def test_summary_leaves_out_the_bulky_parts():
    event = DriftEvent.from_dict(data("event-v1.json"))
    s = event.summary()
    assert "tests" not in s and s["samples"] == 4 and "refs" not in s["window"]
    assert s["window"] == {"frames": 16, "first_ts": 1000.0, "last_ts": 1015.0}
    assert {k: v for k, v in s.items() if k not in ("window", "samples")} == {
        k: v for k, v in event.to_dict().items() if k not in ("window", "samples", "tests")
    }
