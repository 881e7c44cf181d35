import numpy as np
import pytest

from monitor.config import SourceConfig, WindowConfig
from monitor.pipeline.source import Frame, Origin
from monitor.pipeline.streams import Streams, Window, frame_digest, stream_key


def frame(cam="c1", data=b"x", site=""):
    return Frame(
        camera_id=cam, frame_id="f", ts=1.0, data=data, origin=Origin("t", 0, 0), site=site
    )


def test_sliding_window_keeps_newest_rows_in_order_and_is_due_every_n():
    w = Window(2, WindowConfig(size=10, evaluate_every=4))
    due = []
    for i in range(30):
        w.append(np.array([i, -i], np.float32))
        due.append(w.due())
        if w.due():
            w.mark_evaluated()
    assert w.values()[:, 0].tolist() == list(range(20, 30))
    assert [i for i, d in enumerate(due) if d] == [9, 13, 17, 21, 25, 29]


def test_tumbling_window_restarts_after_each_evaluation():
    w = Window(1, WindowConfig(size=10, mode="tumbling"))
    hits = []
    for i in range(35):
        w.append(np.array([i], np.float32))
        if w.due():
            hits.append(w.values()[:, 0].tolist())
            w.mark_evaluated()
    assert hits == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    assert w.filled == 5


def test_memory_is_bounded_whatever_the_frame_count():
    s = Streams(3, WindowConfig(size=10, evaluate_every=5), SourceConfig())
    for i in range(1000):
        f = frame(cam=f"c{i % 3}", data=bytes([i % 256]))
        f.frame_id = str(i)
        s.get(stream_key(f, s.source)).observe(f, np.full(3, i), frame_digest(f.data))
    assert len(s) == 3
    for st in s.states.values():
        assert st.window._rows.shape == (10, 3) and len(st.window._refs) == 10
        # frame references stay aligned with their rows
        assert [int(r.frame_id) for r in st.window.refs()] == st.window.values()[:, 0].astype(
            int
        ).tolist()


def test_identical_consecutive_frames_are_counted():
    s = Streams(1, WindowConfig(size=10, evaluate_every=5), SourceConfig())
    st = s.get("c1")
    flags = [
        st.observe(frame(data=d), np.zeros(1), frame_digest(d))
        for d in (b"a", b"a", b"b", b"b", b"b")
    ]
    assert flags == [False, True, False, True, True] and st.identical_frames == 3


def test_stream_key_template():
    assert (
        stream_key(frame(cam="c7", site="depot"), SourceConfig(stream_key="{site}/{camera_id}"))
        == "depot/c7"
    )
    assert stream_key(frame(cam="c7"), SourceConfig(stream_key="{site}")) == "unknown"


def test_a_checkpoint_restores_window_counters_and_offsets():
    from detectors.hysteresis import Hysteresis

    cfg = WindowConfig(size=10, evaluate_every=5)
    s = Streams(2, cfg, SourceConfig(), embedding_dim=3, layout_size=4)
    st = s.get("c1")
    st.detector_state = Hysteresis(k=1, m=1, recover=2)
    st.detector_state.update(True)
    for i in range(13):
        f = frame(data=bytes([i]))
        f.frame_id, f.origin = str(i), Origin("t", 1, 100 + i)
        layout = np.full(4, i, np.uint8)
        st.observe(
            f, np.array([i, 2 * i]), frame_digest(f.data), np.full(3, i, np.float32), "", layout
        )
    data = st.to_bytes()

    back = Streams(2, cfg, SourceConfig(), embedding_dim=3, layout_size=4).get("c1")
    hysteresis = back.restore(data)
    assert hysteresis["drifted"] is True
    np.testing.assert_array_equal(back.window.values(), st.window.values())
    np.testing.assert_array_equal(back.window.embeddings(), st.window.embeddings())
    np.testing.assert_array_equal(back.window.layouts()[:, 0], np.arange(3, 13))
    assert [r.frame_id for r in back.window.refs()] == [str(i) for i in range(3, 13)]
    assert (back.frames, back.window.since_evaluation, back.last_digest) == (13, 10, st.last_digest)
    # frames up to the checkpointed offset are recognised when re-read
    replay = frame()
    replay.origin = Origin("t", 1, 112)
    assert back.absorbed(replay)
    replay.origin = Origin("t", 1, 113)
    assert not back.absorbed(replay)


def test_a_checkpoint_from_another_configuration_keeps_its_place_not_its_frames():
    s = Streams(2, WindowConfig(size=10, evaluate_every=5), SourceConfig())
    st = s.get("c1")
    st.observe(frame(), np.zeros(2), b"d")
    other = Streams(3, WindowConfig(size=10, evaluate_every=5), SourceConfig()).get("c1")
    assert other.restore(st.to_bytes()) is None  # no drift state was saved
    assert other.window.filled == 0  # rows of two columns are not forced into three
    assert (other.frames, other.offsets) == (1, st.offsets)
    # nor frames without edge-layout maps into a window that judges them (an upgrade)
    upgraded = Streams(2, WindowConfig(size=10, evaluate_every=5), SourceConfig(), layout_size=4)
    again = upgraded.get("c1")
    again.restore(st.to_bytes())
    assert again.window.filled == 0 and (again.frames, again.offsets) == (1, st.offsets)


def test_a_window_that_judges_edge_layouts_refuses_a_frame_without_one():
    w = Window(1, WindowConfig(size=10, evaluate_every=5), layout_size=4)
    w.append(np.zeros(1, np.float32), layout=np.ones(4, np.uint8))
    with pytest.raises(ValueError, match="edge-layout maps"):
        w.append(np.zeros(1, np.float32))  # a blank map would read as a turned camera


def test_frames_not_read_leave_the_frozen_feed_check_to_the_frames_read():
    # a claim-check stream above its analysis rate: the skipped frames' files are never read, so
    # a frozen feed is told by consecutive analysed frames
    s = Streams(1, WindowConfig(size=10, evaluate_every=5), SourceConfig())
    st = s.get("c1")
    flags = [
        st.receive(frame(), None)
        if d is None
        else st.observe(frame(), np.zeros(1), frame_digest(d))
        for d in (b"a", None, None, b"a", None, b"b")
    ]
    assert flags == [False, False, False, True, False, False] and st.identical_frames == 1
    assert st.frames == 6
