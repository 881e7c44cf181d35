"""The per-window figures of the data loop (coverage, estimated accuracy, reference freshness), a
training set the live pipeline cannot use refused at start, and the window's gaps."""

from dataclasses import replace

import numpy as np
import pytest

from monitor.config import config_from_dict
from monitor.errors import ConfigError
from monitor.loop.freshness import data_time
from monitor.loop.gaps import Gaps, gaps_of
from monitor.loop.watch import LoopWatch
from monitor.pipeline.embed import EmbedderIdentity
from monitor.pipeline.features import FEATURE_NAMES
from monitor.pipeline.predictions import PredictionWindow, derive
from monitor.pipeline.streams import FrameRef
from monitor.reference.store import Reference, ReferenceStore

LIVE = EmbedderIdentity("driftmon-randconv-v1", "ab" * 32, 128, "centred", 8)
OTHER = replace(LIVE, weights_sha256="cd" * 32)


def training(tmp_path, rng, embedder=LIVE, embeddings=True, statistics=True):
    ref = Reference(
        features=rng.normal(size=(400, len(FEATURE_NAMES))).astype(np.float32)
        if statistics
        else np.zeros((400, 1), np.float32),
        feature_names=FEATURE_NAMES if statistics else ("x",),
        time_range=(1_700_000_000.0, 1_700_086_400.0),
        embeddings=rng.normal(size=(400, 8)).astype(np.float32) if embeddings else None,
        embedder=embedder.to_dict() if embeddings else None,
        extra={"role": "training"},
    )
    ReferenceStore(tmp_path / "training").add(ref)
    return ref


def config(tmp_path, **embedding):
    return config_from_dict(
        {"training": {"path": str(tmp_path / "training")}, "embedding": embedding}
    )


def test_coverage_is_the_share_of_the_window_within_the_training_set(tmp_path):
    rng = np.random.default_rng(0)
    ref = training(tmp_path, rng)
    watch = LoopWatch(config(tmp_path), LIVE)
    assert watch.training_time == 1_700_086_400.0  # the newest frame, not the build time
    like = rng.normal(size=(60, 8)).astype(np.float32)
    far = (rng.normal(size=(40, 8)) + 12.0).astype(np.float32)
    rows = rng.normal(size=(100, len(FEATURE_NAMES))).astype(np.float32)
    figures = watch.observe(ref, rows, np.vstack([like, far]), None)
    assert figures.covered[60:].sum() == 0 and figures.covered[:60].mean() > 0.8
    assert figures.coverage == pytest.approx(figures.covered.mean())
    assert figures.reference_time == 1_700_086_400.0 and figures.estimated_accuracy is None


def test_the_estimated_accuracy_reads_class_probabilities_only(tmp_path):
    watch = LoopWatch(config_from_dict({}), None)
    probs = [derive({"probs": [0.8, 0.2]})] * 10 + [derive({"probs": [0.4, 0.6]})] * 10
    boxes = [derive({"detections": [{"label": "car", "score": 0.99, "box": [0, 0, 1, 1]}]})] * 10
    ref = Reference(features=np.zeros((3, 1), np.float32), feature_names=("x",))
    rows = np.zeros((31, len(FEATURE_NAMES)), np.float32)
    figures = watch.observe(ref, rows, None, PredictionWindow(probs + boxes + [None]))
    assert figures.estimated_accuracy == pytest.approx(0.7) and figures.coverage is None
    assert watch.observe(ref, rows[:10], None, PredictionWindow(boxes)).estimated_accuracy is None


@pytest.mark.parametrize(
    ("build", "live", "embedding", "says"),
    [
        ({"embeddings": False}, LIVE, {}, "has no embeddings"),
        ({"embedder": OTHER}, LIVE, {}, "different embedder"),
        ({}, LIVE, {"enabled": False}, "embedding.enabled is false"),
        ({"statistics": False}, LIVE, {}, "lacks feature.*driftmon training build"),
    ],
)
def test_a_training_set_the_live_pipeline_cannot_compare_fails_the_start(
    tmp_path, build, live, embedding, says
):
    training(tmp_path, np.random.default_rng(1), **build)
    with pytest.raises(ConfigError, match=rf"^training\.path: .*{says}"):
        LoopWatch(config(tmp_path, **embedding), live)


def test_a_training_set_built_before_a_statistic_existed_is_compared_without_it(tmp_path, caplog):
    # an upgrade adds a statistic: the daemon starts, says so, and coverage drops that column on
    # both sides (a window's value there, however far out, changes nothing)
    rng = np.random.default_rng(3)
    full = training(tmp_path / "full", rng)
    older = replace(full, features=full.features[:, :-1], feature_names=FEATURE_NAMES[:-1])
    ReferenceStore(tmp_path / "training").add(older)
    with caplog.at_level("WARNING", logger="monitor.loop.watch"):
        watch = LoopWatch(config(tmp_path), LIVE)
    assert f"before the image statistic(s) ['{FEATURE_NAMES[-1]}'] existed" in caplog.text
    emb = rng.normal(size=(50, 8)).astype(np.float32)
    rows = full.features[:50].copy()
    base = watch.observe(older, rows, emb, None).covered
    rows[:, -1] = 1e6
    assert np.array_equal(watch.observe(older, rows, emb, None).covered, base)
    rows[:, 0] = 1e6  # a statistic it holds still counts
    assert not watch.observe(older, rows, emb, None).covered.any()


def test_freshness_falls_back_to_the_build_time_without_frame_times():
    ref = Reference(features=np.zeros((3, 1), np.float32), feature_names=("x",), created_at=5.0)
    assert data_time(ref) == 5.0
    assert data_time(replace(ref, time_range=(0.0, 9.0), time_unit="frames")) == 5.0
    assert data_time(replace(ref, time_range=(1.0, 9.0))) == 9.0


def test_gaps_group_the_uncovered_frames_with_an_example_each():
    rng = np.random.default_rng(2)
    covered = rng.normal(size=(50, 8))
    a, b = rng.normal(size=(30, 8)) + 10.0, rng.normal(size=(20, 8)) - 10.0
    embeddings = np.vstack([covered, a, b]).astype(np.float32)
    mask = np.arange(100) < 50
    refs = [FrameRef(f"f{i}", "cam", float(i), "t", 0, i, None) for i in range(100)]
    gaps = gaps_of(embeddings, mask, refs)
    assert gaps.covered == 0.5 and gaps.frames == 100
    assert [g.frames for g in gaps.groups] == [30, 20]
    assert 50 <= gaps.groups[0].example_index < 80 and gaps.groups[1].example_index >= 80
    assert gaps.groups[0].example_frame_id == f"f{gaps.groups[0].example_index}"
    assert gaps.text().startswith("50 of 100 frames lie outside the training set, in 2 group(s)")
    assert Gaps.from_dict(gaps.to_dict()) == gaps
