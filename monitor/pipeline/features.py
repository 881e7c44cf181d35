"""Features stage: one float32 vector of image statistics per decoded frame.

Every statistic is computed on ``Decoded.rgb``, i.e. at analysis resolution (longer side
``DecodeLimits.analysis_size``), so a reference built from 4K stills and live 1080p frames
measure sharpness, noise and edges at the same scale. The definitions, units, ranges and
what a change in each means for a camera are in ``docs/features.md``.

Intensity-valued statistics are in 8-bit grey levels (0..255), as the literature quotes
them (variance of the Laplacian, Immerkær's sigma, Hasler & Süsstrunk's colourfulness);
fractions and shares are in [0, 1].

Speed is a requirement (this runs once per frame on the consume loop): the work is a
handful of OpenCV calls on uint8 planes plus closed-form algebra on their sums. Second
moments of channel differences come from ``cv2.norm(a, b, NORM_L2SQR)``, luma moments from
the 256-bin histogram; no float copy of the image is ever made.

Examples
--------
>>> import numpy as np
>>> from monitor.pipeline.decode import Decoded
>>> img = np.zeros((100, 100, 3), np.uint8)
>>> img[:, 50:] = 255                     # left half black, right half white
>>> f = dict(zip(FEATURE_NAMES, compute_features(Decoded(img, 100, 100, 5000, "png"))))
>>> [float(f[k]) for k in ("brightness_mean", "luma_entropy", "overexposed_fraction")]
[127.5, 1.0, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from monitor.pipeline.decode import Decoded

__all__ = [
    "FEATURE_NAMES",
    "LAYOUT_GRID",
    "LAYOUT_SIZE",
    "compute_features",
    "compute_features_batch",
]

#: Names of the feature vector's columns, in order. Stable: they are Prometheus label
#: values and reference-set column names. Append only; never reorder or rename.
FEATURE_NAMES: tuple[str, ...] = (
    "brightness_mean",  # mean luma Y (BT.601), grey levels
    "brightness_std",  # standard deviation of luma, grey levels
    "contrast_rms",  # std(Y) / (mean(Y) + 1): RMS contrast relative to mean luminance
    "saturation_mean",  # mean HSV saturation, [0, 1]
    "hue_cos",  # chroma-weighted mean resultant of hue, cosine component
    "hue_sin",  # ... sine component
    "red_share",  # mean(R) / (mean(R) + mean(G) + mean(B))
    "green_share",
    "blue_share",
    "sharpness_laplacian_var",  # variance of the 3x3 Laplacian of luma
    "noise_sigma",  # Immerkær (1996) fast noise sigma of luma, grey levels
    "luma_entropy",  # Shannon entropy of the 256-bin luma histogram, bits
    "edge_density",  # fraction of pixels whose Sobel gradient exceeds EDGE_THRESHOLD
    "underexposed_fraction",  # fraction of pixels with Y < UNDEREXPOSED_BELOW
    "overexposed_fraction",  # fraction of pixels with Y > OVEREXPOSED_ABOVE
    "colourfulness",  # Hasler & Süsstrunk (2003) M
    "width",  # original width, pixels
    "height",  # original height, pixels
    "aspect_ratio",  # width / height
    "encoded_bytes_per_pixel",  # encoded bytes / (width * height)
    "orientation_entropy",  # entropy of the gradient-weighted edge-orientation histogram, bits
)

#: The smallest move of a window's mean worth calling a shift, per statistic, in its units: the
#: floor of the calibrated tests' scale (monitor/reference/fit.py). Without it a statistic that the
#: reference never saw move (no blown-out pixel in 400 frames) would declare a window with one
#: passing headlight drifted. A change of the frame's size by one pixel still is a shift.
FEATURE_RESOLUTION: dict[str, float] = {
    "brightness_mean": 0.25,
    "brightness_std": 0.25,
    "contrast_rms": 0.002,
    "saturation_mean": 0.002,
    "hue_cos": 0.002,
    "hue_sin": 0.002,
    "red_share": 0.001,
    "green_share": 0.001,
    "blue_share": 0.001,
    "sharpness_laplacian_var": 0.5,
    "noise_sigma": 0.01,
    "luma_entropy": 0.005,
    "edge_density": 0.0002,
    "underexposed_fraction": 0.0002,
    "overexposed_fraction": 0.0002,
    "colourfulness": 0.1,
    "width": 0.1,
    "height": 0.1,
    "aspect_ratio": 0.0005,
    "encoded_bytes_per_pixel": 0.001,
    "orientation_entropy": 0.005,
}

#: Luma below which a pixel counts as underexposed (Y < 16).
UNDEREXPOSED_BELOW = 16
#: Luma above which a pixel counts as overexposed (Y > 239).
OVEREXPOSED_ABOVE = 239
#: Edge threshold on the L1 Sobel gradient, in grey levels per pixel (|dY/dx| + |dY/dy|,
#: with the 3x3 Sobel normalised to unit gain).
EDGE_THRESHOLD = 24
#: Chroma (grey levels) added per pixel to the hue normaliser, so a grey frame's hue
#: components shrink smoothly to 0 instead of pointing wherever sensor noise points.
HUE_SHRINKAGE = 1.0
#: Bins of the edge-orientation histogram over [0, 180) degrees (an edge and its reverse agree).
ORIENTATION_BINS = 18
#: The edge-layout map's grid (columns, rows): the frame's gradient magnitude averaged over each
#: cell, where a fixed camera's edges are. A knocked or turned camera moves them while every
#: frame-wide statistic stays put (the ``view`` test, docs/detectors.md). 32x18 cells are square
#: on a 16:9 frame, 15 analysis pixels wide at 480x270.
LAYOUT_GRID = (32, 18)
LAYOUT_SIZE = LAYOUT_GRID[0] * LAYOUT_GRID[1]

_N_FEATURES = len(FEATURE_NAMES)
_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS_SQ = _LEVELS**2
_SQRT3_2 = math.sqrt(3.0) / 2.0
_IMMERKAER_1D = np.array([1.0, -2.0, 1.0], np.float32)  # M = k k^T, k = [1, -2, 1]
_IMMERKAER_SCALE = math.sqrt(math.pi / 2.0) / 6.0
# angle bin (rounded; 0..2 * ORIENTATION_BINS) -> orientation bin: an edge and its reverse agree
_ORIENTATION_LUT = (np.arange(256) % ORIENTATION_BINS).astype(np.uint8)


def compute_features(decoded: Decoded, layout: np.ndarray | None = None) -> np.ndarray:
    """Image statistics of one decoded frame: float32 array of shape ``(len(FEATURE_NAMES),)``.

    ``decoded.rgb`` must be (H, W, 3) uint8 RGB (what ``monitor.pipeline.decode.decode`` returns).
    ``layout``, when given (uint8, ``(LAYOUT_SIZE,)``), receives the frame's edge-layout map: its
    gradient magnitude in grey levels per pixel, averaged over the cells of :data:`LAYOUT_GRID`,
    row by row.
    """
    rgb = decoded.rgb
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if not rgb.flags.c_contiguous:
        rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    n = float(h * w)
    out = np.empty(_N_FEATURES, np.float64)

    # --- luma: moments, entropy and exposure from the 256-bin histogram -------------
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    hist = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    p = hist / n
    mean_y = float(p @ _LEVELS)
    std_y = math.sqrt(max(float(p @ _LEVELS_SQ) - mean_y * mean_y, 0.0))
    nz = p[p > 0]
    out[0] = mean_y
    out[1] = std_y
    out[2] = std_y / (mean_y + 1.0)
    out[11] = float(-(nz @ np.log2(nz))) + 0.0  # + 0.0: no -0.0 for a flat image
    out[13] = float(p[:UNDEREXPOSED_BELOW].sum())
    out[14] = float(p[OVEREXPOSED_ABOVE + 1 :].sum())

    # --- colour: channel planes, then sums and pairwise difference energies ----------
    r, g, b = cv2.split(rgb)
    mr, mg, mb = cv2.mean(rgb)[:3]
    total = mr + mg + mb
    if total > 0:
        out[6], out[7], out[8] = mr / total, mg / total, mb / total
    else:  # black frame: neutral balance
        out[6] = out[7] = out[8] = 1.0 / 3.0

    vmax = cv2.max(cv2.max(r, g), b)
    vmin = cv2.min(cv2.min(r, g), b)
    chroma = cv2.subtract(vmax, vmin)
    # HSV saturation S = C / V (0 where V = 0), exactly as cv2's RGB2HSV rounds it.
    out[3] = cv2.mean(cv2.divide(chroma, vmax, scale=255.0))[0] / 255.0
    # Hue as a circular quantity: the opponent vector (alpha, beta) of each pixel has
    # angle = hue and length = chroma, so its sum is the chroma-weighted resultant of the
    # hue angles. Normalised by total chroma (+ shrinkage), it lies in the unit disc.
    alpha = mr - 0.5 * (mg + mb)
    beta = _SQRT3_2 * (mg - mb)
    chroma_mean = cv2.norm(chroma, cv2.NORM_L1) / n
    out[4] = alpha / (chroma_mean + HUE_SHRINKAGE)
    out[5] = beta / (chroma_mean + HUE_SHRINKAGE)

    # Hasler & Süsstrunk: rg = R - G, yb = (R + G)/2 - B. With a = |R-B|^2, b2 = |G-B|^2,
    # c = |R-G|^2 (sums over pixels), |yb|^2 = (2a + 2b2 - c) / 4.
    e_rb = cv2.norm(r, b, cv2.NORM_L2SQR) / n
    e_gb = cv2.norm(g, b, cv2.NORM_L2SQR) / n
    e_rg = cv2.norm(r, g, cv2.NORM_L2SQR) / n
    mu_rg = mr - mg
    mu_yb = 0.5 * (mr + mg) - mb
    var_rg = max(e_rg - mu_rg * mu_rg, 0.0)
    var_yb = max(0.25 * (2.0 * e_rb + 2.0 * e_gb - e_rg) - mu_yb * mu_yb, 0.0)
    out[15] = math.sqrt(var_rg + var_yb) + 0.3 * math.sqrt(mu_rg * mu_rg + mu_yb * mu_yb)

    # --- structure: sharpness, noise, edges (on luma, at analysis size) ---------------
    lap = cv2.Laplacian(gray, cv2.CV_16S, ksize=1)
    lap_mean = cv2.mean(lap)[0]
    out[9] = max(cv2.norm(lap, cv2.NORM_L2SQR) / n - lap_mean * lap_mean, 0.0)

    if h >= 3 and w >= 3:
        # Immerkær, "Fast noise variance estimation", CVIU 64(2), 1996:
        # sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M| over interior pixels.
        resid = cv2.sepFilter2D(gray, cv2.CV_16S, _IMMERKAER_1D, _IMMERKAER_1D)
        l1 = cv2.norm(resid[1:-1, 1:-1], cv2.NORM_L1)
        out[10] = _IMMERKAER_SCALE * l1 / ((w - 2) * (h - 2))
    else:
        out[10] = 0.0

    dx, dy = cv2.spatialGradient(gray)  # 3x3 Sobel, gain 4 on a unit step
    grad = cv2.add(cv2.convertScaleAbs(dx, alpha=0.25), cv2.convertScaleAbs(dy, alpha=0.25))
    _, edges = cv2.threshold(grad, EDGE_THRESHOLD, 255, cv2.THRESH_BINARY)  # grad > T
    out[12] = cv2.countNonZero(edges) / n
    if layout is not None:
        layout[:] = cv2.resize(grad, LAYOUT_GRID, interpolation=cv2.INTER_AREA).ravel()
    out[20] = _orientation_entropy(dx, dy)

    # --- container: original geometry and compression -----------------------------
    out[16] = decoded.width
    out[17] = decoded.height
    out[18] = decoded.width / decoded.height
    out[19] = decoded.encoded_bytes / (decoded.width * decoded.height)
    return out.astype(np.float32)


def _orientation_entropy(dx: np.ndarray, dy: np.ndarray) -> float:
    """Shannon entropy (bits) of the histogram of gradient orientations, each pixel weighted by
    its gradient magnitude: how evenly the scene's edges point. A fixed camera's mix of edge
    directions (lane markings, kerbs, facades) is its own; a warped, rotated, pixelated or
    rain-streaked view changes the mix while its brightness, contrast and sharpness can stay put.

    Speed: the weighted histogram is a 2-D count of (orientation bin, magnitude level) on uint8
    planes (``cv2.calcHist``), the magnitude at unit gain in whole grey levels, saturating at
    255."""
    magnitude, angle = cv2.cartToPolar(
        dx.astype(np.float32), dy.astype(np.float32), angleInDegrees=True
    )
    bins = cv2.LUT(cv2.convertScaleAbs(angle, alpha=ORIENTATION_BINS / 180.0), _ORIENTATION_LUT)
    level = cv2.convertScaleAbs(magnitude, alpha=0.25)  # Sobel gain 4 -> grey levels per pixel
    counts = cv2.calcHist(
        [bins, level], [0, 1], None, [ORIENTATION_BINS, 256], [0, ORIENTATION_BINS, 0, 256]
    )
    weights = counts @ _LEVELS
    total = weights.sum()
    if total <= 0:  # a flat frame has no edges to point anywhere
        return 0.0
    p = weights[weights > 0] / total
    return float(-(p @ np.log2(p))) + 0.0


def compute_features_batch(frames: Sequence[Decoded]) -> np.ndarray:
    """``compute_features`` for each frame, stacked: float32 array ``(len(frames), F)``."""
    out = np.empty((len(frames), _N_FEATURES), np.float32)
    for i, frame in enumerate(frames):
        out[i] = compute_features(frame)
    return out
