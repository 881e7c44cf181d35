"""A synthetic fleet of cameras built from real photographs, with named image shifts.

Used by ``driftmon demo``, the integration tests and the detection-quality benchmark. Pure
numpy/OpenCV: no Kafka here; producers encode the frames with :func:`encode` and send them.

A :class:`Camera` looks at one photograph (a *scene*) through a fixed, camera-specific view
(crop, slight roll, up-scaled to the frame size). Frame ``t`` is a deterministic function of the
camera's seed and ``t``, and frames are independent and identically distributed across ``t``:
illumination jitter (gain/offset and a slight white-balance wobble), a one-pixel view jitter,
occasional small objects passing through, and sensor noise. The distribution is stationary until
:meth:`Camera.set_shift` applies one of :data:`SHIFTS`.

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
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np

from monitor.sim.imaging import add_noise, encode
from monitor.sim.shifts import SHIFTS, ShiftSpec, check_severity, knock_params

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
        check_severity(severity)
        self._shift = (name, int(severity))

    def _knocked_view(self, severity: int) -> _View:
        """Where the camera points after a knock; fixed per camera and severity."""
        roll, direction, shift, zoom = knock_params(
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
        shift_rng = self._shift_rng(spec, t)
        if spec is not None and spec.stage == "scene":
            img = spec.fn(img, self._shift[1], shift_rng)
        img = add_noise(img, self.noise_sigma, rng, key=1)
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
