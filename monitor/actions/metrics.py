"""The actions' Prometheus series (docs/metrics.md), on the daemon's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from monitor.loop.labelled import Labelled

OTHER = "__other__"


class ActionMetrics:
    """Counters and gauges of events, evidence, selection, sinks and tickets; per-stream series are
    capped at ``max_streams``, the rest counted under ``__other__``."""

    def __init__(self, registry: CollectorRegistry, max_streams: int):
        r = registry
        self.max_streams = max_streams
        self._streams: set[str] = set()
        self.events = Counter(
            "driftmon_drift_events", "Drift events opened", ["stream"], registry=r
        )
        self.events_closed = Counter(
            "driftmon_drift_events_closed",
            "Drift events closed (stream recovered)",
            ["stream"],
            registry=r,
        )
        self.events_open = Gauge(
            "driftmon_drift_events_open", "Drift events currently open", registry=r
        )
        self.reports = Counter(
            "driftmon_drift_reports", "Evidence reports written, by result", ["result"], registry=r
        )
        self.selected = Counter(
            "driftmon_relabel_selected_frames", "Frames selected for relabelling", registry=r
        )
        self.skipped = Counter(
            "driftmon_relabel_skipped_frames",
            "Candidate frames passed over by selection, by reason",
            ["reason"],
            registry=r,
        )
        self.delivered = Counter(
            "driftmon_relabel_frames",
            "Selected frames delivered, by relabel sink",
            ["sink"],
            registry=r,
        )
        self.sink_errors = Counter(
            "driftmon_sink_errors",
            "Failed tries and refused items, by worker",
            ["sink"],
            registry=r,
        )
        self.sink_depth = Gauge(
            "driftmon_sink_queue_depth", "Items waiting, by worker", ["sink"], registry=r
        )
        self.tickets = Counter(
            "driftmon_tickets",
            "Ticket changes from Alertmanager, by action",
            ["action"],
            registry=r,
        )
        self.webhooks = Counter(
            "driftmon_alert_webhooks",
            "Alertmanager webhook requests, by result",
            ["result"],
            registry=r,
        )
        self.errors = Counter(
            "driftmon_action_errors",
            "Failures inside actions, by stage (the consume loop goes on)",
            ["stage"],
            registry=r,
        )
        # labels taken back (monitor.loop.feedback)
        self.labels = Counter(
            "driftmon_labels",
            "Annotations taken back from the relabel queue (new or changed), by stream",
            ["stream"],
            registry=r,
        )
        self.label_polls = Counter(
            "driftmon_label_polls",
            "Polls of the labelling tools, by result",
            ["result"],
            registry=r,
        )
        for result in ("ok", "failed"):
            self.label_polls.labels(result)
        self.labelled_error = Gauge(
            "driftmon_labelled_model_error_ratio",
            "The model's error on the labelled frames of the stream's latest labelled drift event",
            ["stream"],
            registry=r,
        )
        self.baseline_error = Gauge(
            "driftmon_baseline_model_error_ratio",
            "The model's error on the registered labelled baseline set",
            registry=r,
        )
        self.kappa = Gauge(
            "driftmon_label_agreement_kappa",
            "Cohen's kappa between two annotators of the same frames (latest labelled event)",
            ["stream"],
            registry=r,
        )
        self.box_iou = Gauge(
            "driftmon_label_agreement_box_iou",
            "Mean IoU of two annotators' matched boxes on the same frames (latest labelled event)",
            ["stream"],
            registry=r,
        )
        for stage in ("evaluation", "open_event", "hand_over"):
            self.errors.labels(stage)
        # the open event's one-line account, as a label an alert's annotation can read; one series
        # per stream with an open event (removed when it closes)
        self.headlines = Gauge(
            "driftmon_drift_event_headline",
            "1 for each stream's open drift event; its headline in the label",
            ["stream", "headline"],
            registry=r,
        )
        self._shown: dict[str, str] = {}  # stream label -> the headline on show

    def observe_labels(self, stream: str, taken: int, labelled: Labelled) -> None:
        label = self.stream_label(stream)
        self.labels.labels(label).inc(taken)
        if labelled.model_error is not None:
            self.labelled_error.labels(label).set(labelled.model_error)
        if labelled.kappa is not None:
            self.kappa.labels(label).set(labelled.kappa)
        if labelled.box_iou is not None:
            self.box_iou.labels(label).set(labelled.box_iou)

    def show_headline(self, stream: str, headline: str) -> None:
        self.hide_headline(stream)
        if headline:
            self.headlines.labels(stream, headline).set(1)
            self._shown[stream] = headline

    def hide_headline(self, stream: str) -> None:
        old = self._shown.pop(stream, None)
        if old is not None:
            self.headlines.remove(stream, old)

    def stream_label(self, stream: str) -> str:
        if stream in self._streams:
            return stream
        if len(self._streams) < self.max_streams:
            self._streams.add(stream)
            return stream
        return OTHER
