"""Tests for monitor.pipeline.features: hand-computed values, reference formulas, and the direction
each feature moves under a controlled change of the scene."""

from __future__ import annotations

import math
import re

import cv2
import numpy as np
import pytest
from scipy.signal import convolve2d
from scipy.stats import entropy
from skimage import data as skdata

from monitor.pipeline.decode import Decoded, DecodeLimits, decode
from monitor.pipeline.features import (
    EDGE_THRESHOLD,
    FEATURE_NAMES,
    LAYOUT_GRID,
    LAYOUT_SIZE,
    compute_features,
    compute_features_batch,
)

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def feats(
    rgb: np.ndarray,
    width: int | None = None,
    height: int | None = None,
    encoded_bytes: int = 10_000,
) -> dict[str, float]:
    h, w = rgb.shape[:2]
    d = Decoded(
        rgb=rgb, width=width or w, height=height or h, encoded_bytes=encoded_bytes, format="png"
    )
    return {k: float(v) for k, v in zip(FEATURE_NAMES, compute_features(d), strict=True)}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A natural colour photograph at analysis size (RGB uint8, 480 x 320)."""
    return cv2.resize(skdata.coffee(), (480, 320), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------ the contract


def test_names_are_unique_snake_case() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for name in FEATURE_NAMES:
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", name), name
    for required in (
        "brightness_mean",
        "brightness_std",
        "contrast_rms",
        "saturation_mean",
        "hue_cos",
        "hue_sin",
        "red_share",
        "green_share",
        "blue_share",
        "sharpness_laplacian_var",
        "noise_sigma",
        "luma_entropy",
        "edge_density",
        "underexposed_fraction",
        "overexposed_fraction",
        "colourfulness",
        "width",
        "height",
        "aspect_ratio",
        "encoded_bytes_per_pixel",
        "orientation_entropy",
    ):
        assert required in IDX


def test_vector_shape_dtype_and_finiteness(photo: np.ndarray) -> None:
    v = compute_features(Decoded(photo, 1920, 1280, 250_000, "jpeg"))
    assert v.shape == (len(FEATURE_NAMES),) and v.dtype == np.float32
    assert np.isfinite(v).all()


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (1, 7), (9, 1), (3, 3)])
@pytest.mark.parametrize("value", [0, 255])
def test_degenerate_images_give_finite_values(shape: tuple[int, int], value: int) -> None:
    f = feats(np.full(shape + (3,), value, np.uint8))
    assert all(math.isfinite(x) for x in f.values())
    assert f["brightness_mean"] == value and f["brightness_std"] == 0
    assert f["red_share"] == pytest.approx(1 / 3)


def test_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError):
        compute_features(Decoded(np.zeros((4, 4), np.uint8), 4, 4, 10, "png"))
    with pytest.raises(ValueError):
        compute_features(Decoded(np.zeros((4, 4, 3), np.float32), 4, 4, 10, "png"))


def test_non_contiguous_input_gives_same_values(photo: np.ndarray) -> None:
    view = photo[:, ::-1]  # negative stride
    assert feats(view) == feats(np.ascontiguousarray(view))


def test_batch_equals_stacked_singles(photo: np.ndarray) -> None:
    frames = [
        Decoded(photo, 480, 320, 9000, "jpeg"),
        Decoded(photo[::2, ::2].copy(), 240, 160, 4000, "png"),
    ]
    batch = compute_features_batch(frames)
    assert batch.shape == (2, len(FEATURE_NAMES)) and batch.dtype == np.float32
    np.testing.assert_array_equal(batch, np.stack([compute_features(f) for f in frames]))
    assert compute_features_batch([]).shape == (0, len(FEATURE_NAMES))


# ------------------------------------------------------------------ hand-computed values


def test_half_black_half_white() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    img[:, 50:] = 255
    f = feats(img, width=400, height=100, encoded_bytes=2000)
    assert f["brightness_mean"] == 127.5
    assert f["brightness_std"] == 127.5  # every pixel is 127.5 from the mean
    assert f["contrast_rms"] == pytest.approx(127.5 / 128.5)
    assert f["luma_entropy"] == 1.0  # two equally likely levels: one bit
    assert f["underexposed_fraction"] == 0.5
    assert f["overexposed_fraction"] == 0.5
    assert f["saturation_mean"] == 0 and f["colourfulness"] == 0
    assert f["hue_cos"] == 0 and f["hue_sin"] == 0
    assert f["red_share"] == f["green_share"] == f["blue_share"] == pytest.approx(1 / 3)
    # The step sits between columns 49 and 50: the 3x3 Sobel (unit gain) sees 255 grey
    # levels in both, and nowhere else: 2 of 100 columns.
    assert f["edge_density"] == pytest.approx(0.02)
    # Laplacian: +255 in column 49, -255 in column 50, 0 elsewhere: variance 2 * 255^2 / 100.
    assert f["sharpness_laplacian_var"] == pytest.approx(2 * 255**2 / 100)
    # Immerkær's mask is a second difference along both axes; columns are constant.
    assert f["noise_sigma"] == 0
    assert (f["width"], f["height"], f["aspect_ratio"]) == (400, 100, 4.0)
    assert f["encoded_bytes_per_pixel"] == pytest.approx(2000 / 40_000)


def test_the_edge_layout_map_says_where_the_edges_are(photo: np.ndarray) -> None:
    """A black frame with a white right half, 480x270: the Sobel sees its one edge in the columns
    of pixels 239 and 240, the last of cell column 15 and the first of 16 on the 32x18 grid (cells
    15 pixels wide): 255 grey levels per pixel in one of a cell's 15 columns, 17 on average.
    Asking for the map changes none of the statistics."""
    img = np.zeros((270, 480, 3), np.uint8)
    img[:, 240:] = 255
    layout = np.full(LAYOUT_SIZE, 7, np.uint8)
    compute_features(Decoded(img, 480, 270, 5000, "png"), layout)
    grid = layout.reshape(LAYOUT_GRID[1], LAYOUT_GRID[0])
    assert grid[:, 15].tolist() == grid[:, 16].tolist() == [17] * 18
    assert grid[:, :15].max() == grid[:, 17:].max() == 0
    d = Decoded(photo, 480, 320, 20_000, "jpeg")
    np.testing.assert_array_equal(compute_features(d, layout), compute_features(d))


def test_exposure_thresholds() -> None:
    levels = np.array([0, 15, 16, 239, 240, 255], np.uint8)
    img = np.repeat(np.repeat(levels[None, :, None], 3, axis=2), 10, axis=0)
    f = feats(img)
    assert f["underexposed_fraction"] == pytest.approx(2 / 6)  # Y < 16
    assert f["overexposed_fraction"] == pytest.approx(2 / 6)  # Y > 239
    assert f["luma_entropy"] == pytest.approx(math.log2(6))


@pytest.mark.parametrize(
    ("rgb", "angle"),
    [
        ((255, 0, 0), 0.0),
        ((0, 255, 0), 120.0),
        ((0, 0, 255), -120.0),
        ((255, 255, 0), 60.0),
        ((0, 255, 255), 180.0),
        ((255, 0, 255), -60.0),
    ],
)
def test_hue_of_primaries_and_secondaries(rgb: tuple[int, int, int], angle: float) -> None:
    img = np.empty((20, 30, 3), np.uint8)
    img[:] = rgb
    f = feats(img)
    got = math.degrees(math.atan2(f["hue_sin"], f["hue_cos"]))
    assert (got - angle + 180) % 360 - 180 == pytest.approx(0, abs=1e-3)
    # One hue everywhere: the resultant is (almost) a unit vector, shrunk by 1/(C + 1).
    assert math.hypot(f["hue_cos"], f["hue_sin"]) > 0.99 * 255 / 256 * math.sqrt(3) / 2
    assert f["saturation_mean"] == 1.0


def test_hue_is_continuous_across_the_red_wrap() -> None:
    # Hues just below and just above 0 degrees: a raw angle would jump from ~359 to ~1;
    # the components barely move.
    a = np.empty((10, 10, 3), np.uint8)
    b = np.empty((10, 10, 3), np.uint8)
    a[:] = (255, 0, 8)  # magenta side of red
    b[:] = (255, 8, 0)  # yellow side of red
    fa, fb = feats(a), feats(b)
    assert fa["hue_sin"] < 0 < fb["hue_sin"]
    assert abs(fa["hue_cos"] - fb["hue_cos"]) < 1e-6
    assert abs(fa["hue_sin"] - fb["hue_sin"]) < 0.1


def test_colour_shares_of_primaries() -> None:
    img = np.zeros((10, 10, 3), np.uint8)
    img[:, :, 0] = 200
    f = feats(img)
    assert (f["red_share"], f["green_share"], f["blue_share"]) == (1.0, 0.0, 0.0)


def test_grey_image_has_no_colour() -> None:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (120, 160), dtype=np.uint8)
    f = feats(np.repeat(grey[..., None], 3, axis=2))
    assert f["saturation_mean"] == 0
    assert f["colourfulness"] == 0
    assert f["hue_cos"] == 0 and f["hue_sin"] == 0
    assert f["red_share"] == f["green_share"] == f["blue_share"]


# ------------------------------------------------------- agreement with the formulas


def test_agrees_with_direct_formulas(photo: np.ndarray) -> None:
    f = feats(photo)
    x = photo.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY).astype(np.float64)

    assert f["brightness_mean"] == pytest.approx(y.mean(), rel=1e-6)
    assert f["brightness_std"] == pytest.approx(y.std(), rel=1e-6)
    assert f["contrast_rms"] == pytest.approx(y.std() / (y.mean() + 1), rel=1e-6)
    counts = np.bincount(y.astype(int).ravel(), minlength=256)
    assert f["luma_entropy"] == pytest.approx(entropy(counts, base=2), rel=1e-6)

    # HSV saturation C / V (rounded to 8 bits per pixel, as cv2's RGB2HSV stores it).
    vmax, vmin = x.max(axis=2), x.min(axis=2)
    sat = np.divide(vmax - vmin, vmax, out=np.zeros_like(vmax), where=vmax > 0)
    assert f["saturation_mean"] == pytest.approx(sat.mean(), abs=1 / 255)
    hsv = cv2.cvtColor(photo, cv2.COLOR_RGB2HSV)
    assert f["saturation_mean"] == pytest.approx(hsv[..., 1].mean() / 255, rel=1e-3)

    # Hasler & Süsstrunk (2003), eq. (3)-(4), straight from the paper.
    rg, yb = r - g, 0.5 * (r + g) - b
    m = math.hypot(rg.std(), yb.std()) + 0.3 * math.hypot(rg.mean(), yb.mean())
    assert f["colourfulness"] == pytest.approx(m, rel=1e-5)

    # Chroma-weighted circular mean of hue (opponent-vector hue), with shrinkage.
    alpha, beta = r - 0.5 * (g + b), math.sqrt(3) / 2 * (g - b)
    chroma = x.max(axis=2) - x.min(axis=2)
    denom = chroma.sum() + chroma.size
    assert f["hue_cos"] == pytest.approx(alpha.sum() / denom, rel=1e-5)
    assert f["hue_sin"] == pytest.approx(beta.sum() / denom, rel=1e-5)

    # Immerkær (1996): sigma = sqrt(pi/2) / (6 (W-2)(H-2)) * sum |I * M|.
    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]])
    resid = convolve2d(y, mask, mode="valid")
    sigma = math.sqrt(math.pi / 2) / (6 * resid.size) * np.abs(resid).sum()
    assert f["noise_sigma"] == pytest.approx(sigma, rel=1e-5)

    # Variance of the 4-neighbour Laplacian (cv2 reflects the border: 101 mode).
    lap_k = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
    lap = convolve2d(np.pad(y, 1, mode="reflect"), lap_k, mode="valid")
    assert f["sharpness_laplacian_var"] == pytest.approx(lap.var(), rel=1e-5)

    # Edge density: L1 Sobel magnitude (unit gain) above the threshold.
    gx = cv2.Sobel(y, cv2.CV_64F, 1, 0, borderType=cv2.BORDER_REPLICATE) / 4
    gy = cv2.Sobel(y, cv2.CV_64F, 0, 1, borderType=cv2.BORDER_REPLICATE) / 4
    mag = np.minimum(np.round(np.abs(gx)), 255) + np.minimum(np.round(np.abs(gy)), 255)
    assert f["edge_density"] == pytest.approx((mag > EDGE_THRESHOLD).mean(), abs=2e-3)

    # Orientation entropy: the magnitude-weighted histogram of gradient angles, folded to 0-180
    # degrees in 18 bins centred on multiples of 10 degrees, straight from the definition.
    angle = np.degrees(np.arctan2(gy, gx)) % 180.0
    bins = np.round(angle / 10.0).astype(int) % 18
    hist = np.bincount(bins.ravel(), weights=np.hypot(gx, gy).ravel(), minlength=18)
    assert f["orientation_entropy"] == pytest.approx(entropy(hist, base=2), abs=0.02)


def test_orientation_entropy_counts_the_directions_edges_point_in() -> None:
    """0 bits with no edge or all edges one way, about 1 bit for two directions equally strong,
    nearly log2(18) for edges pointing every way; a local warp of a straight-edged view raises
    it."""
    flat = np.full((120, 160, 3), 90, np.uint8)
    stripes = flat.copy()
    stripes[:, ::8] = 200  # vertical lines: every gradient horizontal
    grid = stripes.copy()  # vertical lines on the left half, horizontal ones on the right
    grid[:, 80:] = 90
    grid[::8, 80:] = 200
    noise = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    noise = cv2.GaussianBlur(noise, (5, 5), 1.5)
    got = {
        k: feats(v)["orientation_entropy"]
        for k, v in (("flat", flat), ("stripes", stripes), ("grid", grid), ("noise", noise))
    }
    assert got["flat"] == 0.0 and got["stripes"] == pytest.approx(0.0, abs=1e-6)
    assert got["grid"] == pytest.approx(1.0, abs=0.1)
    assert math.log2(18) - 0.2 < got["noise"] <= math.log2(18)
    h, w = grid.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    warped = cv2.remap(
        grid, xx + 3 * np.sin(yy / 9.0), yy + 3 * np.sin(xx / 11.0), cv2.INTER_LINEAR
    )
    assert feats(warped)["orientation_entropy"] > got["grid"] + 1.0


def test_immerkaer_recovers_the_sigma_of_added_noise() -> None:
    rng = np.random.default_rng(3)
    flat = np.full((270, 480, 3), 128.0)
    for sigma in (2.0, 5.0, 10.0):
        noisy = flat + rng.normal(0, sigma, (270, 480, 1))  # same noise in R, G, B: luma = it
        f = feats(np.clip(np.round(noisy), 0, 255).astype(np.uint8))
        assert f["noise_sigma"] == pytest.approx(sigma, rel=0.05)


# --------------------------------------------------- direction under a controlled change


def test_dusk_darker_image_lowers_brightness(photo: np.ndarray) -> None:
    base = feats(photo)
    dark = feats((photo * 0.4).astype(np.uint8))
    assert dark["brightness_mean"] < base["brightness_mean"]
    assert dark["brightness_std"] < base["brightness_std"]
    assert dark["underexposed_fraction"] > base["underexposed_fraction"]
    assert dark["overexposed_fraction"] <= base["overexposed_fraction"]
    assert dark["luma_entropy"] < base["luma_entropy"]


def test_overexposure_raises_clipped_fraction(photo: np.ndarray) -> None:
    base = feats(photo)
    bright = feats(np.clip(photo.astype(int) * 2, 0, 255).astype(np.uint8))
    assert bright["brightness_mean"] > base["brightness_mean"]
    assert bright["overexposed_fraction"] > base["overexposed_fraction"] + 0.1


def test_defocus_blur_lowers_sharpness_and_edges(photo: np.ndarray) -> None:
    base = feats(photo)
    blurred = feats(cv2.GaussianBlur(photo, (0, 0), 3))
    assert blurred["sharpness_laplacian_var"] < 0.2 * base["sharpness_laplacian_var"]
    assert blurred["edge_density"] < base["edge_density"]
    assert blurred["noise_sigma"] < base["noise_sigma"]


def test_added_noise_raises_noise_estimate(photo: np.ndarray) -> None:
    rng = np.random.default_rng(4)
    base = feats(photo)
    noisy = feats(np.clip(photo + rng.normal(0, 8, photo.shape), 0, 255).astype(np.uint8))
    assert noisy["noise_sigma"] > base["noise_sigma"] + 3
    assert noisy["sharpness_laplacian_var"] > base["sharpness_laplacian_var"]


def test_fog_lowers_contrast_and_colourfulness(photo: np.ndarray) -> None:
    base = feats(photo)
    fog = feats((0.4 * photo + 0.6 * 200).astype(np.uint8))  # veil of bright haze
    assert fog["contrast_rms"] < base["contrast_rms"]
    assert fog["brightness_std"] < base["brightness_std"]
    assert fog["colourfulness"] < base["colourfulness"]
    assert fog["saturation_mean"] < base["saturation_mean"]


def test_desaturation_lowers_colour_features(photo: np.ndarray) -> None:
    base = feats(photo)
    grey = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    half = (0.5 * photo + 0.5 * grey).astype(np.uint8)
    f = feats(half)
    assert f["saturation_mean"] < base["saturation_mean"]
    assert f["colourfulness"] < base["colourfulness"]
    assert feats(grey)["colourfulness"] == 0


def test_colour_cast_moves_shares_and_hue(photo: np.ndarray) -> None:
    base = feats(photo)
    bluer = photo.copy()
    bluer[..., 2] = np.clip(photo[..., 2].astype(int) + 60, 0, 255)
    f = feats(bluer)
    assert f["blue_share"] > base["blue_share"]
    assert f["red_share"] < base["red_share"]
    # Blue sits at -120 degrees: the hue resultant turns towards it.
    to_blue = (math.cos(math.radians(-120)), math.sin(math.radians(-120)))
    proj = lambda d: d["hue_cos"] * to_blue[0] + d["hue_sin"] * to_blue[1]  # noqa: E731
    assert proj(f) > proj(base)


def test_compression_change_moves_bytes_per_pixel(photo: np.ndarray) -> None:
    bgr = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    limits = DecodeLimits()
    hi = decode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), limits)
    lo = decode(cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 20])[1].tobytes(), limits)
    f_hi = dict(zip(FEATURE_NAMES, compute_features(hi), strict=True))
    f_lo = dict(zip(FEATURE_NAMES, compute_features(lo), strict=True))
    assert f_lo["encoded_bytes_per_pixel"] < f_hi["encoded_bytes_per_pixel"]


def test_knocked_camera_rotated_frame_changes_geometry(photo: np.ndarray) -> None:
    f = feats(photo, width=1920, height=1280)
    r = feats(np.ascontiguousarray(np.rot90(photo)), width=1280, height=1920)
    assert f["aspect_ratio"] == 1.5 and r["aspect_ratio"] == pytest.approx(2 / 3)
    assert (r["width"], r["height"]) == (1280, 1920)


# ----------------------------------------------------------------------- scale-aware


def test_features_are_comparable_across_source_resolutions() -> None:
    """The same scene sent at 1080p (JPEG) and 4K (PNG) lands at the same analysis size,
    so scale-dependent statistics (sharpness, edges, noise) stay comparable."""
    scene = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    fhd = cv2.resize(scene, (1920, 1080), interpolation=cv2.INTER_CUBIC)
    uhd = cv2.resize(scene, (3840, 2160), interpolation=cv2.INTER_CUBIC)
    limits = DecodeLimits(max_encoded_bytes=60_000_000)
    a = decode(cv2.imencode(".jpg", fhd, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), limits)
    b = decode(cv2.imencode(".png", uhd)[1].tobytes(), limits)
    assert a.rgb.shape == b.rgb.shape == (270, 480, 3)
    fa = dict(zip(FEATURE_NAMES, compute_features(a).tolist(), strict=True))
    fb = dict(zip(FEATURE_NAMES, compute_features(b).tolist(), strict=True))
    for name in (
        "brightness_mean",
        "brightness_std",
        "saturation_mean",
        "colourfulness",
        "luma_entropy",
        "red_share",
    ):
        assert fa[name] == pytest.approx(fb[name], rel=0.02), name
    for name in ("sharpness_laplacian_var", "edge_density"):
        assert fa[name] == pytest.approx(fb[name], rel=0.25), name
    # Had the 4K frame been analysed at full size, its sharpness would differ by far more.
    full = dict(
        zip(
            FEATURE_NAMES,
            compute_features(
                Decoded(cv2.cvtColor(uhd, cv2.COLOR_BGR2RGB), 3840, 2160, 1, "png")
            ).tolist(),
            strict=True,
        )
    )
    assert full["sharpness_laplacian_var"] < 0.25 * fb["sharpness_laplacian_var"]
