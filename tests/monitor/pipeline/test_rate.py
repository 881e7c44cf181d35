"""The per-stream analysis rate: which frames are decoded, from their event times."""

import numpy as np
import pytest

from monitor.pipeline.rate import RateLimit


def analysed(rate: RateLimit, times, stream="cam") -> np.ndarray:
    return np.array([t for t in times if rate.admit(stream, t)])


def camera(fps: float, seconds: float, jitter: float = 0.0, seed: int = 0, start=1.79e9):
    """Event times of a camera at ``fps``, each off its schedule by up to ``jitter`` of a frame
    interval."""
    n = int(seconds * fps)
    noise = np.random.default_rng(seed).uniform(-jitter, jitter, n)
    return start + (np.arange(n) + noise) / fps


@pytest.mark.parametrize("fps", [5, 10, 15, 25, 30])
def test_a_camera_at_a_whole_multiple_of_the_rate_has_every_kth_frame_analysed(fps):
    times = camera(fps, 600, jitter=0.15, seed=fps)  # a sixth of a frame interval is the limit
    rate = RateLimit(1.0)
    kept = [i for i, t in enumerate(times) if rate.admit("cam", t)]
    assert kept == list(range(0, len(times), fps))


@pytest.mark.parametrize("fps", [1.5, 2.5, 7.0, 12.5])
def test_any_faster_camera_is_analysed_at_the_rate_on_frames_nearest_the_grid(fps):
    times = camera(fps, 600, jitter=0.1, seed=3)
    kept = analysed(RateLimit(1.0), times)
    assert 0.95 * 600 <= len(kept) <= 601  # never above the rate
    # each analysed frame is the camera's frame nearest its grid point: spacing within a frame
    spacing = np.diff(kept)
    assert spacing.min() >= 1.0 - 1.2 / fps and spacing.max() <= 1.0 + 1.2 / fps


def test_a_camera_at_or_below_the_rate_has_every_frame_analysed():
    for fps in (0.2, 0.5, 1.0):
        times = camera(fps, 600, jitter=0.2, seed=1)
        assert len(analysed(RateLimit(1.0), times)) == len(times), fps


def test_the_rate_is_per_stream_and_zero_analyses_every_frame():
    rate = RateLimit(2.0)
    times = camera(10, 60)
    interleaved = [(cam, t) for t in times for cam in ("a", "b", "c")]
    kept = [cam for cam, t in interleaved if rate.admit(cam, t)]
    assert kept.count("a") == kept.count("b") == kept.count("c") == 120
    assert len(rate) == 3
    assert len(analysed(RateLimit(0), times)) == len(times)


def test_after_a_pause_the_grid_starts_again_without_a_burst():
    times = np.concatenate([camera(5, 30), camera(5, 30, start=1.79e9 + 95.1)])
    kept = analysed(RateLimit(1.0), times)
    assert 1.79e9 + 95.1 in kept  # the first frame after the pause
    assert np.diff(kept).min() >= 1.0 - 0.1  # never two frames within a second


def test_a_clock_that_goes_back_restarts_the_grid_instead_of_skipping_the_stream():
    rate = RateLimit(1.0)
    assert len(analysed(rate, camera(5, 60))) == 60
    # the camera's clock is reset an hour back: analysed again at once, at the rate
    again = analysed(rate, camera(5, 60, start=1.79e9 - 3600))
    assert len(again) == 60 and again[0] == 1.79e9 - 3600


def test_a_frame_arriving_a_little_late_is_skipped():
    rate = RateLimit(1.0)
    assert rate.admit("cam", 100.0) and rate.admit("cam", 101.0)
    assert not rate.admit("cam", 100.5)  # out of order, within an interval of the last analysed


def test_frames_sharing_one_time_are_analysed_once():
    # a producer that sends no ts and publishes in bursts: its frames share a record timestamp
    rate = RateLimit(1.0)
    assert [rate.admit("cam", 100.0) for _ in range(5)] == [True, False, False, False, False]
    assert rate.admit("cam", 101.0)


def test_a_forgotten_stream_has_its_next_frame_analysed():
    rate = RateLimit(1.0)
    assert rate.admit("cam", 100.0) and not rate.admit("cam", 100.2)
    rate.forget("cam")
    assert rate.admit("cam", 100.4) and len(rate) == 1


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_a_negative_rate_is_refused(bad):
    with pytest.raises(ValueError, match="max_fps"):
        RateLimit(bad)
