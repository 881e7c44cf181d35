"""Dataset-refresh tickets from Alertmanager: ``POST /alerts/alertmanager``.

Alertmanager's webhook (payload version "4") is authenticated with a bearer token from config
(compared in constant time), validated in full before anything changes, and each firing or
resolved alert named in ``actions.tickets.alertnames`` with a stream label becomes (or updates)
one ticket, keyed by the alert's fingerprint: a re-sent alert updates its ticket, a resolved one
marks it resolved; none is ever duplicated.

A ticket carries the alert, the drift events of that stream that overlap the alert, links to
their reports, the frames queued for relabelling from them, and suggested actions. It is kept in
``<state_dir>/tickets/<id>.json`` — shared by the replicas that share the state directory: a
ticket is read fresh and written under a lock, so an alert posted to any replica, or to several,
is one ticket — and handed to the ticket sinks (a directory of JSON + Markdown,
a generic JSON webhook) on background workers.
"""

from __future__ import annotations

import builtins
import hmac
import json
import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from monitor.actions import explain
from monitor.actions.events import DriftEvent, EventStore, Sample
from monitor.actions.headline import with_queued
from monitor.config import TicketsConfig
from monitor.errors import InputError
from monitor.files import (
    DirectoryView,
    JSONObject,
    atomic_write_json,
    atomic_write_text,
    locked,
    read_json,
    safe_name,
)
from monitor.loop.labelled import Labelled

log = logging.getLogger(__name__)

SCHEMA = "driftmon.ticket/v1"
WEBHOOK_SCHEMA = "driftmon.ticket-webhook/v1"
HISTORY_MAX = 50
SAMPLES_MAX = 50
LINK_SLACK_S = 300.0  # an event that ended up to this long before the alert started is still linked

_FRACTION = re.compile(r"\.(\d{6})\d+")
_ZERO_TIME = "0001-01-01T00:00:00Z"


class WebhookError(InputError):
    """The payload is not a valid Alertmanager webhook; the message says where."""


@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None
    generator_url: str
    fingerprint: str
    starts_text: str  # startsAt as Alertmanager sent it
    ends_text: str | None  # endsAt as sent; the zero time when absent


@dataclass(frozen=True)
class Webhook:
    status: str
    receiver: str
    group_key: str
    external_url: str
    alerts: list[Alert]


def check_token(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time; an empty token admits
    nobody."""
    if not token or not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def parse_time(value: Any, where: str) -> float | None:
    """RFC 3339 (Alertmanager sends nanoseconds and ``Z``); the zero time means unset."""
    if not isinstance(value, str) or not value:
        raise WebhookError(f"{where}: must be an RFC 3339 time string")
    if value.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(r".\1", value.replace("Z", "+00:00").replace("z", "+00:00"))
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise WebhookError(f"{where}: {value!r} is not an RFC 3339 time") from None
    if t.tzinfo is None:
        raise WebhookError(f"{where}: {value!r} has no time zone")
    return t.timestamp()


def _str_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise WebhookError(f"{where}: must be an object of strings")
    return dict(value)


def parse_webhook(body: bytes) -> Webhook:
    """Validate an Alertmanager webhook payload (version "4") completely, or raise WebhookError."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WebhookError(f"body is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise WebhookError("body must be a JSON object")
    if payload.get("version") != "4":
        raise WebhookError(
            f'version: must be "4" (Alertmanager webhook), got {payload.get("version")!r}'
        )
    status = payload.get("status")
    if status not in ("firing", "resolved"):
        raise WebhookError(f"status: must be firing or resolved, got {status!r}")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise WebhookError("alerts: must be a non-empty list")
    for name in ("receiver", "groupKey", "externalURL"):
        if name in payload and not isinstance(payload[name], str):
            raise WebhookError(f"{name}: must be a string")
    for name in ("groupLabels", "commonLabels", "commonAnnotations"):
        if name in payload:
            _str_map(payload[name], name)
    parsed = []
    for i, a in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise WebhookError(f"{where}: must be an object")
        if a.get("status") not in ("firing", "resolved"):
            raise WebhookError(
                f"{where}.status: must be firing or resolved, got {a.get('status')!r}"
            )
        fingerprint = a.get("fingerprint")
        if not isinstance(fingerprint, str) or not re.fullmatch(
            r"[0-9A-Za-z_-]{1,128}", fingerprint
        ):
            raise WebhookError(f"{where}.fingerprint: must be a non-empty alphanumeric string")
        labels = _str_map(a.get("labels"), f"{where}.labels")
        if "alertname" not in labels:
            raise WebhookError(f"{where}.labels: has no alertname")
        annotations = _str_map(a.get("annotations", {}), f"{where}.annotations")
        starts = parse_time(a.get("startsAt"), f"{where}.startsAt")
        if starts is None:
            raise WebhookError(f"{where}.startsAt: must be set")
        ends = parse_time(a["endsAt"], f"{where}.endsAt") if a.get("endsAt") else None
        gen = a.get("generatorURL", "")
        if not isinstance(gen, str):
            raise WebhookError(f"{where}.generatorURL: must be a string")
        parsed.append(
            Alert(
                a["status"],
                labels,
                annotations,
                starts,
                ends,
                gen,
                fingerprint,
                a["startsAt"],
                a.get("endsAt", _ZERO_TIME),
            )
        )
    return Webhook(
        status,
        payload.get("receiver", ""),
        payload.get("groupKey", ""),
        payload.get("externalURL", ""),
        parsed,
    )


# --- suggestions ---------------------------------------------------------------------------------

# feature -> (condition when the window is above the reference, when below)
_CONDITIONS = {
    explain.EDGE_LAYOUT: (
        "a view whose edges line up with the reference's more closely than before",
        "the camera's new view (knocked or turned): re-aim it, or rebuild the reference if the "
        "new view is meant",
    ),
    "brightness_mean": (
        "brighter scenes (glare, daylight, over-exposure)",
        "darker scenes (dusk, night, under-exposure)",
    ),
    "brightness_std": (
        "higher-contrast scenes",
        "flatter, lower-contrast scenes (haze, fog, flat light)",
    ),
    "contrast_rms": (
        "higher-contrast scenes",
        "flatter, lower-contrast scenes (haze, fog, flat light)",
    ),
    "saturation_mean": ("more saturated colour", "washed-out colour (fog, dusk, a failing sensor)"),
    "colourfulness": ("more colourful scenes", "washed-out colour (fog, dusk, a failing sensor)"),
    "hue_cos": ("a colour cast (white balance)", "a colour cast (white balance)"),
    "hue_sin": ("a colour cast (white balance)", "a colour cast (white balance)"),
    "red_share": ("a red/warm colour cast", "a cooler colour balance"),
    "green_share": ("a green colour cast", "less green (season, vegetation)"),
    "blue_share": ("a blue/cool colour cast", "a warmer colour balance"),
    "sharpness_laplacian_var": (
        "sharper, busier frames",
        "blurred frames (defocus, motion blur, dirty or wet lens)",
    ),
    "noise_sigma": (
        "noisier frames (low light, high sensor gain)",
        "smoother frames (heavy compression or denoising)",
    ),
    "luma_entropy": ("busier scenes", "emptier or flatter scenes (occlusion, fog)"),
    "edge_density": (
        "busier scenes (clutter, rain, new objects)",
        "fewer edges (blur, fog, occlusion)",
    ),
    "underexposed_fraction": (
        "more under-exposed pixels (night, shadows)",
        "fewer under-exposed pixels",
    ),
    "overexposed_fraction": (
        "more blown-out highlights (sun, headlights)",
        "fewer blown-out highlights",
    ),
    "width": ("a resolution change", "a resolution change"),
    "height": ("a resolution change", "a resolution change"),
    "aspect_ratio": ("a crop or aspect change", "a crop or aspect change"),
    "encoded_bytes_per_pixel": (
        "an encoder or compression change",
        "an encoder or compression change",
    ),
    "orientation_entropy": (
        "edges pointing more evenly (a warped or tilted view, noise)",
        "edges lined up in fewer directions (motion blur, streaks, blocky pixels)",
    ),
}


def condition(feature: str, z: float | None, kind: str = explain.STATISTICS) -> str:
    """The condition a drifted feature points to, for the "collect more of" suggestion."""
    if kind == explain.EMBEDDINGS:
        return (
            "scenes unlike the reference in the embeddings (new content, viewpoint or appearance)"
        )
    if kind == explain.PREDICTIONS:
        if feature == "confidence":
            return (
                "frames the model is less sure of (unfamiliar or harder scenes)"
                if z is not None and z < 0
                else "frames the model is surer of than before"
            )
        if feature.startswith("class_"):
            which = feature[len("class_") :]
            fewer_or_more = "fewer" if z is not None and z < 0 else "more"
            return f"{fewer_or_more} frames the model assigns to class {which}"
        return "a different mix of predicted classes"
    up, down = _CONDITIONS.get(feature, (f"higher {feature}", f"lower {feature}"))
    return down if (z is not None and z < 0) else up


@dataclass(frozen=True)
class Suggestion:
    """One suggested action: ``collect`` (the conditions and the features they come from),
    ``relabel`` (how many frames), ``rebaseline`` (the command). In JSON, absent parts are left
    out."""

    kind: str
    text: str
    conditions: tuple[str, ...] | None = None
    features: tuple[str, ...] | None = None
    frames: int | None = None
    command: str | None = None

    def to_dict(self) -> JSONObject:
        parts = {
            "kind": self.kind,
            "conditions": self.conditions,
            "features": self.features,
            "frames": self.frames,
            "text": self.text,
            "command": self.command,
        }
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in parts.items() if v is not None
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> Suggestion:
        conditions, features = d.get("conditions"), d.get("features")
        return cls(
            d["kind"],
            d["text"],
            None if conditions is None else tuple(conditions),
            None if features is None else tuple(features),
            d.get("frames"),
            d.get("command"),
        )


def suggest(
    stream: str,
    events: list[DriftEvent],
    samples: int,
    firing_for_s: float,
    rebaseline_after_s: float,
) -> list[Suggestion]:
    """What to do about a drifted stream: collect more of the new condition, relabel the queued
    frames, and (once a drift has lasted long enough to be the new normal) re-baseline."""
    out: list[Suggestion] = []
    moved: dict[str, tuple[str, float | None]] = {}  # feature -> (kind, z)
    for e in events:
        for f in e.fired:
            shift = e.shifts.get(f.feature)
            moved.setdefault(f.feature, (f.kind, None if shift is None else shift.z))
    conditions: list[str] = []
    features: list[str] = []
    # what moved most (|z| of the window mean, in reference sd; unmeasured last): three conditions
    for feature, (kind, z) in sorted(
        moved.items(), key=lambda kv: -abs(kv[1][1]) if kv[1][1] is not None else 0.0
    ):
        text = condition(feature, z, kind)
        if len(conditions) == 3:
            break
        features.append(feature)
        if text not in conditions:
            conditions.append(text)
    if conditions:
        out.append(
            Suggestion(
                "collect",
                f"Collect and label more training frames of {stream} showing: "
                + "; ".join(conditions),
                conditions=tuple(conditions),
                features=tuple(features),
            )
        )
    gaps = next((e.gaps for e in reversed(events) if e.gaps is not None and e.gaps.groups), None)
    if gaps is not None:
        out.append(
            Suggestion(
                "collect_uncovered",
                f"The model's training set lacks what {stream} sees: {gaps.text()}. Collect and "
                "label frames like the examples (the event report shows them)",
                frames=gaps.uncovered,
            )
        )
    if samples:
        out.append(
            Suggestion(
                "relabel",
                f"Relabel the {samples} frame(s) driftmon queued from this drift and add "
                "them to the training set",
                frames=samples,
            )
        )
    if firing_for_s >= rebaseline_after_s:
        out.append(
            Suggestion(
                "rebaseline",
                f"The drift has lasted {firing_for_s / 3600:.1f} h: if the new "
                "condition is the camera's new normal (and the model copes), make a healthy recent "
                "window the stream's reference",
                command=f"driftmon reference promote --store <reference store> --stream {stream} "
                "--from-topic <frames topic> --start <ISO time> --end <ISO time>",
            )
        )
    return out


# --- tickets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketAlert:
    """The alert a ticket stands for, as Alertmanager last sent it (times as sent)."""

    alertname: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str
    ends_at: str | None
    generator_url: str
    fingerprint: str

    @classmethod
    def of(cls, alert: Alert) -> TicketAlert:
        return cls(
            alert.labels["alertname"],
            alert.status,
            alert.labels,
            alert.annotations,
            alert.starts_text,
            alert.ends_text,
            alert.generator_url,
            alert.fingerprint,
        )

    def to_dict(self) -> JSONObject:
        return {
            "alertname": self.alertname,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, d: JSONObject) -> TicketAlert:
        return cls(
            d["alertname"],
            d["status"],
            d["labels"],
            d["annotations"],
            d["startsAt"],
            d["endsAt"],
            d["generatorURL"],
            d["fingerprint"],
        )


@dataclass(frozen=True)
class EventLink:
    """A drift event linked to a ticket: its state, what fired (in words), links to it and its
    evidence, and how many of its frames were queued for relabelling."""

    id: str
    status: str
    opened_at: float
    closed_at: float | None
    fired: tuple[str, ...]
    url: str
    report_url: str
    contact_sheet_url: str
    samples: int
    headline: str = ""  # the event's one-line account (monitor.actions.headline)
    labelled: Labelled | None = None  # what the labels of its queued frames said

    def to_dict(self) -> JSONObject:
        """As JSON; without a headline when the event had none (events before headlines), without
        ``labelled`` before labels came back."""
        out = asdict(self) | {"fired": list(self.fired)}
        if not self.headline:
            del out["headline"]
        if self.labelled is None:
            del out["labelled"]
        return out

    @classmethod
    def from_dict(cls, d: JSONObject) -> EventLink:
        labelled = d.get("labelled")
        return cls(
            **(d | {"fired": tuple(d["fired"])})
            | {"labelled": None if labelled is None else Labelled.from_dict(labelled)}
        )

    @classmethod
    def of(cls, e: DriftEvent, link: Callable[[str], str]) -> EventLink:
        return cls(
            e.id,
            e.status,
            e.opened_at,
            e.closed_at,
            tuple(sorted({f.what or f.feature for f in e.fired})),
            link(f"/events/{e.id}"),
            link(f"/events/{e.id}/report"),
            link(f"/events/{e.id}/contact-sheet.jpg"),
            len(e.samples),
            e.headline,
            e.labelled,
        )


@dataclass(frozen=True)
class SampleLink:
    """A frame queued for relabelling from a linked event, in short: which, where, its score and
    reason codes."""

    key: str
    event_id: str
    camera_id: str
    frame_id: str
    ts: float
    uri: str
    score: float
    reasons: tuple[str, ...]

    @classmethod
    def of(cls, s: Sample) -> SampleLink:
        return cls(
            s.key,
            s.event_id,
            s.camera_id,
            s.frame_id,
            s.ts,
            s.uri,
            s.scores.score,
            tuple(r.code for r in s.reasons),
        )


@dataclass(frozen=True)
class HistoryEntry:
    """One change of a ticket: when, which (created, updated, resolved), and the alert's status
    then."""

    at: float
    action: str
    alert_status: str


@dataclass(frozen=True)
class Step:
    """One step of the refresh cycle a ticket stands for: drift event opened, frames queued,
    labels back, reference or training set refreshed, resolved."""

    at: float
    # event_opened, frames_queued, labels_back, reference_promoted, training_refreshed, resolved
    step: str
    text: str


def cycle(
    events: Sequence[DriftEvent],
    refreshes: Sequence[Step],
    resolved_at: float | None,
) -> tuple[Step, ...]:
    """The cycle's steps so far, oldest first, from what the linked events and stores hold."""
    steps: list[Step] = []
    for e in events:
        steps.append(Step(e.opened_at, "event_opened", f"drift event {e.id} opened"))
        if e.samples:
            steps.append(
                Step(
                    min(s.selected_at for s in e.samples),
                    "frames_queued",
                    f"{len(e.samples)} frame(s) of {e.id} queued for relabelling",
                )
            )
        if e.labelled is not None:
            steps.append(Step(e.labelled.first_at, "labels_back", e.labelled.text()))
    steps += refreshes
    if resolved_at is not None:
        steps.append(Step(resolved_at, "resolved", "alert resolved"))
    return tuple(sorted(steps, key=lambda s: s.at))


@dataclass(frozen=True)
class Ticket:
    """A dataset-refresh ticket for one alert (by fingerprint): the alert, the drift events it
    overlaps and the frames queued from them, suggested actions, and its history (the last
    ``HISTORY_MAX`` changes). Its JSON is ``driftmon.ticket/v1`` (docs/actions.md)."""

    id: str
    fingerprint: str
    stream: str
    status: str
    title: str
    created_at: float
    updated_at: float
    resolved_at: float | None
    notifications: int
    alert: TicketAlert
    receiver: str
    group_key: str
    external_url: str
    events: tuple[EventLink, ...]
    samples_total: int
    samples: tuple[SampleLink, ...]
    suggested_actions: tuple[Suggestion, ...]
    history: tuple[HistoryEntry, ...]
    cycle: tuple[Step, ...] = ()  # the refresh cycle so far (tickets before it have none)

    def to_dict(self) -> JSONObject:
        out: JSONObject = {
            "schema": SCHEMA,
            "id": self.id,
            "fingerprint": self.fingerprint,
            "stream": self.stream,
            "status": self.status,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "resolved_at": self.resolved_at,
            "notifications": self.notifications,
            "alert": self.alert.to_dict(),
            "receiver": self.receiver,
            "group_key": self.group_key,
            "external_url": self.external_url,
            "events": [e.to_dict() for e in self.events],
            "samples_total": self.samples_total,
            "samples": [asdict(s) | {"reasons": list(s.reasons)} for s in self.samples],
            "suggested_actions": [a.to_dict() for a in self.suggested_actions],
            "history": [asdict(h) for h in self.history],
        }
        if self.cycle:
            out["cycle"] = [asdict(s) for s in self.cycle]
        return out

    @classmethod
    def from_dict(cls, d: JSONObject) -> Ticket:
        return cls(
            id=d["id"],
            fingerprint=d["fingerprint"],
            stream=d["stream"],
            status=d["status"],
            title=d["title"],
            created_at=d["created_at"],
            updated_at=d["updated_at"],
            resolved_at=d["resolved_at"],
            notifications=d["notifications"],
            alert=TicketAlert.from_dict(d["alert"]),
            receiver=d["receiver"],
            group_key=d["group_key"],
            external_url=d["external_url"],
            events=tuple(EventLink.from_dict(e) for e in d["events"]),
            samples_total=d["samples_total"],
            samples=tuple(
                SampleLink(**(s | {"reasons": tuple(s["reasons"])})) for s in d["samples"]
            ),
            suggested_actions=tuple(Suggestion.from_dict(a) for a in d["suggested_actions"]),
            history=tuple(HistoryEntry(**h) for h in d["history"]),
            cycle=tuple(Step(**s) for s in d.get("cycle", ())),
        )

    def summary(self) -> JSONObject:
        """The ticket in short, for lists."""
        return {
            "id": self.id,
            "stream": self.stream,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "notifications": self.notifications,
        }


@dataclass(frozen=True)
class Applied:
    """What a webhook did: each ticket changed (id, action), and how many alerts were not for
    tickets."""

    changes: tuple[tuple[str, str], ...]
    ignored: int

    def to_dict(self) -> JSONObject:
        return {
            "tickets": [{"id": tid, "action": action} for tid, action in self.changes],
            "ignored": self.ignored,
        }


class TicketBook:
    """Tickets by id, persisted; turns validated webhooks into ticket changes."""

    def __init__(
        self,
        directory: str | Path,
        config: TicketsConfig,
        *,
        events: EventStore,
        link: Callable[[str], str],
        on_change: Callable[[str, Ticket], None],
        refreshes: Callable[[str, float], list[Step]] | None = None,
    ):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.events = events
        self.link = link  # path -> absolute URL
        self.on_change = on_change
        # a stream's references promoted, and training sets registered, since a time
        self.refreshes = refreshes or (lambda stream, since: [])
        self._lock = threading.RLock()
        self._writers = self.dir / ".lock"
        self._view = DirectoryView(self.dir, "drift-*.json")
        self._tickets: dict[str, Ticket] = {}
        with self._lock:
            self._refresh(force=True)

    @property
    def lock_path(self) -> Path:
        """The writers' lock file of the book's tickets (for a directory sink writing beside)."""
        return self._writers

    def get(self, tid: str) -> Ticket | None:
        with self._lock:
            self._refresh()
            return self._tickets.get(tid)

    def list(self) -> list[Ticket]:
        with self._lock:
            self._refresh()
            found = list(self._tickets.values())
        return sorted(found, key=lambda t: t.created_at)

    def _refresh(self, force: bool = False) -> None:
        """Take in the tickets other replicas created or changed (under ``_lock``)."""
        changed, gone = self._view.changes(force)
        for path, signature in changed:
            try:
                data = read_json(path)
            except ValueError:
                log.error("ticket file %s does not parse; ignored", path)
                self._view.seen(path, signature)
                continue
            if data is not None:
                ticket = Ticket.from_dict(data)
                self._tickets[ticket.id] = ticket
                self._view.seen(path, signature)
        for name in gone:
            self._tickets.pop(name.removesuffix(".json"), None)

    def apply(self, hook: Webhook, now: float | None = None) -> Applied:
        """Create or update a ticket per relevant alert; returns what was done."""
        now = time.time() if now is None else now
        done: list[tuple[str, str]] = []
        ignored = 0
        for alert in hook.alerts:
            stream = alert.labels.get(self.config.stream_label)
            if alert.labels["alertname"] not in self.config.alertnames or not stream:
                ignored += 1
                continue
            action, ticket = self._upsert(alert, stream, hook, now)
            done.append((ticket.id, action))
            self.on_change(action, ticket)
        return Applied(tuple(done), ignored)

    def _upsert(self, alert: Alert, stream: str, hook: Webhook, now: float) -> tuple[str, Ticket]:
        tid = f"drift-{safe_name(alert.fingerprint)}"
        path = self.dir / f"{tid}.json"
        # another replica may have received the same alert: its ticket is read fresh, under the
        # writers' lock, and updated, never created twice
        with self._lock, locked(self._writers):
            saved = read_json(path)
            old = Ticket.from_dict(saved) if saved is not None else None
            action = _ticket_action(old, alert.status)
            history = (old.history if old else ())[-(HISTORY_MAX - 1) :] + (
                HistoryEntry(now, action, alert.status),
            )
            resolved_at = _resolved_at(old, alert.status, now)
            end = alert.ends_at if alert.status == "resolved" and alert.ends_at else now
            ticket = self._render(
                Ticket(
                    id=tid,
                    fingerprint=alert.fingerprint,
                    stream=stream,
                    status=alert.status,
                    title="",
                    created_at=old.created_at if old else now,
                    updated_at=now,
                    resolved_at=resolved_at,
                    notifications=(old.notifications if old else 0) + 1,
                    alert=TicketAlert.of(alert),
                    receiver=hook.receiver,
                    group_key=hook.group_key,
                    external_url=hook.external_url,
                    events=(),
                    samples_total=0,
                    samples=(),
                    suggested_actions=(),
                    history=history,
                ),
                alert.starts_at,
                end,
            )
            self._view.seen(atomic_write_json(path, ticket.to_dict()))
            self._tickets[tid] = ticket
            return action, ticket

    def _render(self, ticket: Ticket, starts_at: float, end: float | None) -> Ticket:
        """``ticket`` with what it derives from the drift events its alert overlaps (read now):
        title, linked events, queued frames, suggested actions and the refresh cycle."""
        stream = ticket.stream
        events = self.events.overlapping(stream, starts_at - LINK_SLACK_S, end)
        samples = [s for e in events for s in e.samples]
        since = min((e.opened_at for e in events), default=starts_at)
        return replace(
            ticket,
            title=ticket_title(stream, events, len(samples)),
            events=tuple(EventLink.of(e, self.link) for e in events),
            samples_total=len(samples),
            samples=tuple(SampleLink.of(s) for s in samples[:SAMPLES_MAX]),
            suggested_actions=tuple(
                suggest(
                    stream,
                    events,
                    len(samples),
                    max(0.0, (end if end is not None else time.time()) - starts_at),
                    self.config.rebaseline_after_s,
                )
            ),
            cycle=cycle(events, self.refreshes(stream, since), ticket.resolved_at),
        )

    def relink(self, eid: str, now: float | None = None) -> builtins.list[Ticket]:
        """Re-derive every ticket linking event ``eid`` (its labels came back, its evidence
        changed), so a ticket says what is known now, not at the alert's last notification."""
        now = time.time() if now is None else now
        changed = []
        with self._lock:
            self._refresh()
            linking = [t.id for t in self._tickets.values() if any(e.id == eid for e in t.events)]
        for tid in linking:
            path = self.dir / f"{tid}.json"
            with self._lock, locked(self._writers):
                saved = read_json(path)
                if saved is None:
                    continue
                old = Ticket.from_dict(saved)
                starts_at = parse_time(old.alert.starts_at, "startsAt") or old.created_at
                end = old.resolved_at if old.status == "resolved" else None
                ticket = replace(
                    self._render(old, starts_at, end),
                    updated_at=now,
                    history=old.history[-(HISTORY_MAX - 1) :]
                    + (HistoryEntry(now, "relinked", old.status),),
                )
                self._view.seen(atomic_write_json(path, ticket.to_dict()))
                self._tickets[tid] = ticket
            self.on_change("updated", ticket)
            changed.append(ticket)
        return changed


def ticket_title(stream: str, events: Sequence[DriftEvent], queued: int) -> str:
    """The newest linked event's headline and the frames queued, else a generic title."""
    said = next((e.headline for e in reversed(events) if e.headline), "")
    if not said:
        return f"Dataset refresh: camera stream {stream} drifted"
    return f"Dataset refresh for {stream}: {with_queued(said, queued)}"


def _ticket_action(old: Ticket | None, alert_status: str) -> str:
    """``created`` for a new ticket, ``resolved`` when the alert resolves it, else ``updated``."""
    if old is None:
        return "created"
    return "resolved" if alert_status == "resolved" and old.status != "resolved" else "updated"


def _resolved_at(old: Ticket | None, alert_status: str, now: float) -> float | None:
    """When the ticket was resolved: kept from an already resolved ticket, ``now`` on resolution."""
    if alert_status != "resolved":
        return None
    return (
        old.resolved_at if old is not None and old.status == "resolved" and old.resolved_at else now
    )


# --- ticket sinks --------------------------------------------------------------------------------


def markdown(ticket: Ticket) -> str:
    """A ticket as Markdown (for the directory sink; paste-able into any tracker)."""

    def when(t: float | None) -> str:
        return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))

    a = ticket.alert
    lines = [
        f"# {ticket.title}",
        "",
        f"- **Ticket:** `{ticket.id}` ({ticket.status}; {ticket.notifications} notification(s))",
        f"- **Stream:** `{ticket.stream}`",
        f"- **Alert:** {a.alertname} since {a.starts_at} (fingerprint `{a.fingerprint}`)",
        f"- **Created:** {when(ticket.created_at)}; **updated:** {when(ticket.updated_at)}"
        + (f"; **resolved:** {when(ticket.resolved_at)}" if ticket.resolved_at else ""),
        "",
    ]
    if a.annotations.get("summary"):
        lines += [f"> {a.annotations['summary']}", ""]
    lines += ["## Suggested actions", ""]
    lines += [
        f"- **{s.kind}**: {s.text}" + (f"\n  `{s.command}`" if s.command else "")
        for s in ticket.suggested_actions
    ] or ["- none yet (no drift event linked)"]
    lines += ["", "## Drift events", ""]
    lines += [
        f"- [{e.id}]({e.url}) ({e.status}, opened {when(e.opened_at)}): "
        f"{e.headline or ', '.join(e.fired) or '-'} — [report]({e.report_url}), "
        f"[contact sheet]({e.contact_sheet_url}), {e.samples} frame(s) queued"
        + (f"\n  - labels: {e.labelled.text()}" if e.labelled is not None else "")
        for e in ticket.events
    ] or ["- none linked"]
    lines += ["", f"## Frames queued for relabelling ({ticket.samples_total})", ""]
    lines += [
        f"- `{s.camera_id}` / `{s.frame_id}` score {s.score}: {', '.join(s.reasons)}"
        + (f" — {s.uri}" if s.uri else "")
        for s in ticket.samples
    ] or ["- none"]
    if ticket.cycle:
        lines += ["", "## Refresh cycle", ""]
        lines += [f"- {when(s.at)} **{s.step.replace('_', ' ')}**: {s.text}" for s in ticket.cycle]
    return "\n".join(lines) + "\n"


class TicketSink(Protocol):
    name: str

    def deliver(self, action: str, ticket: Ticket) -> None:
        """Hand over one ticket change (``created``, ``updated``, ``resolved``); raise to retry."""


class DirectoryTicketSink:
    """Each ticket as ``<id>.json`` and ``<id>.md``. Replicas sharing the state directory deliver
    their changes of one ticket in any order: under the ticket book's writers' lock (``lock``), a
    change older than the ticket already there leaves it as it is (its Markdown rewritten from the
    newer ticket)."""

    name = "ticket_directory"

    def __init__(self, directory: str | Path, lock: str | Path | None = None):
        self.dir = Path(directory)
        self.lock = Path(lock) if lock is not None else self.dir / ".lock"

    def deliver(self, action: str, ticket: Ticket) -> None:
        path = self.dir / f"{ticket.id}.json"
        with locked(self.lock):
            saved = read_json(path)
            if saved is not None and _newer(saved, ticket):
                ticket = Ticket.from_dict(saved)
            else:
                atomic_write_json(path, ticket.to_dict())
            atomic_write_text(self.dir / f"{ticket.id}.md", markdown(ticket))


def _newer(saved: JSONObject, ticket: Ticket) -> bool:
    """Whether the saved ticket is a later version than ``ticket`` (more notifications)."""
    return bool(saved.get("notifications", 0) > ticket.notifications)


class WebhookTicketSink:
    """POSTs ``{"schema", "action", "ticket"}`` as JSON; any 2xx is success, the rest is retried."""

    name = "ticket_webhook"

    def __init__(self, url: str, token: str, timeout_s: float):
        self.url, self.token, self.timeout_s = url, token, timeout_s

    def deliver(self, action: str, ticket: Ticket) -> None:
        from monitor.actions.sinks import SinkError

        body = json.dumps(
            {"schema": WEBHOOK_SCHEMA, "action": action, "ticket": ticket.to_dict()}
        ).encode()
        headers = {"Content-Type": "application/json"} | (
            {"Authorization": f"Bearer {self.token}"} if self.token else {}
        )
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as res:
                if not 200 <= res.status < 300:
                    raise SinkError(f"webhook {self.url}: HTTP {res.status}")
        except urllib.error.HTTPError as e:
            raise SinkError(f"webhook {self.url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            raise SinkError(f"webhook {self.url}: {e}") from None
