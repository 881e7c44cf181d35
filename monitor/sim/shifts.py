"""Named image shifts (faults) with five severities, for :class:`monitor.sim.fleet.Camera`.

Shifts follow the spirit of the ImageNet-C corruptions (Hendrycks & Dietterich, 2019,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR) with a
severity scale 1..5 (3 is the middle); the parameters are our own and spatial ones scale with
the frame size (see ``docs/fleet.md``).

Examples
--------
>>> import numpy as np
>>> img = np.full((48, 64, 3), 120, np.uint8)
>>> out = SHIFTS["brightness"](img, 4, np.random.default_rng(0))
>>> out.shape, bool(out.mean() < img.mean())
((48, 64, 3), True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from monitor.sim.imaging import (
    LEVELS,
    add_noise,
    disk_kernel,
    encode,
    filter_scaled,
    line_kernel,
    lut,
    short_side,
)

__all__ = ["SEVERITIES", "SHIFTS", "ShiftSpec", "check_severity", "knock_params"]

SEVERITIES = (1, 2, 3, 4, 5)

ShiftFn = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class ShiftSpec:
    """A named image shift with five severities.

    Calling the spec is calling ``fn(rgb, severity, rng)``: RGB uint8 in, RGB uint8 of the same
    shape out. ``params[severity - 1]`` holds the parameters used at that severity. ``stage``
    says where :class:`Camera` applies it: ``"scene"`` before sensor noise (light and optics:
    what reaches the sensor changed), ``"image"`` after it (noise, processing, encoding), or
    ``"view"`` (geometry: the camera re-renders its view of the photograph once). ``fixed``
    says a camera draws the shift's randomness once (per camera) instead of per frame: what
    covers a lens stays where it is.
    """

    name: str
    fn: ShiftFn
    models: str
    params: tuple[Mapping[str, Any], ...]
    stage: str = "image"
    fixed: bool = False

    def __call__(
        self, rgb: np.ndarray, severity: int = 3, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        check_severity(severity)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected RGB uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
        return self.fn(rgb, severity, rng if rng is not None else np.random.default_rng(0))


def check_severity(severity: int) -> None:
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of 1..5, got {severity!r}")


def _p(name: str, severity: int) -> Mapping[str, Any]:
    return _PARAMS[name][severity - 1]


def _brightness(rgb, severity, rng):
    # Exposure drop of `ev` stops in linear light; on sRGB-ish values that is a gain of 2^(-ev/2.2).
    gain = 2.0 ** (-_p("brightness", severity)["ev"] / 2.2)
    return lut(rgb, np.tile(LEVELS * gain, (3, 1)))


def _contrast(rgb, severity, rng):
    c = _p("contrast", severity)["factor"]
    means = np.array(cv2.mean(rgb)[:3])[:, None]
    return lut(rgb, (LEVELS[None, :] - means) * c + means)


def _dusk(rgb, severity, rng):
    p = _p("dusk", severity)
    x = LEVELS / 255.0
    tone = p["gain"] * x ** p["gamma"]
    # Split tone: cool (twilight sky) shadows, warm (street lights) highlights.
    warm = p["cast"] * (x - 0.35)
    curves = 255.0 * np.stack([tone * (1 + warm), tone, tone * (1 - warm)])
    return add_noise(lut(rgb, curves), p["noise_sigma"], rng, key=2)


def _gaussian_noise(rgb, severity, rng):
    return add_noise(rgb, _p("gaussian_noise", severity)["sigma"], rng, key=3)


def _impulse_noise(rgb, severity, rng):
    out = rgb.copy()
    flat = out.reshape(-1)
    k = int(round(_p("impulse_noise", severity)["amount"] * flat.size))
    idx = rng.integers(0, flat.size, size=k)
    flat[idx] = rng.integers(0, 2, size=k, dtype=np.uint8) * np.uint8(255)
    return out


def _defocus_blur(rgb, severity, rng):
    # The floor keeps severities distinct on thumbnails (it binds below ~150 lines).
    radius = max(0.6 * severity, _p("defocus_blur", severity)["radius"] * short_side(rgb))
    return filter_scaled(rgb, disk_kernel, radius, max_extent=4.0)


def _motion_blur(rgb, severity, rng):
    length = max(1.0 + severity, _p("motion_blur", severity)["length"] * short_side(rgb))
    angle = float(rng.uniform(-45.0, 45.0))
    return filter_scaled(rgb, lambda ext: line_kernel(ext, angle), length, max_extent=9.0)


def _jpeg(rgb, severity, rng):
    data = encode(rgb, _p("jpeg", severity)["quality"])
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None  # a JPEG we just encoded
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _pixelate(rgb, severity, rng):
    h, w = rgb.shape[:2]
    block = max(severity + 1, round(_p("pixelate", severity)["block"] * short_side(rgb)))
    small = cv2.resize(
        rgb,
        (max(1, math.ceil(w / block)), max(1, math.ceil(h / block))),
        interpolation=cv2.INTER_AREA,
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


_AIRLIGHT = (226.0, 231.0, 238.0)  # slightly blue-white haze


@functools.lru_cache(maxsize=8)
def _fog_weights(
    height: int, width: int, severity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
    return lut(rgb, LEVELS[None, :] * gains)


def _saturation(rgb, severity, rng):
    s = _p("saturation", severity)["factor"]
    grey = cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(rgb, s, grey, 1.0 - s, 0.0)


def knock_params(severity: int, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(roll degrees, shift direction radians, shift as a fraction of view width, zoom)."""
    p = _p("knocked", severity)
    roll = p["roll_deg"] * (1.0 if rng.random() < 0.5 else -1.0)
    return roll, float(rng.uniform(0.0, 2.0 * math.pi)), p["shift"], p["zoom"]


def _knocked(rgb, severity, rng):
    # Frame-only version: re-project the frame itself (mirrored at the borders). Camera does
    # better: it re-renders its view of the photograph, so new parts of the scene come in.
    h, w = rgb.shape[:2]
    roll, direction, shift, zoom = knock_params(severity, rng)
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), roll, zoom)
    m[0, 2] += shift * w * math.cos(direction)
    m[1, 2] += shift * w * math.sin(direction)
    return cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def _cover_mask(height: int, width: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """A soft blob (float32 0..1) entering from the border and covering ``share`` of the frame.

    The blob is the set of points nearest to an anchor just outside the frame, its outline
    roughened by smooth noise; the threshold is the ``share`` quantile, so the area is exact
    before the edge is feathered. The same ``rng`` state gives nested blobs for growing shares.
    """
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    coarse = rng.normal(0.0, 1.0, size=(4, 6)).astype(np.float32)
    gh = min(48, height)
    gw = max(1, round(gh * width / height))
    y, x = np.mgrid[0:gh, 0:gw].astype(np.float32)
    y, x = (y + 0.5) / gh - 0.5, ((x + 0.5) / gw - 0.5) * (width / height)
    # Anchor: where a ray from the centre at `angle` leaves the frame, pushed a little outside.
    dx, dy = math.cos(angle), math.sin(angle)
    reach = min(0.5 * width / height / max(abs(dx), 1e-9), 0.5 / max(abs(dy), 1e-9)) + 0.05
    dist = np.hypot(x - reach * dx, y - reach * dy)
    rough = cv2.resize(coarse, (gw, gh), interpolation=cv2.INTER_CUBIC)
    field = dist * (1.0 + 0.15 * rough)  # relative roughness: an outline, not islands
    inside = (field <= np.quantile(field, share)).astype(np.float32)
    soft = cv2.GaussianBlur(inside, (0, 0), max(0.6, 0.03 * gh))
    return cv2.resize(soft, (width, height), interpolation=cv2.INTER_LINEAR)


def _lens_covered(rgb, severity, rng):
    h, w = rgb.shape[:2]
    p = _p("lens_covered", severity)
    mask = _cover_mask(h, w, p["share"], rng)
    # Right on the lens, the cover is far out of focus: a little light leaks through, blurred.
    blurred = cv2.resize(
        cv2.resize(rgb, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA),
        (w, h),
        interpolation=cv2.INTER_LINEAR,
    )
    cover = cv2.addWeighted(blurred, p["transmit"], np.full_like(rgb, 14), 1.0, 0.0)
    return cv2.blendLinear(np.ascontiguousarray(rgb), cover, 1.0 - mask, mask)


# Parameters per severity (1..5). Spatial ones are fractions of the image's short side so a
# severity means the same at 320x240 and 1920x1080.
_PARAMS: dict[str, tuple[Mapping[str, Any], ...]] = {
    "brightness": tuple({"ev": v} for v in (0.5, 1.0, 1.5, 2.0, 2.5)),
    "contrast": tuple({"factor": v} for v in (0.75, 0.6, 0.45, 0.32, 0.2)),
    "dusk": tuple(
        {"gamma": g, "gain": k, "cast": c, "noise_sigma": s}
        for g, k, c, s in (
            (1.2, 0.85, 0.04, 2.0),
            (1.4, 0.7, 0.07, 3.5),
            (1.65, 0.55, 0.1, 5.0),
            (1.9, 0.42, 0.13, 7.0),
            (2.2, 0.32, 0.16, 9.0),
        )
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
        for r, s, z in (
            (2.0, 0.1, 1.0),
            (3.0, 0.15, 1.05),
            (4.5, 0.2, 1.1),
            (6.0, 0.25, 1.15),
            (8.0, 0.3, 1.2),
        )
    ),
    "lens_covered": tuple(
        {"share": a, "transmit": k}
        for a, k in ((0.04, 0.25), (0.09, 0.22), (0.16, 0.2), (0.27, 0.17), (0.42, 0.15))
    ),
}

SHIFTS: dict[str, ShiftSpec] = {
    s.name: s
    for s in (
        ShiftSpec(
            "brightness",
            _brightness,
            "under-exposure: a lost light, a dirty or "
            "shaded housing, auto-exposure stuck after a scene change",
            _PARAMS["brightness"],
            "scene",
        ),
        ShiftSpec(
            "contrast",
            _contrast,
            "flattened tones: a smeared or scratched window, glare, a changed tone curve",
            _PARAMS["contrast"],
            "image",
        ),
        ShiftSpec(
            "dusk",
            _dusk,
            "evening light: gamma darkening, cool shadows and warm "
            "street-light highlights, more sensor noise from raised gain",
            _PARAMS["dusk"],
            "scene",
        ),
        ShiftSpec(
            "gaussian_noise",
            _gaussian_noise,
            "sensor noise: high gain, heat, an ageing sensor",
            _PARAMS["gaussian_noise"],
            "image",
        ),
        ShiftSpec(
            "impulse_noise",
            _impulse_noise,
            "salt-and-pepper: dead/hot pixels, bit errors on a bad link",
            _PARAMS["impulse_noise"],
            "image",
        ),
        ShiftSpec(
            "defocus_blur",
            _defocus_blur,
            "out of focus (disk kernel): a focus drift, a swapped lens, condensation",
            _PARAMS["defocus_blur"],
            "scene",
        ),
        ShiftSpec(
            "motion_blur",
            _motion_blur,
            "camera shake or slow shutter (line kernel at a random angle in +-45 degrees)",
            _PARAMS["motion_blur"],
            "scene",
        ),
        ShiftSpec(
            "jpeg",
            _jpeg,
            "re-compression at low quality: a bandwidth-saving encoder "
            "setting, a transcoding proxy",
            _PARAMS["jpeg"],
            "image",
        ),
        ShiftSpec(
            "pixelate",
            _pixelate,
            "resolution loss: a lower stream profile up-scaled back",
            _PARAMS["pixelate"],
            "image",
        ),
        ShiftSpec(
            "fog",
            _fog,
            "haze/fog: blend toward a bright airlight, denser with "
            "(depth-ish) distance to the top of the view",
            _PARAMS["fog"],
            "scene",
        ),
        ShiftSpec(
            "colour_cast",
            _colour_cast,
            "white-balance shift (warm): a failed AWB, a new light source",
            _PARAMS["colour_cast"],
            "image",
        ),
        ShiftSpec(
            "saturation",
            _saturation,
            "desaturation: a firmware colour-pipeline change",
            _PARAMS["saturation"],
            "image",
        ),
        ShiftSpec(
            "knocked",
            _knocked,
            "the camera knocked to a new view: rolled, pointed at "
            "another part of the scene, zoomed",
            _PARAMS["knocked"],
            "view",
        ),
        ShiftSpec(
            "lens_covered",
            _lens_covered,
            "something on the lens (a leaf, tape, mud, a "
            "spider's web): a dark, far out-of-focus blob entering from the border",
            _PARAMS["lens_covered"],
            "scene",
            fixed=True,
        ),
    )
}
