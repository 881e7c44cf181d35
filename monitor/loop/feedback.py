"""Labels taken back from the relabel queue, and what they say.

Annotators label the frames driftmon queued; their labels come back from Label Studio (polled
every ``actions.feedback.poll_interval_s``, and pushed by its webhook to
``POST /labels/label-studio``) and from CVAT exports (``annotations.xml``) written into the
directory sink's event folders. Each label is matched to its queued frame by the frame's key,
kept per event (``<state_dir>/labels/<event>.json``, one entry per annotation, the newest version
winning: polling and webhooks may deliver the same annotation twice, as may two replicas), and the
event gets :class:`~monitor.loop.labelled.Labelled`: the model's error on its frames (with the
predictions the frames carried) beside a baseline, annotator agreement where a frame was labelled
twice, and what the model's confidences had estimated. The tickets linking the event are
re-derived at once.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from monitor.actions.events import DriftEvent, EventStore, Sample
from monitor.actions.metrics import ActionMetrics
from monitor.actions.tickets import Step, TicketBook, check_token
from monitor.config import Config
from monitor.errors import DriftmonError, InputError
from monitor.files import JSONObject, atomic_write_json, locked, read_json, safe_name
from monitor.loop.baseline import class_names, read_baseline
from monitor.loop.label_studio import LabelStudioLabels, parse_webhook
from monitor.loop.labelled import Labelled
from monitor.loop.labels import (
    ErrorSummary,
    Label,
    agreement,
    consensus,
    frame_outcome,
    read_cvat_export,
    summarize,
)
from monitor.loop.performance import check_calibration, estimate_accuracy
from monitor.pipeline.predictions import derive
from monitor.reference.store import ReferenceStore
from monitor.service.http import Request, Response, Route

log = logging.getLogger(__name__)

# Labelled frames with class probabilities needed to check the model's calibration on them.
MIN_CHECK = 10


def refreshes(config: Config) -> Callable[[str, float], list[Step]]:
    """The refresh steps a ticket's cycle shows: a stream's reference versions and the training
    set's versions written since a time (each version file's write time: stores only add)."""

    def written(store: ReferenceStore, stream: str | None, since: float) -> list[tuple[float, int]]:
        if not store.path.is_dir():
            return []
        found = []
        for v in store.versions(stream):
            path = store.version_path(stream, v)
            at = path.stat().st_mtime
            if at > since:
                found.append((at, v))
        return found

    def steps(stream: str, since: float) -> list[Step]:
        out = []
        if config.reference.path:
            store = ReferenceStore(config.reference.path)
            for at, v in written(store, stream, since):
                out.append(Step(at, "reference_promoted", f"reference v{v} of {stream} promoted"))
        if config.training.path:
            for at, v in written(ReferenceStore(config.training.path), None, since):
                out.append(Step(at, "training_refreshed", f"training set v{v} registered"))
        return out

    return steps


def _with_labelled(event: DriftEvent, labelled: Labelled) -> DriftEvent:
    return replace(event, labelled=labelled)


class LabelFeedback:
    """Takes labels in, keeps them per event, and updates the event, its tickets and metrics."""

    def __init__(
        self,
        config: Config,
        state_dir: Path,
        events: EventStore,
        tickets: TicketBook | None,
        metrics: ActionMetrics,
    ):
        self.config = config.actions.feedback
        relabel = config.actions.relabel
        self.dir = state_dir / "labels"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._writers = self.dir / ".lock"
        self.events = events
        self.tickets = tickets
        self.metrics = metrics
        self.names = class_names(config)
        baseline = read_baseline(config)
        self.baseline = None if baseline is None else baseline.error
        # confidences read through the baseline's calibration, as the daemon's estimate is
        self.calibration = None if baseline is None else baseline.calibration()
        if self.baseline is not None:
            metrics.baseline_error.set(self.baseline)
        self.reader = (
            LabelStudioLabels(relabel.label_studio) if "label_studio" in relabel.sinks else None
        )
        self.exports = (
            Path(relabel.directory)
            if "directory" in relabel.sinks and self.config.read_directory
            else None
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- where labels come from ----------------------------------------------------------------

    def start(self) -> None:
        """Poll in the background (when a source can be polled and polling is on)."""
        if self.config.poll_interval_s > 0 and (self.reader or self.exports):
            self._thread = threading.Thread(target=self._run, name="driftmon-labels", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a bug here must not end polling for good
                self.metrics.label_polls.labels("failed").inc()
                log.exception("labels: poll failed")

    def poll(self) -> int:
        """Read every label the sources hold now; returns how many were new or changed."""
        labels: list[Label] = []
        try:
            if self.reader is not None:
                labels += self.reader.fetch()
            if self.exports is not None:
                for export in sorted(self.exports.glob("*/annotations.xml")):
                    labels += read_cvat_export(export.parent)
        except DriftmonError as e:
            self.metrics.label_polls.labels("failed").inc()
            log.warning("labels: %s", e)
            return 0
        self.metrics.label_polls.labels("ok").inc()
        return self.ingest(labels)

    def webhook(self, request: Request) -> Response:
        """``POST /labels/label-studio``: Label Studio's webhook (annotation created/updated)."""
        if not check_token(request.headers.get("authorization"), self.config.webhook_token):
            return Response(
                401,
                {"error": "missing or wrong bearer token"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            labels = parse_webhook(request.body)
        except InputError as e:
            return Response(400, {"error": str(e)})
        return Response(200, {"labels": self.ingest(labels)})

    def routes(self) -> dict[tuple[str, str], Route]:
        return {("POST", "/labels/label-studio"): self.webhook}

    # --- taking labels in ----------------------------------------------------------------------

    def ingest(self, labels: Iterable[Label]) -> int:
        """Keep ``labels`` under their events; returns how many were new or newer."""
        events = {e.id: e for e in self.events.list()}
        queued: dict[str, Sample] = {s.key: s for e in events.values() for s in e.samples}
        by_event: dict[str, list[Label]] = defaultdict(list)
        for label in labels:
            sample = queued.get(label.key)
            if sample is not None:  # a frame driftmon did not queue is none of its business
                by_event[sample.event_id].append(label)
        taken = 0
        for eid, got in by_event.items():
            changed, kept = self._keep(eid, got)
            if not changed:
                continue
            taken += changed
            figures = self.measure(kept, list(events[eid].samples))
            event = self.events.update(eid, partial(_with_labelled, labelled=figures))
            self.metrics.observe_labels(event.stream, changed, figures)
            if self.tickets is not None:
                self.tickets.relink(eid)
            log.info("labels: event %s: %s", eid, figures.text())
        return taken

    def _keep(self, eid: str, labels: list[Label]) -> tuple[int, list[Label]]:
        """Merge ``labels`` into the event's label file (the newest version of each annotation
        wins); returns how many changed, and every label the event has."""
        path = self.dir / f"{safe_name(eid)}.json"
        with locked(self._writers):
            saved: JSONObject = read_json(path) or {}
            changed = 0
            for label in labels:
                old = saved.get(label.annotation_id)
                if old is None or old["updated_at"] < label.updated_at:
                    saved[label.annotation_id] = label.to_dict()
                    changed += 1
            if changed:
                atomic_write_json(path, saved)
        return changed, [Label.from_dict(d) for d in saved.values()]

    def measure(self, labels: list[Label], samples: list[Sample]) -> Labelled:
        """What an event's labels say: the model's error on the labelled frames (their newest
        label each), the annotators' agreement, and what the confidences the frames carried had
        estimated, with the calibration checked against the labels."""
        predictions = {s.key: s.predictions for s in samples}
        newest = consensus(labels)
        outcomes, confidences, correct = [], [], []
        for key, label in newest.items():
            o = frame_outcome(
                predictions.get(key), label, self.names, self.config.iou, self.config.min_score
            )
            if o is None:
                continue
            outcomes.append(o)
            p = derive(predictions.get(key))
            if o.kind == "class" and p is not None and p.probs is not None:
                confidences.append(p.confidence)
                correct.append(o.correct)
        error: ErrorSummary | None = summarize(outcomes) if outcomes else None
        agreed = agreement(labels, self.config.iou)
        estimate = (
            estimate_accuracy(np.asarray(confidences), self.calibration, min_frames=1)
            if confidences
            else None
        )
        check = (
            check_calibration(np.asarray(confidences), np.asarray(correct), self.calibration)
            if len(confidences) >= MIN_CHECK
            else None
        )
        return Labelled(
            frames=len(newest),
            annotations=len(labels),
            first_at=min(label.updated_at for label in labels),
            updated_at=max(label.updated_at for label in labels),
            kind=outcomes[0].kind if outcomes else "",
            measured=len(outcomes),
            model_error=None if error is None else error.error_rate,
            baseline_error=self.baseline,
            agreement_frames=agreed.frames,
            kappa=agreed.kappa,
            box_iou=agreed.mean_iou,
            estimated_accuracy=None if estimate is None else estimate.accuracy,
            calibrated=None if check is None else check.calibrated,
            ece=None if check is None else check.ece,
        )

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
