"""monitor.loop.coverage: the covered share on known geometry, the quantile's meaning over many
seeds, groups of uncovered frames, and the stored training reference."""

from __future__ import annotations

import time

import numpy as np
import pytest

from monitor.config import config_from_dict
from monitor.errors import ConfigError
from monitor.loop.coverage import (
    TrainingCoverage,
    load_training,
    nearest_distances,
    training_store,
    uncovered_groups,
)
from monitor.pipeline.features import FEATURE_NAMES
from monitor.reference.store import Reference


def ball(rng: np.random.Generator, n: int, dim: int, radius: float = 1.0) -> np.ndarray:
    """``n`` points uniform in a ``dim``-ball of ``radius``."""
    x = rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return (x * radius * rng.uniform(size=(n, 1)) ** (1 / dim)).astype(np.float32)


def test_nearest_distances_equal_the_brute_force_ones_across_chunks():
    rng = np.random.default_rng(1)
    points, frames = rng.normal(size=(300, 16)), rng.normal(size=(700, 16))  # 700 > one chunk
    full = np.linalg.norm(frames[:, None] - points[None], axis=2)
    np.testing.assert_allclose(nearest_distances(frames, points), full.min(1), rtol=1e-4)
    own = np.linalg.norm(points[:, None] - points[None], axis=2) + np.diag(np.full(300, np.inf))
    loo = nearest_distances(points, points, exclude_self=True)
    np.testing.assert_allclose(loo, own.min(1), rtol=1e-4)


def test_frames_inside_the_training_ball_are_covered_and_far_ones_are_not():
    rng = np.random.default_rng(2)
    cov = TrainingCoverage.fit(ball(rng, 2000, 3))
    inside = ball(rng, 500, 3, radius=0.8)
    far = ball(rng, 200, 3) + np.array([5.0, 0, 0], np.float32)
    assert cov.share(inside) > 0.9
    assert cov.share(far) == 0.0
    assert cov.share(np.vstack([inside, far])) == pytest.approx((cov.covered(inside).sum()) / 700)
    assert np.isnan(cov.share(np.zeros((0, 3), np.float32)))
    d = cov.distances(far)
    assert d.dtype == np.float32 and np.all(d > 2.9)  # the balls are 3 apart


@pytest.mark.parametrize("scaling", ["none", "standard"])
def test_held_out_draws_are_covered_at_the_quantile_over_many_seeds(scaling):
    """The radius is the training set's leave-one-out NN-distance quantile: frames drawn like the
    training set's are covered at about that rate (sampling error ~1% per seed here)."""
    shares = []
    for seed in range(40):
        rng = np.random.default_rng([3, seed])
        scale = np.geomspace(0.1, 10, 8)  # unequal spreads: standardising must keep the rate
        cov = TrainingCoverage.fit(
            rng.normal(size=(800, 8)) * scale, quantile=0.9, seed=seed, scaling=scaling
        )
        shares.append(cov.share(rng.normal(size=(800, 8)) * scale))
    assert np.mean(shares) == pytest.approx(0.9, abs=0.01)
    assert 0.84 < min(shares) and max(shares) < 0.96


def test_a_large_training_set_is_subsampled_with_its_seed():
    x = np.random.default_rng(4).normal(size=(3000, 8)).astype(np.float32)
    a = TrainingCoverage.fit(x, max_points=1000, seed=7)
    assert a.points.shape == (1000, 8)
    assert a.radius == TrainingCoverage.fit(x, max_points=1000, seed=7).radius
    assert not np.array_equal(a.points, TrainingCoverage.fit(x, max_points=1000, seed=8).points)


def test_bad_arguments_are_refused():
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="quantile"):
        TrainingCoverage.fit(x, quantile=1.0)
    with pytest.raises(ValueError, match="scaling"):
        TrainingCoverage.fit(x, scaling="pca")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2"):
        TrainingCoverage.fit(x[:1])


def test_distances_of_a_window_against_5000_training_frames_take_a_few_ms():
    rng = np.random.default_rng(5)
    cov = TrainingCoverage.fit(rng.normal(size=(5000, 128)), max_points=5000)
    window = rng.normal(size=(100, 128)).astype(np.float32)
    cov.distances(window)
    best = min(_timed(cov.distances, window) for _ in range(5))
    assert best < 0.05  # ~3 ms on one core; generous for a shared machine


def _timed(f, x) -> float:
    t0 = time.perf_counter()
    f(x)
    return time.perf_counter() - t0


def test_two_separated_uncovered_clusters_are_two_groups_with_examples_near_their_centres():
    rng = np.random.default_rng(6)
    near = rng.normal(size=(100, 16))
    a, b = rng.normal(size=(40, 16)) + 12, rng.normal(size=(25, 16)) - 12
    frames = np.vstack([near, a, b])
    covered = np.r_[np.ones(100, bool), np.zeros(65, bool)]
    groups = uncovered_groups(frames, covered, max_groups=3, seed=0)
    assert [g.size for g in groups] == [40, 25]  # largest first
    assert set(groups[0].indices.tolist()) == set(range(100, 140))
    assert set(groups[1].indices.tolist()) == set(range(140, 165))
    for g in groups:
        assert g.example in g.indices
        centre = frames[g.indices].mean(0)
        nearest = g.indices[np.linalg.norm(frames[g.indices] - centre, axis=1).argmin()]
        assert g.example == nearest
    assert [g.example for g in uncovered_groups(frames, covered, seed=0)] == [
        g.example for g in groups
    ]  # seeded: the same again


def test_one_blob_of_uncovered_frames_is_one_group_and_none_is_no_group():
    rng = np.random.default_rng(7)
    frames = rng.normal(size=(80, 16))
    groups = uncovered_groups(frames, np.zeros(80, bool))
    assert len(groups) == 1 and groups[0].size == 80
    assert uncovered_groups(frames, np.ones(80, bool)) == []
    single = uncovered_groups(frames, np.r_[np.zeros(1, bool), np.ones(79, bool)])
    assert [(g.size, g.example) for g in single] == [(1, 0)]
    with pytest.raises(ValueError, match="one bool per frame"):
        uncovered_groups(frames, np.zeros(3, bool))


def test_the_training_reference_is_versioned_in_its_own_store(tmp_path):
    assert load_training(config_from_dict({})) is None
    with pytest.raises(ConfigError, match="training.path"):
        training_store(config_from_dict({}))
    config = config_from_dict({"training": {"path": str(tmp_path / "training")}})
    rng = np.random.default_rng(8)
    for _ in range(2):
        ref = Reference(
            features=rng.normal(size=(20, len(FEATURE_NAMES))).astype(np.float32),
            feature_names=FEATURE_NAMES,
            embeddings=rng.normal(size=(20, 8)).astype(np.float32),
            extra={"role": "training"},
        )
        training_store(config).add(ref)
    latest = load_training(config)
    assert latest is not None and latest.version == 2 and latest.extra["role"] == "training"
    assert training_store(config).versions(None) == [1, 2]


def test_statistics_beside_the_embedding_each_carry_their_share():
    """A frame whose embedding is like the training set's but whose image statistics are not (rain
    on a busy scene) is not covered; the held-out share stays near the quantile; the statistics
    are needed at every call once fitted with them."""
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(3000, 16)).astype(np.float32)
    stats = rng.normal(size=(3000, 4)) * [1.0, 100.0, 0.01, 0.0]  # scales apart, one constant
    cov = TrainingCoverage.fit(emb[:2000], 0.9, statistics=stats[:2000])
    held = cov.covered(emb[2000:], stats[2000:]).mean()
    assert 0.84 < held < 0.96
    moved = stats[2000:].copy()
    moved[:, 2] += 0.08  # 8 sd of a statistic with a tiny raw scale: its share still counts
    assert cov.covered(emb[2000:], moved).mean() < 0.1
    assert cov.covered(emb[2000:], stats[2000:] + [0, 0, 0, 5.0]).mean() == pytest.approx(held)
    with pytest.raises(ValueError, match="fitted with image statistics"):
        cov.covered(emb[2000:])
