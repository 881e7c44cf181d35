"""A synthetic fleet of cameras built from real photographs, with named image shifts.

Used by ``driftmon demo``, the integration tests and the detection-quality benchmark. Pure
numpy/OpenCV: no Kafka here; producers encode the frames with :func:`encode` and send them.

A :class:`Camera` looks at one photograph (a *scene*) through a fixed, camera-specific view
(crop, slight roll, up-scaled to the frame size). Frame ``t`` is a deterministic function of the
camera's seed, ``t`` and the current shift, cheap to ask for in any order. A **living** camera
(the default) sees a world that moves on (:mod:`monitor.sim.world`): objects crossing the view
over seconds, clouds changing the light over minutes, a compressed day with dusk, night in
infrared and dawn, and rain showers, so consecutive frames are strongly correlated and frames
minutes apart much less; :meth:`Camera.context` says what producers could send with a frame
(time of day, infrared, rain). An **iid** camera (``dynamics="iid"``) draws every frame
independently from one stationary distribution, exactly as the fleet did before it had living
cameras. Faults come on top of either with :meth:`Camera.set_shift` and :data:`SHIFTS`.

The shifts live in :mod:`monitor.sim.shifts` (re-exported here), the pixel helpers in
:mod:`monitor.sim.imaging`.

Examples
--------
>>> cam = Camera("cam-000", "coffee", width=320, height=240, seed=7)
>>> f = cam.frame(0)
>>> f.shape, f.dtype.name
((240, 320, 3), 'uint8')
>>> bool((cam.frame(0) == f).all())
True
>>> cam.set_shift("brightness", 4)
>>> bool(cam.frame(0).mean() < f.mean())
True
>>> encode(f)[:2]
b'\\xff\\xd8'
>>> cam.context(1500)  # 5 frames a second, a 600 s day from 9:00: frame 1500 is at 21:00
FrameContext(time_of_day='night', ir=True, rain=False)
>>> bool((cam.frame(1500)[..., 0] == cam.frame(1500)[..., 2]).all())  # infrared: grey
True
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from monitor.sim.imaging import BANK_PAD, LEVELS, add_noise, encode, lut, streak_bank
from monitor.sim.shifts import SHIFTS, ShiftSpec, check_severity, knock_params
from monitor.sim.world import Crossing, FrameContext, Living, Shower, World

__all__ = [
    "SCENES",
    "SHIFTS",
    "ShiftSpec",
    "Camera",
    "Living",
    "FrameContext",
    "make_fleet",
    "encode",
    "load_scene",
]

# Scene name -> file in scikit-image's bundled data directory (shipped in the wheel; no network).
_SCENE_FILES: Mapping[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
SCENES: tuple[str, ...] = tuple(_SCENE_FILES)

_JITTER = 1  # view jitter, pixels each way


# --------------------------------------------------------------------------------------------
# Photographs
# --------------------------------------------------------------------------------------------


def _data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "monitor.sim.fleet needs scikit-image's bundled photographs: pip install "
            "'driftmon[demo]'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.cache
def load_scene(name: str) -> np.ndarray:
    """The photograph behind scene ``name`` as RGB uint8 (read-only, cached)."""
    if name not in _SCENE_FILES:
        raise ValueError(f"unknown scene {name!r}; choose one of {', '.join(SCENES)}")
    path = _data_dir() / _SCENE_FILES[name]
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read scene photograph {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rgb.setflags(write=False)
    return rgb


# --------------------------------------------------------------------------------------------
# Living frames: the world's state at a time, in pixels
# --------------------------------------------------------------------------------------------

_NIGHT_LEVEL = 0.25  # exposure at full night, colour mode (auto-exposure out of range)
_NIGHT_GAIN = 3.0  # sensor gain (noise sd multiplier) at full night, colour mode
_IR_GAIN = 3.0  # sensor gain in infrared mode
_LAMPS_ON = 0.6  # cars light their lamps below this daylight


def _living(dynamics: str | Living) -> Living | None:
    if isinstance(dynamics, Living):
        return dynamics
    if dynamics == "living":
        return Living()
    if dynamics == "iid":
        return None
    raise ValueError(f"dynamics must be 'living', 'iid' or a Living, got {dynamics!r}")


def _frame_number(t: int) -> int:
    if int(t) < 0:
        raise ValueError(f"frame number must be non-negative, got {t}")
    return int(t)


def _tone(
    exposure: float, flicker: float, rain: float, level: float, gamma: float = 1.0
) -> np.ndarray:
    """Output grey level (256,) per input level: exposure and gamma, then rain's veil: darker by
    up to 15% and contrast lowered by up to 30% around the image's mean ``level`` (0..1)."""
    gain = exposure * flicker * (1.0 - 0.15 * rain)
    y = gain * (LEVELS / 255.0) ** gamma
    pivot = gain * level**gamma
    return 255.0 * ((y - pivot) * (1.0 - 0.3 * rain) + pivot)


def _mean_level(img: np.ndarray) -> float:
    """Mean luma (BT.601) of an RGB or grey uint8 image, 0..1."""
    m = cv2.mean(img)
    return (m[0] if img.ndim == 2 else 0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / 255.0


@functools.lru_cache(maxsize=8)
def _ir_pattern(height: int, width: int) -> np.ndarray:
    """The IR lamp's light on the scene (x100, uint8): 1.4 at the near field (bottom centre),
    falling to 0.3 in the far corners."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = np.hypot((x - width / 2) / height, 1.3 * (y - height) / height)
    pattern = np.rint(100.0 * (0.3 + 1.1 * np.exp(-((r / 0.8) ** 2)))).astype(np.uint8)
    pattern.setflags(write=False)
    return pattern


def _placement(c: Crossing, s: float, height: int, width: int) -> tuple[float, float, float, float]:
    """(centre x, ground y, height, length) in pixels of crossing ``c`` at ``s``."""
    tall = c.size * height
    length = 2.4 * tall if c.kind == "car" else 0.32 * tall
    p = c.progress(s)
    x = -length / 2 + p * (width + length)
    if c.direction < 0:
        x = width - x
    return x, (c.lane + c.drift * p) * height, tall, length


def _draw_body(img: np.ndarray, c: Crossing, s: float) -> None:
    """Draw ``c`` at ``s`` into ``img`` (RGB, in place): a car's body, cabin, windows and
    wheels, or a person's legs, torso and head."""
    x, ground, tall, length = _placement(c, s, img.shape[0], img.shape[1])

    def pt(dx: float, dy: float) -> tuple[int, int]:
        return round(x + dx), round(ground - dy)

    if c.kind == "car":
        cv2.rectangle(img, pt(-length / 2, 0.55 * tall), pt(length / 2, 0.12 * tall), c.colour, -1)
        cv2.rectangle(img, pt(-0.3 * length, tall), pt(0.28 * length, 0.5 * tall), c.colour, -1)
        cv2.rectangle(
            img, pt(-0.26 * length, 0.93 * tall), pt(0.24 * length, 0.58 * tall), c.trim, -1
        )
        for dx in (-0.3 * length, 0.3 * length):
            cv2.circle(
                img, pt(dx, 0.14 * tall), max(1, round(0.14 * tall)), (20, 20, 20), -1, cv2.LINE_AA
            )
    else:
        legs = tuple(int(v * 0.45) for v in c.colour)
        cv2.rectangle(img, pt(-0.1 * tall, 0.45 * tall), pt(0.1 * tall, 0.0), legs, -1)
        cv2.ellipse(
            img,
            pt(0.0, 0.62 * tall),
            (max(1, round(0.16 * tall)), max(1, round(0.2 * tall))),
            0.0,
            0,
            360,
            c.colour,
            -1,
            cv2.LINE_AA,
        )
        cv2.circle(img, pt(0.0, 0.9 * tall), max(1, round(0.09 * tall)), c.trim, -1, cv2.LINE_AA)


def _draw_lamps(img: np.ndarray, c: Crossing, s: float) -> None:
    """A car's head- and tail-lamps, drawn after the light (they make their own)."""
    if c.kind != "car":
        return
    x, ground, tall, length = _placement(c, s, img.shape[0], img.shape[1])
    y, r = round(ground - 0.35 * tall), max(1, round(0.08 * tall))
    grey = img.ndim == 2
    front, rear = x + c.direction * length / 2, x - c.direction * length / 2
    cv2.circle(img, (round(front), y), r, 255 if grey else (255, 248, 225), -1, cv2.LINE_AA)
    cv2.circle(
        img,
        (round(rear), y),
        max(1, round(0.8 * r)),
        110 if grey else (230, 30, 25),
        -1,
        cv2.LINE_AA,
    )


@functools.lru_cache(maxsize=32)
def _droplets(
    seed: int, key: tuple[int, int], strength: float, height: int, width: int
) -> tuple[tuple[slice, slice, np.ndarray, np.ndarray, int], ...]:
    """Rain drops sitting on the lens during one shower: per drop its box (rows, columns), a soft
    disk weight (float32 0..1) and 1 - it, and the width of the smear it makes."""
    rng = np.random.default_rng([seed, 11, key[0] + (1 << 40), key[1]])
    n = int(8 + 24 * strength)
    short = min(height, width)
    drops = []
    for cx, cy, r in zip(
        rng.uniform(0, width, n),
        rng.uniform(0, height, n),
        rng.uniform(0.015, 0.05, n),
        strict=True,
    ):
        radius = max(1.0, r * short)
        rows = slice(max(0, round(cy - 1.3 * radius)), min(height, round(cy + 1.3 * radius) + 1))
        cols = slice(max(0, round(cx - 1.3 * radius)), min(width, round(cx + 1.3 * radius) + 1))
        y, x = np.mgrid[rows, cols].astype(np.float32)
        edge = 1.5 * math.sqrt(radius)  # a soft rim
        weight = (np.clip(radius + 0.5 - np.hypot(x - cx, y - cy), 0.0, edge) / edge).astype(
            np.float32
        )
        drops.append((rows, cols, weight, 1.0 - weight, max(3, round(radius))))
    return tuple(drops)


def _rain_optics(
    img: np.ndarray, rain: float, seed: int, shower: Shower, at: tuple[int, int]
) -> np.ndarray:
    """Streaks (brighter with ``rain``) and the shower's drops on the lens (smeared patches)."""
    h, w = img.shape[:2]
    streaks = streak_bank(h, w)[at[0] : at[0] + h, at[1] : at[1] + w]
    if img.ndim == 3:
        streaks = cv2.cvtColor(np.ascontiguousarray(streaks), cv2.COLOR_GRAY2RGB)
    img = cv2.addWeighted(img, 1.0, streaks, 0.6 * rain, 0.0)
    for rows, cols, weight, clear, smear in _droplets(seed, shower.key, shower.strength, h, w):
        patch = np.ascontiguousarray(img[rows, cols])
        img[rows, cols] = cv2.blendLinear(patch, cv2.blur(patch, (smear, smear)), clear, weight)
    return img


# --------------------------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _View:
    cx: float  # centre of the view in photograph pixels
    cy: float
    crop_w: float  # width of the view in photograph pixels
    roll: float  # degrees


def _render(photo: np.ndarray, view: _View, width: int, height: int, pad: int) -> np.ndarray:
    """Render ``view`` of ``photo`` at ``width x height`` plus ``pad`` pixels each side."""
    scale = width / view.crop_w  # output pixels per photograph pixel
    m = cv2.getRotationMatrix2D((view.cx, view.cy), view.roll, scale)
    m[0, 2] += (width / 2.0 + pad) - view.cx
    m[1, 2] += (height / 2.0 + pad) - view.cy
    out = cv2.warpAffine(
        photo,
        m,
        (width + 2 * pad, height + 2 * pad),
        flags=cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT101,
    )
    # Up-scaling a ~500 px photograph to a camera frame softens it; restore some crispness.
    sigma = max(0.8, 0.5 * scale)
    soft = cv2.GaussianBlur(out, (0, 0), sigma)
    return cv2.addWeighted(out, 1.6, soft, -0.6, 0.0)


class Camera:
    """One fixed camera looking at one scene.

    Parameters
    ----------
    camera_id : the camera's id (a Kafka key).
    scene : one of :data:`SCENES`.
    width, height : frame size in pixels.
    seed : everything about the camera (its view, noise level, its world, every frame) derives
        from it.
    fps : frames per second: frame ``t`` is at ``t / fps`` seconds.
    dynamics : ``"living"`` (the default: :class:`Living` with its defaults), a :class:`Living`
        with other options, or ``"iid"``.

    Notes
    -----
    ``frame(t)`` is a pure function of ``(seed, t)`` and the current shift, whatever the order of
    calls. A **living** camera's frames are correlated in time like a real camera's: objects
    cross the view over seconds, clouds change the light over tens of seconds to minutes, a day
    passes every ``day_s`` seconds (dusk, night, infrared mode, dawn) and rain showers come and
    go (see :mod:`monitor.sim.world` and ``docs/fleet.md``); each frame adds a small exposure
    flicker (sd 0.4%) and sensor noise, raised by the gain at night. An **iid** camera's frames
    are independent draws, as the fleet made them before it had living cameras (bit for bit):
    a global gain (sd 2%, clipped to +-5%) with a per-channel wobble (sd 0.7%) and an offset (sd
    1 grey level); a view jitter of up to one pixel at 1080 lines (proportionally less,
    sub-pixel, at smaller sizes); a small object (ellipse or rectangle, random colour, 3-12% of
    the short side) in about 30% of frames; sensor noise (a per-camera sd of 1.5-3.5 grey
    levels). In both, a shift at stage ``"scene"`` acts on the light before the sensor noise,
    one at ``"image"`` after it; ``knocked`` re-renders the view. The base view is rendered on
    the first frame and cached.
    """

    def __init__(
        self,
        camera_id: str,
        scene: str,
        *,
        width: int = 1920,
        height: int = 1080,
        seed: int,
        fps: float = 5.0,
        dynamics: str | Living = "living",
    ) -> None:
        if scene not in _SCENE_FILES:
            raise ValueError(f"unknown scene {scene!r}; choose one of {', '.join(SCENES)}")
        if width < 16 or height < 16:
            raise ValueError(f"frame size must be at least 16x16, got {width}x{height}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.camera_id = camera_id
        self.scene = scene
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
        self.fps = float(fps)
        self.living = _living(dynamics)
        self._world = World(self.seed, self.living) if self.living is not None else None
        rng = np.random.default_rng([self.seed, 1])
        ph, pw = load_scene(scene).shape[:2]
        aspect = self.width / self.height
        max_w = min(pw, ph * aspect)  # widest crop of this aspect that fits the photograph
        crop_w = float(rng.uniform(0.55, 0.8)) * max_w
        crop_h = crop_w / aspect
        self._view = _View(
            cx=float(rng.uniform(crop_w / 2, pw - crop_w / 2)),
            cy=float(rng.uniform(crop_h / 2, ph - crop_h / 2)),
            crop_w=crop_w,
            roll=float(rng.uniform(-1.5, 1.5)),
        )
        self.noise_sigma = float(rng.uniform(1.5, 3.5))
        self._shift: tuple[str, int] | None = None
        self._base: np.ndarray | None = None
        self._base_key: int | None = None  # knocked severity of the cached base, or None

    def __repr__(self) -> str:
        return (
            f"Camera({self.camera_id!r}, {self.scene!r}, width={self.width}, "
            f"height={self.height}, seed={self.seed}, fps={self.fps:g}, "
            f"dynamics={self.living or 'iid'!r}, shift={self._shift})"
        )

    @property
    def dynamics(self) -> str:
        """``"living"`` or ``"iid"``."""
        return "iid" if self.living is None else "living"

    @property
    def shift(self) -> tuple[str, int] | None:
        """The current shift as ``(name, severity)``, or None."""
        return self._shift

    def set_shift(self, name: str | None, severity: int = 3) -> None:
        """Apply shift ``name`` at ``severity`` (1..5) to all later frames; None removes it."""
        if name is None:
            self._shift = None
            return
        if name not in SHIFTS:
            raise ValueError(f"unknown shift {name!r}; choose one of {', '.join(SHIFTS)}")
        check_severity(severity)
        self._shift = (name, int(severity))

    def _knocked_view(self, severity: int) -> _View:
        """Where the camera points after a knock; fixed per camera and severity."""
        roll, direction, shift, zoom = knock_params(
            severity, np.random.default_rng([self.seed, 2, severity])
        )
        ph, pw = load_scene(self.scene).shape[:2]
        v = self._view
        crop_w = v.crop_w / zoom
        half_w, half_h = crop_w / 2, crop_w * self.height / self.width / 2
        dist = shift * v.crop_w
        best: tuple[float, float, float] | None = None
        for d in (direction, direction + math.pi, direction + math.pi / 2, direction - math.pi / 2):
            cx = min(max(v.cx + dist * math.cos(d), half_w), pw - half_w)
            cy = min(max(v.cy + dist * math.sin(d), half_h), ph - half_h)
            moved = math.hypot(cx - v.cx, cy - v.cy)
            if best is None or moved > best[0] + 1e-9:
                best = (moved, cx, cy)
            if moved >= 0.999 * dist:
                break
        assert best is not None  # the loop above runs at least once
        _, cx, cy = best
        return _View(cx=cx, cy=cy, crop_w=crop_w, roll=v.roll + roll)

    def _shift_rng(self, spec: ShiftSpec | None, t: int) -> np.random.Generator:
        """The shift's random draws: per frame, or once per camera for a ``fixed`` shift."""
        if spec is not None and spec.fixed:
            return np.random.default_rng([self.seed, 6])
        return np.random.default_rng([self.seed, 4, int(t)])

    def _base_view(self) -> np.ndarray:
        key = self._shift[1] if self._shift and self._shift[0] == "knocked" else None
        if self._base is None or self._base_key != key:
            view = self._view if key is None else self._knocked_view(key)
            base = _render(load_scene(self.scene), view, self.width, self.height, _JITTER)
            base.setflags(write=False)
            self._base, self._base_key = base, key
        return self._base

    def frame(self, t: int) -> np.ndarray:
        """Frame number ``t`` (>= 0) as RGB uint8, ``height x width x 3``."""
        t = _frame_number(t)
        return self._frame_iid(t) if self._world is None else self._frame_living(t, self._world)

    def context(self, t: int) -> FrameContext:
        """The context of frame ``t`` as a producer could send it (an iid camera: always day)."""
        t = _frame_number(t)
        if self._world is None:
            return FrameContext("day", False, False)
        return self._world.context(t / self.fps)

    def _sensor(
        self, img: np.ndarray, t: int, rng: np.random.Generator, sigma: float, grey: bool = False
    ) -> np.ndarray:
        """The end of every frame: a scene-stage shift, sensor noise, an image-stage shift."""
        name, severity = self._shift if self._shift else (None, 0)
        spec = SHIFTS[name] if name is not None else None
        shift_rng = self._shift_rng(spec, t)
        if spec is not None and spec.stage == "scene":
            img = spec.fn(img, severity, shift_rng)
        img = add_noise(img, sigma, rng, key=1, grey=grey)
        if spec is not None and spec.stage == "image":
            img = spec.fn(img, severity, shift_rng)
        return img

    def _frame_iid(self, t: int) -> np.ndarray:
        base = self._base_view()
        h, w = self.height, self.width
        rng = np.random.default_rng([self.seed, 3, int(t)])
        # Draw every variable in a fixed order, used or not, so frame t never depends on a branch.
        gain = 1.0 + float(np.clip(rng.normal(0.0, 0.02), -0.05, 0.05))
        wobble = 1.0 + np.clip(rng.normal(0.0, 0.007, size=3), -0.02, 0.02)
        offset = float(rng.normal(0.0, 1.0))
        # View jitter: up to one pixel at 1080 lines, proportionally less (sub-pixel) below.
        reach = min(1.0, min(h, w) / 1080.0) * _JITTER
        jx, jy = (float(v) for v in rng.uniform(-reach, reach, size=2))
        has_object = rng.random() < 0.3
        obj_kind = rng.integers(0, 2)
        obj_size = rng.uniform(0.03, 0.12, size=2) * min(h, w)
        obj_centre = rng.uniform(0.0, 1.0, size=2) * (w, h)
        obj_colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        obj_angle = float(rng.uniform(0.0, 180.0))

        m = np.zeros((3, 4), np.float32)  # per-channel gain and offset in one pass
        m[[0, 1, 2], [0, 1, 2]] = gain * wobble
        m[:, 3] = offset
        if reach >= 1.0:  # whole pixels: a slice, free
            iy, ix = _JITTER + round(jy), _JITTER + round(jx)
            view = base[iy : iy + h, ix : ix + w]
        else:  # sub-pixel: bilinear resampling, cheap at these sizes
            shift = np.array([[1, 0, _JITTER + jx], [0, 1, _JITTER + jy]], np.float32)
            view = cv2.warpAffine(
                base,
                shift,
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REFLECT101,
            )
        img = cv2.transform(view, m)
        if has_object:
            cx, cy = (int(round(v)) for v in obj_centre)
            ax, ay = (max(1, int(round(v / 2))) for v in obj_size)
            if obj_kind == 0:
                cv2.ellipse(img, (cx, cy), (ax, ay), obj_angle, 0, 360, obj_colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (cx - ax, cy - ay), (cx + ax, cy + ay), obj_colour, -1)

        return self._sensor(img, t, rng, self.noise_sigma)

    def _frame_living(self, t: int, world: World) -> np.ndarray:
        h, w = self.height, self.width
        s = t / self.fps
        rng = np.random.default_rng([self.seed, 7, t])
        # Draw every variable in a fixed order, used or not, so frame t never depends on a branch.
        flicker = 1.0 + float(np.clip(rng.normal(0.0, 0.004), -0.01, 0.01))
        streaks_y, streaks_x = (int(v) for v in rng.integers(0, BANK_PAD + 1, size=2))
        daylight = float(world.daylight(s))
        ir = world.ir(s)
        rain, shower = world.rain(s)
        crossings = world.crossings(s)

        view = self._base_view()[_JITTER : _JITTER + h, _JITTER : _JITTER + w]
        if crossings:
            view = view.copy()
            for c in crossings:
                _draw_body(view, c, s)
        if ir:  # the IR-cut filter is out: a monochrome image lit by the camera's IR lamp
            grey = cv2.multiply(
                cv2.cvtColor(view, cv2.COLOR_RGB2GRAY), _ir_pattern(h, w), scale=0.01
            )
            level = _mean_level(grey) if rain > 0.0 else 0.0
            img = cv2.LUT(
                grey, np.clip(np.rint(_tone(1.0, flicker, rain, level)), 0, 255).astype(np.uint8)
            )
        else:
            level = _mean_level(view) if rain > 0.0 else 0.0
            img = lut(view, self._light_curves(world, s, daylight, flicker, rain, level))
        if daylight < _LAMPS_ON:
            for c in crossings:
                _draw_lamps(img, c, s)
        if rain > 0.0 and shower is not None:  # rain is the intensity of a shower under way
            img = _rain_optics(img, rain, self.seed, shower, (streaks_y, streaks_x))
        if ir:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        gain = _IR_GAIN if ir else 1.0 + (_NIGHT_GAIN - 1.0) * (1.0 - daylight)
        return self._sensor(img, t, rng, self.noise_sigma * gain, grey=ir)

    def _light_curves(
        self, world: World, s: float, daylight: float, flicker: float, rain: float, level: float
    ) -> np.ndarray:
        """Tone curves (3x256) for daylight, clouds, the colour of the light and rain at ``s``.

        Auto-exposure holds the image through the day; from dusk it runs out of range: darker,
        crushed shadows (gamma), street-light split tone (warm highlights, cool shadows). Low sun
        warms the light; clouds dim it and cool it a little.
        """
        night = 1.0 - daylight
        cloud = float(world.clouds(s)) * daylight
        exposure = (_NIGHT_LEVEL + (1.0 - _NIGHT_LEVEL) * daylight) * math.exp(cloud)
        y = _tone(exposure, flicker, rain, level, gamma=1.0 + 0.7 * night)
        x = LEVELS / 255.0
        split = 0.14 * night * (x - 0.35)
        low_sun = math.exp(-(((float(world.elevation(s)) - 0.05) / 0.12) ** 2))
        warm = 0.07 * daylight * low_sun + 0.3 * cloud - 0.04 * rain
        return np.stack([y * (1 + split) * (1 + warm), y, y * (1 - split) * (1 - warm)])


def make_fleet(
    n_cameras: int,
    *,
    seed: int,
    width: int = 1920,
    height: int = 1080,
    fps: float = 5.0,
    dynamics: str | Living = "living",
) -> list[Camera]:
    """``n_cameras`` cameras ``cam-000``, ``cam-001``, ... cycling over :data:`SCENES`.

    Each camera's seed derives from ``seed`` and its index, so cameras of the same scene look
    at different crops of it. ``fps`` and ``dynamics`` are every camera's (:class:`Camera`):
    living cameras share one clock (the same time of day at the same ``t``), while their clouds,
    showers and traffic are their own.
    """
    if n_cameras < 0:
        raise ValueError(f"n_cameras must be non-negative, got {n_cameras}")
    seeds: np.ndarray | list[int] = (
        np.random.SeedSequence([int(seed), 0xF1EE7]).generate_state(n_cameras, np.uint32)
        if n_cameras
        else []
    )
    return [
        Camera(
            f"cam-{i:03d}",
            SCENES[i % len(SCENES)],
            width=width,
            height=height,
            seed=int(seeds[i]),
            fps=fps,
            dynamics=dynamics,
        )
        for i in range(n_cameras)
    ]
