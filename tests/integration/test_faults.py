"""Faults against the real broker and the real `driftmon run` process: SIGKILL mid-stream (nothing
lost, duplicates bounded by one batch), SIGTERM (in-flight batch finished and committed, nothing
re-read), and a broker outage (stays alive, reports not-ready, resumes, loses nothing).

Evidence that survives a SIGKILL: the group's committed offsets, and the dead-letter topic. Every
fourth record is a marker that the daemon dead-letters with its origin offset; dead letters are
acknowledged before a batch's offsets are committed, so the markers in the dead-letter topic say
exactly which batches each run finished, even the one it was killed after finishing.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from monitor.sim.broker import Broker

from .harness import (
    MARKER,
    DaemonProcess,
    committed,
    dead_letters,
    partition_records,
    produce,
    run_config,
    serial_records,
    stats_reference,
)

PARTITIONS = 3
MAX_POLL = 50
GRACE_S = yaml.safe_load(
    (Path(__file__).parents[2] / "deploy/k8s/base/deployment.yaml").read_text()
)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def markers_by_partition(bootstrap, topic):
    """{partition: set of offsets} of the marker records actually in the topic."""
    return {
        p: {r.offset for r in rs if r.value.startswith(MARKER)}
        for p, rs in partition_records(bootstrap, topic, PARTITIONS).items()
    }


def ends(bootstrap, topic):
    return {
        p: (rs[-1].offset + 1 if rs else 0)
        for p, rs in partition_records(bootstrap, topic, PARTITIONS).items()
    }


class Producer(threading.Thread):
    """Produces records start..stop paced, in the background, so kills land mid-stream."""

    def __init__(self, bootstrap, topic, start, stop, pace_s=0.4):
        super().__init__(daemon=True)
        self.args = (bootstrap, topic, serial_records(start, stop))
        self.pace_s = pace_s
        self.error: BaseException | None = None

    def run(self):
        try:
            produce(*self.args, pace_s=self.pace_s)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def test_sigkill_mid_stream_loses_nothing_and_duplicates_stay_within_one_batch(
    broker, topic, tmp_path
):
    ref = stats_reference(tmp_path)
    group = f"kill-{topic}"
    cfg = run_config(broker.bootstrap, topic, ref, group, kafka={"max_poll_records": MAX_POLL})
    total = 5000
    producer = Producer(broker.bootstrap, topic, 0, total)
    producer.start()

    kills = []  # per kill: committed offsets just after it, and the dead letters of that run
    seen_letters = 0
    for run in range(2):
        d = DaemonProcess(tmp_path, f"run{run}", cfg)
        try:
            d.wait_serving()
            # kill once this run has finished a few batches, while the producer is still going
            assert d.wait_for(lambda d=d: d.handled() >= 6 * MAX_POLL, timeout=90), d.output()
            assert producer.is_alive(), "the producer finished before the kill: not mid-stream"
            d.kill()
        finally:
            d.close()
        letters = dead_letters(broker.bootstrap, topic)
        kills.append(
            {
                "committed": committed(broker.bootstrap, group, topic, PARTITIONS),
                "letters": letters[seen_letters:],
            }
        )
        seen_letters = len(letters)

    producer.join(timeout=120)
    assert producer.error is None and not producer.is_alive()
    end = ends(broker.bootstrap, topic)
    assert sum(end.values()) == total

    last = DaemonProcess(tmp_path, "run-final", cfg)
    try:
        assert last.wait_for(
            lambda: committed(broker.bootstrap, group, topic, PARTITIONS) == end, timeout=120
        ), last.output()
        before = kills[-1]["committed"]
        # the last run read exactly what the previous one had not committed, once: nothing lost
        # there
        assert last.wait_for(
            lambda: last.handled() == sum(end[p] - before[p] for p in end), timeout=10
        )
    finally:
        last.terminate(GRACE_S)
        last.close()

    letters = dead_letters(broker.bootstrap, topic)
    markers = markers_by_partition(broker.bootstrap, topic)
    counts = Counter((x["partition"], x["offset"]) for x in letters)
    # at least once: every marker was dead-lettered, by one run or another
    assert {(p, o) for p, offs in markers.items() for o in offs} == set(counts)
    # duplicates: only what a killed run finished after its last commit, at most one batch per kill
    duplicated_markers = sum(n - 1 for n in counts.values())
    assert duplicated_markers <= MAX_POLL * len(kills)
    for k in kills:
        beyond = {}
        for x in k["letters"]:
            if x["offset"] >= k["committed"][x["partition"]]:
                beyond[x["partition"]] = max(beyond.get(x["partition"], -1), x["offset"])
        # the records a killed run finished beyond its commit span at most one polled batch
        span = sum(o + 1 - k["committed"][p] for p, o in beyond.items())
        assert span <= MAX_POLL, (span, k["committed"], beyond)
    print(
        f"\nSIGKILL x{len(kills)}: {total} records, markers duplicated {duplicated_markers}, "
        f"committed at kills {[k['committed'] for k in kills]}"
    )


def test_sigterm_finishes_the_batch_in_hand_commits_and_nothing_is_reread(broker, topic, tmp_path):
    ref = stats_reference(tmp_path)
    group = f"term-{topic}"
    cfg = run_config(
        broker.bootstrap, topic, ref, group, kafka={"max_poll_records": MAX_POLL}, log_level="INFO"
    )
    total = 2000
    producer = Producer(broker.bootstrap, topic, 0, total)
    producer.start()
    first = DaemonProcess(tmp_path, "first", cfg)
    try:
        first.wait_serving()
        assert first.wait_for(lambda: first.handled() >= 6 * MAX_POLL, timeout=90), first.output()
        assert producer.is_alive(), "the producer finished before SIGTERM: not mid-stream"
        t0 = time.monotonic()
        assert (
            first.terminate(GRACE_S) == 0
        )  # within terminationGracePeriodSeconds of the deployment
        stopped_in = time.monotonic() - t0
        assert "last batch committed" in first.output()
    finally:
        first.close()
    at_stop = committed(broker.bootstrap, group, topic, PARTITIONS)
    letters = dead_letters(broker.bootstrap, topic)
    # everything the first run finished is committed: no dead letter beyond the committed offsets...
    assert all(x["offset"] < at_stop[x["partition"]] for x in letters)
    # ...and everything below them was finished (every marker below the commit was dead-lettered)
    markers = markers_by_partition(broker.bootstrap, topic)
    below = {(p, o) for p, offs in markers.items() for o in offs if o < at_stop[p]}
    assert {(x["partition"], x["offset"]) for x in letters} == below

    producer.join(timeout=120)
    assert producer.error is None
    end = ends(broker.bootstrap, topic)
    second = DaemonProcess(tmp_path, "second", cfg)
    try:
        assert second.wait_for(
            lambda: committed(broker.bootstrap, group, topic, PARTITIONS) == end, timeout=120
        )
        # the second run reads exactly from where the first committed: nothing re-read
        assert second.wait_for(
            lambda: second.handled() == sum(end[p] - at_stop[p] for p in end), timeout=10
        )
        assert second.terminate(GRACE_S) == 0
    finally:
        second.close()
    counts = Counter((x["partition"], x["offset"]) for x in dead_letters(broker.bootstrap, topic))
    assert set(counts) == {
        (p, o) for p, offs in markers_by_partition(broker.bootstrap, topic).items() for o in offs
    }
    assert max(counts.values()) == 1, "a record was processed twice across a SIGTERM"
    print(
        f"\nSIGTERM: stopped in {stopped_in:.1f}s (grace {GRACE_S}s), committed at stop {at_stop}, "
        f"end {end}"
    )


@pytest.fixture
def own_broker(tmp_path):
    """A broker of this test's own: freezing the session's would stall the other tests."""
    with Broker(log_path=str(tmp_path / "tansu.log")) as b:
        yield b


# The daemon counts a coordinator whose heartbeats go unanswered for the session timeout (6 s in
# run_config) as gone: readiness follows within that plus a poll and the scrape interval.
NOT_READY_WITHIN_S = 6.0 + 5
OUTAGE_S = 25.0


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_broker_outage_not_ready_then_resumes_without_loss(own_broker, tmp_path, client):
    b = own_broker
    topic = "frames-outage"
    b.create_topic(topic, PARTITIONS)
    b.create_topic(f"{topic}.dlq", 1)
    ref = stats_reference(tmp_path)
    group = "outage"
    cfg = run_config(b.bootstrap, topic, ref, group, kafka={"client": client})
    produce(b.bootstrap, topic, serial_records(0, 400))
    d = DaemonProcess(tmp_path, "outage", cfg)
    try:
        d.wait_serving()
        assert d.wait_for(
            lambda: committed(b.bootstrap, group, topic, PARTITIONS) == ends(b.bootstrap, topic),
            timeout=90,
        ), d.output()
        assert d.get("/readyz")[0] == 200

        b.freeze()
        frozen_at = time.monotonic()
        try:
            healthz, readyz = [], []
            while time.monotonic() - frozen_at < OUTAGE_S:
                healthz.append(d.get("/healthz")[0])
                code = d.get("/readyz")[0]
                readyz.append((round(time.monotonic() - frozen_at, 1), code))
                time.sleep(0.5)
        finally:
            b.thaw()
        outage = time.monotonic() - frozen_at
        assert d.proc.poll() is None, "the daemon died during the outage"
        assert set(healthz) == {200}, "liveness failed during the outage"
        not_ready = [t for t, code in readyz if code == 503]
        assert not_ready, f"/readyz never reported the outage: {readyz}"
        assert not_ready[0] <= NOT_READY_WITHIN_S, readyz
        assert all(code == 503 for t, code in readyz if t >= not_ready[0]), (
            "readiness flapped while frozen"
        )

        # after the outage: ready again, new frames processed, nothing lost, nothing read twice
        assert d.wait_for(lambda: d.get("/readyz")[0] == 200, timeout=90), d.output()
        produce(b.bootstrap, topic, serial_records(400, 800))
        end = ends(b.bootstrap, topic)
        assert d.wait_for(
            lambda: committed(b.bootstrap, group, topic, PARTITIONS) == end, timeout=90
        ), d.output()
        assert d.wait_for(lambda: d.handled() == 800, timeout=10), d.handled()
        counts = Counter((x["partition"], x["offset"]) for x in dead_letters(b.bootstrap, topic))
        assert set(counts) == {
            (p, o) for p, offs in markers_by_partition(b.bootstrap, topic).items() for o in offs
        }
        assert max(counts.values()) == 1
        assert d.terminate(GRACE_S) == 0
        print(f"\noutage {outage:.1f}s survived; /readyz 503 from t={not_ready[0]}s")
    finally:
        d.close()
