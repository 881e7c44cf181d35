"""Alertmanager webhook validation, bearer tokens, ticket idempotency, suggestions, Markdown, the
ticket record and its JSON, the ticket sinks."""

import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor.actions.tickets import (
    WEBHOOK_SCHEMA,
    DirectoryTicketSink,
    Ticket,
    TicketBook,
    WebhookError,
    WebhookTicketSink,
    check_token,
    markdown,
    parse_time,
    parse_webhook,
    suggest,
)
from monitor.config import TicketsConfig

from .conftest import DATA, data, drift_event, sample


def alert(
    status="firing", fingerprint="a1b2c3", stream="cam-1", name="DriftmonStreamDrifted", **extra
):
    return {
        "status": status,
        "labels": {"alertname": name, "stream": stream, "severity": "warning"},
        "annotations": {"summary": f"Camera {stream} no longer looks like its reference"},
        "startsAt": "2026-11-27T18:40:00.123456789Z",
        "endsAt": "2026-11-27T19:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": fingerprint,
    } | extra


def payload(*alerts, status="firing"):
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DriftmonStreamDrifted"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "driftmon",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": list(alerts),
    }


def test_check_token_is_exact_and_needs_bearer():
    assert check_token("Bearer s3cret", "s3cret")
    assert check_token("bearer s3cret", "s3cret")
    assert not check_token("Bearer s3cre", "s3cret")
    assert not check_token("Basic s3cret", "s3cret")
    assert not check_token(None, "s3cret")
    assert not check_token("Bearer ", "")  # an unset token admits nobody


def test_parse_time_handles_nanoseconds_and_the_zero_time():
    assert parse_time("2026-11-27T18:40:00.123456789Z", "t") == pytest.approx(
        parse_time("2026-11-27T18:40:00.123456Z", "t")
    )
    assert parse_time("0001-01-01T00:00:00Z", "t") is None
    with pytest.raises(WebhookError):
        parse_time("2026-11-27T18:40:00", "t")  # no zone


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda p: p.update(version="3"), "version"),
        (lambda p: p.update(status="pending"), "status"),
        (lambda p: p.update(alerts=[]), "alerts"),
        (lambda p: p["alerts"][0].pop("fingerprint"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(fingerprint="../../etc"), "alerts[0].fingerprint"),
        (lambda p: p["alerts"][0].update(labels={"stream": "x"}), "alerts[0].labels"),
        (lambda p: p["alerts"][0].update(labels={"alertname": 3}), "alerts[0].labels"),
        (lambda p: p["alerts"][0].update(startsAt="yesterday"), "alerts[0].startsAt"),
        (lambda p: p["alerts"][0].update(status="unknown"), "alerts[0].status"),
        (lambda p: p.update(commonLabels=[]), "commonLabels"),
    ],
)
def test_bad_payloads_are_refused_naming_the_field(mutate, where):
    p = payload(alert())
    mutate(p)
    with pytest.raises(WebhookError, match=r"^" + where.replace("[", r"\[").replace("]", r"\]")):
        parse_webhook(json.dumps(p).encode())


def test_not_json_is_refused():
    with pytest.raises(WebhookError):
        parse_webhook(b"{not json")
    with pytest.raises(WebhookError):
        parse_webhook(b"[]")


class FakeEvents:
    def __init__(self, events):
        self.events = events

    def overlapping(self, stream, start, end):
        return [e for e in self.events if e.stream == stream]


def _event():
    event = drift_event(shifts={"brightness_mean": -3.0, "sharpness_laplacian_var": -2.0})
    return replace(event, samples=(sample(event, 1),))


def test_tickets_are_idempotent_on_fingerprint(tmp_path):
    changes = []
    book = TicketBook(
        tmp_path,
        TicketsConfig(token="t"),
        events=FakeEvents([_event()]),
        link=lambda p: "http://driftmon" + p,
        on_change=lambda a, t: changes.append((a, t)),
    )
    first = book.apply(
        parse_webhook(json.dumps(payload(alert(), alert(fingerprint="ff", name="Other"))).encode()),
        now=1_800_000_100.0,
    )
    assert first.to_dict() == {
        "tickets": [{"id": "drift-a1b2c3", "action": "created"}],
        "ignored": 1,
    }
    again = book.apply(parse_webhook(json.dumps(payload(alert())).encode()), now=1_800_000_200.0)
    assert again.changes == (("drift-a1b2c3", "updated"),)
    resolved = book.apply(
        parse_webhook(json.dumps(payload(alert("resolved"), status="resolved")).encode()),
        now=1_800_000_300.0,
    )
    assert resolved.changes == (("drift-a1b2c3", "resolved"),)
    assert [a for a, _ in changes] == ["created", "updated", "resolved"]
    assert len(book.list()) == 1
    t = TicketBook(
        tmp_path,
        TicketsConfig(token="t"),
        events=FakeEvents([]),
        link=str,
        on_change=lambda a, t: None,
    ).get("drift-a1b2c3")  # reloaded from disk
    assert t == changes[-1][1]
    assert t.status == "resolved" and t.notifications == 3 and t.created_at == 1_800_000_100.0
    assert t.resolved_at == 1_800_000_300.0
    assert [h.action for h in t.history] == ["created", "updated", "resolved"]
    evt = _event().id
    assert t.events[0].report_url == f"http://driftmon/events/{evt}/report"
    assert t.samples_total == 1
    kinds = [s.kind for s in t.suggested_actions]
    assert kinds[:2] == ["collect", "relabel"]
    assert (
        "darker scenes" in t.suggested_actions[0].text and "blurred" in t.suggested_actions[0].text
    )
    md = markdown(t)
    assert "# Dataset refresh" in md and evt in md and "cam-1-1" in md


def test_rebaseline_is_suggested_once_a_drift_lasts():
    kinds = [s.kind for s in suggest("cam-1", [_event()], 0, 2 * 86_400, 86_400)]
    assert kinds == ["collect", "rebaseline"]
    assert suggest("cam-1", [], 0, 10, 86_400) == []


def test_a_ticket_in_todays_json_loads_and_writes_back_unchanged():
    d = data("ticket-v1.json")
    t = Ticket.from_dict(d)
    assert t.to_dict() == d
    assert [s.kind for s in t.suggested_actions] == ["collect", "relabel", "rebaseline"]
    assert t.suggested_actions[2].command.startswith("driftmon reference promote")
    assert t.events[0].fired == ("mean brightness",) and t.samples[0].reasons == (
        "extreme_statistic",
    )
    assert (
        t.alert.starts_at == "2027-01-15T07:59:00.123456789Z"
        and t.alert.ends_at == "0001-01-01T00:00:00Z"
    )


def test_markdown_of_a_ticket_is_unchanged():
    assert markdown(Ticket.from_dict(data("ticket-v1.json"))) == (DATA / "ticket-v1.md").read_text()


def test_directory_ticket_sink_writes_json_and_markdown(tmp_path):
    t = Ticket.from_dict(data("ticket-v1.json"))
    DirectoryTicketSink(tmp_path).deliver("updated", t)
    assert json.loads((tmp_path / f"{t.id}.json").read_text()) == data("ticket-v1.json")
    assert (tmp_path / f"{t.id}.md").read_text() == (DATA / "ticket-v1.md").read_text()


def test_webhook_ticket_sink_posts_the_ticket_json():
    got = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers["Authorization"], json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        WebhookTicketSink(f"http://127.0.0.1:{server.server_address[1]}/t", "s3cret", 5.0).deliver(
            "updated", Ticket.from_dict(data("ticket-v1.json"))
        )
    finally:
        server.shutdown()
        server.server_close()
    posted = {"schema": WEBHOOK_SCHEMA, "action": "updated", "ticket": data("ticket-v1.json")}
    assert got == [("Bearer s3cret", posted)]
