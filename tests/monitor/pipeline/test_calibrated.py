"""The calibrated default voters on correlated, living streams: quiet on a camera's own slow
wandering, loud on a real shift; contexts (day vs infrared night); a bag of frames; the threshold
from the false-alarm target; and what a reference can support."""

import dataclasses

import numpy as np
import pytest

from monitor.config import SourceConfig, config_from_dict
from monitor.pipeline.engine import Engine
from monitor.pipeline.features import FEATURE_NAMES
from monitor.reference.fit import support, window_alpha
from monitor.reference.store import Reference

N = 100  # frames per window
SAT, COLOUR, NOISE = (
    FEATURE_NAMES.index(n) for n in ("saturation_mean", "colourfulness", "noise_sigma")
)


def config(**tests):
    return config_from_dict(
        {
            "embedding": {"enabled": False},
            "window": {"size": N, "evaluate_every": 25},
            "tests": tests,
        }
    )


def living(rng, frames, phi=0.97, night=False):
    """A camera's statistics: every feature wanders slowly (AR(1), correlation length ~30 frames)
    around its level; at night the frames have no colour (infrared)."""
    x = np.empty((frames, len(FEATURE_NAMES)))
    x[0] = rng.normal(size=len(FEATURE_NAMES))
    for t in range(1, frames):
        x[t] = phi * x[t - 1] + rng.normal(size=len(FEATURE_NAMES)) * np.sqrt(1 - phi**2)
    x = 10 + 2 * x
    x[:, SAT] = 0.0 if night else 0.35 + 0.02 * x[:, SAT] / 10
    x[:, COLOUR] = 0.0 if night else 30 + x[:, COLOUR]
    if night:
        x[:, NOISE] += 6.0  # infrared: higher gain
    return x.astype(np.float32)


def reference(rows, fps=5.0, contexts=None, ordered=True):
    times = np.arange(len(rows)) / fps if ordered else None
    return Reference(
        features=rows,
        feature_names=FEATURE_NAMES,
        times=times,
        time_unit="s",
        time_source="event time" if ordered else "none",
        contexts=contexts,
    )


def outcome(judged, name):
    return next(t for t in judged.tests if t.name == name)


def test_the_calibrated_tests_vote_by_default_and_the_frame_by_frame_ones_do_not():
    cfg = config_from_dict({})
    assert cfg.voting_tests == ("shift", "emb_shift", "view")
    assert {"ks", "mmd"} <= set(cfg.active_tests) - set(cfg.voting_tests)


def test_quiet_on_a_camera_that_only_wanders_where_ks_fires_on_most_windows():
    fired = {"shift": 0, "ks": 0}
    windows = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        engine = Engine(config(), FEATURE_NAMES)
        prepared = engine.prepare(reference(living(rng, 3000)))
        live = living(rng, 2000)
        for start in range(0, 2000, N):
            judged = engine.run_tests(prepared, live[start : start + N])
            fired["shift"] += judged.drifted
            fired["ks"] += outcome(judged, "ks").drifted
            windows += 1
    assert fired["shift"] == 0, fired  # at ~4e-6 per window, none of 240
    assert fired["ks"] > windows / 2, (
        fired
    )  # frames taken as independent draws: most healthy windows fire


def test_a_shift_of_a_few_span_spreads_drifts_and_says_on_what():
    rng = np.random.default_rng(3)
    engine = Engine(config(), FEATURE_NAMES)
    prepared = engine.prepare(reference(living(rng, 3000)))
    window = living(rng, N)
    window[:, NOISE] += 12.0  # six frame standard deviations: a noisy sensor
    judged = engine.run_tests(prepared, window)
    shift = outcome(judged, "shift")
    assert judged.drifted and shift.drifted_features == ["noise_sigma"]
    assert (
        shift.threshold == pytest.approx(prepared.z_thresholds["statistics"])
        and shift.statistic > shift.threshold
    )
    assert "context 'default'" in shift.p_value_note and "30 days at 5 fps" in shift.p_value_note


def test_nights_in_the_reference_keep_a_camera_quiet_at_night_and_a_day_only_reference_does_not():
    rng = np.random.default_rng(4)
    day, night = living(rng, 1200), living(rng, 1200, night=True)
    rows = np.vstack([day, night])
    engine = Engine(config(), FEATURE_NAMES)
    with_nights = engine.prepare(
        reference(rows, contexts=np.array(["default"] * 1200 + ["ir"] * 1200))
    )
    days_only = engine.prepare(reference(day, contexts=np.array(["default"] * 1200)))
    tonight = living(rng, N, night=True)
    judged = engine.run_tests(with_nights, tonight)
    assert judged.context == "ir" and not judged.drifted
    assert "context 'ir'" in outcome(judged, "shift").p_value_note
    assert judged.unreferenced == ()
    judged = engine.run_tests(days_only, tonight)
    assert judged.context == "ir" and judged.drifted  # a day camera gone dark and grey is drifted
    assert judged.unreferenced == ("ir",)  # and the daemon counts it (metrics)
    assert "too few frames of context 'ir'" in outcome(judged, "shift").p_value_note
    assert not engine.run_tests(
        with_nights, living(rng, N)
    ).drifted  # and a day window is still fine


def test_a_window_spanning_nightfall_measures_each_context_from_its_own_frames():
    """Windows that hold the last day frames and the first infrared ones, over many seeds: judged
    against the majority context alone, the minority frames read as a shift on almost every one;
    each context's frames measured from its own reference frames, none fires. A day camera whose
    night frames are a fault (no infrared in its reference) still fires."""
    engine = Engine(config(), FEATURE_NAMES)
    fired = {"mixed": 0, "majority only": 0, "fault": 0}
    seeds = range(20)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        day, night = living(rng, 1200), living(rng, 1200, night=True)
        labels = np.array(["default"] * 1200 + ["ir"] * 1200)
        prepared = engine.prepare(reference(np.vstack([day, night]), contexts=labels))
        split = int(rng.integers(N // 8, N // 2))  # the window's minority: 12 to 49 frames
        window = np.vstack([living(rng, N - split), living(rng, split, night=True)])
        contexts = ["default"] * (N - split) + ["ir"] * split
        judged = engine.run_tests(prepared, window, contexts=contexts)
        fired["mixed"] += judged.drifted
        fired["majority only"] += engine.run_tests(
            prepared, window, contexts=["default"] * N
        ).drifted
        days_only = engine.prepare(reference(day, contexts=labels[:1200]))
        fired["fault"] += engine.run_tests(days_only, window, contexts=contexts).drifted
    assert fired["mixed"] == 0 and fired["majority only"] >= 18 and fired["fault"] == len(seeds), (
        fired
    )
    note = outcome(judged, "shift").p_value_note
    assert f"context 'default' ({N - split} frames)" in note
    assert f"context 'ir' ({split} frames)" in note


def test_a_bag_of_frames_is_judged_as_if_a_window_moved_like_one_frame():
    rng = np.random.default_rng(5)
    rows = living(rng, 2000)
    engine = Engine(config(), FEATURE_NAMES)
    ordered = engine.prepare(reference(rows)).null("statistics", "default", N)[0]
    bag = engine.prepare(reference(rows, ordered=False)).null("statistics", "default", N)[0]
    assert bag.effective_spans == 0 and np.all(bag.scale >= ordered.scale * 0.99)
    # the single-frame bound (brightness also has its 0.25-grey-level resolution as a floor)
    bound = rows.std(axis=0) * np.sqrt(1 + 1 / 2000)
    np.testing.assert_allclose(bag.scale[2], bound[2], rtol=1e-3)
    assert np.all(bag.scale >= bound * (1 - 1e-6))


def test_the_threshold_follows_the_target_and_the_cameras_frame_rate():
    rng = np.random.default_rng(6)
    rows = living(rng, 1000)
    z = {}
    for days, fps in ((30, 5.0), (30, 25.0), (1, 5.0)):
        prepared = Engine(config(false_alarm_days=days), FEATURE_NAMES).prepare(
            reference(rows, fps=fps)
        )
        assert prepared.fps == pytest.approx(fps)
        z[days, fps] = prepared.z_thresholds["statistics"]
    assert z[1, 5.0] < z[30, 5.0] < z[30, 25.0]  # a laxer target, or fewer evaluations a day: lower
    # one false alarm per 30 days of evaluations every 25 frames at 5 fps, for the windows as a
    # whole
    assert window_alpha(config(), 5.0) == pytest.approx(25 / (30 * 86_400 * 5.0))
    frames = dataclasses.replace(reference(rows), times=np.arange(1000.0), time_unit="frames")
    assert Engine(config(assumed_fps=12.0), FEATURE_NAMES).prepare(frames).fps == 12.0


def test_support_says_what_a_reference_can_support_and_names_the_fix():
    rng = np.random.default_rng(7)
    mapped = dataclasses.replace(
        reference(living(rng, 20_000)), layouts=seen(rng, scene(rng), 20_000)
    )
    long = support(mapped, config(), FEATURE_NAMES)
    assert (
        long.warnings == () and long.effective_spans > 50 and long.span_s == pytest.approx(3999.8)
    )
    short = support(reference(living(rng, 600)), config(), FEATURE_NAMES)
    assert short.effective_spans < 50
    assert any(
        "independent stretches" in w and "would let it speak for itself" in w
        for w in short.warnings
    )
    bag = support(reference(living(rng, 300), ordered=False), config(), FEATURE_NAMES)
    assert not bag.ordered and any("no order" in w for w in bag.warnings)
    mixed = support(
        reference(living(rng, 400), contexts=np.array(["default"] * 350 + ["ir"] * 50)),
        config(),
        FEATURE_NAMES,
    )
    assert set(mixed.contexts) == {"default"} and any(
        "context 'ir' has too few frames" in w for w in mixed.warnings
    )
    older = reference(living(rng, 600))
    older = dataclasses.replace(  # built before the last statistic existed
        older, features=older.features[:, :-1], feature_names=FEATURE_NAMES[:-1]
    )
    assert any(
        f"before the statistic(s) ['{FEATURE_NAMES[-1]}'] existed" in w
        for w in support(older, config(), FEATURE_NAMES).warnings
    )


def test_an_analysis_rate_fits_the_span_null_on_the_reference_thinned_the_same_way():
    # a 5 fps camera analysed at 1 fps: its windows of N frames span 5x the time of N consecutive
    # reference frames, and wander less; the null is fitted on every fifth reference frame
    rng = np.random.default_rng(6)
    rows = living(rng, 6000)
    every_frame = Engine(config(), FEATURE_NAMES).prepare(reference(rows))
    at_1fps = dataclasses.replace(config(), source=SourceConfig(max_fps_per_stream=1.0))
    thinned = Engine(at_1fps, FEATURE_NAMES).prepare(reference(rows))
    assert thinned.step == 5 and thinned.analysed_fps == pytest.approx(1.0)
    # the same as a reference recorded at 1 fps (up to its scale floor, from the whole reference)
    recorded = Engine(config(), FEATURE_NAMES).prepare(reference(rows[::5], fps=1.0))
    null = thinned.null("statistics", "default", N)[0]
    assert null.n_ref == 1200
    np.testing.assert_allclose(
        null.scale, recorded.null("statistics", "default", N)[0].scale, rtol=0.01
    )
    # a fifth as many evaluations a day: a lower threshold for the same false-alarm target
    assert thinned.z_thresholds["statistics"] < every_frame.z_thresholds["statistics"]

    # live windows thinned by the rate: |z| spreads nearly as the null's unit normal with the
    # thinned null (a little less: it leans to the conservative bound), far less with the null of
    # consecutive frames (quiet, but blind to shifts the thinned one sees)
    live = living(rng, 60_000)[::5]
    windows = live[: len(live) // N * N].reshape(-1, N, live.shape[1])
    varying = np.flatnonzero(null.frame_sd > 1e-6)
    spread = {
        name: float(np.std([p.null("statistics", "default", N)[0].z(w)[varying] for w in windows]))
        for name, p in (("thinned", thinned), ("every frame", every_frame))
    }
    assert 1.3 * spread["every frame"] < spread["thinned"] < 1.1, spread  # 0.80 and 0.52 here


def scene(rng):
    """A fixed camera's edges on the 32x18 layout grid: kerbs and lane lines across, poles and
    facades up, and some texture."""
    edges = rng.uniform(0, 15, size=(18, 32))
    edges[[9, 13, 16], :] += 60
    edges[:, rng.choice(32, 5, replace=False)] += 50
    return edges


def seen(rng, edges, frames, turned=0):
    """What the camera's frames show of ``edges``: at a light level that wanders slowly, with a
    car's edges crossing the view every 40 frames, and sensor noise; turned ``turned`` cells."""
    light = 1.0 + 0.3 * living(rng, frames)[:, 0] / 10 - 0.3
    maps = light[:, None, None] * np.roll(edges, turned, axis=1)[None]
    for t in range(frames):
        x = t % 40 * 32 // 40
        maps[t, 10:14, x : x + 4] += 70
    maps += rng.normal(0, 3, size=maps.shape)
    return np.clip(maps, 0, 255).astype(np.uint8).reshape(frames, -1)


def test_a_turned_camera_drifts_the_view_where_healthy_windows_never_do():
    """The `view` test judges how well each frame's edges line up with where the reference's are,
    in units of how far the reference's own windows wander: a light level that wanders and cars
    crossing leave it quiet; the same scene two cells (6% of the width) to the side drifts it."""
    cfg = config()
    engine = Engine(cfg, FEATURE_NAMES)
    fired = windows = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        edges = scene(rng)
        ref = dataclasses.replace(reference(living(rng, 3000)), layouts=seen(rng, edges, 3000))
        prepared = engine.prepare(ref)
        for _ in range(10):
            judged = engine.run_tests(prepared, living(rng, N), layouts=seen(rng, edges, N))
            fired += outcome(judged, "view").drifted
            windows += 1
        turned = engine.run_tests(prepared, living(rng, N), layouts=seen(rng, edges, N, turned=2))
        view = outcome(turned, "view")
        assert turned.drifted and view.drifted_features == ["edge_layout"], view
        assert view.statistic > view.threshold == prepared.z_thresholds["layouts"]
    assert fired == 0, f"{fired} of {windows} healthy windows"


def test_a_reference_without_edge_layout_maps_is_judged_without_the_view():
    """A reference built before the maps existed: the `view` test does not run on it, and the
    false-alarm target is shared by the tests that do."""
    rng = np.random.default_rng(7)
    rows = living(rng, 3000)
    engine = Engine(config(), FEATURE_NAMES)
    old = engine.prepare(reference(rows))
    new = engine.prepare(dataclasses.replace(reference(rows), layouts=seen(rng, scene(rng), 3000)))
    judged = engine.run_tests(old, living(rng, N), layouts=seen(rng, scene(rng), N))
    assert "view" not in {t.name for t in judged.tests}
    assert any(
        "edge-layout maps" in w for w in support(reference(rows), config(), FEATURE_NAMES).warnings
    )
    assert old.z_thresholds["statistics"] < new.z_thresholds["statistics"]  # one test, not two
    without = Engine(config(enabled=["shift", "ks"], vote=["shift"]), FEATURE_NAMES)
    assert (
        old.z_thresholds["statistics"]
        == without.prepare(reference(rows)).z_thresholds["statistics"]
    )
