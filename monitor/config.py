"""Configuration: one YAML file plus ``DRIFTMON_`` environment overrides, validated once at start.

The whole configuration is a tree of frozen dataclasses. Loading walks that tree, so an unknown
key, a value of the wrong type or one out of range fails before anything connects, with a
message naming the field (``kafka.max_poll_records: must be >= 1, got 0``).

Environment overrides: ``DRIFTMON_KAFKA__BOOTSTRAP_SERVERS=a:9092,b:9092`` sets
``kafka.bootstrap_servers``; nesting is ``__``, values are parsed as YAML scalars (so ``true``,
``5`` and ``[a, b]`` work), and a comma-separated string is accepted for a list field.
"""

from __future__ import annotations

import dataclasses
import os
import string
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from monitor.errors import ConfigError
from monitor.files import JSONObject
from monitor.pipeline.drift_tests import EMBEDDINGS, LAYOUTS, REGISTRY

ENV_PREFIX = "DRIFTMON_"


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{name}: {message}")


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    topics: tuple[str, ...] = ("frames",)
    group_id: str = "driftmon"
    client_id: str = "driftmon"
    # Records that cannot be parsed or decoded go here with the error in headers; "" disables.
    dead_letter_topic: str = "driftmon.deadletter"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_poll_records: int = 200
    poll_timeout_ms: int = 200
    fetch_max_wait_ms: int = 100
    max_partition_fetch_bytes: int = 8 * 1024 * 1024
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    # Consumer lag is read from the broker at most this often.
    lag_interval_s: float = 10.0
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_check_hostname: bool = True
    # The frames consumer: kafka-python (pure Python, always installed) or "confluent"
    # (librdkafka, `pip install 'driftmon[confluent]'`): ~5x less CPU per fetched 300 KB frame,
    # which is most of what a record skipped by source.max_fps_per_stream costs.
    client: Literal["kafka-python", "confluent"] = "kafka-python"

    def __post_init__(self) -> None:
        _check(
            len(self.bootstrap_servers) > 0,
            "kafka.bootstrap_servers",
            "needs at least one host:port",
        )
        for s in self.bootstrap_servers:
            _check(":" in s, "kafka.bootstrap_servers", f"{s!r} is not host:port")
        _check(len(self.topics) > 0, "kafka.topics", "needs at least one topic")
        _check(bool(self.group_id), "kafka.group_id", "must not be empty")
        for name in (
            "max_poll_records",
            "poll_timeout_ms",
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "max_partition_fetch_bytes",
            "max_poll_interval_ms",
        ):
            _check(
                getattr(self, name) >= 1,
                f"kafka.{name}",
                f"must be >= 1, got {getattr(self, name)}",
            )
        _check(self.fetch_max_wait_ms >= 0, "kafka.fetch_max_wait_ms", "must be >= 0")
        _check(
            self.heartbeat_interval_ms < self.session_timeout_ms,
            "kafka.heartbeat_interval_ms",
            "must be smaller than kafka.session_timeout_ms",
        )
        sasl = self.security_protocol.startswith("SASL")
        _check(
            not sasl or bool(self.sasl_mechanism),
            "kafka.sasl_mechanism",
            f"required with security_protocol {self.security_protocol}",
        )
        if sasl:
            _check(bool(self.sasl_username), "kafka.sasl_username", "required with SASL")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            _check(not path or Path(path).is_file(), f"kafka.{name}", f"no such file: {path}")

    def client_options(self) -> dict[str, object]:
        """Options shared by kafka-python consumers, producers and admin clients."""
        opts: dict[str, object] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            opts.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol.endswith("SSL"):
            opts["ssl_check_hostname"] = self.ssl_check_hostname
            for ours, theirs in (
                ("ssl_cafile", "ssl_cafile"),
                ("ssl_certfile", "ssl_certfile"),
                ("ssl_keyfile", "ssl_keyfile"),
            ):
                if getattr(self, ours):
                    opts[theirs] = getattr(self, ours)
        return opts


@dataclass(frozen=True)
class SourceConfig:
    # file:// claim-check URIs are read only below these directories (symlinks resolved).
    allowed_roots: tuple[str, ...] = ()
    # Frames are routed to streams by this template over frame fields: camera_id, site,
    # model_version.
    stream_key: str = "{camera_id}"
    # Frames analysed per second per stream, by event time (monitor/pipeline/rate.py); the others
    # are counted but not decoded. 0 (the default): every frame. Windows count analysed frames, so
    # a window of N frames spans N / max_fps_per_stream seconds; the calibrated tests' span nulls
    # are fitted on the reference thinned the same way (docs/configuration.md, "Analysis rate and
    # detection delay").
    max_fps_per_stream: float = 0.0

    def __post_init__(self) -> None:
        _check(
            0 <= self.max_fps_per_stream <= 1000,
            "source.max_fps_per_stream",
            f"must be 0 (every frame) or in (0, 1000], got {self.max_fps_per_stream}",
        )
        fields = {f for _, f, _, _ in string.Formatter().parse(self.stream_key) if f is not None}
        _check(
            bool(fields), "source.stream_key", "must name at least one field, e.g. '{camera_id}'"
        )
        unknown = fields - {"camera_id", "site", "model_version"}
        _check(
            not unknown,
            "source.stream_key",
            f"unknown field(s) {sorted(unknown)}; use camera_id, site, model_version",
        )
        for root in self.allowed_roots:
            _check(
                Path(root).is_absolute(),
                "source.allowed_roots",
                f"{root!r} must be an absolute path",
            )


@dataclass(frozen=True)
class DecodeConfig:
    analysis_size: int = 480
    max_encoded_bytes: int = 20_000_000
    max_pixels: int = 50_000_000
    # Threads decoding and computing statistics (OpenCV releases the GIL).
    workers: int = 2

    def __post_init__(self) -> None:
        _check(
            32 <= self.analysis_size <= 4096,
            "decode.analysis_size",
            f"must be in [32, 4096], got {self.analysis_size}",
        )
        _check(self.max_encoded_bytes >= 1, "decode.max_encoded_bytes", "must be >= 1")
        _check(
            1 <= self.max_pixels <= 1 << 30,
            "decode.max_pixels",
            f"must be in [1, 2**30] (OpenCV's decoder limit), got {self.max_pixels}",
        )
        _check(1 <= self.workers <= 64, "decode.workers", f"must be in [1, 64], got {self.workers}")


@dataclass(frozen=True)
class WindowConfig:
    size: int = 200
    # sliding: evaluate every `evaluate_every` frames over the last `size`;
    # tumbling: evaluate each full, non-overlapping window of `size` frames.
    mode: Literal["sliding", "tumbling"] = "sliding"
    evaluate_every: int = 50
    # Also evaluate a stream whose window is full when this many seconds passed (0 = off).
    evaluate_interval_s: float = 0.0

    def __post_init__(self) -> None:
        _check(
            10 <= self.size <= 100_000, "window.size", f"must be in [10, 100000], got {self.size}"
        )
        if self.mode == "sliding":  # a tumbling window is evaluated once per `size` frames
            _check(
                1 <= self.evaluate_every <= self.size,
                "window.evaluate_every",
                f"must be in [1, window.size={self.size}], got {self.evaluate_every}",
            )
        _check(self.evaluate_interval_s >= 0, "window.evaluate_interval_s", "must be >= 0")


@dataclass(frozen=True)
class TestsConfig:
    __test__ = False  # not a pytest class

    alpha: float = 0.05
    correction: Literal["bonferroni", "bh"] = "bonferroni"
    # Names from the registry of drift tests (monitor/pipeline/drift_tests.py, docs/detectors.md).
    enabled: tuple[str, ...] = tuple(t.name for t in REGISTRY.values() if t.enabled)
    # A window drifted when any of these tests drifted; `alpha` is split evenly between the voting
    # tests with p-values (Bonferroni), so a window's false-alarm probability stays at most `alpha`.
    vote: tuple[str, ...] = tuple(t.name for t in REGISTRY.values() if t.votes)
    psi_threshold: float = 0.2
    psi_bins: int = 10
    wasserstein_threshold: float = 0.1
    # Columns tested; empty = every image statistic.
    features: tuple[str, ...] = ()
    # The false-alarm target of the calibrated tests (`shift`, `emb_shift`): an unshifted stream is
    # declared drifted on average at most once per this many days. Their thresholds follow from it,
    # the stream's frame rate and the window schedule (docs/detectors.md, "Quiet on real cameras").
    false_alarm_days: float = 30.0
    # Frame rate assumed where the reference's times are frame numbers or file order, not seconds.
    assumed_fps: float = 5.0

    def __post_init__(self) -> None:
        _check(0 < self.alpha < 1, "tests.alpha", f"must be in (0, 1), got {self.alpha}")
        _check(len(self.enabled) > 0, "tests.enabled", "needs at least one test")
        for field_name in ("enabled", "vote"):
            for i, name in enumerate(getattr(self, field_name)):
                _check(
                    name in REGISTRY,
                    f"tests.{field_name}[{i}]",
                    f"unknown test {name!r}; known: {', '.join(REGISTRY)}",
                )
        _check(len(self.vote) > 0, "tests.vote", "needs at least one test")
        for t in self.vote:
            _check(t in self.enabled, "tests.vote", f"{t!r} is not in tests.enabled")
        _check(self.psi_threshold > 0, "tests.psi_threshold", "must be > 0")
        _check(2 <= self.psi_bins <= 100, "tests.psi_bins", "must be in [2, 100]")
        _check(self.wasserstein_threshold > 0, "tests.wasserstein_threshold", "must be > 0")
        _check(
            1.0 / 24 <= self.false_alarm_days <= 36_500,
            "tests.false_alarm_days",
            f"must be in [1/24, 36500] days, got {self.false_alarm_days}",
        )
        _check(
            0.01 <= self.assumed_fps <= 1000,
            "tests.assumed_fps",
            f"must be in [0.01, 1000], got {self.assumed_fps}",
        )
        if self.features:
            from monitor.pipeline.features import FEATURE_NAMES

            unknown = sorted(set(self.features) - set(FEATURE_NAMES))
            _check(
                not unknown,
                "tests.features",
                f"unknown feature(s) {unknown}; known: {list(FEATURE_NAMES)}",
            )


@dataclass(frozen=True)
class EmbeddingConfig:
    enabled: bool = True
    # default: driftmon's fixed seed-initialised encoder (no weights to download);
    # torchscript: a TorchScript file at `path`; torchvision: `arch` with a local weights file at
    # `path`.
    kind: Literal["default", "torchscript", "torchvision"] = "default"
    path: str = ""
    arch: str = ""
    input_size: int = 0  # 0: the kind's default (128 default, 224 otherwise)
    threads: int = 0  # torch threads; 0: torch's default
    device: str = "auto"  # auto (CUDA when present) | cpu | cuda | cuda:N
    fp16: Literal["auto", "on", "off"] = "auto"  # auto: half precision on CUDA only
    batch_size: int = 64
    # Embeddings are reduced by PCA fitted on the reference before the tests.
    pca_components: int = 32
    # MMD keeps a kernel block of the reference in memory: at most this many reference frames
    # (a seeded subsample), 4 * n^2 bytes per reference.
    mmd_reference_size: int = 500
    mmd_permutations: int = 100

    def __post_init__(self) -> None:
        if self.kind != "default":
            _check(bool(self.path), "embedding.path", f"required with kind {self.kind}")
            _check(Path(self.path).is_file(), "embedding.path", f"no such file: {self.path}")
        if self.kind == "torchvision":
            _check(
                bool(self.arch), "embedding.arch", "required with kind torchvision, e.g. resnet18"
            )
        _check(
            self.input_size == 0 or 16 <= self.input_size <= 1024,
            "embedding.input_size",
            f"must be 0 or in [16, 1024], got {self.input_size}",
        )
        _check(self.threads >= 0, "embedding.threads", "must be >= 0")
        _check(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "embedding.device",
            f"must be auto, cpu, cuda or cuda:N, got {self.device!r}",
        )
        _check(1 <= self.batch_size <= 4096, "embedding.batch_size", "must be in [1, 4096]")
        _check(1 <= self.pca_components <= 1024, "embedding.pca_components", "must be in [1, 1024]")
        _check(
            20 <= self.mmd_reference_size <= 20_000,
            "embedding.mmd_reference_size",
            "must be in [20, 20000]",
        )
        _check(
            19 <= self.mmd_permutations <= 10_000,
            "embedding.mmd_permutations",
            "must be in [19, 10000] (fewer cannot reach p <= 0.05)",
        )


@dataclass(frozen=True)
class ContextConfig:
    # A frame's context (monitor/pipeline/context.py): the producer's `context` label when the frame
    # carries one; else "ir" for frames without colour (infrared night mode, monochrome cameras)
    # when `infrared` is on, and "day"/"night" by the local hour when `day_hours` is set. A window
    # is judged against the reference frames of its own context.
    infrared: bool = True
    day_hours: tuple[
        int, ...
    ] = ()  # [start, end) local hours of "day", e.g. [7, 19]; empty: no day/night
    timezone: str = "UTC"  # an IANA name, for day_hours

    def __post_init__(self) -> None:
        _check(
            len(self.day_hours) in (0, 2),
            "context.day_hours",
            "must be empty or [start, end] hours",
        )
        if self.day_hours:
            start, end = self.day_hours
            _check(
                0 <= start < end <= 24,
                "context.day_hours",
                f"must be 0 <= start < end <= 24, got {list(self.day_hours)}",
            )
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(self.timezone)
        except Exception:  # noqa: BLE001 - zoneinfo raises several kinds for a bad name
            raise ConfigError(f"context.timezone: unknown time zone {self.timezone!r}") from None


@dataclass(frozen=True)
class HysteresisConfig:
    # Declared drifted when at least k of the last m windows drifted; recovered after `recover`
    # consecutive windows that did not. 0 (the default): derived from the window schedule, so that
    # a drift must be seen in two disjoint windows: k = ceil(size / stride) + 1, m = k + 1
    # (docs/detectors.md, "Hysteresis for overlapping windows").
    k: int = 0
    m: int = 0
    recover: int = 3

    def __post_init__(self) -> None:
        _check(
            (self.k == 0) == (self.m == 0),
            "hysteresis.k",
            "set k and m together (or neither: derived)",
        )
        _check(self.m >= 0, "hysteresis.m", "must be >= 1 (or 0: derived from the window schedule)")
        _check(
            self.k == 0 or 1 <= self.k <= self.m,
            "hysteresis.k",
            f"must be in [1, m={self.m}], got {self.k}",
        )
        _check(self.recover >= 1, "hysteresis.recover", "must be >= 1")


@dataclass(frozen=True)
class ReferenceConfig:
    # A reference file (.npz, shared by all streams) or a reference store directory
    # (per-stream references with a shared fallback). It need not exist yet when the config is
    # loaded (`reference build --config` writes it); `run` requires it (`require_reference`).
    path: str = ""

    def require(self) -> None:
        """What running needs: a reference path that exists."""
        _check(
            bool(self.path),
            "reference.path",
            "required to run (build one with `driftmon reference build`)",
        )
        _check(
            Path(self.path).exists(),
            "reference.path",
            f"does not exist: {self.path} (build it with `driftmon reference build --out "
            f"{self.path}`)",
        )


@dataclass(frozen=True)
class CheckpointConfig:
    # Where per-stream state (windows, hysteresis, counters) survives restarts and moves between
    # replicas: none | file (a directory on a volume) | kafka (a compacted topic).
    store: Literal["none", "file", "kafka"] = "none"
    path: str = ""  # file store directory
    topic: str = "driftmon.state"  # kafka store topic (created compacted when missing)
    # With a store, offsets are committed only together with a checkpoint, this often: a crash
    # re-reads at most this much traffic, and replayed frames already in the state are skipped.
    interval_s: float = 5.0

    def __post_init__(self) -> None:
        if self.store == "file":
            _check(
                bool(self.path) and Path(self.path).is_absolute(),
                "checkpoint.path",
                "an absolute directory is required with store: file",
            )
        if self.store == "kafka":
            _check(bool(self.topic), "checkpoint.topic", "required with store: kafka")
        _check(0 < self.interval_s <= 3600, "checkpoint.interval_s", "must be in (0, 3600]")


@dataclass(frozen=True)
class MetricsConfig:
    # Streams with their own per-stream series; the rest are folded into stream="__other__".
    max_streams: int = 500
    per_feature: bool = True

    def __post_init__(self) -> None:
        _check(self.max_streams >= 1, "metrics.max_streams", "must be >= 1")


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 9108
    # /healthz fails when the loop has not iterated for this long.
    liveness_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        _check(0 <= self.port <= 65535, "http.port", f"must be in [0, 65535], got {self.port}")
        _check(self.liveness_timeout_s > 0, "http.liveness_timeout_s", "must be > 0")


# --- actions: drift events, evidence, relabel queue, refresh tickets (docs/actions.md) ----------


@dataclass(frozen=True)
class RetryConfig:
    # Deliveries to sinks (Kafka, Label Studio, directories, webhooks) are retried with exponential
    # backoff; after `attempts` tries a delivery is given up until the next start.
    attempts: int = 6
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        _check(self.attempts >= 1, "actions.retry.attempts", "must be >= 1")
        _check(self.backoff_s > 0, "actions.retry.backoff_s", "must be > 0")
        _check(
            self.max_backoff_s >= self.backoff_s,
            "actions.retry.max_backoff_s",
            "must be >= backoff_s",
        )


@dataclass(frozen=True)
class ReportConfig:
    # An Evidently drift report (HTML) and a contact sheet (JPEG) per drift event.
    enabled: bool = True
    contact_sheet_frames: int = 8  # selected frames on the sheet
    reference_frames: int = 4  # frames of the stream's last healthy window beside them
    thumbnail_px: int = 160

    def __post_init__(self) -> None:
        _check(
            0 <= self.contact_sheet_frames <= 64,
            "actions.report.contact_sheet_frames",
            "must be in [0, 64]",
        )
        _check(
            0 <= self.reference_frames <= 64,
            "actions.report.reference_frames",
            "must be in [0, 64]",
        )
        _check(
            32 <= self.thumbnail_px <= 1024, "actions.report.thumbnail_px", "must be in [32, 1024]"
        )


@dataclass(frozen=True)
class SelectionConfig:
    max_per_event: int = 20
    max_per_day: int = 500  # across all streams, UTC days
    pool_factor: int = 4  # best-scored candidates considered per budget slot
    hash: Literal["dhash", "phash"] = "dhash"
    hash_distance: int = (
        4  # Hamming distance (of 64 bits) at or below which frames are near duplicates
    )
    uncertainty_weight: float = 1.0  # weight of model uncertainty (from predictions) in the score
    remember_frames: int = 200_000  # queued frame ids remembered, so none is queued twice

    def __post_init__(self) -> None:
        _check(self.max_per_event >= 0, "actions.selection.max_per_event", "must be >= 0")
        _check(self.max_per_day >= 0, "actions.selection.max_per_day", "must be >= 0")
        _check(1 <= self.pool_factor <= 100, "actions.selection.pool_factor", "must be in [1, 100]")
        _check(
            0 <= self.hash_distance <= 64, "actions.selection.hash_distance", "must be in [0, 64]"
        )
        _check(self.uncertainty_weight >= 0, "actions.selection.uncertainty_weight", "must be >= 0")
        _check(self.remember_frames >= 1000, "actions.selection.remember_frames", "must be >= 1000")


@dataclass(frozen=True)
class LabelStudioConfig:
    url: str = ""  # e.g. http://label-studio:8080
    token: str = ""  # a legacy API token; prefer DRIFTMON_ACTIONS__RELABEL__LABEL_STUDIO__TOKEN
    project_title: str = "driftmon relabel queue"
    label_config: str = ""  # Label Studio labelling config XML; "" = boxes over `labels`
    labels: tuple[str, ...] = ("object",)
    timeout_s: float = 30.0
    # Share of tasks labelled by two annotators (Label Studio's overlap), for label consistency.
    overlap: float = 0.0

    def __post_init__(self) -> None:
        _check(
            0.0 <= self.overlap <= 1.0, "actions.relabel.label_studio.overlap", "must be in [0, 1]"
        )
        _check(
            not self.url or self.url.startswith(("http://", "https://")),
            "actions.relabel.label_studio.url",
            f"must be an http(s) URL, got {self.url!r}",
        )
        _check(
            bool(self.project_title),
            "actions.relabel.label_studio.project_title",
            "must not be empty",
        )
        _check(
            bool(self.label_config) or len(self.labels) > 0,
            "actions.relabel.label_studio.labels",
            "needs at least one label when label_config is empty",
        )
        _check(self.timeout_s > 0, "actions.relabel.label_studio.timeout_s", "must be > 0")


RelabelSink = Literal["kafka", "label_studio", "directory"]


@dataclass(frozen=True)
class RelabelConfig:
    sinks: tuple[RelabelSink, ...] = ("kafka",)
    topic: str = "driftmon.relabel"  # kafka sink: one JSON record per selected frame
    # Selected frames that arrived inline are copied here and referenced by file:// URI
    # ("" = <state_dir>/frames).
    claim_check_dir: str = ""
    directory: str = ""  # directory sink: images + CVAT manifest per event
    label_studio: LabelStudioConfig = field(default_factory=LabelStudioConfig)
    queue_size: int = 1000  # frames waiting per sink

    def __post_init__(self) -> None:
        _check(
            len(set(self.sinks)) == len(self.sinks), "actions.relabel.sinks", "lists a sink twice"
        )
        _check(
            "kafka" not in self.sinks or bool(self.topic),
            "actions.relabel.topic",
            "required by the kafka sink",
        )
        _check(
            "directory" not in self.sinks or bool(self.directory),
            "actions.relabel.directory",
            "required by the directory sink",
        )
        if "label_studio" in self.sinks:
            _check(
                bool(self.label_studio.url),
                "actions.relabel.label_studio.url",
                "required by the label_studio sink",
            )
            _check(
                bool(self.label_studio.token),
                "actions.relabel.label_studio.token",
                "required by the label_studio sink",
            )
        for name in ("claim_check_dir", "directory"):
            path = getattr(self, name)
            _check(
                not path or Path(path).is_absolute(),
                f"actions.relabel.{name}",
                f"{path!r} must be an absolute path",
            )
        _check(self.queue_size >= 1, "actions.relabel.queue_size", "must be >= 1")


TicketSink = Literal["directory", "webhook"]


@dataclass(frozen=True)
class TicketsConfig:
    # Bearer token Alertmanager must send to POST /alerts/alertmanager ("" = the receiver refuses
    # all).
    token: str = ""
    alertnames: tuple[str, ...] = ("DriftmonStreamDrifted",)
    stream_label: str = "stream"
    sinks: tuple[TicketSink, ...] = ("directory",)
    directory: str = ""  # "" = <state_dir>/tickets
    webhook_url: str = ""
    webhook_token: str = ""  # sent as a bearer token to webhook_url
    # A drift that has been firing this long gets "re-baseline the reference" suggested.
    rebaseline_after_s: float = 86_400.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        _check(
            len(self.alertnames) > 0, "actions.tickets.alertnames", "needs at least one alert name"
        )
        _check(bool(self.stream_label), "actions.tickets.stream_label", "must not be empty")
        _check(
            len(set(self.sinks)) == len(self.sinks), "actions.tickets.sinks", "lists a sink twice"
        )
        _check(
            "webhook" not in self.sinks or self.webhook_url.startswith(("http://", "https://")),
            "actions.tickets.webhook_url",
            "an http(s) URL is required by the webhook sink",
        )
        _check(
            not self.directory or Path(self.directory).is_absolute(),
            "actions.tickets.directory",
            f"{self.directory!r} must be an absolute path",
        )
        _check(self.rebaseline_after_s > 0, "actions.tickets.rebaseline_after_s", "must be > 0")
        _check(self.timeout_s > 0, "actions.tickets.timeout_s", "must be > 0")


@dataclass(frozen=True)
class FeedbackConfig:
    """Labels taken back from the relabel queue, the model measured on them (docs/data-loop.md)."""

    # Label Studio polled for annotations this often (0: only its webhook, POST /labels/...)
    poll_interval_s: float = 60.0
    # Bearer token Label Studio's webhook must send (a header set on the webhook); "" = refused.
    webhook_token: str = ""
    # A CVAT-for-images export (annotations.xml) per event is read back from the directory sink.
    read_directory: bool = True
    # A labelled baseline set (JSONL: one {"predictions": ..., "label": ...} per frame) the
    # drifted frames' model error is compared with; "" = none.
    baseline: str = ""
    iou: float = 0.5  # a predicted box matches a labelled one of its class at this IoU or more
    min_score: float = 0.5  # detections below this score are not counted as the model's answer

    def __post_init__(self) -> None:
        _check(self.poll_interval_s >= 0, "actions.feedback.poll_interval_s", "must be >= 0")
        _check(0.0 < self.iou <= 1.0, "actions.feedback.iou", "must be in (0, 1]")
        _check(0.0 <= self.min_score <= 1.0, "actions.feedback.min_score", "must be in [0, 1]")
        _check(
            not self.baseline or Path(self.baseline).is_absolute(),
            "actions.feedback.baseline",
            f"{self.baseline!r} must be an absolute path",
        )


@dataclass(frozen=True)
class ActionsConfig:
    enabled: bool = False
    state_dir: str = ""  # events, the queued-frames ledger, sink ledgers (JSON, survives restarts)
    artefact_dir: str = ""  # reports and contact sheets ("" = <state_dir>/artefacts)
    public_url: str = ""  # base of links in tickets ("" = http://<http.host>:<http.port>)
    queue_size: int = 64  # drift events waiting for their evidence (report, selection)
    report: ReportConfig = field(default_factory=ReportConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    relabel: RelabelConfig = field(default_factory=RelabelConfig)
    tickets: TicketsConfig = field(default_factory=TicketsConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)

    def __post_init__(self) -> None:
        _check(
            not self.enabled or bool(self.state_dir),
            "actions.state_dir",
            "required when actions.enabled",
        )
        for name in ("state_dir", "artefact_dir"):
            path = getattr(self, name)
            _check(
                not path or Path(path).is_absolute(),
                f"actions.{name}",
                f"{path!r} must be an absolute path",
            )
        _check(
            not self.public_url or self.public_url.startswith(("http://", "https://")),
            "actions.public_url",
            f"must be an http(s) URL, got {self.public_url!r}",
        )
        _check(self.queue_size >= 1, "actions.queue_size", "must be >= 1")


# --- the model's training set (docs/data-loop.md) ------------------------------------------------


@dataclass(frozen=True)
class TrainingConfig:
    """The deployed model's training set, registered with ``driftmon training build``."""

    path: str = ""  # store of the training reference's versions ("" = none: no coverage)
    # A frame is covered when its nearest training frame (embeddings, image statistics beside
    # them) is no farther than this quantile of the training frames' own nearest-neighbour
    # distances.
    coverage_quantile: float = 0.95

    def __post_init__(self) -> None:
        _check(
            0.5 <= self.coverage_quantile < 1.0,
            "training.coverage_quantile",
            "must be in [0.5, 1)",
        )


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    tests: TestsConfig = field(default_factory=TestsConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    hysteresis: HysteresisConfig = field(default_factory=HysteresisConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __post_init__(self) -> None:
        _check(
            bool(self.voting_tests),
            "tests.vote",
            "only embedding tests vote, but embedding.enabled is false",
        )

    @property
    def evaluation_stride(self) -> int:
        """Frames between two evaluations of a stream's window."""
        return self.window.evaluate_every if self.window.mode == "sliding" else self.window.size

    @property
    def hysteresis_k_m(self) -> tuple[int, int]:
        """``(k, m)``: the configured ones, or derived from the schedule: two disjoint windows."""
        h = self.hysteresis
        if h.k:
            return h.k, h.m
        k = -(-self.window.size // self.evaluation_stride) + 1
        return k, k + 1

    @property
    def active_tests(self) -> tuple[str, ...]:
        """The enabled tests that can run: embedding tests only with embeddings."""
        return tuple(
            t
            for t in self.tests.enabled
            if self.embedding.enabled or REGISTRY[t].consumes != EMBEDDINGS
        )

    @property
    def voting_tests(self) -> tuple[str, ...]:
        return tuple(t for t in self.tests.vote if t in self.active_tests)

    @property
    def uses_layouts(self) -> bool:
        """Whether a test judges the frames' edge-layout maps (streams keep them for it)."""
        return any(REGISTRY[t].consumes == LAYOUTS for t in self.active_tests)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply ``DRIFTMON_`` overrides from ``env``, validate."""
    raw: JSONObject = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"config file: cannot read {path}: {e.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file: {path} is not valid YAML: {e}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file: {path} must hold a mapping at top level")
        raw = loaded or {}
    _apply_env(raw, os.environ if env is None else env)
    return _build(Config, raw, "")


def config_from_dict(raw: Mapping[str, Any]) -> Config:
    return _build(Config, dict(raw), "")


def _apply_env(raw: JSONObject, env: Mapping[str, str]) -> None:
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"{'.'.join(parts)}: environment override {key} crosses a non-mapping value"
                )
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'}: must be a mapping, got {type(raw).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown field (known: {', '.join(sorted(names))})"
        )
    values = {name: _convert(hints[name], raw[name], f"{prefix}{name}") for name in raw}
    try:
        return cls(**values)
    except TypeError as e:  # pragma: no cover - all fields have defaults
        raise ConfigError(f"{prefix.rstrip('.')}: {e}") from None


def _convert(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, f"{name}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        _check(value in choices, name, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        _check(
            isinstance(value, (list, tuple)), name, f"must be a list, got {type(value).__name__}"
        )
        return tuple(_convert(item_tp, v, f"{name}[{i}]") for i, v in enumerate(value))
    if origin in (types.UnionType, typing.Union):
        raise TypeError(f"unsupported config type {tp}")  # pragma: no cover
    if tp is bool:
        _check(isinstance(value, bool), name, f"must be true or false, got {value!r}")
        return value
    if tp is int:
        _check(
            isinstance(value, int) and not isinstance(value, bool),
            name,
            f"must be an integer, got {value!r}",
        )
        return value
    if tp is float:
        _check(
            isinstance(value, (int, float)) and not isinstance(value, bool),
            name,
            f"must be a number, got {value!r}",
        )
        return float(value)
    if tp is str:
        _check(
            isinstance(value, (str, int, float)) and not isinstance(value, bool),
            name,
            f"must be a string, got {value!r}",
        )
        return str(value)
    raise TypeError(f"unsupported config type {tp}")  # pragma: no cover


def to_dict(config: Config) -> JSONObject:
    """The effective configuration as plain data (secrets masked), for /status and logs."""
    data = dataclasses.asdict(config)
    if data["kafka"]["sasl_password"]:
        data["kafka"]["sasl_password"] = "***"
    for section, key in (("relabel", "label_studio"), ("tickets", None)):
        node = data["actions"][section] if key is None else data["actions"][section][key]
        for secret in ("token", "webhook_token"):
            if node.get(secret):
                node[secret] = "***"
    return data
