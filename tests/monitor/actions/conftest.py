"""Small builders of actions' records for tests, and today's JSON formats (``data/``) as the
version before typed records wrote them."""

import json
from pathlib import Path

from monitor.actions.events import (
    DriftEvent,
    EventWindow,
    Fired,
    Origin,
    ReferenceInfo,
    Sample,
    event_id,
)
from monitor.actions.explain import MeanShift, Shift, describe, kind_of
from monitor.actions.selection import PickScores, Reason
from monitor.pipeline.drift_tests import FeatureOutcome, TestOutcome
from monitor.pipeline.streams import FrameRef

DATA = Path(__file__).parent / "data"
REFERENCE = ReferenceInfo("cam-1", 1, 100, "dir:/data/good-week")


def data(name):
    """A JSON file of ``data/``."""
    return json.loads((DATA / name).read_text())


def fired(feature, test="ks"):
    return Fired(
        test, feature, kind_of(test), describe(test, feature), 0.9, 1e-6, 0.05, "bonferroni", True
    )


def shift(feature, z, test="ks"):
    return Shift(
        test, kind_of(test), describe(test, feature), 0.9, 1e-6, MeanShift(1.0 + z, 1.0, 1.0, z)
    )


def frame(stream, i):
    return FrameRef(f"{stream}-{i}", stream, 1000.0 + i, "frames", 0, i, None)


def sample(event, i, score=1.5):
    """Frame ``i`` of ``event``'s window, selected for relabelling."""
    ref = event.window.refs[i]
    return Sample(
        key=f"{ref.camera_id}/{ref.frame_id}",
        event_id=event.id,
        stream=event.stream,
        camera_id=ref.camera_id,
        frame_id=ref.frame_id,
        ts=ref.ts,
        uri=f"file:///frames/{ref.frame_id}.jpg",
        claim_check_copy=True,
        origin=Origin(ref.topic, ref.partition, ref.offset),
        reasons=(
            Reason("far_from_reference", "far"),
            Reason(
                "extreme_statistic", "brightness_mean 4.0 sd below the reference", "brightness_mean"
            ),
        ),
        scores=PickScores(score, 3.2, "brightness_mean", -4.0, None, None, "statistics"),
        hash=0xF00D + i,
        predictions={"probs": [0.2, 0.8]},
        reference=event.reference,
        selected_at=event.opened_at + 10,
    )


def drift_event(stream="cam-1", opened_at=1_800_000_000.0, shifts=None, frames=4):
    """An open event whose ``shifts`` (feature -> z; brightness -3 sd by default) all fired on
    KS."""
    shifts = {"brightness_mean": -3.0} if shifts is None else shifts
    ks = TestOutcome(
        "ks",
        0.9,
        1e-6,
        0.05,
        True,
        "bonferroni",
        "",
        tuple(FeatureOutcome(f, 0.9, 1e-6, True) for f in shifts),
    )
    return DriftEvent(
        id=event_id(stream, opened_at),
        stream=stream,
        opened_at=opened_at,
        reference=REFERENCE,
        fired=tuple(fired(f) for f in shifts),
        shifts={f: shift(f, z) for f, z in shifts.items()},
        tests=(ks,),
        feature_names=tuple(shifts),
        window=EventWindow.of([frame(stream, i) for i in range(frames)] + [None], frames + 1),
        healthy_refs=(frame(stream, 100),),
    )
