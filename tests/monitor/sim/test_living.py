"""monitor.sim.fleet's living camera (the default): random access, correlation in time, the
day/night cycle and infrared, rain showers, objects crossing the view."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest

from monitor.pipeline.decode import Decoded
from monitor.pipeline.features import FEATURE_NAMES, compute_features
from monitor.sim.fleet import SHIFTS, Camera, Living, make_fleet
from monitor.sim.world import TIMES_OF_DAY, World

W, H = 320, 180
FPS = 5


def features(frame: np.ndarray) -> dict[str, float]:
    """The daemon's image statistics of a frame, by name."""
    values = compute_features(Decoded(frame, frame.shape[1], frame.shape[0], 1, "png"))
    return dict(zip(FEATURE_NAMES, (float(v) for v in values), strict=True))


def is_grey(frame: np.ndarray) -> bool:
    return bool((frame[..., 0] == frame[..., 1]).all() and (frame[..., 1] == frame[..., 2]).all())


def corr(a, b) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# --- determinism and random access ------------------------------------------------------------


def test_frames_and_contexts_are_pure_functions_of_seed_and_t():
    a = Camera("a", "chelsea", width=W, height=H, seed=42, dynamics="living")
    b = Camera("b", "chelsea", width=W, height=H, seed=42, dynamics="living")
    ts = [0, 1, 1_700, 17, 1_000_000]
    fa = {t: a.frame(t) for t in ts}
    fb = {t: b.frame(t) for t in reversed(ts)}  # frame 1,000,000 first, directly
    for t in ts:
        assert fa[t].tobytes() == fb[t].tobytes()
        assert a.context(t) == b.context(t)
    assert a.frame(1_000_000).tobytes() == fa[1_000_000].tobytes()  # asked again, after others
    assert (
        Camera("c", "chelsea", width=W, height=H, seed=43, dynamics="living").frame(17).tobytes()
        != fa[17].tobytes()
    )
    # A shift on top of the living world comes off without a trace.
    a.set_shift("lens_covered", 3)
    assert a.frame(17).tobytes() != fa[17].tobytes()
    a.set_shift(None)
    assert a.frame(17).tobytes() == fa[17].tobytes()


def test_fps_maps_frames_to_seconds():
    slow = Camera("c", "coffee", width=64, height=48, seed=5, fps=5, dynamics="living")
    fast = Camera("c", "coffee", width=64, height=48, seed=5, fps=25, dynamics="living")
    # 300 s (21:00, night, infrared) and 2.5 s (day): the same world at the same second.
    for seconds in (2.5, 300.0, 601.0):
        assert slow.context(round(seconds * 5)) == fast.context(round(seconds * 25))
    assert slow.context(1500).time_of_day == "night" and fast.context(1500).time_of_day == "day"


def test_living_is_the_default_and_options_are_checked():
    cam = Camera("c", "coffee", width=64, height=48, seed=1)
    assert cam.dynamics == "living" and cam.living == Living() and cam.fps == 5
    assert Camera("c", "coffee", width=64, height=48, seed=1, dynamics="iid").dynamics == "iid"
    for bad in ({"dynamics": "random"}, {"fps": 0}, {"fps": float("nan")}):
        with pytest.raises(ValueError):
            Camera("c", "coffee", width=64, height=48, seed=1, **bad)
    for bad in (
        {"day_s": -1},
        {"start_hour": 24},
        {"traffic": -0.1},
        {"rain_per_hour": float("inf")},
        {"rain_s": 0},
        {"clouds": -1},
    ):
        with pytest.raises(ValueError):
            Living(**bad)
    with pytest.raises(ValueError):
        cam.context(-1)


def test_a_fleet_shares_one_clock_but_not_its_weather():
    fleet = make_fleet(4, seed=3, width=64, height=48, dynamics=Living(rain_per_hour=6))
    ts = range(0, 2 * 600 * FPS, 50)
    days = {tuple(c.context(t).time_of_day for t in ts) for c in fleet}
    assert len(days) == 1
    rains = {tuple(c.context(t).rain for t in ts) for c in fleet}
    assert len(rains) > 1
    assert all(c.dynamics == "living" for c in fleet + make_fleet(2, seed=3))
    assert all(c.dynamics == "iid" for c in make_fleet(2, seed=3, dynamics="iid"))


# --- correlation in time ----------------------------------------------------------------------


@pytest.mark.parametrize("scene,seed", [("coffee", 1), ("rocket", 2)])
def test_consecutive_frames_are_correlated_and_frames_minutes_apart_much_less(scene, seed):
    # The clock is stopped (day_s=0, always 9:00) so what is left is clouds, crossings and
    # showers. With the day cycle, frames half a day apart are anti-correlated instead.
    cam = Camera("c", scene, width=W, height=H, seed=seed, dynamics=Living(day_s=0))
    starts = np.random.default_rng(seed).integers(0, 10 * 3600 * FPS, 120)
    lag5min = 5 * 60 * FPS
    now, next_, later = ([features(cam.frame(int(t) + d)) for t in starts] for d in (0, 1, lag5min))
    for name in ("brightness_mean", "brightness_std", "colourfulness", "edge_density", "red_share"):
        x0, x1, x5 = (np.array([f[name] for f in fs]) for fs in (now, next_, later))
        assert corr(x0, x1) > 0.95, (name, corr(x0, x1))
        assert abs(corr(x0, x5)) < 0.4, (name, corr(x0, x5))


# --- day, night and infrared ------------------------------------------------------------------


def collapse(labels):
    return [x for i, x in enumerate(labels) if i == 0 or labels[i - 1] != x]


def test_a_day_passes_through_dusk_night_and_dawn_every_day_s():
    cam = Camera(
        "c", "coffee", width=64, height=48, seed=4, dynamics=Living()
    )  # day_s=600 from 9:00
    labels = [cam.context(t).time_of_day for t in range(0, 2 * 600 * FPS, 10)]
    assert collapse(labels) == ["day", "dusk", "night", "dawn"] * 2 + ["day"]
    assert set(labels) == set(TIMES_OF_DAY)
    # Sun at 06:00/18:00: full day from 06:46 to 17:14, full night from 19:10 to 04:50.
    assert labels.count("day") / len(labels) == pytest.approx(10.47 / 24, abs=0.01)
    assert labels.count("night") / len(labels) == pytest.approx(9.68 / 24, abs=0.01)
    # day_s=0 stops the clock: always day by default, always night from midnight.
    assert {
        Camera("c", "coffee", width=64, height=48, seed=4, dynamics=Living(day_s=0))
        .context(t)
        .time_of_day
        for t in (0, 10**7)
    } == {"day"}
    night = Camera(
        "c", "coffee", width=64, height=48, seed=4, dynamics=Living(day_s=0, start_hour=0)
    )
    assert {(night.context(t).time_of_day, night.context(t).ir) for t in (0, 10**7)} == {
        ("night", True)
    }


def test_ir_switches_once_each_way_per_day_without_flicker():
    cam = Camera("c", "coffee", width=64, height=48, seed=9, dynamics=Living(clouds=0.2))
    contexts = [cam.context(t) for t in range(0, 3 * 600 * FPS, FPS)]  # every second, three days
    ir = [c.ir for c in contexts]
    assert sum(a != b for a, b in pairwise(ir)) == 6
    on = {c.time_of_day for c in contexts if c.ir}
    assert on == {"dusk", "night", "dawn"}


def test_the_ir_hysteresis_holds_through_a_slow_cloudy_dusk():
    # A real-length day: dusk takes two hours while clouds move the light over seconds to
    # minutes. A single threshold would switch back and forth; the band switches once.
    options = Living(day_s=86400, start_hour=9, clouds=0.15)
    world = World(seed=5, options=options)  # a seed whose clouds cross the middle 9 times
    seconds = np.arange((16.5 - 9) * 3600, (20.5 - 9) * 3600, 2.0)
    light = world.meter(seconds)
    middle = (0.12 + 0.25) / 2 * world.ir_factor
    assert np.sum(np.diff(light < middle) != 0) > 2
    ir = np.array([world.ir(s) for s in seconds[::5]])
    assert np.sum(ir[1:] != ir[:-1]) == 1 and ir[-1]


def test_night_frames_are_darker_and_ir_frames_grey_and_noisier():
    cam = Camera("c", "astronaut", width=W, height=H, seed=6, dynamics=Living(rain_per_hour=0))
    rows = {}
    for t in range(0, 600 * FPS, 41):  # one day
        frame, ctx = cam.frame(t), cam.context(t)
        assert is_grey(frame) == ctx.ir, t  # the context says what the frame shows
        rows.setdefault((ctx.time_of_day, ctx.ir), []).append(features(frame))

    def mean(key, name):
        return np.mean([f[name] for f in rows[key]])

    day, ir_night = ("day", False), ("night", True)
    assert mean(ir_night, "brightness_mean") < 0.85 * mean(day, "brightness_mean")
    assert mean(ir_night, "noise_sigma") > 1.5 * mean(day, "noise_sigma")
    assert mean(ir_night, "colourfulness") < 1 and mean(day, "colourfulness") > 20
    # Without infrared, night is dark colour.
    dark = Camera(
        "c", "astronaut", width=W, height=H, seed=6, dynamics=Living(rain_per_hour=0, ir=False)
    )
    for t in range(1400, 1600, 40):  # around 23:00
        assert dark.context(t).to_dict() == {"time_of_day": "night", "ir": False, "rain": False}
        frame = dark.frame(t)
        assert not is_grey(frame)
        assert features(frame)["brightness_mean"] < 0.35 * mean(day, "brightness_mean")


def test_shifts_apply_at_night_too():
    cam = Camera("c", "chelsea", width=W, height=H, seed=6, dynamics="living")
    t = 1500  # 21:00, infrared
    assert cam.context(t).ir
    before = cam.frame(t)
    for name in sorted(set(SHIFTS) - {"saturation"}):  # desaturating a grey frame changes nothing
        cam.set_shift(name, 3)
        assert np.abs(cam.frame(t).astype(int) - before).mean() > 0.5, name
    cam.set_shift(None)
    assert cam.frame(t).tobytes() == before.tobytes()


# --- rain -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_showers_start_at_the_configured_rate(seed):
    rate, mean_s, hours = 2.0, 120.0, 100
    cam = Camera(
        "c",
        "coffee",
        width=32,
        height=32,
        seed=seed,
        dynamics=Living(day_s=0, rain_per_hour=rate, rain_s=mean_s, ir=False),
    )
    wet = np.array([cam.context(t).rain for t in range(0, hours * 3600 * FPS, 5 * FPS)])
    # Showers start as a Poisson process and overlapping ones merge, so wet spells start at
    # rate * exp(-rate * mean) and it rains a share 1 - exp(-rate * mean) of the time.
    load = rate * mean_s / 3600
    spells = np.sum(wet[1:] & ~wet[:-1])
    expected = rate * hours * np.exp(-load)
    assert abs(spells - expected) < 4 * np.sqrt(expected), (spells, expected)
    assert wet.mean() == pytest.approx(1 - np.exp(-load), rel=0.3)


@pytest.mark.parametrize("scene,seed", [("coffee", 1), ("rocket", 2)])
def test_rain_darkens_flattens_and_blurs(scene, seed):
    cam = Camera(
        "c",
        scene,
        width=W,
        height=H,
        seed=seed,
        dynamics=Living(day_s=0, rain_per_hour=10, rain_s=300, ir=False),
    )
    rows = {True: [], False: []}
    for t in np.random.default_rng(seed).integers(0, 20 * 3600 * FPS, 120):
        rows[cam.context(int(t)).rain].append(features(cam.frame(int(t))))
    assert min(len(rows[True]), len(rows[False])) > 30

    def mean(wet, name):
        return np.mean([f[name] for f in rows[wet]])

    assert mean(True, "brightness_mean") < 0.97 * mean(False, "brightness_mean")
    assert mean(True, "contrast_rms") < 0.9 * mean(False, "contrast_rms")
    assert mean(True, "sharpness_laplacian_var") < 0.8 * mean(False, "sharpness_laplacian_var")


# --- objects ----------------------------------------------------------------------------------


def test_objects_in_view_come_and_go_at_the_configured_traffic():
    day = World(seed=7, options=Living(day_s=0, traffic=3))
    counts = np.array([len(day.crossings(s)) for s in np.arange(0.0, 36000.0, 7.0)])
    assert counts.mean() == pytest.approx(3, rel=0.1)
    assert counts.min() == 0 and counts.max() >= 7
    night = World(seed=7, options=Living(day_s=0, start_hour=0, traffic=3))
    assert np.mean(
        [len(night.crossings(s)) for s in np.arange(0.0, 36000.0, 7.0)]
    ) == pytest.approx(0.75, rel=0.15)
    crossings = {c for s in np.arange(0.0, 3600.0, 1.0) for c in day.crossings(s)}
    assert {c.kind for c in crossings} == {"car", "person"}
    assert all(3 <= c.duration <= 30 for c in crossings)
    assert len({c.colour for c in crossings}) > 0.9 * len(crossings)


def test_an_object_moves_steadily_across_the_frames():
    options = Living(day_s=0, rain_per_hour=0, traffic=3)
    world = World(seed=7, options=options)
    busy = Camera("c", "coffee", width=W, height=H, seed=7, dynamics=options)
    # Same seed, same light and noise, nothing crossing: the difference is the objects.
    empty = Camera(
        "c",
        "coffee",
        width=W,
        height=H,
        seed=7,
        dynamics=Living(day_s=0, rain_per_hour=0, traffic=0),
    )
    s = next(
        s
        for s in np.arange(0.0, 3600.0, 1 / FPS)
        if len(world.crossings(s)) == 1 and 0.3 < world.crossings(s)[0].progress(s) < 0.5
    )
    crossing = world.crossings(s)[0]
    t0 = round(s * FPS)
    centres = []
    for t in range(t0, t0 + 2 * FPS):
        moved = np.abs(busy.frame(t).astype(int) - empty.frame(t)).max(axis=2) > 0
        assert 0.0005 < moved.mean() < 0.1
        centres.append(np.nonzero(moved)[1].mean())
    steps = np.diff(centres) * crossing.direction
    expected = (W + 2 * 0.5 * crossing.size * H * (2.4 if crossing.kind == "car" else 0.32)) / (
        crossing.duration * FPS
    )
    assert np.all(steps > 0) and np.mean(steps) == pytest.approx(expected, rel=0.25)
