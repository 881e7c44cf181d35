"""HTTP routes of actions (docs/actions.md): drift events and their evidence, refresh tickets, and
the Alertmanager receiver.

Each route is a function of what it reads and the request; :func:`routes` binds them to an
event store, a ticket book and the receiver's token, keyed by method and path prefix as
``monitor.service.http`` registers them.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, unquote

from prometheus_client import Counter

from monitor.actions.events import EventStore
from monitor.actions.tickets import TicketBook, WebhookError, check_token, parse_webhook
from monitor.service.http import Request, Response, Route

#: A drift event's artefacts under ``/events/{id}/``: the Evidence field holding the file, its
#: content type.
ARTEFACTS = {
    "report": ("report", "text/html; charset=utf-8"),
    "contact-sheet.jpg": ("contact_sheet", "image/jpeg"),
}


def routes(
    events: EventStore, tickets: TicketBook, token: str, webhooks: Counter
) -> dict[tuple[str, str], Route]:
    """Every actions route, by (method, path prefix); ``webhooks`` counts the receiver's requests by
    result."""
    return {
        ("GET", "/events"): partial(events_route, events),
        ("GET", "/events/"): partial(event_route, events),
        ("GET", "/tickets"): partial(tickets_route, tickets),
        ("GET", "/tickets/"): partial(ticket_route, tickets),
        ("POST", "/alerts/alertmanager"): partial(alertmanager_route, tickets, token, webhooks),
    }


def events_route(events: EventStore, req: Request) -> Response:
    """``GET /events[?stream=...][&status=open|closed]``: the events, without their bulky parts."""
    q = parse_qs(req.query)
    status = q.get("status", [None])[0]
    if status not in (None, "open", "closed"):
        return Response(400, {"error": "status must be open or closed"})
    found = events.list(stream=q.get("stream", [None])[0], status=status)
    return Response(200, {"events": [e.summary() for e in found]})


def event_route(events: EventStore, req: Request) -> Response:
    """``GET /events/{id}``: one event; ``/events/{id}/report`` and ``/contact-sheet.jpg``: its
    evidence."""
    parts = [unquote(p) for p in req.path[len("/events/") :].split("/")]
    event = events.get(parts[0]) if parts[0] else None
    if event is None:
        return Response(404, {"error": f"no drift event {parts[0]!r}"})
    if len(parts) == 1:
        return Response(200, event.to_dict())
    artefact = ARTEFACTS.get("/".join(parts[1:]))
    if artefact is None:
        return Response(404, {"error": f"no such path: {req.path}"})
    path = getattr(event.evidence, artefact[0])
    if not path or not Path(path).is_file():
        return Response(
            404, {"error": f"{artefact[0]} not written yet", "evidence": event.evidence.status}
        )
    return Response(200, Path(path).read_bytes(), artefact[1])


def tickets_route(tickets: TicketBook, req: Request) -> Response:
    """``GET /tickets``: every ticket, in short."""
    return Response(200, {"tickets": [t.summary() for t in tickets.list()]})


def ticket_route(tickets: TicketBook, req: Request) -> Response:
    """``GET /tickets/{id}``: one ticket."""
    tid = req.path[len("/tickets/") :]
    ticket = tickets.get(tid)
    if ticket is None:
        return Response(404, {"error": f"no ticket {tid!r}"})
    return Response(200, ticket.to_dict())


def alertmanager_route(
    tickets: TicketBook, token: str, webhooks: Counter, req: Request
) -> Response:
    """``POST /alerts/alertmanager``: the bearer token first (403 when none is configured, 401 when
    wrong), then the whole payload (400), then the tickets change."""
    if not token:
        webhooks.labels("unconfigured").inc()
        return Response(
            403, {"error": "actions.tickets.token is not set: this receiver accepts nothing"}
        )
    if not check_token(req.headers.get("authorization"), token):
        webhooks.labels("unauthorized").inc()
        return Response(
            401, {"error": "missing or wrong bearer token"}, headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        hook = parse_webhook(req.body)
    except WebhookError as e:
        webhooks.labels("bad_request").inc()
        return Response(400, {"error": str(e)})
    applied = tickets.apply(hook)
    webhooks.labels("accepted").inc()
    return Response(200, applied.to_dict())
