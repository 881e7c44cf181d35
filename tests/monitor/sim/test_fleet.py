"""monitor.sim.fleet: determinism, realistic stationary variation, and every shift at every
severity."""

from __future__ import annotations

from itertools import pairwise

import cv2
import numpy as np
import pytest

from monitor.sim.fleet import SCENES, SHIFTS, Camera, encode, load_scene, make_fleet

SIZES = [(320, 240), (960, 540)]
SEVERITIES = (1, 2, 3, 4, 5)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def luma(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float64)


def sharpness(rgb: np.ndarray) -> float:
    return float(cv2.Laplacian(luma(rgb), cv2.CV_64F).var())


def colourfulness(rgb: np.ndarray) -> float:
    return float(rgb.astype(np.float64).std(axis=2).mean())


@pytest.fixture(scope="module")
def clean() -> dict[tuple[int, int], np.ndarray]:
    """A noise-free view of a scene per size (a camera's base view, without jitter)."""
    out = {}
    for w, h in SIZES:
        cam = Camera("cam-x", "coffee", width=w, height=h, seed=11)
        out[(w, h)] = np.ascontiguousarray(cam._base_view()[1:-1, 1:-1])
    return out


def apply(name: str, img: np.ndarray, severity: int) -> np.ndarray:
    return SHIFTS[name](img, severity, np.random.default_rng(123))


# --- scenes and fleet -------------------------------------------------------------------------


def test_scenes_load_as_rgb_photographs():
    assert len(SCENES) >= 5
    for name in SCENES:
        img = load_scene(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert min(img.shape[:2]) >= 256
        assert colourfulness(img) > 5  # colour photographs, not grey ones


def test_make_fleet_ids_scenes_and_distinct_views():
    fleet = make_fleet(12, seed=5, width=320, height=240)
    assert [c.camera_id for c in fleet] == [f"cam-{i:03d}" for i in range(12)]
    assert [c.scene for c in fleet] == [SCENES[i % len(SCENES)] for i in range(12)]
    assert len({c.seed for c in fleet}) == 12
    # Two cameras on the same scene look at different crops of it.
    same = [c for c in fleet if c.scene == SCENES[0]]
    assert len(same) >= 2
    assert mad(same[0].frame(0), same[1].frame(0)) > 10
    again = make_fleet(12, seed=5, width=320, height=240)
    assert [c.seed for c in again] == [c.seed for c in fleet]
    assert [c.seed for c in make_fleet(12, seed=6, width=320, height=240)] != [
        c.seed for c in fleet
    ]
    assert make_fleet(0, seed=1) == []


@pytest.mark.parametrize("w,h", SIZES + [(97, 61)])
def test_frame_shape_and_dtype(w, h):
    f = Camera("c", "rocket", width=w, height=h, seed=1).frame(3)
    assert f.shape == (h, w, 3) and f.dtype == np.uint8


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        Camera("c", "no-such-scene", seed=1)
    with pytest.raises(ValueError):
        Camera("c", "coffee", seed=-1)
    cam = Camera("c", "coffee", width=64, height=48, seed=1)
    with pytest.raises(ValueError):
        cam.set_shift("no-such-shift")
    for bad in (0, 6):
        with pytest.raises(ValueError):
            cam.set_shift("fog", bad)
        with pytest.raises(ValueError):
            SHIFTS["fog"](cam.frame(0), bad, np.random.default_rng(0))
    with pytest.raises(ValueError):
        cam.frame(-1)
    assert cam.shift is None


# --- determinism and variation ----------------------------------------------------------------


def test_same_seed_and_t_give_identical_bytes():
    a = Camera("a", "chelsea", width=320, height=240, seed=42)
    b = Camera("b", "chelsea", width=320, height=240, seed=42)
    # Order of calls does not matter: frame t depends on (seed, t) only.
    fa = [a.frame(t) for t in (0, 7, 3)]
    fb = [b.frame(t) for t in (3, 7, 0)][::-1]
    for x, y in zip(fa, fb, strict=True):
        assert encode(x) == encode(y)
        assert x.tobytes() == y.tobytes()
    for name in ("gaussian_noise", "motion_blur", "knocked", "dusk"):
        a.set_shift(name, 4)
        b.set_shift(name, 4)
        assert a.frame(9).tobytes() == b.frame(9).tobytes()
    # Removing a shift restores the unshifted frames exactly.
    a.set_shift(None)
    assert a.frame(7).tobytes() == fa[1].tobytes()
    assert (
        Camera("c", "chelsea", width=320, height=240, seed=43).frame(0).tobytes() != fa[0].tobytes()
    )


def test_iid_frames_vary_like_a_camera_and_are_stationary():
    # iid mode only: a living camera's frames are correlated and its days are not stationary
    # over minutes (tests/monitor/sim/test_living.py).
    cam = Camera("c", "astronaut", width=320, height=240, seed=3, dynamics="iid")
    frames = [cam.frame(t) for t in range(60)]
    means = np.array([f.mean() for f in frames])
    # Every frame is different, but only a little: same view, small jitter (another camera's
    # view of the same scene is tens of grey levels away).
    d = np.array([mad(frames[0], frames[t]) for t in range(1, 60)])
    assert d.min() > 0.3 and np.median(d) < 10 and d.max() < 25
    assert means.std() > 0.3  # global illumination jitter moves image statistics
    assert np.ptp(means) / means.mean() < 0.2
    # Sensor noise: the residual between two frames is spread over the whole image.
    assert (frames[0] != frames[1]).mean() > 0.5
    # Stationary: a late block of frames has the same mean brightness as an early one.
    late = np.array([cam.frame(t).mean() for t in range(10_000, 10_060)])
    se = np.sqrt(means.var() / 60 + late.var() / 60)
    assert abs(means.mean() - late.mean()) < 4 * se


def test_some_iid_frames_contain_objects():
    # iid mode: one object in ~30% of frames (a living camera's crossings: test_living.py).
    cam = Camera("c", "rocket", width=320, height=240, seed=8, dynamics="iid")
    frames = np.stack([cam.frame(t) for t in range(40)]).astype(np.int16)
    median = np.median(frames, axis=0)
    # A passing object changes a compact patch by far more than noise or jitter do.
    big = (np.abs(frames - median).max(axis=3) > 60).mean(axis=(1, 2))
    with_object = big > 0.001
    assert 3 <= with_object.sum() <= 25


def test_encode_is_jpeg_and_round_trips():
    f = Camera("c", "coffee", width=320, height=240, seed=1).frame(0)
    data = encode(f, quality=90)
    assert data[:2] == b"\xff\xd8"
    back = cv2.cvtColor(
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )
    assert back.shape == f.shape and mad(back, f) < 4
    assert len(encode(f, quality=20)) < len(data)
    with pytest.raises(ValueError):
        encode(f, quality=0)


# --- shifts -----------------------------------------------------------------------------------


def test_shift_registry_is_complete_and_documented():
    required = {
        "brightness",
        "contrast",
        "dusk",
        "gaussian_noise",
        "impulse_noise",
        "defocus_blur",
        "motion_blur",
        "jpeg",
        "pixelate",
        "fog",
        "colour_cast",
        "saturation",
        "knocked",
        "lens_covered",
    }
    assert required <= set(SHIFTS)
    for name, spec in SHIFTS.items():
        assert spec.name == name
        assert len(spec.params) == 5 and spec.models
        assert spec.stage in {"scene", "image", "view"}
    assert [n for n, s in SHIFTS.items() if s.fixed] == ["lens_covered"]


@pytest.mark.parametrize("name", sorted(SHIFTS))
@pytest.mark.parametrize("w,h", SIZES + [(97, 61)])
def test_every_shift_every_severity_keeps_shape_and_changes_image(name, w, h):
    img = Camera("c", "motorcycle", width=w, height=h, seed=2).frame(0)
    before = img.copy()
    for s in SEVERITIES:
        out = apply(name, img, s)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert mad(out, img) > 0.5, (name, s)
    assert np.array_equal(img, before)  # the input is not modified


@pytest.mark.parametrize("name", sorted(set(SHIFTS) - {"knocked"}))
@pytest.mark.parametrize("size", SIZES)
def test_difference_from_unshifted_grows_with_severity(name, size, clean):
    img = clean[size]
    d = [mad(apply(name, img, s), img) for s in SEVERITIES]
    assert all(b > a for a, b in pairwise(d)), (name, size, d)


@pytest.mark.parametrize("size", SIZES)
def test_shifts_move_the_statistic_they_model(size, clean):
    img = clean[size]

    def series(name, stat):
        return [stat(img)] + [stat(apply(name, img, s)) for s in SEVERITIES]

    def decreasing(xs):
        return all(b < a for a, b in pairwise(xs))

    def increasing(xs):
        return all(b > a for a, b in pairwise(xs))

    brightness = lambda x: luma(x).mean()  # noqa: E731
    assert decreasing(series("brightness", brightness))
    assert decreasing(series("dusk", brightness))
    assert decreasing(series("contrast", lambda x: luma(x).std()))
    assert decreasing(series("saturation", colourfulness))
    assert increasing(series("colour_cast", lambda x: x[..., 0].mean() - x[..., 2].mean()))
    assert increasing(series("fog", brightness))
    assert decreasing(series("fog", lambda x: luma(x).std()))
    assert decreasing(series("defocus_blur", sharpness))
    assert decreasing(series("motion_blur", sharpness))
    assert increasing(series("gaussian_noise", sharpness))
    assert increasing(series("impulse_noise", lambda x: ((x == 0) | (x == 255)).mean()))
    # Pixelation: more and more neighbouring pixels are equal.
    assert increasing(series("pixelate", lambda x: (x[:, 1:] == x[:, :-1]).all(axis=2).mean()))
    # Dusk: shadows turn bluer than highlights.
    dusk = apply("dusk", img, 5).astype(np.float64)
    dark = luma(img) < np.percentile(luma(img), 30)
    bright = luma(img) > np.percentile(luma(img), 70)
    assert (dusk[..., 2] - dusk[..., 0])[dark].mean() > (dusk[..., 2] - dusk[..., 0])[bright].mean()
    # Fog is denser far away (the top of the view) than near (the bottom).
    fog = apply("fog", img, 3).astype(np.float64)
    third = img.shape[0] // 3
    assert mad(fog[:third], img[:third]) > mad(fog[-third:], img[-third:])


def test_knocked_changes_the_view_substantially():
    cam = Camera("c", "astronaut", width=320, height=240, seed=4)
    base = [cam.frame(t) for t in range(5)]
    jitter = max(mad(base[0], f) for f in base[1:])
    for s in SEVERITIES:
        cam.set_shift("knocked", s)
        knocked = [cam.frame(t) for t in range(5)]
        # Far from the old view ...
        assert mad(knocked[0], base[0]) > max(4 * jitter, 15), s
        # ... but a fixed new view: frames after the knock stay close to one another.
        assert max(mad(knocked[0], f) for f in knocked[1:]) < 2 * jitter + 1
        # Still the same photograph's colours: a new view, not a new scene.
        assert abs(knocked[0].mean() - base[0].mean()) < 40
    # The frame-only version also moves the content far.
    f = base[0]
    assert mad(SHIFTS["knocked"](f, 3, np.random.default_rng(1)), f) > 4 * jitter


@pytest.mark.parametrize("name", sorted(SHIFTS))
def test_camera_applies_shift_to_later_frames(name):
    cam = Camera("c", "chelsea", width=320, height=240, seed=6)
    before = cam.frame(10)
    cam.set_shift(name, 3)
    assert cam.shift == (name, 3)
    after = cam.frame(10)
    assert after.shape == before.shape and after.dtype == np.uint8
    # Same t, same variation: the whole difference is the shift's.
    assert mad(after, before) > 1.0
    cam.set_shift(None)
    assert cam.frame(10).tobytes() == before.tobytes()


def test_camera_brightness_and_dusk_darken_with_severity():
    cam = Camera("c", "rocket", width=320, height=240, seed=9)
    for name in ("brightness", "dusk"):
        means = []
        for s in SEVERITIES:
            cam.set_shift(name, s)
            means.append(np.mean([cam.frame(t).mean() for t in range(3)]))
        cam.set_shift(None)
        unshifted = np.mean([cam.frame(t).mean() for t in range(3)])
        assert all(b < a for a, b in pairwise([unshifted] + means)), (name, means)


@pytest.mark.parametrize("w,h", SIZES)
def test_lens_covered_darkens_a_fixed_growing_share_of_the_frame(w, h):
    cam = Camera("c", "motorcycle", width=w, height=h, seed=12)
    before = {t: luma(cam.frame(t)) for t in (0, 300)}
    sharp = sharpness(cam.frame(0))
    covered = []
    for s in SEVERITIES:
        cam.set_shift("lens_covered", s)
        share = SHIFTS["lens_covered"].params[s - 1]["share"]
        after = {t: luma(cam.frame(t)) for t in (0, 300)}
        dark = {t: after[t] < 0.8 * before[t] for t in after}
        # About the configured share of the frame is behind the cover, and it is dark and blurred.
        assert abs(dark[0].mean() - share) < 0.3 * share + 0.01, (s, dark[0].mean(), share)
        deep = after[0] < 0.5 * before[0]
        assert after[0][deep].mean() < 0.4 * before[0][deep].mean()
        assert after[0][deep].std() < 0.5 * before[0][deep].std()
        assert sharpness(cam.frame(0)) < sharp
        # What covers the lens stays where it is, and grows with severity.
        overlap = (dark[0] & dark[300]).sum() / (dark[0] | dark[300]).sum()
        assert overlap > 0.9, (s, overlap)
        if covered:
            assert (covered[-1] & ~dark[0]).mean() < 0.01
        covered.append(dark[0])
    # Another camera has its own blob.
    other = Camera("d", "motorcycle", width=w, height=h, seed=13)
    clear = luma(other.frame(0))
    other.set_shift("lens_covered", 5)
    elsewhere = luma(other.frame(0)) < 0.8 * clear
    assert (elsewhere & covered[-1]).sum() < 0.8 * covered[-1].sum()
