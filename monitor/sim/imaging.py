"""Pixel helpers for the synthetic fleet: JPEG encoding, cheap sensor noise, tone curves, blurs.

Everything works on RGB (or grey) uint8 images with OpenCV and returns new arrays; nothing here
knows about cameras or time.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import cv2
import numpy as np

__all__ = [
    "encode",
    "noise_bank",
    "add_noise",
    "streak_bank",
    "lut",
    "LEVELS",
    "short_side",
    "filter_scaled",
    "disk_kernel",
    "line_kernel",
]

# Noise banks: a large pre-drawn N(0, BANK_SIGMA) field stored as uint8 around 128; a frame's
# noise is a window at a random offset, scaled. Drawing 6M normals per 1080p frame would cost
# ~50 ms; a window costs nothing and two random windows are uncorrelated.
BANK_SIGMA = 16.0
BANK_PAD = 64


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
def noise_bank(height: int, width: int, key: int) -> np.ndarray:
    rng = np.random.default_rng([0x5EED, key, height, width])
    bank = rng.normal(128.0, BANK_SIGMA, size=(height + BANK_PAD, width + BANK_PAD, 3))
    bank = np.clip(np.rint(bank), 0, 255).astype(np.uint8)
    bank.setflags(write=False)
    return bank


def add_noise(
    img: np.ndarray, sigma: float, rng: np.random.Generator, key: int, grey: bool = False
) -> np.ndarray:
    """``img`` plus zero-mean Gaussian noise of ``sigma`` grey levels (saturated to uint8).

    ``grey``: the same noise in every channel (a monochrome sensor), so grey stays grey.
    """
    h, w = img.shape[:2]
    bank = noise_bank(h, w, key)
    oy, ox = (int(v) for v in rng.integers(0, BANK_PAD + 1, size=2))
    k = float(sigma) / BANK_SIGMA
    window = bank[oy : oy + h, ox : ox + w]
    if grey:
        window = cv2.cvtColor(np.ascontiguousarray(window[..., 0]), cv2.COLOR_GRAY2RGB)
    return cv2.addWeighted(img, 1.0, window, k, -128.0 * k)


def lut(img: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Apply per-channel tone curves ``curves`` (3x256 float, output grey levels)."""
    table = np.clip(np.rint(curves), 0, 255).astype(np.uint8).T.reshape(256, 1, 3)
    return cv2.LUT(np.ascontiguousarray(img), table)


LEVELS = np.arange(256, dtype=np.float64)


def short_side(img: np.ndarray) -> int:
    return min(img.shape[0], img.shape[1])


def filter_scaled(
    img: np.ndarray,
    kernel_fn: Callable[[float], np.ndarray],
    extent: float,
    max_extent: float = 9.0,
) -> np.ndarray:
    """Convolve with ``kernel_fn(extent)``; large kernels run on a reduced image, then up-scale.

    A blurred image has little left above the blur's cut-off, so blurring at 1/f the size and
    up-sampling is close to blurring in place, and 1080p blurs stay at a few milliseconds.
    """
    h, w = img.shape[:2]
    f = max(1, math.ceil(extent / max_extent))
    if f == 1:
        return cv2.filter2D(img, -1, kernel_fn(extent), borderType=cv2.BORDER_REFLECT101)
    small = cv2.resize(
        img, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA
    )
    small = cv2.filter2D(small, -1, kernel_fn(extent / f), borderType=cv2.BORDER_REFLECT101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def disk_kernel(radius: float) -> np.ndarray:
    r = max(radius, 0.5)
    n = math.ceil(r)
    y, x = np.mgrid[-n : n + 1, -n : n + 1]
    k = np.clip(r + 0.5 - np.hypot(x, y), 0.0, 1.0).astype(np.float32)  # anti-aliased edge
    return k / k.sum()


def line_kernel(length: float, angle_deg: float) -> np.ndarray:
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
    for dx, dy, wgt in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(k, (yi, xi), wgt.astype(np.float32))
    return k / k.sum()


@functools.lru_cache(maxsize=8)
def streak_bank(height: int, width: int) -> np.ndarray:
    """A field of rain streaks (grey uint8, 0 between streaks) ``BANK_PAD`` larger than the frame.

    Sparse drops smeared along a slanted line as long as 4% of the short side: a frame takes a
    window at a random offset, as with the noise bank, so streaks differ from frame to frame.
    """
    rng = np.random.default_rng([0x5EED, 0xA1, height, width])
    h, w = height + BANK_PAD, width + BANK_PAD
    drops = (rng.random((h, w)) < 0.0012).astype(np.float32) * rng.uniform(0.5, 1.0, (h, w)).astype(
        np.float32
    )
    length = max(3.0, 0.04 * min(height, width))
    kernel = line_kernel(length, 75.0) * length  # keep a drop's brightness along its streak
    streaks = cv2.filter2D(drops, -1, kernel, borderType=cv2.BORDER_REFLECT101)
    bank = np.clip(np.rint(120.0 * streaks), 0, 255).astype(np.uint8)
    bank.setflags(write=False)
    return bank
