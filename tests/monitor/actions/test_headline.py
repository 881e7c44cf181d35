"""The headline of a drift event: what moved (ranked on the calibrated scale), since when (the
change point in the stream's recent history), the likely cause —
on windows judged by the real engine."""

import numpy as np
import pytest

from monitor.actions import headline
from monitor.actions.headline import Change, Effect, change_point, estimate_change
from monitor.config import config_from_dict
from monitor.pipeline.engine import Engine, Evaluation
from monitor.pipeline.streams import FrameRef, History, WindowSnapshot
from monitor.reference.store import Reference

NAMES = ("brightness_mean", "noise_sigma", "sharpness_laplacian_var")
SIZE, STRIDE, FPS = 100, 25, 5.0


def stream(n, change_at, moves, seed=0):
    """``n`` frames of three independent statistics at 5 fps; from frame ``change_at`` on, each
    column moves by ``moves`` (in frame standard deviations)."""
    rows = np.random.default_rng(seed).normal(size=(n, len(NAMES)))
    rows[change_at:] += moves
    return rows.astype(np.float32), 1_000_000.0 + np.arange(n) / FPS


def prepared(seed=1):
    rng = np.random.default_rng(seed)
    ref = Reference(
        features=rng.normal(size=(3000, len(NAMES))).astype(np.float32),
        feature_names=NAMES,
        stream="cam",
        times=np.arange(3000) / FPS,
    )
    # image statistics only: the change point is found on them (embeddings are summarised in words)
    config = config_from_dict(
        {"window": {"size": SIZE, "evaluate_every": STRIDE}, "embedding": {"enabled": False}}
    )
    engine = Engine(config, NAMES)
    return engine, engine.prepare(ref)


def run_until_drifted(rows, times, evaluations_in_a_row=5):
    """Evaluate the stream every stride, as the daemon does, until ``evaluations_in_a_row``
    windows drifted in a row (the derived hysteresis for this window); returns the evaluation,
    the snapshot the actions get, and the window's frame times."""
    engine, prep = prepared()
    history = History(720)
    in_a_row = 0
    for end in range(SIZE, len(rows) + 1, STRIDE):
        window, at = rows[end - SIZE : end], times[end - SIZE : end]
        judged = engine.run_tests(prep, window)
        history.add(float(at[-1]), window, STRIDE if end > SIZE else SIZE, judged.drifted)
        in_a_row = in_a_row + 1 if judged.drifted else 0
        if in_a_row == evaluations_in_a_row:
            evaluation = Evaluation(
                "cam", float(at[-1]), "cam", 1, 3000, SIZE, judged.tests, True, True, True
            )
            refs = [FrameRef(str(i), "cam", float(t), "f", 0, i, None) for i, t in enumerate(at)]
            snap = WindowSnapshot("cam", window, refs, None, NAMES, prep, None, history.recent())
            return evaluation, snap, list(at)
    raise AssertionError("never drifted")


def test_effects_rank_the_moved_statistics_on_the_calibrated_scale_with_their_sign():
    rows, times = stream(1000, 500, [0.0, 4.0, -2.5])
    evaluation, snap, _ = run_until_drifted(rows, times)
    effects = headline.effects(evaluation, snap)
    assert [e.feature for e in effects][:2] == ["noise_sigma", "sharpness_laplacian_var"]
    noise, sharp = effects[0], effects[1]
    assert noise.drifted and noise.distance > noise.threshold > 0
    assert sharp.drifted and sharp.distance < -sharp.threshold
    low, high = noise.band
    assert low < noise.reference_mean < high
    assert effects[2].feature == "brightness_mean" and not effects[2].drifted


@pytest.mark.parametrize("seed", range(10))
def test_the_change_is_found_within_one_stride_from_the_history(seed):
    change = 700
    rows, times = stream(1400, change, [0.0, 2.0, 0.0], seed=seed)
    evaluation, snap, at = run_until_drifted(rows, times)
    top = [e for e in headline.effects(evaluation, snap) if e.drifted][:3]
    found = estimate_change(top, snap, at)
    assert not found.before
    assert abs(found.at - times[change - 1]) <= STRIDE / FPS, (found, times[change - 1])
    # the window that declared the drift is after the change: every frame of it is eligible
    assert found.window_index == sum(1 for t in at if t <= found.at)


@pytest.mark.parametrize("seed", range(5))
def test_a_large_change_inside_a_stride_is_found_at_the_block_it_fell_in(seed):
    # the block of frames 700-724 holds 20 healthy frames and 5 moved by 40 sds: closer to the
    # healthy side, yet far out of band; the change came after the block before it
    change = 720
    rows, times = stream(1400, change, [0.0, 40.0, 0.0], seed=seed)
    evaluation, snap, at = run_until_drifted(rows, times)
    top = [e for e in headline.effects(evaluation, snap) if e.drifted][:3]
    found = estimate_change(top, snap, at)
    assert not found.before
    assert times[change - 1] - STRIDE / FPS <= found.at <= times[change - 1], (found, change)


def test_a_change_older_than_the_history_is_said_to_be_before_it():
    rows, times = stream(600, 0, [0.0, 3.0, 0.0])  # drifted from the first frame
    evaluation, snap, at = run_until_drifted(rows, times)
    top = [e for e in headline.effects(evaluation, snap) if e.drifted][:3]
    found = estimate_change(top, snap, at)
    assert found.before and found.at == snap.history.times[0]


def test_without_history_the_change_is_found_in_the_window():
    rows, times = stream(SIZE, 60, [0.0, 4.0, 0.0])
    engine, prep = prepared()
    judged = engine.run_tests(prep, rows)
    assert judged.drifted
    evaluation = Evaluation("cam", times[-1], "cam", 1, 3000, SIZE, judged.tests, True, True, True)
    refs = [FrameRef(str(i), "cam", float(t), "f", 0, i, None) for i, t in enumerate(times)]
    snap = WindowSnapshot("cam", rows, refs, None, NAMES, prep, None, None)
    top = [e for e in headline.effects(evaluation, snap) if e.drifted][:3]
    found = estimate_change(top, snap, list(times))
    assert not found.before and abs(found.window_index - 60) <= 3


def effect(feature, distance):
    return Effect(
        feature, headline.describe("shift", feature), "statistics", distance, True, 0, 1, 4
    )


def test_the_headline_names_the_statistics_the_amount_the_time_and_the_cause():
    said = headline.headline(
        [effect("noise_sigma", 41.2), effect("sharpness_laplacian_var", 6.3)],
        Change(29_295.0),  # 08:08:15 UTC
        embeddings=False,
        predictions=False,
    )
    assert said == (
        "Sensor noise up 41x its normal spread and sharpness up 6.3x since 08:08:15 — "
        "sensor noise: a gain or noise-filter change, low light, or rain"
    )
    dark = headline.headline(
        [effect("brightness_mean", -8.0)],
        Change(0.0, before=True),
        embeddings=True,
        predictions=False,
    )
    assert dark.startswith(
        "Mean brightness down 8.0x its normal spread since before 00:00:00 — less"
    )
    assert headline.with_queued(dark, 1).endswith("; 1 frame queued")


def test_without_a_moved_statistic_the_headline_speaks_of_embeddings_or_outputs():
    assert headline.headline([], Change(None), embeddings=True, predictions=False).startswith(
        "The scene's content (embeddings) moved"
    )
    assert headline.EMBEDDING_CAUSE in headline.headline(
        [], Change(None), embeddings=True, predictions=False
    )
    assert headline.headline([], Change(None), embeddings=False, predictions=True).startswith(
        "The model's outputs moved"
    )


def test_change_point_on_several_columns():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 3))
    x[50:, 0] += 3
    x[50:, 2] -= 3
    assert change_point(x) == 50
    assert change_point(x[:2]) == 0


def test_a_turned_camera_is_said_to_have_moved_its_view():
    """The `view` test's effect is ranked with the others, measured from the reference frames'
    own alignments, and names the cause: the view changed."""
    rng = np.random.default_rng(3)
    edges = rng.uniform(0, 15, size=(18, 32))
    edges[[9, 13], :] += 60
    edges[:, [4, 11, 20, 27]] += 50

    def maps(n, turned=0):
        m = np.roll(edges, turned, axis=1)[None] + rng.normal(0, 4, size=(n, 18, 32))
        return np.clip(m, 0, 255).astype(np.uint8).reshape(n, -1)

    ref = Reference(
        features=rng.normal(size=(3000, len(NAMES))).astype(np.float32),
        feature_names=NAMES,
        stream="cam",
        times=np.arange(3000) / FPS,
        layouts=maps(3000),
    )
    config = config_from_dict(
        {"window": {"size": SIZE, "evaluate_every": STRIDE}, "embedding": {"enabled": False}}
    )
    engine = Engine(config, NAMES)
    prep = engine.prepare(ref)
    rows, layouts = rng.normal(size=(SIZE, len(NAMES))).astype(np.float32), maps(SIZE, turned=2)
    judged = engine.run_tests(prep, rows, layouts=layouts)
    assert judged.drifted
    evaluation = Evaluation("cam", 0.0, "cam", 1, 3000, SIZE, judged.tests, True, True, True)
    refs = [FrameRef(str(i), "cam", float(i), "f", 0, i, None) for i in range(SIZE)]
    snap = WindowSnapshot("cam", rows, refs, None, NAMES, prep, layouts=layouts)
    effects = headline.effects(evaluation, snap)
    top = effects[0]
    assert (top.feature, top.kind, top.drifted) == ("edge_layout", "layouts", True)
    assert top.distance < -top.threshold  # the edges left where the reference's are
    assert headline.likely_cause(effects, embeddings=False, predictions=False)[0] == "view"
    sentence = headline.headline(
        [e for e in effects if e.drifted], Change(None), embeddings=False, predictions=False
    )
    assert sentence.startswith("The view moved")
