"""The consume loop: poll -> parse -> route -> decode -> features -> streams -> evaluate ->
dead-letter -> commit.

Routing, before any decode, gives each frame its stream and decides whether it is analysed: a frame
the stream's checkpointed state already holds is skipped (replayed), and one above the stream's
analysis rate (``source.max_fps_per_stream``) is counted but not decoded (rate-limited).

Offsets are committed only after every record of a batch was processed and every dead letter of
it acknowledged by the broker, so a crash anywhere means the batch is read again (at-least-once).
Three kinds of failure are handled differently: bad input is counted and dead-lettered; a flaky
broker is retried by the client while the daemon reports not-ready; a bug raises, and nothing of
the batch is committed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from kafka import ConsumerRebalanceListener
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.config import Config, to_dict
from monitor.files import JSONObject
from monitor.loop.watch import LoopWatch
from monitor.pipeline.context import frame_context
from monitor.pipeline.decode import DecodeError, DecodeLimits, decode
from monitor.pipeline.embed import EmbedderError, EmbedderIdentity
from monitor.pipeline.engine import Engine, Evaluation
from monitor.pipeline.features import FEATURE_NAMES, LAYOUT_SIZE, compute_features
from monitor.pipeline.rate import RateLimit
from monitor.pipeline.source import (
    BadRecord,
    Frame,
    Origin,
    RecordError,
    dead_letter_headers,
    load_image,
    make_frames_consumer,
    make_producer,
    parse_record,
)
from monitor.pipeline.streams import Streams, StreamState, WindowSnapshot, image_digest, stream_key
from monitor.reference.collect import build_embedder_from
from monitor.reference.fit import PreparedReference
from monitor.reference.store import BadReference, Reference, ReferenceStore
from monitor.retry import Backoff, Stopped, retry
from monitor.service.checkpoint import CheckpointStore, open_store
from monitor.service.http import HttpServer, Route, Router
from monitor.service.metrics import QUANTILES, Metrics

log = logging.getLogger(__name__)

# The first connection to Kafka is waited for as long as it takes (alive, not ready meanwhile).
CONNECT_BACKOFF = Backoff(initial_s=1.0, max_s=30.0)


class _FinishBeforeRevoke(ConsumerRebalanceListener):
    """Rebalance listener: the batch in flight is finished (and checkpointed) before its
    partitions move to another replica.

    kafka-python runs listeners on the consumer's IO thread, where a blocking commit is refused:
    offsets are committed asynchronously here, best effort. Nothing depends on that commit landing:
    without a checkpoint store the new owner re-reads the batch (at-least-once); with one, it skips
    the frames the handed-over state already absorbed.
    """

    def __init__(self, daemon: Daemon):
        self.daemon = daemon

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.daemon._rebalancing = True
        try:
            self.daemon._finish()
            self.daemon._hand_over(revoked)
        finally:
            self.daemon._rebalancing = False

    def on_partitions_assigned(self, assigned: Any) -> None:
        # checkpoints are re-read on the loop thread, before the new partitions' first batch
        self.daemon._reload_checkpoints = bool(assigned)


@dataclass
class Routed:
    """A frame with its stream, routed before decode: analysed, or only counted."""

    frame: Frame
    key: str  # its stream
    digest: bytes | None  # of its encoded image, for frozen-feed detection; None: not read
    analysed: bool  # False: above the stream's analysis rate


@dataclass
class InFlight:
    """A polled batch whose analysis runs while the next batch is polled."""

    records: list[Any]
    bad: list[BadRecord]
    routed: list[Routed]  # in record order
    replayed: int  # frames the streams' checkpointed states already hold
    analysis: Future  # -> list[Analysed], one per analysed frame, in order


@dataclass
class Analysed:
    """What decode + statistics made of one frame."""

    frame: Frame
    row: np.ndarray | None = None
    layout: np.ndarray | None = None  # the edge-layout map, when the `view` test runs
    rgb: np.ndarray | None = None  # the decoded image, kept until it is embedded
    embedding: np.ndarray | None = None
    context: str = ""  # monitor.pipeline.context.frame_context
    error: DecodeError | None = None


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        on_evaluation: Callable[[Evaluation, WindowSnapshot], None] | None = None,
        routes: dict[tuple[str, str], Route] | None = None,
        on_hand_over: Callable[[list[str]], None] | None = None,
    ):
        self.config = config
        self.metrics = Metrics(config.metrics, registry)
        self.store = ReferenceStore(config.reference.path)
        self.embedder = build_embedder_from(config)  # a missing or bad model fails here, at start
        identity = self.embedder.identity if self.embedder else None
        self.engine = Engine(config, FEATURE_NAMES, identity)
        self.loop = LoopWatch(config, identity)  # a training set that cannot be used fails here
        if self.loop.training is not None and self.loop.training_time is not None:
            self.metrics.observe_training(self.loop.training_time, self.loop.training.n_frames)
        self.streams = Streams(
            len(FEATURE_NAMES),
            config.window,
            config.source,
            identity.output_dim if identity else 0,
            LAYOUT_SIZE if config.uses_layouts else 0,
        )
        self.rate = RateLimit(config.source.max_fps_per_stream)
        self.limits = DecodeLimits(
            max_encoded_bytes=config.decode.max_encoded_bytes,
            max_pixels=config.decode.max_pixels,
            analysis_size=config.decode.analysis_size,
        )
        self.on_evaluation = on_evaluation
        self.on_hand_over = on_hand_over  # told the streams handed over to another replica
        self.routes = dict(routes or {})
        self._prepared: dict[tuple[str, int], PreparedReference] = {}
        self._stop = threading.Event()
        self._last_loop = 0.0
        self._connected = False
        self._consumer: Any = None
        self._producer: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._analysis: ThreadPoolExecutor | None = None
        self._inflight: InFlight | None = None
        self.checkpoints: CheckpointStore | None = None  # opened by run(), once Kafka answers
        self._saved: dict[str, bytes] = {}
        self._uncommitted: dict[Any, int] = {}
        self._rebalancing = False  # inside a rebalance callback: no blocking consumer calls
        self._reload_checkpoints = False
        self._next_checkpoint = time.monotonic() + config.checkpoint.interval_s
        self._lock = threading.Lock()
        self._status: JSONObject = {}
        self.port: int | None = None
        self._load_references()

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self, *_: Any) -> None:
        """Ask the loop to finish its batch, commit and return (safe from signal handlers)."""
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self, ready_event: threading.Event | None = None) -> None:
        cfg = self.config
        with contextlib.ExitStack() as stack:
            router = Router(
                self.metrics.registry,
                status=self.status,
                alive=self.alive,
                ready=self.ready,
                routes=self.routes,
            )
            http = HttpServer(cfg.http.host, cfg.http.port, router).start()
            stack.callback(http.close)
            self.port = http.port
            if ready_event is not None:
                ready_event.set()  # serving; Kafka may still be on its way
            log.info(
                "driftmon %s serving http://%s:%d/metrics", __version__, cfg.http.host, http.port
            )
            pool = stack.enter_context(
                ThreadPoolExecutor(cfg.decode.workers, thread_name_prefix="driftmon-decode")
            )
            # a broker that is not up yet is waited for (alive, not ready), not a crash
            self.checkpoints = self._connect(
                "checkpoint store", lambda: open_store(cfg.checkpoint, cfg.kafka)
            )
            if self.checkpoints is not None:
                stack.callback(self.checkpoints.close)
                self._saved = self._connect("checkpoints", self.checkpoints.load_all) or {}
            producer = (
                self._connect("producer", lambda: make_producer(cfg.kafka))
                if cfg.kafka.dead_letter_topic
                else None
            )
            if producer is not None:
                stack.callback(producer.close)
            consumer = self._connect("consumer", lambda: make_frames_consumer(cfg.kafka))
            if self._stop.is_set():
                return
            stack.callback(consumer.close)  # closes first: leaves the group promptly
            # analysis of batch N (decode, statistics, embeddings) overlaps the poll of batch N+1
            analysis = stack.enter_context(
                ThreadPoolExecutor(1, thread_name_prefix="driftmon-analysis")
            )
            self._consumer, self._producer, self._pool, self._analysis = (
                consumer,
                producer,
                pool,
                analysis,
            )
            consumer.subscribe(list(cfg.kafka.topics), listener=_FinishBeforeRevoke(self))
            self.metrics.up.set(1)
            stack.callback(self.metrics.up.set, 0)
            next_lag = 0.0
            while not self._stop.is_set():
                records = self._poll()
                if self._reload_checkpoints:
                    self._take_over()
                self._finish()
                if self.checkpoints is not None and time.monotonic() >= self._next_checkpoint:
                    self._checkpoint()  # also when the feed went quiet: its last batches too
                if records:
                    self._inflight = self._start(records)
                if time.monotonic() >= next_lag:
                    self._update_lag(consumer)
                    next_lag = time.monotonic() + cfg.kafka.lag_interval_s
            self._finish()  # the batch in flight is completed and committed before leaving
            self._checkpoint()
            log.info("driftmon stopping: last batch committed")

    def _connect(self, what: str, factory: Callable[[], Any]) -> Any:
        """``factory()``, retried with backoff while the broker cannot be reached (the loop counts
        as alive meanwhile, and not ready); None when asked to stop first."""
        from kafka.errors import KafkaError

        def attempt() -> Any:
            self._last_loop = time.time()
            return factory()

        def failed(_: int, e: BaseException, delay: float | None) -> None:
            self._last_loop = time.time()
            log.warning("%s: cannot reach Kafka (%s); retrying in %.0f s", what, e, delay)

        try:
            return retry(
                attempt, CONNECT_BACKOFF, retry_on=(KafkaError,), stop=self._stop, on_failure=failed
            )
        except Stopped:
            return None

    def alive(self) -> bool:
        return time.time() - self._last_loop < self.config.http.liveness_timeout_s

    def ready(self) -> bool:
        return self._connected and self._has_reference()

    def _has_reference(self) -> bool:
        return bool(self._prepared) or bool(self.store.streams())

    # --- one batch ---------------------------------------------------------------------------

    def _poll(self) -> list[Any]:
        m = self.metrics
        t0 = time.perf_counter()
        polled = self._consumer.poll(
            timeout_ms=self.config.kafka.poll_timeout_ms,
            max_records=self.config.kafka.max_poll_records,
        )
        self._connected = _coordinator_known(self._consumer)
        self._last_loop = time.time()
        m.loop_timestamp.set(self._last_loop)
        m.ready.set(int(self.ready()))
        m.stage_seconds.labels("poll").observe(time.perf_counter() - t0)
        records = [r for batch in polled.values() for r in batch]
        if records:
            m.batch_size.observe(len(records))
        return records

    def _start(self, records: list[Any]) -> InFlight:
        t0 = time.perf_counter()
        parsed, bad = self._parse(records)
        t1 = time.perf_counter()
        self.metrics.stage_seconds.labels("parse").observe(t1 - t0)
        routed, replayed = self._route(parsed, bad)
        self.metrics.stage_seconds.labels("route").observe(time.perf_counter() - t1)
        assert self._analysis is not None  # run() opens the pools before the first poll
        analysed = [r.frame for r in routed if r.analysed]
        return InFlight(
            records, bad, routed, replayed, self._analysis.submit(self._analyse_batch, analysed)
        )

    def _route(
        self, parsed: list[tuple[Any, Frame]], bad: list[BadRecord]
    ) -> tuple[list[Routed], int]:
        """Each frame's stream, and whether it is analysed, decided before any decode: frames the
        stream's checkpointed state already holds are dropped (counted as replayed), frames above
        its analysis rate are only counted. Inline images are decoded from base64 only for the
        frames analysed."""
        routed: list[Routed] = []
        replayed = 0
        source = self.config.source
        for record, frame in parsed:
            key = stream_key(frame, source)
            state = self._known(key)
            if state is not None and state.absorbed(frame):
                replayed += 1
                continue
            digest = image_digest(frame)
            analysed = self.rate.admit(key, frame.ts)
            if analysed:
                try:
                    load_image(frame)
                except RecordError as e:
                    bad.append(_bad(record, e))
                    continue
                if digest is None:  # a claim check's file, read only now
                    digest = image_digest(frame)
            routed.append(Routed(frame, key, digest, analysed))
        return routed, replayed

    def _analyse_batch(self, frames: list[Frame]) -> list[Analysed]:
        t0 = time.perf_counter()
        assert self._pool is not None  # run() opens the pools before the first poll
        analysed = list(self._pool.map(self._analyse, frames))
        t1 = time.perf_counter()
        # decode and statistics run fused in the pool; their split is measured by the benchmark
        self.metrics.stage_seconds.labels("decode").observe(t1 - t0)
        if self.embedder is not None:
            self._embed(analysed)
            self.metrics.stage_seconds.labels("embed").observe(time.perf_counter() - t1)
        return analysed

    def _finish(self) -> None:
        """Complete the batch in flight: route, evaluate, dead-letter, commit its offsets."""
        batch, self._inflight = self._inflight, None
        if batch is None:
            return
        m = self.metrics
        # a bug in analysis raises here: nothing is committed
        results = iter(batch.analysis.result())
        bad = batch.bad
        evaluating = 0.0
        touched: dict[str, StreamState] = {}
        skipped = 0
        for r in batch.routed:  # in record order: a frozen feed is judged on consecutive frames
            if not r.analysed:
                state = self._state(r.key)
                identical = state.receive(r.frame, r.digest)
                m.observe_frame(state.key, r.frame.ts, identical, state.window.fill_ratio)
                skipped += 1
                continue
            a = next(results)
            if a.error is not None:
                bad.append(
                    BadRecord(a.error.reason, str(a.error), a.frame.origin, None, a.frame.data, [])
                )
                continue
            state = self._state(r.key)
            identical = state.observe(a.frame, a.row, r.digest, a.embedding, a.context, a.layout)
            m.observe_frame(state.key, a.frame.ts, identical, state.window.fill_ratio)
            touched[state.key] = state
            # evaluate at every schedule point, however the frames were batched
            if state.window.due():
                te = time.perf_counter()
                self._evaluate(state)
                evaluating += time.perf_counter() - te
        te = time.perf_counter()
        for state in touched.values():
            if self._interval_due(state):
                self._evaluate(state)
        evaluating += time.perf_counter() - te
        m.stage_seconds.labels("evaluate").observe(evaluating)

        self._dead_letter(bad, batch.records)
        m.frames.labels("processed").inc(len(batch.records) - len(bad) - batch.replayed - skipped)
        m.frames.labels("rate_limited").inc(skipped)
        m.frames.labels("replayed").inc(batch.replayed)
        if self.checkpoints is None:
            self._commit(_next_offsets(batch.records))
        else:  # offsets wait for the checkpoint that covers them (the loop's, when it is due)
            for tp, offset in _next_offsets(batch.records).items():
                self._uncommitted[tp] = max(self._uncommitted.get(tp, 0), offset)
        self._publish_status()

    # --- checkpoints and handover --------------------------------------------------------------

    def _state(self, key: str) -> StreamState:
        """The stream ``key``: known here, restored from its checkpoint, or new."""
        state = self._known(key)
        return state if state is not None else self.streams.get(key)

    def _known(self, key: str) -> StreamState | None:
        """The stream ``key`` when this process has it, or its checkpoint (restored the first time
        it is asked for); else None."""
        state = self.streams.states.get(key)
        if state is None:
            saved = self._saved.pop(key, None)
            if saved is not None:
                state = self.streams.get(key)
                self._restore(state, saved)
        return state

    def _restore(self, state: StreamState, saved: bytes) -> None:
        hysteresis = state.restore(saved)
        if hysteresis is not None:
            state.detector_state = self.engine.new_detector()
            state.detector_state.set_state(hysteresis)
            self.metrics.drifted.labels(self.metrics.stream_label(state.key)).set(
                int(state.detector_state.drifted)
            )
        log.info(
            "stream %s restored from its checkpoint (%d frames, window %.0f%% full)",
            state.key,
            state.frames,
            100 * state.window.fill_ratio,
        )

    def _checkpoint(self) -> None:
        """Save every changed stream, then commit the offsets those states cover."""
        if self.checkpoints is not None:
            dirty = {k: s for k, s in self.streams.states.items() if s.dirty}
            if dirty:
                t = time.perf_counter()
                self.checkpoints.save({k: s.to_bytes() for k, s in dirty.items()})
                for s in dirty.values():
                    s.dirty = False
                self.metrics.stage_seconds.labels("checkpoint").observe(time.perf_counter() - t)
            self._next_checkpoint = time.monotonic() + self.config.checkpoint.interval_s
        if self._uncommitted:
            self._commit(self._uncommitted)
            self._uncommitted = {}

    def _hand_over(self, revoked: Any) -> None:
        """Partitions are leaving: checkpoint, commit, and forget their streams here, so their new
        owner continues them from the checkpoint."""
        if self.checkpoints is None:
            return
        self._checkpoint()
        gone = {(tp.topic, tp.partition) for tp in revoked}
        leaving = [k for k, s in self.streams.states.items() if gone & set(s.offsets)]
        for key in leaving:
            del self.streams.states[key]
            self.rate.forget(key)
            self.metrics.forget_stream(key)
        if self.on_hand_over is not None and leaving:
            self.on_hand_over(leaving)
        self._publish_status()
        log.info("handed over %d partitions", len(gone))

    def _take_over(self) -> None:
        """New partitions: read the checkpoints again (other replicas may just have written theirs)
        and restore, now, every stream whose frames come from them — a camera that sends nothing
        after a handover (a stalled feed, a drift in progress) is still reported by its new
        owner."""
        self._reload_checkpoints = False
        if self.checkpoints is None:
            return
        self._saved = self.checkpoints.load_all()
        owned = {(tp.topic, tp.partition) for tp in self._consumer.assignment()}
        for key in [k for k in self._saved if k not in self.streams.states]:
            state = self.streams.new_state(key)
            self._restore(state, self._saved[key])
            if state.offsets and set(state.offsets) <= owned:
                self.streams.states[key] = state
                del self._saved[key]
        self._publish_status()

    def _parse(self, records: list[Any]) -> tuple[list[tuple[Any, Frame]], list[BadRecord]]:
        parsed: list[tuple[Any, Frame]] = []
        bad: list[BadRecord] = []
        source = self.config.source
        for r in records:
            try:
                parsed.append((r, parse_record(r, source, defer_image=True)))
            except RecordError as e:
                bad.append(_bad(r, e))
        return parsed, bad

    def _analyse(self, frame: Frame) -> Analysed:
        try:
            decoded = decode(frame.data, self.limits)
        except DecodeError as e:
            return Analysed(frame, error=e)
        cells = self.streams.layout_size  # 0 when no test judges the maps
        layout = np.empty(cells, np.uint8) if cells else None
        row = compute_features(decoded, layout)
        return Analysed(
            frame,
            row=row,
            layout=layout,
            rgb=decoded.rgb if self.embedder is not None else None,
            context=frame_context(row, frame.ts, frame.context, self.config.context),
        )

    def _embed(self, analysed: list[Analysed]) -> None:
        if self.embedder is None:
            return
        # decoded frames keep their image until embedded (_analyse keeps it with an embedder)
        ok = [(a, a.rgb) for a in analysed if a.error is None and a.rgb is not None]
        if not ok:
            return
        vectors = self.embedder.embed_many(
            [rgb for _, rgb in ok], max_batch=self.config.embedding.batch_size
        )
        for (a, _), v in zip(ok, vectors, strict=True):
            a.embedding, a.rgb = v, None

    def _interval_due(self, state: StreamState) -> bool:
        """A full window not evaluated for ``window.evaluate_interval_s`` (slow cameras)."""
        interval = self.config.window.evaluate_interval_s
        return (
            interval > 0
            and state.window.fill_ratio == 1.0
            and state.window.since_evaluation > 0
            and time.time() - state.last_evaluated_at >= interval
        )

    def _evaluate(self, state: StreamState) -> None:
        prepared = self._prepared_for(state.key)
        if prepared is None:
            return  # counted and windowed, but nothing to compare against yet
        window = state.window.values()
        refs = state.window.refs()
        embeddings = state.window.embeddings()
        predictions = state.window.predictions()
        layouts = state.window.layouts()
        new_frames = state.window.since_evaluation
        evaluation = self.engine.evaluate(state, prepared)
        state.evaluation_dict = (
            evaluation.to_dict()
        )  # once per evaluation, not per status publication
        newest = refs[-1] if refs else None
        state.history.add(
            newest.ts if newest is not None else evaluation.evaluated_at,
            window,
            new_frames,
            evaluation.window_drifted,
        )
        means = (
            dict(zip(FEATURE_NAMES, window.mean(axis=0).tolist(), strict=True))
            if self.config.metrics.per_feature
            else None
        )
        self.metrics.observe_evaluation(evaluation, means)
        figures = self.loop.observe(prepared.reference, window, embeddings, predictions)
        state.training_coverage, state.estimated_accuracy = (
            figures.coverage,
            figures.estimated_accuracy,
        )
        self.metrics.observe_loop(
            state.key, figures.reference_time, figures.coverage, figures.estimated_accuracy
        )
        if evaluation.changed:
            fired = sorted(
                {
                    f
                    for t in evaluation.tests
                    if t.name in self.config.tests.vote
                    for f in t.drifted_features
                }
            )
            log.warning(
                "stream %s %s (features: %s)",
                state.key,
                "DRIFTED" if evaluation.drifted else "recovered",
                ", ".join(fired) or "-",
            )
        self.metrics.streams_drifted.set(
            sum(1 for s in self.streams.states.values() if s.evaluation and s.evaluation.drifted)
        )
        if self.on_evaluation is not None:
            self.on_evaluation(
                evaluation,
                WindowSnapshot(
                    state.key,
                    window,
                    refs,
                    embeddings,
                    FEATURE_NAMES,
                    prepared,
                    predictions,
                    state.history.recent(),
                    figures.covered,
                    layouts,
                ),
            )

    def _dead_letter(self, bad: list[BadRecord], records: list[Any]) -> None:
        if not bad:
            return
        for b in bad:
            self.metrics.bad_records.labels(b.reason).inc()
        self.metrics.frames.labels("dead_lettered").inc(len(bad))
        producer = self._producer
        if producer is None:
            return
        by_origin = {_origin(r): r for r in records}
        futures = []
        for b in bad:
            original = by_origin.get(b.origin)
            key = original.key if original is not None else b.key
            headers = list(original.headers or []) if original is not None else b.headers
            b = BadRecord(b.reason, b.error, b.origin, key, b.value, headers)
            futures.append(
                producer.send(
                    self.config.kafka.dead_letter_topic,
                    key=key,
                    value=b.value,
                    headers=dead_letter_headers(b),
                )
            )
        producer.flush()
        for f in futures:
            f.get(timeout=30)  # a dead letter not acknowledged means the batch is not committed
        self.metrics.dead_letters.inc(len(futures))

    def _commit(self, offsets: dict[Any, int]) -> None:
        """Commit exactly ``offsets`` (the next batch may already be polled)."""
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        t = time.perf_counter()
        commit = {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}
        if self._rebalancing:
            self._consumer.commit_async(commit)
            self.metrics.commits.labels("async").inc()
            return
        try:
            self._consumer.commit(commit)
            self.metrics.commits.labels("ok").inc()
        except KafkaError as e:
            # e.g. a rebalance took the partitions: their new owner re-reads from the last commit
            self.metrics.commits.labels("failed").inc()
            log.warning("offset commit failed, the batch will be re-read: %s", e)
        self.metrics.stage_seconds.labels("commit").observe(time.perf_counter() - t)

    def _update_lag(self, consumer: Any) -> None:
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(Exception):
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(
                    max(0, high - consumer.position(tp))
                )

    # --- references --------------------------------------------------------------------------

    def _load_references(self) -> None:
        """Fit the shared reference and check every stream's: a reference the live pipeline cannot
        be compared with (another embedder, no embeddings) fails the start, not a stream at 3
        a.m."""
        if not self.config.reference.path:
            return
        shared = self.store.load_latest(None)
        if shared is not None:
            self._prepare(shared)
        for stream in self.store.streams():
            own = self.store.load_latest(stream)
            if own is not None:  # a stream directory without versions: judged by the shared one
                self.engine.check(own)

    def _prepared_for(self, stream: str) -> PreparedReference | None:
        state = self.streams.get(stream)
        if state.reference is None:
            try:
                ref = self.store.for_stream(stream)
            except BadReference as e:
                log.error("stream %s: %s", stream, e)
                return None
            if ref is None:
                return None
            try:
                if (ref.stream or "*", ref.version) not in self._prepared:
                    # added while running: refuse what the start would refuse (no calibration for
                    # tests.run_length included) instead of calibrating inside the loop
                    self.engine.check(ref)
                state.reference = self._prepare(ref)
            except (BadReference, EmbedderError) as e:  # a reference added while running
                log.error("stream %s: %s", stream, e)
                return None
        return state.reference

    def _prepare(self, ref: Reference) -> PreparedReference:
        key = (ref.stream or "*", ref.version)
        if key not in self._prepared:
            prepared = self.engine.prepare(ref)
            self._prepared[key] = prepared
            names = prepared.feature_names
            quantiles = prepared.univariate.quantiles(list(QUANTILES))
            embedder = EmbedderIdentity.from_dict(ref.embedder).label if ref.embedder else "none"
            self.metrics.observe_reference(
                key[0],
                ref.version,
                embedder,
                ref.n_frames,
                {n: quantiles[:, i].tolist() for i, n in enumerate(names)},
            )
        return self._prepared[key]

    # --- status ------------------------------------------------------------------------------

    def _publish_status(self) -> None:
        self.metrics.streams.set(len(self.streams))
        streams = {}
        for key, s in self.streams.states.items():
            streams[key] = {
                "frames": s.frames,
                "identical_frames": s.identical_frames,
                "last_frame_ts": s.last_ts,
                "window_fill": round(s.window.fill_ratio, 4),
                "reference": None
                if s.reference is None
                else {"stream": s.reference.stream, "version": s.reference.reference.version},
                # the hysteresis state, which a restored stream has before its first evaluation here
                "drifted": bool(s.detector_state is not None and s.detector_state.drifted),
                "last_evaluation": s.evaluation_dict,
                "training_coverage": s.training_coverage,
                "estimated_accuracy": s.estimated_accuracy,
            }
        with self._lock:
            self._status = {"streams": streams}

    def status(self) -> JSONObject:
        with self._lock:
            streams = self._status.get("streams", {})
        return {
            "version": __version__,
            "alive": self.alive(),
            "ready": self.ready(),
            "streams_total": len(streams),
            "streams_drifted": sorted(k for k, s in streams.items() if s["drifted"]),
            "references": [f.reference.describe() for f in self._prepared.values()],
            "config": to_dict(self.config),
            "streams": streams,
        }


def _next_offsets(records: list[Any]) -> dict[Any, int]:
    """Per partition, the offset after the newest of ``records``: what a commit of them stores."""
    from kafka import TopicPartition

    offsets: dict[TopicPartition, int] = {}
    for r in records:
        tp = TopicPartition(r.topic, r.partition)
        offsets[tp] = max(offsets.get(tp, -1), r.offset + 1)
    return offsets


def _origin(record: Any) -> Origin:
    return Origin(record.topic, record.partition, record.offset)


def _bad(record: Any, e: RecordError) -> BadRecord:
    return BadRecord(
        e.reason, str(e), _origin(record), record.key, record.value, list(record.headers or [])
    )


def _coordinator_known(consumer: Any) -> bool:
    """In the group and hearing from its coordinator. kafka-python exposes no public flag; its
    coordinator object is the truth. It forgets a silent coordinator only when a request times out
    (30 s), so a heartbeat not answered within the session timeout also counts as not connected.
    The librdkafka consumer says it itself."""
    connected = getattr(consumer, "connected", None)
    if connected is not None:
        return bool(connected())
    coordinator = getattr(consumer, "_coordinator", None)
    if coordinator is None or coordinator.coordinator_unknown():
        return False
    heartbeat = getattr(coordinator, "heartbeat", None)
    return heartbeat is None or not heartbeat.session_timeout_expired()
