"""Checkpoints without a broker: the file store, and a stream's state to bytes and back.
(The Kafka store is exercised against the real broker in tests/integration/test_state.py.)"""

import math

import numpy as np
import pytest

from detectors.hysteresis import Hysteresis, HysteresisResult
from monitor import files
from monitor.config import SourceConfig, WindowConfig
from monitor.pipeline.predictions import PredictionWindow
from monitor.pipeline.source import Frame, Origin
from monitor.pipeline.streams import Streams, frame_digest
from monitor.service.checkpoint import FileCheckpointStore

N_FEATURES = 3
DIM = 4
PREDICTIONS = [
    {"probs": [0.1, 0.7, 0.2]},
    {"detections": []},
    {"detections": [{"label": "car", "score": 0.9}]},
    None,
    {"probs": [0.6, 0.4]},
]


# --- the file store -------------------------------------------------------------------------------


def test_saved_states_load_back_newest_first_write_wins(tmp_path):
    store = FileCheckpointStore(str(tmp_path / "state"))
    assert store.load_all() == {}
    store.save({"cam-1": b"one", "cam-2": b"two"})
    store.save({"cam-1": b"one, later"})
    assert store.load_all() == {"cam-1": b"one, later", "cam-2": b"two"}
    # another process opening the same directory (a restart) sees the same
    assert FileCheckpointStore(str(tmp_path / "state")).load_all() == {
        "cam-1": b"one, later",
        "cam-2": b"two",
    }


@pytest.mark.parametrize(
    "stream", ["depot/cam 7", "../escape", "Kamera-Süd/东门", "100%", "cam.1", "a.tmp"]
)
def test_any_stream_name_is_one_file_inside_the_store(tmp_path, stream):
    store = FileCheckpointStore(str(tmp_path))
    store.save({stream: b"state"})
    assert store.load_all() == {stream: b"state"}
    assert [p.parent for p in tmp_path.iterdir()] == [tmp_path]


def test_a_write_that_fails_midway_leaves_the_previous_state(tmp_path, monkeypatch):
    store = FileCheckpointStore(str(tmp_path))
    store.save({"cam-1": b"old"})

    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(files.os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.save({"cam-1": b"new"})
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cam-1.state"]  # no torn temp file
    assert store.load_all() == {"cam-1": b"old"}
    store.save({"cam-1": b"new"})
    assert store.load_all() == {"cam-1": b"new"}


@pytest.mark.parametrize("stream", ["c" * 300, "东" * 100, "%sha256-" + "0" * 64])
def test_a_stream_name_too_long_for_a_file_is_hashed_and_loads_back(tmp_path, stream):
    store = FileCheckpointStore(str(tmp_path))
    store.save({stream: b"one", "cam-1": b"short"})
    store.save({stream: b"two"})
    assert FileCheckpointStore(str(tmp_path)).load_all() == {stream: b"two", "cam-1": b"short"}
    assert all(len(p.name.encode()) <= 255 for p in tmp_path.iterdir())


def test_stray_files_are_not_states(tmp_path):
    store = FileCheckpointStore(str(tmp_path))
    store.save({"cam-1": b"state"})
    (tmp_path / "cam-2.tmp").write_bytes(b"\x00torn")
    (tmp_path / "README").write_text("not a checkpoint")
    assert store.load_all() == {"cam-1": b"state"}


# --- a stream's state -----------------------------------------------------------------------------


def streams(size=10, embedding_dim=DIM, mode="sliding", n_features=N_FEATURES):
    return Streams(
        n_features,
        WindowConfig(size=size, evaluate_every=5, mode=mode),
        SourceConfig(),
        embedding_dim,
    )


def observe(
    state,
    n,
    start=0,
    dim=DIM,
    origins=(("frames", 0), ("frames", 1), ("other", 0)),
    n_features=N_FEATURES,
):
    """``n`` frames with distinct rows (``n_features`` wide), embeddings (``dim`` long),
    predictions and origins; every third frame repeats its predecessor's bytes."""
    for i in range(start, start + n):
        topic, partition = origins[i % len(origins)]
        data = bytes([i - 1 if i % 3 == 2 else i, 255])
        f = Frame(
            camera_id="cam-1",
            frame_id=f"f{i}",
            ts=1000.0 + i,
            data=data,
            origin=Origin(topic, partition, 100 + i),
            uri=f"file:///frames/{i}.jpg" if i % 2 else None,
            predictions=PREDICTIONS[i % len(PREDICTIONS)],
        )
        state.observe(
            f,
            np.arange(n_features) + 10.0 * i,
            frame_digest(f.data),
            np.full(dim, i, np.float32) if dim else None,
        )


def assert_same_predictions(got, expected):
    assert len(got.items) == len(expected.items)
    for g, e in zip(got.items, expected.items, strict=True):
        if e is None:
            assert g is None
            continue
        assert g.label == e.label
        assert (
            math.isnan(g.confidence) and math.isnan(e.confidence)
        ) or g.confidence == e.confidence
        assert (g.probs is None and e.probs is None) or np.array_equal(g.probs, e.probs)


def test_a_stream_state_round_trips_window_counters_offsets_and_hysteresis():
    state = streams().get("cam-1")
    observe(state, 20)
    state.window.mark_evaluated()
    state.last_evaluated_at = 1019.5
    observe(state, 3, start=20)
    state.detector_state = Hysteresis(k=2, m=3, recover=2)
    for fired in (True, True, False):
        state.detector_state.update(fired)

    back = streams().new_state("cam-1")
    saved = back.restore(state.to_bytes())

    w, bw = state.window, back.window
    np.testing.assert_array_equal(bw.values(), w.values())
    np.testing.assert_array_equal(bw.embeddings(), w.embeddings())
    assert bw.refs() == w.refs() and [r.frame_id for r in bw.refs()] == [
        f"f{i}" for i in range(13, 23)
    ]
    assert_same_predictions(bw.predictions(), w.predictions())
    assert bw.predictions().n == 8  # two of the ten frames had none
    assert (bw.filled, bw.since_evaluation, bw.due()) == (10, 3, False)
    assert (
        back.frames,
        back.identical_frames,
        back.last_ts,
        back.last_digest,
        back.last_evaluated_at,
    ) == (23, 7, 1022.0, state.last_digest, 1019.5)
    assert (
        back.offsets == state.offsets == {("frames", 0): 121, ("frames", 1): 122, ("other", 0): 120}
    )

    # the saved hysteresis continues where it was: one more quiet evaluation recovers
    assert saved == state.detector_state.get_state()
    restored = Hysteresis(k=2, m=3, recover=2)
    restored.set_state(saved)
    assert restored.drifted and restored.update(False) == HysteresisResult(
        drifted=False, changed=True
    )


def test_frames_up_to_the_absorbed_offsets_are_recognised_after_a_restore():
    state = streams().get("cam-1")
    observe(state, 6)
    back = streams().new_state("cam-1")
    back.restore(state.to_bytes())
    for topic, partition, offset, absorbed in (
        ("frames", 0, 103, True),
        ("frames", 0, 104, False),
        ("frames", 1, 104, True),
        ("frames", 1, 105, False),
        ("other", 0, 105, True),
        ("other", 1, 0, False),
    ):
        f = Frame("cam-1", "x", 0.0, b"", Origin(topic, partition, offset))
        assert back.absorbed(f) is absorbed, (topic, partition, offset)


def test_a_stream_without_hysteresis_or_embeddings_round_trips():
    state = streams(embedding_dim=0).get("cam-1")
    observe(state, 4, dim=0)
    back = streams(embedding_dim=0).new_state("cam-1")
    assert back.restore(state.to_bytes()) is None  # never evaluated: no hysteresis state
    assert back.window.embeddings() is None and back.frames == 4
    np.testing.assert_array_equal(back.window.values(), state.window.values())
    assert back.window.filled == 4 and not back.window.due()


def test_a_partly_filled_tumbling_window_comes_back_partly_filled():
    state = streams(mode="tumbling").get("cam-1")
    observe(state, 10)
    state.window.mark_evaluated()  # a tumbling window starts over after its evaluation
    observe(state, 4, start=10)
    back = streams(mode="tumbling").new_state("cam-1")
    back.restore(state.to_bytes())
    assert [r.frame_id for r in back.window.refs()] == ["f10", "f11", "f12", "f13"]
    assert (back.window.filled, back.window.since_evaluation) == (4, 4)


def test_a_smaller_window_keeps_the_newest_frames():
    state = streams(size=20).get("cam-1")
    observe(state, 20)
    back = streams(size=10).new_state("cam-1")
    back.restore(state.to_bytes())
    assert [r.frame_id for r in back.window.refs()] == [f"f{i}" for i in range(10, 20)]
    np.testing.assert_array_equal(back.window.values(), state.window.values()[10:])
    assert back.window.since_evaluation == 10  # no more than the window holds
    assert_same_predictions(
        back.window.predictions(), PredictionWindow(state.window.predictions().items[10:])
    )


@pytest.mark.parametrize(
    "saved,live",
    [
        ({"embedding_dim": DIM}, {"embedding_dim": 0}),
        ({"embedding_dim": 0}, {"embedding_dim": DIM}),
        ({"embedding_dim": DIM}, {"embedding_dim": DIM + 1}),
        ({"n_features": 20}, {"n_features": 21}),  # an upgrade added a statistic
    ],
)
def test_a_checkpoint_whose_window_no_longer_fits_keeps_the_streams_place_and_drift(saved, live):
    state = streams(**saved).get("cam-1")
    observe(
        state,
        5,
        dim=saved.get("embedding_dim", DIM),
        n_features=saved.get("n_features", N_FEATURES),
    )
    detector = Hysteresis(k=1, m=1, recover=1)
    detector.update(True)  # declared drifted before the restart
    state.detector_state = detector
    back = streams(**live).new_state("cam-1")
    assert back.restore(state.to_bytes()) == detector.get_state()
    assert back.window.filled == 0  # frames measured another way are not judged
    assert (back.frames, back.offsets, back.last_digest) == (5, state.offsets, state.last_digest)


def test_a_stream_state_survives_the_file_store(tmp_path):
    state = streams().get("depot/cam-1")
    observe(state, 12)
    FileCheckpointStore(str(tmp_path)).save({state.key: state.to_bytes()})
    ((key, data),) = FileCheckpointStore(str(tmp_path)).load_all().items()
    back = streams().new_state(key)
    back.restore(data)
    assert key == "depot/cam-1" and back.frames == 12
    np.testing.assert_array_equal(back.window.embeddings(), state.window.embeddings())
