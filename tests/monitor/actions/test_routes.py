"""The actions' HTTP routes, called with a Request as the daemon's server calls them: events and
their evidence, tickets, the Alertmanager receiver (its checks and its metric)."""

import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor.actions.events import DriftEvent, EventStore
from monitor.actions.metrics import ActionMetrics
from monitor.actions.routes import routes
from monitor.actions.tickets import TicketBook
from monitor.config import TicketsConfig
from monitor.service.http import Request

from .conftest import data, drift_event

HOOK = {
    "version": "4",
    "status": "firing",
    "receiver": "driftmon",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "DriftmonStreamDrifted", "stream": "cam-9"},
            "annotations": {},
            "startsAt": "1970-01-01T00:00:40Z",
            "fingerprint": "abc",
        },
        {
            "status": "firing",
            "labels": {"alertname": "Other", "stream": "cam-9"},
            "annotations": {},
            "startsAt": "1970-01-01T00:00:40Z",
            "fingerprint": "zzz",
        },
    ],
}


@pytest.fixture
def served(tmp_path):
    """The routes over a store holding today's closed event-v1 (cam-1) and open every-kind event
    (cam-9), a ticket book, token "tok", and the registry their metrics are on."""
    events = EventStore(tmp_path / "events")
    for name in ("event-v1.json", "event-every-kind-v1.json"):
        events.create(DriftEvent.from_dict(data(name)), {"rows": np.zeros((1, 1), np.float32)})
    tickets = TicketBook(
        tmp_path / "tickets",
        TicketsConfig(token="tok"),
        events=events,
        link=lambda p: "http://driftmon" + p,
        on_change=lambda action, ticket: None,
    )
    registry = CollectorRegistry()
    table = routes(events, tickets, "tok", ActionMetrics(registry, 10).webhooks)
    return table, events, tickets, registry


def call(table, path, query="", method="GET", headers=None, body=b""):
    """Route as monitor.service.http does: the longest matching prefix of the method."""
    for (m, prefix), route in sorted(table.items(), key=lambda kv: -len(kv[0][1])):
        if m == method and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
            return route(Request(method, path, query, headers or {}, body))
    raise AssertionError(f"no route for {method} {path}")


def test_the_table_has_every_actions_path(served):
    table, *_ = served
    assert set(table) == {
        ("GET", "/events"),
        ("GET", "/events/"),
        ("GET", "/tickets"),
        ("GET", "/tickets/"),
        ("POST", "/alerts/alertmanager"),
    }


def test_events_lists_summaries_filtered_by_stream_and_status(served):
    table, events, *_ = served
    old, every = (
        DriftEvent.from_dict(data("event-v1.json")),
        DriftEvent.from_dict(data("event-every-kind-v1.json")),
    )
    res = call(table, "/events")
    assert res.status == 200 and res.body == {
        "events": [every.summary(), old.summary()]
    }  # by opened_at
    assert [e["id"] for e in call(table, "/events", "status=open").body["events"]] == [every.id]
    assert [
        e["id"] for e in call(table, "/events", "status=closed&stream=cam-1").body["events"]
    ] == [old.id]
    assert call(table, "/events", "stream=cam-7").body == {"events": []}
    bad = call(table, "/events", "status=bogus")
    assert bad.status == 400 and bad.body == {"error": "status must be open or closed"}


def test_one_event_is_its_json(served):
    table, *_ = served
    d = data("event-v1.json")
    res = call(table, f"/events/{d['id']}")
    assert res.status == 200 and res.content_type == "application/json" and res.body == d
    assert json.loads(json.dumps(res.body)) == d
    missing = call(table, "/events/evt-nope")
    assert missing.status == 404 and missing.body == {"error": "no drift event 'evt-nope'"}
    assert call(table, "/events/").status == 404
    other = call(table, f"/events/{d['id']}/other")
    assert other.status == 404 and other.body == {"error": f"no such path: /events/{d['id']}/other"}


def test_evidence_is_served_once_written(served, tmp_path):
    table, events, *_ = served
    eid = drift_event("cam-3").id
    events.create(drift_event("cam-3"), {"rows": np.zeros((1, 1), np.float32)})
    pending = call(table, f"/events/{eid}/report")
    assert pending.status == 404 and pending.body == {
        "error": "report not written yet",
        "evidence": "pending",
    }
    report, sheet = tmp_path / "report.html", tmp_path / "sheet.jpg"
    report.write_text("<html>drift</html>")
    sheet.write_bytes(b"\xff\xd8\xff jpeg")
    events.update(
        eid, lambda e: e.with_evidence(status="done", report=str(report), contact_sheet=str(sheet))
    )
    page = call(table, f"/events/{eid}/report")
    assert (page.status, page.body, page.content_type) == (
        200,
        b"<html>drift</html>",
        "text/html; charset=utf-8",
    )
    jpeg = call(table, f"/events/{eid}/contact-sheet.jpg")
    assert (jpeg.status, jpeg.body, jpeg.content_type) == (200, b"\xff\xd8\xff jpeg", "image/jpeg")
    sheet.unlink()  # written once, gone since
    gone = call(table, f"/events/{eid}/contact-sheet.jpg")
    assert gone.status == 404 and gone.body == {
        "error": "contact_sheet not written yet",
        "evidence": "done",
    }


def test_the_receiver_checks_token_then_payload_then_makes_tickets(served):
    table, _, tickets, registry = served
    body = json.dumps(HOOK).encode()

    def post(headers, payload=body):
        return call(table, "/alerts/alertmanager", method="POST", headers=headers, body=payload)

    def count(result):
        return registry.get_sample_value("driftmon_alert_webhooks_total", {"result": result})

    none = post({})
    assert none.status == 401 and none.headers == {"WWW-Authenticate": "Bearer"}
    assert post({"authorization": "Bearer nope"}).status == 401 and count("unauthorized") == 2
    bad = post({"authorization": "Bearer tok"}, b'{"version": "3"}')
    assert (
        bad.status == 400 and bad.body["error"].startswith("version:") and count("bad_request") == 1
    )
    assert tickets.list() == []
    ok = post({"authorization": "Bearer tok"})
    assert ok.status == 200 and ok.body == {
        "tickets": [{"id": "drift-abc", "action": "created"}],
        "ignored": 1,
    }
    assert post({"authorization": "Bearer tok"}).body["tickets"] == [
        {"id": "drift-abc", "action": "updated"}
    ]
    assert count("accepted") == 2


def test_tickets_are_listed_and_served(served):
    table, _, tickets, _ = served
    assert call(table, "/tickets").body == {"tickets": []}
    call(
        table,
        "/alerts/alertmanager",
        method="POST",
        headers={"authorization": "Bearer tok"},
        body=json.dumps(HOOK).encode(),
    )
    ticket = tickets.get("drift-abc")
    listed = call(table, "/tickets").body["tickets"]
    assert listed == [
        {
            "id": "drift-abc",
            "stream": "cam-9",
            "status": "firing",
            "created_at": ticket.created_at,
            "updated_at": ticket.updated_at,
            "notifications": 1,
        }
    ]
    one = call(table, "/tickets/drift-abc")
    assert one.status == 200 and one.body == ticket.to_dict()
    assert (
        one.body["events"][0]["url"]
        == f"http://driftmon/events/{data('event-every-kind-v1.json')['id']}"
    )
    missing = call(table, "/tickets/drift-nope")
    assert missing.status == 404 and missing.body == {"error": "no ticket 'drift-nope'"}


def test_a_receiver_without_a_token_accepts_nothing(tmp_path):
    events = EventStore(tmp_path / "events")
    tickets = TicketBook(
        tmp_path / "tickets",
        TicketsConfig(),
        events=events,
        link=str,
        on_change=lambda action, ticket: None,
    )
    registry = CollectorRegistry()
    table = routes(events, tickets, "", ActionMetrics(registry, 10).webhooks)
    res = call(
        table,
        "/alerts/alertmanager",
        method="POST",
        headers={"authorization": "Bearer "},
        body=json.dumps(HOOK).encode(),
    )
    assert res.status == 403 and "actions.tickets.token is not set" in res.body["error"]
    assert (
        registry.get_sample_value("driftmon_alert_webhooks_total", {"result": "unconfigured"}) == 1
    )
    assert tickets.list() == []
