"""A synthetic fleet of cameras built from real photographs, with named image shifts.

Used by ``driftmon demo``, the integration tests and the detection-quality benchmark. Pure
numpy/OpenCV: no Kafka here; producers encode the frames with :func:`encode` and send them.

A :class:`Camera` looks at one photograph (a *scene*) through a fixed, camera-specific view
(crop, slight roll, up-scaled to the frame size). Frame ``t`` is a deterministic function of the
camera's seed and ``t``, and frames are independent and identically distributed across ``t``:
illumination jitter (gain/offset and a slight white-balance wobble), a one-pixel view jitter,
occasional small objects passing through, and sensor noise. The distribution is stationary until
:meth:`Camera.set_shift` applies one of :data:`SHIFTS`.

Shifts follow the spirit of the ImageNet-C corruptions (Hendrycks & Dietterich, 2019,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR) with a
severity scale 1..5 (3 is the middle); the parameters are our own and spatial ones scale with
the frame size (see ``docs/fleet.md``).

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
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np

__all__ = ["SCENES", "SHIFTS", "ShiftSpec", "Camera", "make_fleet", "encode", "load_scene"]

# Scene name -> file in scikit-image's bundled data directory (shipped in the wheel; no network).
_SCENE_FILES: Mapping[str, str] = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
SCENES: tuple[str, ...] = tuple(_SCENE_FILES)

SEVERITIES = (1, 2, 3, 4, 5)

# Noise banks: a large pre-drawn N(0, _BANK_SIGMA) field stored as uint8 around 128; a frame's
# noise is a window at a random offset, scaled. Drawing 6M normals per 1080p frame would cost
# ~50 ms; a window costs nothing and two random windows are uncorrelated.
_BANK_SIGMA = 16.0
_BANK_PAD = 64
_JITTER = 1  # view jitter, pixels each way


# --------------------------------------------------------------------------------------------
# Photographs
# --------------------------------------------------------------------------------------------


def _data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "monitor.sim.fleet needs scikit-image's bundled photographs: pip install 'driftmon[demo]'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@functools.lru_cache(maxsize=None)
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
# Helpers
# --------------------------------------------------------------------------------------------


def encode(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG-encode an RGB uint8 image."""
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


@functools.lru_cache(maxsize=8)
def _noise_bank(height: int, width: int, key: int) -> np.ndarray:
    rng = np.random.default_rng([0x5EED, key, height, width])
    bank = rng.normal(128.0, _BANK_SIGMA, size=(height + _BANK_PAD, width + _BANK_PAD, 3))
    bank = np.clip(np.rint(bank), 0, 255).astype(np.uint8)
    bank.setflags(write=False)
    return bank


def _add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, key: int) -> np.ndarray:
    """``img`` plus zero-mean Gaussian noise of ``sigma`` grey levels (saturated to uint8)."""
    h, w = img.shape[:2]
    bank = _noise_bank(h, w, key)
    oy, ox = (int(v) for v in rng.integers(0, _BANK_PAD + 1, size=2))
    k = float(sigma) / _BANK_SIGMA
    return cv2.addWeighted(img, 1.0, bank[oy : oy + h, ox : ox + w], k, -128.0 * k)


def _lut(img: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Apply per-channel tone curves ``curves`` (3x256 float, output grey levels)."""
    table = np.clip(np.rint(curves), 0, 255).astype(np.uint8).T.reshape(256, 1, 3)
    return cv2.LUT(np.ascontiguousarray(img), table)


_LEVELS = np.arange(256, dtype=np.float64)


def _short_side(img: np.ndarray) -> int:
    return min(img.shape[0], img.shape[1])


def _filter_scaled(img: np.ndarray, kernel_fn: Callable[[float], np.ndarray], extent: float,
                   max_extent: float = 9.0) -> np.ndarray:
    """Convolve with ``kernel_fn(extent)``; large kernels run on a reduced image, then up-scale.

    A blurred image has little left above the blur's cut-off, so blurring at 1/f the size and
    up-sampling is close to blurring in place, and 1080p blurs stay at a few milliseconds.
    """
    h, w = img.shape[:2]
    f = max(1, math.ceil(extent / max_extent))
    if f == 1:
        return cv2.filter2D(img, -1, kernel_fn(extent), borderType=cv2.BORDER_REFLECT101)
    small = cv2.resize(img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.filter2D(small, -1, kernel_fn(extent / f), borderType=cv2.BORDER_REFLECT101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _disk_kernel(radius: float) -> np.ndarray:
    r = max(radius, 0.5)
    n = math.ceil(r)
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(r + 0.5 - np.hypot(x, y), 0.0, 1.0).astype(np.float32)  # anti-aliased edge
    return k / k.sum()


def _line_kernel(length: float, angle_deg: float) -> np.ndarray:
    n = max(1, math.ceil(length / 2))
    size = 2 * n + 1
    k = np.zeros((size, size), np.float32)
    # Sample points densely along the segment and splat them bilinearly.
    steps = max(2, int(4 * length))
    s = np.linspace(-length / 2, length / 2, steps)
    a = math.radians(angle_deg)
    xs, ys = n + s * math.cos(a), n - s * math.sin(a)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                        (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(k, (yi, xi), wgt.astype(np.float32))
    return k / k.sum()


# --------------------------------------------------------------------------------------------
# Shifts
# --------------------------------------------------------------------------------------------

ShiftFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class ShiftSpec:
    """A named image shift with five severities.

    Calling the spec is calling ``fn(rgb, severity, rng)``: RGB uint8 in, RGB uint8 of the same
    shape out. ``params[severity - 1]`` holds the parameters used at that severity. ``stage``
    says where :class:`Camera` applies it: ``"scene"`` before sensor noise (light and optics:
    what reaches the sensor changed), ``"image"`` after it (noise, processing, encoding), or
    ``"view"`` (geometry: the camera re-renders its view of the photograph once).
    """

    name: str
    fn: ShiftFn
    models: str
    params: tuple[Mapping[str, Any], ...]
    stage: str = "image"

    def __call__(self, rgb: np.ndarray, severity: int = 3,
                 rng: np.random.Generator | None = None) -> np.ndarray:
        _check_severity(severity)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
        return self.fn(rgb, severity, rng if rng is not None else np.random.default_rng(0))


def _check_severity(severity: int) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 1..5, got {severity!r}")


def _p(name: str, severity: int) -> Mapping[str, Any]:
    return _PARAMS[name][severity - 1]


def _brightness(rgb, severity, rng):
    # Exposure drop of `ev` stops in linear light; on sRGB-ish values that is a gain of 2^(-ev/2.2).
    gain = 2.0 ** (-_p("brightness", severity)["ev"] / 2.2)
    return _lut(rgb, np.tile(_LEVELS * gain, (3, 1)))


def _contrast(rgb, severity, rng):
    c = _p("contrast", severity)["factor"]
    means = np.array(cv2.mean(rgb)[:3])[:, None]
    return _lut(rgb, (_LEVELS[None, :] - means) * c + means)


def _dusk(rgb, severity, rng):
    p = _p("dusk", severity)
    x = _LEVELS / 255.0
    tone = p["gain"] * x ** p["gamma"]
    # Split tone: cool (twilight sky) shadows, warm (street lights) highlights.
    warm = p["cast"] * (x - 0.35)
    curves = 255.0 * np.stack([tone * (1 + warm), tone, tone * (1 - warm)])
    return _add_noise(_lut(rgb, curves), p["noise_sigma"], rng, key=2)


def _gaussian_noise(rgb, severity, rng):
    return _add_noise(rgb, _p("gaussian_noise", severity)["sigma"], rng, key=3)


def _impulse_noise(rgb, severity, rng):
    out = rgb.copy()
    flat = out.reshape(-1)
    k = int(round(_p("impulse_noise", severity)["amount"] * flat.size))
    idx = rng.integers(0, flat.size, size=k)
    flat[idx] = rng.integers(0, 2, size=k, dtype=np.uint8) * np.uint8(255)
    return out


def _defocus_blur(rgb, severity, rng):
    # The floor keeps severities distinct on thumbnails (it binds below ~150 lines).
    radius = max(0.6 * severity, _p("defocus_blur", severity)["radius"] * _short_side(rgb))
    return _filter_scaled(rgb, _disk_kernel, radius, max_extent=4.0)


def _motion_blur(rgb, severity, rng):
    length = max(1.0 + severity, _p("motion_blur", severity)["length"] * _short_side(rgb))
    angle = float(rng.uniform(-45.0, 45.0))
    return _filter_scaled(rgb, lambda ext: _line_kernel(ext, angle), length, max_extent=9.0)


def _jpeg(rgb, severity, rng):
    data = encode(rgb, _p("jpeg", severity)["quality"])
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _pixelate(rgb, severity, rng):
    h, w = rgb.shape[:2]
    block = max(severity + 1, round(_p("pixelate", severity)["block"] * _short_side(rgb)))
    small = cv2.resize(rgb, (max(1, math.ceil(w / block)), max(1, math.ceil(h / block))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


_AIRLIGHT = (226.0, 231.0, 238.0)  # slightly blue-white haze


@functools.lru_cache(maxsize=8)
def _fog_weights(height: int, width: int, severity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    beta = _p("fog", severity)["beta"]
    # Depth-ish: the top of the view (the distance, the horizon) is farther than the bottom.
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    depth = 1.0 - 0.65 * y
    t = np.broadcast_to(np.exp(-beta * depth), (height, width)).astype(np.float32)
    air = np.empty((height, width, 3), np.uint8)
    air[:] = np.array(_AIRLIGHT, np.uint8)
    for a in (t, air):
        a.setflags(write=False)
    return t, (1.0 - t).astype(np.float32), air


def _fog(rgb, severity, rng):
    # Koschmieder's model: I = J * t + A * (1 - t), t = exp(-beta * depth).
    t, one_minus_t, air = _fog_weights(rgb.shape[0], rgb.shape[1], severity)
    return cv2.blendLinear(np.ascontiguousarray(rgb), air, t, one_minus_t)


def _colour_cast(rgb, severity, rng):
    a = _p("colour_cast", severity)["shift"]
    gains = np.array([1.0 + a, 1.0 + 0.2 * a, 1.0 - a])[:, None]  # warm (tungsten-like) balance
    return _lut(rgb, _LEVELS[None, :] * gains)


def _saturation(rgb, severity, rng):
    s = _p("saturation", severity)["factor"]
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(rgb, s, grey, 1.0 - s, 0.0)


def _knock_params(severity: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(roll degrees, shift direction radians, shift as a fraction of view width, zoom)."""
    p = _p("knocked", severity)
    roll = p["roll_deg"] * (1.0 if rng.random() < 0.5 else -1.0)
    return roll, float(rng.uniform(0.0, 2.0 * math.pi)), p["shift"], p["zoom"]


def _knocked(rgb, severity, rng):
    # Frame-only version: re-project the frame itself (mirrored at the borders). Camera does
    # better: it re-renders its view of the photograph, so new parts of the scene come in.
    h, w = rgb.shape[:2]
    roll, direction, shift, zoom = _knock_params(severity, rng)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), roll, zoom)
    m[0, 2] += shift * w * math.cos(direction)
    m[1, 2] += shift * w * math.sin(direction)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


# Parameters per severity (1..5). Spatial ones are fractions of the image's short side so a
# severity means the same at 320x240 and 1920x1080.
_PARAMS: dict[str, tuple[Mapping[str, Any], ...]] = {
    "brightness": tuple({"ev": v} for v in (0.5, 1.0, 1.5, 2.0, 2.5)),
    "contrast": tuple({"factor": v} for v in (0.75, 0.6, 0.45, 0.32, 0.2)),
    "dusk": tuple(
        {"gamma": g, "gain": k, "cast": c, "noise_sigma": s}
        for g, k, c, s in ((1.2, 0.85, 0.04, 2.0), (1.4, 0.7, 0.07, 3.5), (1.65, 0.55, 0.1, 5.0),
                           (1.9, 0.42, 0.13, 7.0), (2.2, 0.32, 0.16, 9.0))
    ),
    "gaussian_noise": tuple({"sigma": v} for v in (6.0, 10.0, 16.0, 24.0, 36.0)),
    "impulse_noise": tuple({"amount": v} for v in (0.005, 0.01, 0.02, 0.04, 0.07)),
    "defocus_blur": tuple({"radius": v} for v in (0.006, 0.01, 0.015, 0.022, 0.032)),
    "motion_blur": tuple({"length": v} for v in (0.012, 0.022, 0.035, 0.05, 0.07)),
    "jpeg": tuple({"quality": v} for v in (30, 20, 15, 10, 7)),
    "pixelate": tuple({"block": v} for v in (0.004, 0.007, 0.011, 0.016, 0.024)),
    "fog": tuple({"beta": v} for v in (0.25, 0.45, 0.7, 1.0, 1.4)),
    "colour_cast": tuple({"shift": v} for v in (0.05, 0.1, 0.16, 0.23, 0.3)),
    "saturation": tuple({"factor": v} for v in (0.8, 0.6, 0.4, 0.25, 0.1)),
    "knocked": tuple(
        {"roll_deg": r, "shift": s, "zoom": z}
        for r, s, z in ((2.0, 0.1, 1.0), (3.0, 0.15, 1.05), (4.5, 0.2, 1.1), (6.0, 0.25, 1.15),
                        (8.0, 0.3, 1.2))
    ),
}

SHIFTS: dict[str, ShiftSpec] = {
    s.name: s
    for s in (
        ShiftSpec("brightness", _brightness, "under-exposure: a lost light, a dirty or "
                  "shaded housing, auto-exposure stuck after a scene change", _PARAMS["brightness"],
                  "scene"),
        ShiftSpec("contrast", _contrast, "flattened tones: a smeared or scratched window, "
                  "glare, a changed tone curve", _PARAMS["contrast"], "image"),
        ShiftSpec("dusk", _dusk, "evening light: gamma darkening, cool shadows and warm "
                  "street-light highlights, more sensor noise from raised gain", _PARAMS["dusk"],
                  "scene"),
        ShiftSpec("gaussian_noise", _gaussian_noise, "sensor noise: high gain, heat, an "
                  "ageing sensor", _PARAMS["gaussian_noise"], "image"),
        ShiftSpec("impulse_noise", _impulse_noise, "salt-and-pepper: dead/hot pixels, bit "
                  "errors on a bad link", _PARAMS["impulse_noise"], "image"),
        ShiftSpec("defocus_blur", _defocus_blur, "out of focus (disk kernel): a focus drift, "
                  "a swapped lens, condensation", _PARAMS["defocus_blur"], "scene"),
        ShiftSpec("motion_blur", _motion_blur, "camera shake or slow shutter (line kernel at "
                  "a random angle in +-45 degrees)", _PARAMS["motion_blur"], "scene"),
        ShiftSpec("jpeg", _jpeg, "re-compression at low quality: a bandwidth-saving encoder "
                  "setting, a transcoding proxy", _PARAMS["jpeg"], "image"),
        ShiftSpec("pixelate", _pixelate, "resolution loss: a lower stream profile up-scaled "
                  "back", _PARAMS["pixelate"], "image"),
        ShiftSpec("fog", _fog, "haze/fog: blend toward a bright airlight, denser with "
                  "(depth-ish) distance to the top of the view", _PARAMS["fog"], "scene"),
        ShiftSpec("colour_cast", _colour_cast, "white-balance shift (warm): a failed AWB, a "
                  "new light source", _PARAMS["colour_cast"], "image"),
        ShiftSpec("saturation", _saturation, "desaturation: a firmware colour-pipeline change",
                  _PARAMS["saturation"], "image"),
        ShiftSpec("knocked", _knocked, "the camera knocked to a new view: rolled, pointed at "
                  "another part of the scene, zoomed", _PARAMS["knocked"], "view"),
    )
}


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
    out = cv2.warpAffine(photo, m, (width + 2 * pad, height + 2 * pad), flags=cv2.INTER_CUBIC,
                         borderMode=cv2.BORDER_REFLECT101)
    # Up-scaling a ~500 px photograph to a camera frame softens it; restore some crispness.
    sigma = max(0.8, 0.5 * scale)
    soft = cv2.GaussianBlur(out, (0, 0), sigma)
    return cv2.addWeighted(out, 1.6, soft, -0.6, 0.0)


class Camera:
    """One camera looking at one scene, with stationary frame-to-frame variation.

    Parameters
    ----------
    camera_id : the camera's id (a Kafka key).
    scene : one of :data:`SCENES`.
    width, height : frame size in pixels.
    seed : everything about the camera (its view, noise level, every frame) derives from it.

    Notes
    -----
    ``frame(t)`` is a pure function of ``(seed, t)`` and the current shift; frames are iid over
    ``t``. Variation per frame: a global gain (sd 2%, clipped to +-5%) with a per-channel wobble
    (sd 0.7%) and an offset (sd 1 grey level); a view jitter of up to one pixel at 1080 lines
    (proportionally less, sub-pixel, at smaller sizes); a small object
    (ellipse or rectangle, random colour, 3-12% of the short side) in about 30% of frames; sensor
    noise (a per-camera sd of 1.5-3.5 grey levels). A shift at stage ``"scene"`` acts on the
    light before the sensor noise, one at ``"image"`` after it; ``knocked`` re-renders the view.
    The base view is rendered on the first frame and cached.
    """

    def __init__(self, camera_id: str, scene: str, *, width: int = 1920, height: int = 1080,
                 seed: int) -> None:
        if scene not in _SCENE_FILES:
            raise ValueError(f"unknown scene {scene!r}; choose one of {', '.join(SCENES)}")
        if width < 16 or height < 16:
            raise ValueError(f"frame size must be at least 16x16, got {width}x{height}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.camera_id = camera_id
        self.scene = scene
        self.width = int(width)
        self.height = int(height)
        self.seed = int(seed)
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
        return (f"Camera({self.camera_id!r}, {self.scene!r}, width={self.width}, "
                f"height={self.height}, seed={self.seed}, shift={self._shift})")

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
        _check_severity(severity)
        self._shift = (name, int(severity))

    def _knocked_view(self, severity: int) -> _View:
        """Where the camera points after a knock; fixed per camera and severity."""
        roll, direction, shift, zoom = _knock_params(
            severity, np.random.default_rng([self.seed, 2, severity]))
        ph, pw = load_scene(self.scene).shape[:2]
        v = self._view
        crop_w = v.crop_w / zoom
        half_w, half_h = crop_w / 2, crop_w * self.height / self.width / 2
        dist = shift * v.crop_w
        best = None
        for d in (direction, direction + math.pi, direction + math.pi / 2, direction - math.pi / 2):
            cx = min(max(v.cx + dist * math.cos(d), half_w), pw - half_w)
            cy = min(max(v.cy + dist * math.sin(d), half_h), ph - half_h)
            moved = math.hypot(cx - v.cx, cy - v.cy)
            if best is None or moved > best[0] + 1e-9:
                best = (moved, cx, cy)
            if moved >= 0.999 * dist:
                break
        _, cx, cy = best
        return _View(cx=cx, cy=cy, crop_w=crop_w, roll=v.roll + roll)

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
        if int(t) < 0:
            raise ValueError(f"frame number must be non-negative, got {t}")
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
            shift = np.float32([[1, 0, _JITTER + jx], [0, 1, _JITTER + jy]])
            view = cv2.warpAffine(base, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_REFLECT101)
        img = cv2.transform(view, m)
        if has_object:
            cx, cy = (int(round(v)) for v in obj_centre)
            ax, ay = (max(1, int(round(v / 2))) for v in obj_size)
            if obj_kind == 0:
                cv2.ellipse(img, (cx, cy), (ax, ay), obj_angle, 0, 360, obj_colour, -1, cv2.LINE_AA)
            else:
                cv2.rectangle(img, (cx - ax, cy - ay), (cx + ax, cy + ay), obj_colour, -1)

        spec = SHIFTS[self._shift[0]] if self._shift else None
        shift_rng = np.random.default_rng([self.seed, 4, int(t)])
        if spec is not None and spec.stage == "scene":
            img = spec.fn(img, self._shift[1], shift_rng)
        img = _add_noise(img, self.noise_sigma, rng, key=1)
        if spec is not None and spec.stage == "image":
            img = spec.fn(img, self._shift[1], shift_rng)
        return img


def make_fleet(n_cameras: int, *, seed: int, width: int = 1920, height: int = 1080) -> list[Camera]:
    """``n_cameras`` cameras ``cam-000``, ``cam-001``, ... cycling over :data:`SCENES`.

    Each camera's seed derives from ``seed`` and its index, so cameras of the same scene look
    at different crops of it.
    """
    if n_cameras < 0:
        raise ValueError(f"n_cameras must be non-negative, got {n_cameras}")
    seeds = np.random.SeedSequence([int(seed), 0xF1EE7]).generate_state(n_cameras, np.uint32) \
        if n_cameras else []
    return [
        Camera(f"cam-{i:03d}", SCENES[i % len(SCENES)], width=width, height=height,
               seed=int(seeds[i]))
        for i in range(n_cameras)
    ]
