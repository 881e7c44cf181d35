"""Actions: from an evaluation to something done about it (docs/actions.md).

``Actions.on_evaluation`` is called by the consume loop after every evaluation. It only does cheap
things there: open a drift event when a stream turns drifted (one small JSON file and the window's
rows), close it when the stream recovers, remember a few frames of healthy windows. Everything
slow runs on background workers with bounded queues, retried with backoff and counted:

- the *evidence* worker: selects the frames worth relabelling (``monitor.actions.selection``,
  fetching pooled frames again with ``monitor.actions.fetch``), then writes the Evidently report and
  the contact sheet (``monitor.actions.report``);
- one worker per relabel sink (``monitor.actions.sinks``: Kafka topic, Label Studio, a directory);
- one worker per ticket sink (``monitor.actions.tickets``: a directory of JSON + Markdown, a
  webhook).

HTTP routes (``monitor.actions.routes``): ``GET /events``, ``/events/{id}``,
``/events/{id}/report``, ``/events/{id}/contact-sheet.jpg``, ``GET /tickets``, ``/tickets/{id}`` and
the Alertmanager receiver ``POST /alerts/alertmanager``.

State lives in ``actions.state_dir`` and survives restarts: events (an event open before a
restart is still open after it), the ledger of queued frames (none is queued twice), each sink's
ledger of deliveries (none is delivered twice), tickets. Work left pending by a stop (evidence not
written, deliveries not made) is picked up again at the next start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from monitor.actions import explain, headline, report
from monitor.actions.events import (
    DriftEvent,
    EventStore,
    EventWindow,
    Origin,
    ReferenceInfo,
    Sample,
    SelectionSummary,
    event_id,
    fired_from,
    ref_dict,
)
from monitor.actions.explain import Shift
from monitor.actions.fetch import Fetched, FetchError, FrameFetcher
from monitor.actions.metrics import ActionMetrics
from monitor.actions.routes import routes as action_routes
from monitor.actions.selection import (
    Pick,
    Probe,
    Queued,
    QueueLedger,
    candidate_pool,
    image_hash,
    nearest,
    score_window,
    select,
    typical_nearest_distance,
    uncertainty,
)
from monitor.actions.sinks import (
    DirectorySink,
    KafkaSink,
    KeyLedger,
    LabelStudioSink,
    RelabelSink,
    Worker,
    image_extension,
    wait_idle,
)
from monitor.actions.tickets import (
    DirectoryTicketSink,
    Ticket,
    TicketBook,
    TicketSink,
    WebhookTicketSink,
)
from monitor.config import Config
from monitor.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    locked,
    read_json,
    safe_name,
)
from monitor.loop.feedback import LabelFeedback, refreshes
from monitor.loop.gaps import gaps_of
from monitor.pipeline.engine import Evaluation
from monitor.pipeline.streams import FrameRef, WindowSnapshot
from monitor.reference.store import Reference
from monitor.service.http import Route

log = logging.getLogger(__name__)

#: Drifted frames shown beside their nearest reference frames in a report.
NEIGHBOURS = 4


def frame_key(ref: FrameRef) -> str:
    """What "the same frame" means for the ledgers: camera id and frame id."""
    return f"{ref.camera_id}/{ref.frame_id}"


class Actions:
    def __init__(self, config: Config, registry: CollectorRegistry | None = None):
        self.config = config
        a = self.cfg = config.actions
        self.state_dir = Path(a.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = ActionMetrics(
            registry if registry is not None else CollectorRegistry(), config.metrics.max_streams
        )
        self.events = EventStore(self.state_dir / "events")
        self.ledger = QueueLedger(self.state_dir / "queued.jsonl", a.selection.remember_frames)
        self.artefacts = Path(a.artefact_dir) if a.artefact_dir else self.state_dir / "artefacts"
        self.claim_dir = (
            Path(a.relabel.claim_check_dir)
            if a.relabel.claim_check_dir
            else self.state_dir / "frames"
        )
        self.fetcher = FrameFetcher(config, extra_roots=(str(self.claim_dir),))
        self._healthy = _load_healthy(
            self.state_dir / "healthy.json"
        )  # stream -> frames of its last healthy window
        self._healthy_seen: set[str] = set()  # streams whose healthy frames this process saw
        self._references: dict[
            str, Reference
        ] = {}  # event id -> the Reference its window was judged against
        self._clean: dict[str, int] = {}  # stream -> consecutive evaluations that did not fire
        # stream -> the evaluation and window of a drift event that failed to open (opened at its
        # next evaluation)
        self._pending_open: dict[str, tuple[Evaluation, WindowSnapshot]] = {}
        # open events carried over a restart, or opened by another replica before a handover
        # (stream -> which): closed after `hysteresis.recover` clean evaluations
        carried = self.events.list(status="open")
        self._carried = {e.stream: "a restart" for e in carried}
        # stream -> its open event this process acts on (opened or continued here)
        self._acting: dict[str, str] = {}
        # read at each scrape: with a shared state_dir, the fleet's open events
        self.metrics.events_open.set_function(self.events.open_count)
        for e in carried:
            self.metrics.show_headline(self.metrics.stream_label(e.stream), e.headline)

        m = self.metrics
        self.evidence = Worker(
            "evidence",
            self._evidence,
            a.retry,
            a.queue_size,
            errors=m.sink_errors.labels("evidence"),
            depth=m.sink_depth.labels("evidence"),
            on_give_up=self._evidence_failed,
        )
        self.sinks: list[tuple[RelabelSink, KeyLedger, Worker]] = []
        for sink in self._make_sinks():
            ledger = KeyLedger(self.state_dir / "delivered" / f"{sink.name}.keys")
            worker = Worker(
                f"relabel-{sink.name}",
                self._deliverer(sink, ledger),
                a.retry,
                a.relabel.queue_size,
                errors=m.sink_errors.labels(sink.name),
                depth=m.sink_depth.labels(sink.name),
            )
            self.sinks.append((sink, ledger, worker))
        t = a.tickets
        self.ticket_dir = Path(t.directory) if t.directory else self.state_dir / "tickets"
        self.tickets = TicketBook(
            self.state_dir / "tickets",
            t,
            events=self.events,
            link=self.link,
            on_change=self._ticket_changed,
            refreshes=refreshes(config),
        )
        self.ticket_workers: list[Worker] = []
        for tsink in self._make_ticket_sinks():
            self.ticket_workers.append(
                Worker(
                    tsink.name,
                    self._ticket_deliverer(tsink),
                    a.retry,
                    1000,
                    errors=m.sink_errors.labels(tsink.name),
                    depth=m.sink_depth.labels(tsink.name),
                )
            )
        self.feedback = LabelFeedback(config, self.state_dir, self.events, self.tickets, m)
        self._resume()
        self.feedback.start()

    def _make_sinks(self) -> list[RelabelSink]:
        r = self.cfg.relabel
        made: list[RelabelSink] = []
        for name in r.sinks:
            if name == "kafka":
                made.append(KafkaSink(self.config.kafka, r.topic))
            elif name == "label_studio":
                made.append(LabelStudioSink(r.label_studio))
            elif name == "directory":
                made.append(DirectorySink(r.directory))
        return made

    def _make_ticket_sinks(self) -> list[TicketSink]:
        t = self.cfg.tickets
        made: list[TicketSink] = []
        for name in t.sinks:
            if name == "directory":
                made.append(DirectoryTicketSink(self.ticket_dir, self.tickets.lock_path))
            elif name == "webhook":
                made.append(WebhookTicketSink(t.webhook_url, t.webhook_token, t.timeout_s))
        return made

    @staticmethod
    def _ticket_deliverer(sink: TicketSink) -> Callable[[tuple[str, Ticket]], None]:
        def deliver(item: tuple[str, Ticket]) -> None:
            sink.deliver(*item)

        return deliver

    def link(self, path: str) -> str:
        """An absolute URL for one of our paths when the daemon's address is known, else the
        path."""
        base = self.cfg.public_url
        if not base and self.config.http.port:
            base = f"http://{self.config.http.host}:{self.config.http.port}"
        return base.rstrip("/") + path if base else path

    # --- the consume loop's side (cheap) -------------------------------------------------------

    def on_evaluation(self, evaluation: Evaluation, window: WindowSnapshot) -> None:
        """Act on one evaluation. Never raises: a failure here is logged with its traceback and
        counted (``driftmon_action_errors_total``), and an event that failed to open is opened at
        the stream's next evaluation, with the evaluation and window that declared it; drift
        detection and offset commits go on meanwhile."""
        stream = evaluation.stream
        try:
            pending = self._pending_open.pop(stream, None)
            if pending is not None and self.events.open_for(stream) is None:
                self._try_open(*pending)
            self._act(evaluation, window)
        except Exception:  # noqa: BLE001 - actions must never stop the consume loop
            log.exception(
                "actions failed on stream %s's evaluation at %s", stream, evaluation.evaluated_at
            )
            self.metrics.errors.labels("evaluation").inc()

    def _try_open(self, evaluation: Evaluation, window: WindowSnapshot) -> None:
        try:
            self._open(evaluation, window)
        except Exception:  # noqa: BLE001 - kept, and tried again at the stream's next evaluation
            log.exception(
                "drift event for stream %s could not be opened; trying again at its next "
                "evaluation",
                evaluation.stream,
            )
            self.metrics.errors.labels("open_event").inc()
            self._pending_open[evaluation.stream] = (evaluation, window)

    def _act(self, evaluation: Evaluation, window: WindowSnapshot) -> None:
        stream = evaluation.stream
        open_id = self.events.open_for(stream)  # the shared store's: any replica's
        if open_id is not None and self._acting.get(stream) != open_id:
            self._continue(stream, open_id)
        self._clean[stream] = 0 if evaluation.window_drifted else self._clean.get(stream, 0) + 1
        if evaluation.drifted:
            if open_id is None:
                if stream not in self._pending_open:
                    self._try_open(evaluation, window)
            elif evaluation.changed and stream in self._carried:
                # drifted again after a restart or a handover: the same drift, still open; no
                # second event
                del self._carried[stream]
                self.events.update(open_id, lambda e: e.confirmed(evaluation.evaluated_at))
            return
        if open_id is not None:
            if evaluation.changed:
                self._close(open_id, evaluation, "recovered")
            elif stream in self._carried and self._clean[stream] >= self.config.hysteresis.recover:
                self._close(open_id, evaluation, f"recovered after {self._carried[stream]}")
            return
        if not evaluation.window_drifted:
            self._remember_healthy(stream, window)

    def _continue(self, stream: str, eid: str) -> None:
        """Act from now on on ``stream``'s open event ``eid``, opened before a restart or by the
        replica that owned the stream before a handover: shown here, closed here."""
        self._acting[stream] = eid
        if eid not in self._references:  # not opened by this process
            self._carried.setdefault(stream, "a handover")
            log.info("stream %s: continuing its open drift event %s", stream, eid)
        event = self.events.get(eid)
        if event is not None:
            self.metrics.show_headline(self.metrics.stream_label(stream), event.headline)

    def on_hand_over(self, streams: list[str]) -> None:
        """The daemon handed ``streams`` over to another replica (a rebalance): their open events
        are theirs now. Nothing here touches them again — no close for lack of evaluations, no
        headline shown — until a stream comes back. Called during the rebalance; never raises
        (a failure is logged and counted, ``stage="hand_over"``)."""
        try:
            for stream in streams:
                self._clean.pop(stream, None)
                self._pending_open.pop(stream, None)
                self._carried.pop(stream, None)
                if self._acting.pop(stream, None) is not None:
                    self.metrics.hide_headline(self.metrics.stream_label(stream))
            if streams:
                log.info("handed over %d stream(s) with their drift events", len(streams))
        except Exception:  # noqa: BLE001 - actions must never break a rebalance
            log.exception("actions failed on handing over streams %s", streams)
            self.metrics.errors.labels("hand_over").inc()

    def _remember_healthy(self, stream: str, window: WindowSnapshot) -> None:
        n = self.cfg.report.reference_frames
        refs = [r for r in window.refs if r is not None]
        if not n or not refs:
            return
        picks = np.linspace(0, len(refs) - 1, num=min(n, len(refs))).round().astype(int)
        self._healthy[stream] = tuple(refs[i] for i in sorted(set(picks.tolist())))
        self._healthy_seen.add(stream)

    def _open(self, evaluation: Evaluation, window: WindowSnapshot) -> None:
        stream = evaluation.stream
        eid = event_id(stream, evaluation.evaluated_at)
        rows = np.asarray(window.rows, dtype=np.float32)
        ref = window.reference
        shifts: dict[str, Shift] = {}  # per drifted feature, measured in its own space
        for test in evaluation.tests:
            for f in test.features:
                if f.drifted and f.feature not in shifts:
                    shifts[f.feature] = explain.measure(test.name, f.feature, f, window)
        effects = headline.effects(evaluation, window)
        drifted = tuple(e for e in effects if e.drifted)
        times = [r.ts if r is not None else None for r in window.refs]
        change = headline.estimate_change(drifted[:3], window, times)
        fired = fired_from(evaluation, self.config.tests.vote)
        kinds = {f.kind for f in fired}
        sentence = headline.headline(
            drifted,
            change,
            embeddings=explain.EMBEDDINGS in kinds,
            predictions=explain.PREDICTIONS in kinds,
        )
        event = DriftEvent(
            id=eid,
            stream=stream,
            opened_at=evaluation.evaluated_at,
            reference=ReferenceInfo(
                evaluation.reference_stream,
                evaluation.reference_version,
                evaluation.n_ref,
                getattr(ref, "source", ""),
            ),
            fired=fired,
            shifts=shifts,
            tests=evaluation.tests,
            feature_names=tuple(window.feature_names),
            window=EventWindow.of(window.refs, int(rows.shape[0])),
            healthy_refs=self._healthy.get(stream, ()),
            headline=sentence,
            effects=effects,
            change=change,
            context=evaluation.context,
            gaps=(
                gaps_of(window.embeddings, window.covered, window.refs)
                if window.covered is not None and window.embeddings is not None
                else None
            ),
        )
        arrays = {"rows": rows}
        embeddings = getattr(window, "embeddings", None)
        if embeddings is not None:
            arrays["embeddings"] = np.asarray(embeddings, dtype=np.float32)
        if window.history is not None:
            arrays |= {f"history_{k}": v for k, v in vars(window.history).items()}
        created = self.events.create(event, arrays)
        if created.id != eid:  # another replica opened one for the stream meanwhile: continue it
            log.info("stream %s: drift event %s is already open", stream, created.id)
            self._continue(stream, created.id)
            return
        self._references[eid] = ref
        self._carried.pop(stream, None)
        self._acting[stream] = eid
        label = self.metrics.stream_label(stream)
        self.metrics.events.labels(label).inc()
        self.metrics.show_headline(label, sentence)
        log.warning("drift event %s opened for stream %s: %s", eid, stream, sentence)
        if not self.evidence.submit(eid):
            self._references.pop(eid, None)  # stays "pending": picked up again at the next start

    def _close(self, eid: str, evaluation: Evaluation, reason: str) -> None:
        event = self.events.update(eid, lambda e: e.closed(evaluation.evaluated_at, reason))
        self._carried.pop(event.stream, None)
        self._acting.pop(event.stream, None)
        label = self.metrics.stream_label(event.stream)
        self.metrics.events_closed.labels(label).inc()
        self.metrics.hide_headline(label)
        log.warning("drift event %s closed: stream %s %s", eid, event.stream, reason)

    # --- the evidence worker (slow) ------------------------------------------------------------

    def _evidence(self, eid: str) -> None:
        # one replica at a time writes an event's evidence: another that holds it finishes it (or,
        # dying, leaves it pending for the next start)
        with locked(self.events.dir / f"{eid}.evidence.lock", wait=False) as ours:
            if not ours:
                log.info("event %s: another replica is writing its evidence", eid)
                self._references.pop(eid, None)
                return
            self._evidence_held(eid)

    def _evidence_held(self, eid: str) -> None:
        event = self.events.get(eid)
        if event is None or event.evidence.status == "done":
            return
        arrays = self.events.window_arrays(eid)
        reference = self._references.get(eid) or self._load_reference(event)
        if not event.samples:
            event = self._select(event, arrays, reference)
        for sample in event.samples:
            self._queue_deliveries(sample)
        if self.cfg.report.enabled:
            self._report(event, arrays, reference)
        else:
            self.events.update(eid, lambda e: e.with_evidence(status="done"))
        self._references.pop(eid, None)

    def _evidence_failed(self, eid: str, error: Exception) -> None:
        self.metrics.reports.labels("failed").inc()
        self.events.update(eid, lambda e: e.with_evidence(status="failed", error=str(error)[:500]))
        self._references.pop(eid, None)

    def _load_reference(self, event: DriftEvent) -> Reference:
        from monitor.reference.store import ReferenceStore

        store = ReferenceStore(self.config.reference.path)
        ref = store.for_stream(event.stream)
        if ref is None:
            raise FetchError(
                f"no reference for stream {event.stream} in {self.config.reference.path}"
            )
        if ref.version != event.reference.version:
            log.info(
                "event %s: reference v%s is gone from memory; using v%s for its evidence",
                event.id,
                event.reference.version,
                ref.version,
            )
        return ref

    def _select(
        self, event: DriftEvent, arrays: dict[str, np.ndarray], reference: Reference
    ) -> DriftEvent:
        """Select the event's frames worth relabelling and record them (and the ledger's entries);
        returns the event with its samples."""
        s = self.cfg.selection
        eid, stream = event.id, event.stream
        budget = min(s.max_per_event, self.ledger.remaining_today(s.max_per_day))
        refs = event.window.refs
        if budget <= 0:
            self.metrics.skipped.labels("budget").inc(len(refs))
            spent = SelectionSummary(0, note="daily budget spent")
            return self.events.update(eid, lambda e: e.with_selection((), spent))
        names, rows, ref_rows = shared_statistics(event.feature_names, arrays["rows"], reference)
        scores = score_window(
            rows,
            ref_rows,
            names,
            focus=[f.feature for f in event.fired if f.kind == explain.STATISTICS],
            embeddings=arrays.get("embeddings"),
            ref_embeddings=getattr(reference, "embeddings", None),
        )
        keys = [frame_key(r) if r else None for r in refs]

        def queued(i: int) -> bool:
            key = keys[i]
            return key is None or key in self.ledger

        # only frames after the drift began: those before it show the camera as it was
        start = event.change.window_index if event.change is not None else 0
        pool, already = candidate_pool(scores, budget, s.pool_factor, queued, start)
        before = {"before_change": start} if start else {}
        # every pooled frame has a reference: one without has no key and counts as queued
        pooled = {i: ref for i in pool if (ref := refs[i]) is not None}
        probes: dict[int, Probe] = {}
        fetched: dict[int, Fetched] = {}
        for i in pool:
            try:
                got = self.fetcher.fetch(pooled[i])
            except FetchError as e:
                log.warning("event %s: %s", eid, e)
                probes[i] = Probe(None)
                continue
            fetched[i] = got
            probes[i] = Probe(image_hash(got.data, s.hash), uncertainty(got.predictions))
        sel = select(
            scores,
            pool,
            probes,
            budget,
            hash_distance=s.hash_distance,
            known_hashes=self.ledger.recent_hashes(stream),
            uncertainty_weight=s.uncertainty_weight,
        )
        now = time.time()
        # checked and recorded at once: a frame another replica queued meanwhile is not queued
        # again, and the replicas together keep the day's budget
        claimed = {
            q.key
            for q in self.ledger.claim(
                [Queued(frame_key(pooled[p.index]), stream, eid, p.hash) for p in sel.picks],
                now,
                s.max_per_day,
            )
        }
        picks = [p for p in sel.picks if frame_key(pooled[p.index]) in claimed]
        already += len(sel.picks) - len(picks)
        samples = tuple(
            self._sample(event, pooled[pick.index], pick, fetched[pick.index], now)
            for pick in picks
        )
        skipped = dict(sel.skipped) | ({"already_queued": already} if already else {}) | before
        for reason, n in skipped.items():
            self.metrics.skipped.labels(reason).inc(n)
        self.metrics.selected.inc(len(samples))
        summary = SelectionSummary(budget, len(pool), len(samples), skipped, scores.space)
        log.info(
            "event %s: %d frame(s) selected for relabelling (pool %d, skipped %s)",
            eid,
            len(samples),
            len(pool),
            skipped or "none",
        )
        return self.events.update(eid, lambda e: e.with_selection(samples, summary))

    def _sample(
        self, event: DriftEvent, ref: FrameRef, pick: Pick, got: Fetched, now: float
    ) -> Sample:
        """A picked frame as the relabel sinks get it; one that arrived inline gets a claim-check
        copy (in ``claim_check_dir``) the sinks, and people, can read."""
        uri, copied = ref.uri, False
        if not uri:
            name = f"{safe_name(ref.frame_id, 120)}{image_extension(got.data)}"
            path = self.claim_dir / safe_name(ref.camera_id) / name
            atomic_write_bytes(path, got.data)
            uri, copied = path.resolve().as_uri(), True
        return Sample(
            key=frame_key(ref),
            event_id=event.id,
            stream=event.stream,
            camera_id=ref.camera_id,
            frame_id=ref.frame_id,
            ts=ref.ts,
            uri=uri,
            claim_check_copy=copied,
            origin=Origin(ref.topic, ref.partition, ref.offset),
            reasons=pick.reasons,
            scores=pick.scores,
            hash=pick.hash,
            predictions=got.predictions,
            reference=event.reference,
            selected_at=now,
        )

    def _report(
        self, event: DriftEvent, arrays: dict[str, np.ndarray], reference: Reference
    ) -> None:
        from monitor.actions import figures

        eid = event.id
        out = self.artefacts / safe_name(eid)
        rc = self.cfg.report
        selected = []
        for sample in event.samples[: rc.contact_sheet_frames]:
            try:
                selected.append((self.load(sample), sample.frame_id))
            except FetchError as e:
                log.warning("event %s: contact sheet: %s", eid, e)
        healthy = self._reference_frames(event, reference, rc.reference_frames)
        change = event.change
        after = (
            f", all after the change at {headline.clock(change.at)} UTC"
            if change is not None and change.at is not None and not change.before
            else ""
        )
        sheet = report.contact_sheet(
            selected, healthy, rc.thumbnail_px, selected_title=f"selected for relabelling{after}"
        )
        atomic_write_bytes(out / "contact-sheet.jpg", sheet)
        series = report.series_for(event, arrays, reference)
        change_at = change.at if change is not None else None
        pictures = report.Pictures(
            timeline=figures.timeline(series, change_at) if series else None,
            histograms=figures.histograms(series) if series else None,
            frames=sheet,
            neighbours=self._neighbours(event, arrays, reference, rc.thumbnail_px),
            gaps=self._gaps(event, rc.thumbnail_px),
        )
        block = report.summary_html(event, pictures)
        title = event.headline or f"driftmon drift event {eid}"
        names, rows, ref_rows = shared_statistics(event.feature_names, arrays["rows"], reference)
        try:
            page = report.with_summary(
                report.evidently_html(
                    ref_rows,
                    rows,
                    names,
                    ref_embeddings=getattr(reference, "embeddings", None),
                    cur_embeddings=arrays.get("embeddings"),
                ),
                block,
                title,
            )
            result, error = "ok", None
        except Exception as e:  # noqa: BLE001 - Evidently failing must still leave driftmon's own account
            log.exception("event %s: Evidently report failed", eid)
            page = report.standalone_summary(
                block, f"Evidently's report could not be generated: {e}", title
            )
            result, error = "partial", f"evidently: {e}"[:500]
        atomic_write_text(out / "report.html", page)
        self.metrics.reports.labels(result).inc()
        self.events.update(
            eid,
            lambda e: e.with_evidence(
                status="done",
                report=str(out / "report.html"),
                contact_sheet=str(out / "contact-sheet.jpg"),
                error=error,
            ),
        )

    def _neighbours(
        self, event: DriftEvent, arrays: dict[str, np.ndarray], reference: Reference, px: int
    ) -> bytes | None:
        """Drifted frames beside their nearest reference frames in embedding space, when the
        embeddings drifted and the reference knows where its frames are; the frames queued first,
        else the window's farthest from the reference."""
        cur, ref, where = arrays.get("embeddings"), reference.embeddings, reference.locators
        if cur is None or ref is None or where is None:
            return None
        if not any(f.kind == explain.EMBEDDINGS for f in event.fired):
            return None
        if reference.pca is not None:
            cur, ref = reference.pca.transform(cur), reference.pca.transform(ref)
        distance, closest = nearest(cur, ref)
        refs = event.window.refs
        index = {frame_key(r): i for i, r in enumerate(refs) if r is not None}
        picks = [index[s.key] for s in event.samples if s.key in index][:NEIGHBOURS]
        if not picks:
            start = event.change.window_index if event.change is not None else 0
            picks = [int(i) + start for i in np.argsort(-distance[start:])[:NEIGHBOURS]]
        typical = typical_nearest_distance(ref)
        bands = []
        for i in picks:
            frame_ref, known_row = refs[i], int(closest[i])
            if frame_ref is None or not where[known_row]:
                continue
            try:
                drifted = self.fetcher.fetch(frame_ref).data
                known = self.fetcher.read_locator(str(where[known_row]), reference.source)
            except FetchError as e:
                log.info("event %s: nearest reference frame: %s", event.id, e)
                continue
            title = (
                f"{frame_ref.frame_id}: nearest reference frame at {distance[i]:.2f} "
                f"(typical {typical:.2f})"
            )
            bands.append((title, [(drifted, "drifted"), (known, f"reference #{known_row}")]))
        return report.sheet(bands, px) if bands else None

    def _gaps(self, event: DriftEvent, px: int) -> bytes | None:
        """An example frame of each group of the window's frames outside the training set."""
        if event.gaps is None or not event.gaps.groups:
            return None
        frames = []
        for g in event.gaps.groups:
            ref = event.window.refs[g.example_index]
            if ref is None:
                continue
            try:
                frames.append(
                    (self.fetcher.fetch(ref).data, f"{g.frames} frames like {ref.frame_id}")
                )
            except FetchError as e:
                log.info("event %s: uncovered example: %s", event.id, e)
        return report.sheet([("outside the training set", frames)], px) if frames else None

    def _reference_frames(
        self, event: DriftEvent, reference: Reference, n: int
    ) -> list[tuple[bytes, str]]:
        """Frames of the stream's last healthy window; else images from the reference's source
        dir."""
        out: list[tuple[bytes, str]] = []
        for ref in event.healthy_refs[:n]:
            try:
                out.append((self.fetcher.fetch(ref).data, ref.frame_id))
            except FetchError as e:
                log.info("event %s: healthy frame: %s", event.id, e)
        source = getattr(reference, "source", "") or ""
        if not out and n and source.startswith("dir:"):
            from monitor.reference.collect import image_files

            try:
                files = image_files(source[4:])
            except FileNotFoundError:
                files = []
            for i in (
                np.linspace(0, len(files) - 1, num=min(n, len(files))).round().astype(int).tolist()
                if files
                else []
            ):
                out.append((files[i].read_bytes(), files[i].name))
        return out

    def load(self, sample: Sample) -> bytes:
        """A selected frame's bytes: its claim check (ours or the producer's), else Kafka."""
        if sample.uri:
            try:
                return self.fetcher.read_uri(sample.uri)
            except FetchError as e:
                log.info("%s: %s; trying Kafka", sample.key, e)
        return self.fetcher.fetch(sample.origin_ref()).data

    # --- relabel sinks ---------------------------------------------------------------------------

    def _deliverer(self, sink: RelabelSink, ledger: KeyLedger) -> Callable[[Sample], None]:
        def deliver(sample: Sample) -> None:
            # checked, delivered and recorded holding the ledger: a replica sharing it waits, then
            # finds the frame delivered
            with ledger.holding():
                if sample.key in ledger:
                    return
                sink.deliver(sample, self.load)
                ledger.add(sample.key)
            self.metrics.delivered.labels(sink.name).inc()

        return deliver

    def _queue_deliveries(self, sample: Sample) -> None:
        for _sink, ledger, worker in self.sinks:
            if sample.key not in ledger:
                worker.submit(sample)

    def _resume(self) -> None:
        """Work a stop left pending: evidence not written, deliveries not made."""
        for event in self.events.list():
            if event.evidence.status == "pending":
                self.evidence.submit(event.id)
            else:
                for sample in event.samples:
                    self._queue_deliveries(sample)

    # --- tickets ---------------------------------------------------------------------------------

    def _ticket_changed(self, action: str, ticket: Ticket) -> None:
        self.metrics.tickets.labels(action).inc()
        for w in self.ticket_workers:
            w.submit((action, ticket))

    # --- HTTP ------------------------------------------------------------------------------------

    def routes(self) -> dict[tuple[str, str], Route]:
        """The actions' HTTP routes (``monitor.actions.routes``), for the daemon's server."""
        return (
            action_routes(self.events, self.tickets, self.cfg.tickets.token, self.metrics.webhooks)
            | self.feedback.routes()
        )

    # --- shutdown --------------------------------------------------------------------------------

    def idle(self) -> bool:
        """Nothing queued or running on any worker (for tests and orderly shutdown)."""
        return all(w.idle() for w in self._workers())

    def _workers(self) -> list[Worker]:
        return [self.evidence] + [w for _, _, w in self.sinks] + self.ticket_workers

    def close(self, drain_s: float = 5.0) -> None:
        """Give the workers ``drain_s`` to finish what is queued, then stop them; anything left is
        pending in the state directory and resumed at the next start."""
        self.feedback.close()
        wait_idle(self._workers(), drain_s)
        for w in self._workers():
            w.close()
        for sink, _, _ in self.sinks:
            sink.close()
        self.fetcher.close()
        # merged into what other replicas sharing the state_dir saved for their streams
        path = self.state_dir / "healthy.json"
        with locked(self.state_dir / "healthy.json.lock"):
            saved = read_json(path, {}) or {}
            ours = {s: [ref_dict(r) for r in self._healthy[s]] for s in self._healthy_seen}
            atomic_write_json(path, saved | ours)


def _load_healthy(path: Path) -> dict[str, tuple[FrameRef, ...]]:
    """The frames of each stream's last healthy window, as :meth:`Actions.close` left them."""
    saved = read_json(path, {}) or {}
    return {stream: tuple(FrameRef(**r) for r in refs) for stream, refs in saved.items()}


def shared_statistics(
    names: tuple[str, ...], rows: np.ndarray, reference: Reference
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The window's statistics that ``reference`` holds too, with the window's columns of them and
    the reference's: one built before a statistic was added lacks it, and its events are scored
    and reported without it, as its windows were judged."""
    held = reference.held(names)
    return held, rows[:, [names.index(n) for n in held]], reference.columns(held)
