"""Prometheus metrics (names and meaning: docs/metrics.md).

Every metric is registered on the registry passed in, so tests use a fresh one. Per-stream label
values are capped: the first ``metrics.max_streams`` streams get their own series, the rest are
folded into ``stream="__other__"`` and counted.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor import __version__
from monitor.config import MetricsConfig
from monitor.pipeline.engine import Evaluation

OTHER = "__other__"
_STAGE_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
)
QUANTILES = (0.05, 0.5, 0.95)


class Metrics:
    def __init__(self, config: MetricsConfig, registry: CollectorRegistry | None = None):
        self.config = config
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self._streams: set[str] = set()
        self._last_ts: dict[str, float] = {}

        Gauge(
            "driftmon_build_info", "driftmon build identity", ["version", "python"], registry=r
        ).labels(__version__, platform.python_version()).set(1)
        self.up = Gauge("driftmon_up", "1 while the consume loop runs", registry=r)
        self.ready = Gauge("driftmon_ready", "1 when consuming with a reference loaded", registry=r)
        self.loop_timestamp = Gauge(
            "driftmon_loop_last_iteration_timestamp_seconds",
            "Wall time of the last loop iteration",
            registry=r,
        )
        self.frames = Counter(
            "driftmon_frames", "Records handled, by outcome", ["outcome"], registry=r
        )
        self.bad_records = Counter(
            "driftmon_bad_records",
            "Records that could not be parsed or decoded, by reason",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Counter(
            "driftmon_dead_letters", "Records written to the dead-letter topic", registry=r
        )
        self.stage_seconds = Histogram(
            "driftmon_stage_duration_seconds",
            "Time per batch in each pipeline stage",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "driftmon_batch_size_records",
            "Records per polled batch",
            buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.lag = Gauge(
            "driftmon_consumer_lag_records",
            "End offset minus committed position",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter("driftmon_commits", "Offset commits", ["result"], registry=r)
        self.streams = Gauge("driftmon_streams", "Streams known to this process", registry=r)
        self.streams_drifted = Gauge(
            "driftmon_streams_drifted", "Streams declared drifted", registry=r
        )
        self.folded = Counter(
            "driftmon_streams_folded", "Frames whose stream was folded into __other__", registry=r
        )
        self.stream_frames = Counter(
            "driftmon_stream_frames", "Frames processed per stream", ["stream"], registry=r
        )
        self.stream_identical = Counter(
            "driftmon_stream_identical_frames",
            "Frames whose bytes equal the previous frame's",
            ["stream"],
            registry=r,
        )
        self.stream_last_ts = Gauge(
            "driftmon_stream_last_frame_timestamp_seconds",
            "Event time of the newest frame",
            ["stream"],
            registry=r,
        )
        self.window_fill = Gauge(
            "driftmon_stream_window_fill_ratio", "Window fill, 0..1", ["stream"], registry=r
        )
        self.evaluations = Counter(
            "driftmon_stream_evaluations", "Drift evaluations run", ["stream"], registry=r
        )
        self.unreferenced = Counter(
            "driftmon_stream_unreferenced_context_evaluations",
            "Evaluations of a window holding frames of a context the stream's reference lacks "
            "(judged against the whole reference)",
            ["stream", "context"],
            registry=r,
        )
        self.drifted = Gauge(
            "driftmon_stream_drifted",
            "1 when declared drifted (after hysteresis)",
            ["stream"],
            registry=r,
        )
        self.drifted_since = Gauge(
            "driftmon_stream_drifted_since_timestamp_seconds",
            "When the current drift was declared (0 if none)",
            ["stream"],
            registry=r,
        )
        self.test_drift = Gauge(
            "driftmon_stream_test_drift",
            "1 when the test fired on the last evaluation",
            ["stream", "test"],
            registry=r,
        )
        self.test_p_value = Gauge(
            "driftmon_stream_test_p_value",
            "Smallest adjusted p-value across features",
            ["stream", "test"],
            registry=r,
        )
        self.test_statistic = Gauge(
            "driftmon_stream_test_statistic",
            "Largest per-feature statistic",
            ["stream", "test"],
            registry=r,
        )
        self.test_threshold = Gauge(
            "driftmon_stream_test_threshold",
            "What the test compares with: the level for p-values (its alpha share, or "
            "the run-length-calibrated level), else the statistic's threshold",
            ["stream", "test"],
            registry=r,
        )
        self.feature_statistic = Gauge(
            "driftmon_stream_feature_statistic",
            "Per-feature test statistic",
            ["stream", "test", "feature"],
            registry=r,
        )
        self.feature_window_mean = Gauge(
            "driftmon_stream_feature_window_mean",
            "Feature mean over the window",
            ["stream", "feature"],
            registry=r,
        )
        self.reference_quantile = Gauge(
            "driftmon_reference_feature_quantile",
            "Reference band of a feature",
            ["stream", "feature", "quantile"],
            registry=r,
        )
        self.reference_info = Gauge(
            "driftmon_reference_info",
            "Reference in use",
            ["stream", "version", "embedder"],
            registry=r,
        )
        self.reference_frames = Gauge(
            "driftmon_reference_frames", "Frames in the reference", ["stream"], registry=r
        )
        # the data loop (docs/data-loop.md): freshness as the newest frame's time, so an age is
        # `time() - x` in any query, never a stale subtraction done here
        self.stream_reference_ts = Gauge(
            "driftmon_stream_reference_timestamp_seconds",
            "Capture time of the newest frame of the reference the stream is judged against",
            ["stream"],
            registry=r,
        )
        self.training_ts = Gauge(
            "driftmon_training_timestamp_seconds",
            "Capture time of the newest frame of the registered training set",
            registry=r,
        )
        self.training_frames = Gauge(
            "driftmon_training_frames", "Frames in the registered training set", registry=r
        )
        self.coverage = Gauge(
            "driftmon_stream_training_coverage_ratio",
            "Share of the window's frames the training set covers",
            ["stream"],
            registry=r,
        )
        self.estimated_accuracy = Gauge(
            "driftmon_stream_estimated_accuracy_ratio",
            "The model's accuracy on the window estimated from its confidences (CBPE)",
            ["stream"],
            registry=r,
        )
        # series that alerts and dashboards divide by exist from the start, at 0, not after a first
        # event
        for outcome in ("processed", "rate_limited", "dead_lettered", "replayed"):
            self.frames.labels(outcome)
        for result in ("ok", "failed"):
            self.commits.labels(result)
        self._per_stream = [
            self.stream_frames,
            self.stream_identical,
            self.stream_last_ts,
            self.window_fill,
            self.evaluations,
            self.unreferenced,
            self.drifted,
            self.drifted_since,
            self.test_drift,
            self.test_p_value,
            self.test_statistic,
            self.test_threshold,
            self.feature_statistic,
            self.feature_window_mean,
            self.reference_quantile,
            self.reference_info,
            self.reference_frames,
            self.stream_reference_ts,
            self.coverage,
            self.estimated_accuracy,
        ]

    def stream_label(self, stream: str) -> str:
        """The label value for ``stream``: itself while under the cap, else ``__other__``."""
        if stream in self._streams:
            return stream
        if len(self._streams) < self.config.max_streams:
            self._streams.add(stream)
            self.stream_identical.labels(stream)  # a frozen-feed rate needs the series at 0
            return stream
        return OTHER

    def forget_stream(self, stream: str) -> None:
        """Drop every series of a stream that moved to another replica, so two pods never both
        export it (the rules aggregate across pods)."""
        if stream not in self._streams:
            return
        self._streams.discard(stream)
        self._last_ts.pop(stream, None)
        for metric in self._per_stream:
            for family in metric.collect():
                seen = set()
                for sample in family.samples:
                    values = tuple(sample.labels.values())
                    if sample.labels.get("stream") == stream and values not in seen:
                        seen.add(values)
                        metric.remove(*values)

    def observe_frame(self, stream: str, ts: float, identical: bool, window_fill: float) -> None:
        label = self.stream_label(stream)
        if label == OTHER:
            self.folded.inc()
        else:
            self.window_fill.labels(label).set(window_fill)
        self.stream_frames.labels(label).inc()
        if identical:
            self.stream_identical.labels(label).inc()
        if ts > self._last_ts.get(label, 0.0):  # folded streams share a series: keep the newest
            self._last_ts[label] = ts
            self.stream_last_ts.labels(label).set(ts)

    def observe_evaluation(
        self, evaluation: Evaluation, window_means: dict[str, float] | None
    ) -> None:
        label = self.stream_label(evaluation.stream)
        self.evaluations.labels(label).inc()
        if label == OTHER:
            return  # folded streams share counters, never per-stream state
        self.drifted.labels(label).set(int(evaluation.drifted))
        for context in evaluation.unreferenced_contexts:
            self.unreferenced.labels(label, context).inc()
        if evaluation.changed:
            self.drifted_since.labels(label).set(
                evaluation.evaluated_at if evaluation.drifted else 0
            )
        for test in evaluation.tests:
            self.test_drift.labels(label, test.name).set(int(test.drifted))
            self.test_statistic.labels(label, test.name).set(test.statistic)
            self.test_threshold.labels(label, test.name).set(test.threshold)
            if test.p_value is not None:
                self.test_p_value.labels(label, test.name).set(test.p_value)
            if self.config.per_feature:
                for f in test.features:
                    self.feature_statistic.labels(label, test.name, f.feature).set(f.statistic)
        if self.config.per_feature and window_means:
            for feature, value in window_means.items():
                self.feature_window_mean.labels(label, feature).set(value)

    def observe_loop(
        self,
        stream: str,
        reference_time: float,
        coverage: float | None,
        estimated_accuracy: float | None,
    ) -> None:
        """The data loop's figures on a stream's evaluated window (None: not measured)."""
        label = self.stream_label(stream)
        if label == OTHER:
            return
        self.stream_reference_ts.labels(label).set(reference_time)
        if coverage is not None:
            self.coverage.labels(label).set(coverage)
        if estimated_accuracy is not None:
            self.estimated_accuracy.labels(label).set(estimated_accuracy)

    def observe_training(self, data_time: float, frames: int) -> None:
        self.training_ts.set(data_time)
        self.training_frames.set(frames)

    def observe_reference(
        self,
        stream: str,
        version: int,
        embedder: str,
        frames: int,
        quantiles: dict[str, list[float]] | None,
    ) -> None:
        """Publish the reference a stream uses (``stream="*"`` for the shared one)."""
        label = stream if stream == "*" else self.stream_label(stream)
        if label == OTHER:
            return
        self.reference_info.labels(label, str(version), embedder).set(1)
        self.reference_frames.labels(label).set(frames)
        if self.config.per_feature and quantiles:
            for feature, values in quantiles.items():
                for q, v in zip(QUANTILES, values, strict=True):
                    self.reference_quantile.labels(label, feature, str(q)).set(v)
