"""Tests for monitor.pipeline.decode: formats, reduced JPEG decoding, limits and every error
reason."""

from __future__ import annotations

import pickle
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import monitor.pipeline.decode as decode_module
from monitor.pipeline.decode import (
    REASONS,
    Decoded,
    DecodeError,
    DecodeLimits,
    decode,
    read_dimensions,
)

LIMITS = DecodeLimits()
FORMATS = {".jpg": "jpeg", ".png": "png", ".webp": "webp", ".bmp": "bmp"}


def scene(w: int, h: int) -> np.ndarray:
    """A smooth BGR test card: gradients plus colour blocks (compresses well in every format)."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = 128
    img[: h // 4, : w // 4] = (0, 0, 255)  # a red block (BGR)
    return img


def encode(img: np.ndarray, ext: str, *params: int) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def png_chunk(ctype: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + ctype
        + payload
        + struct.pack(">I", zlib.crc32(ctype + payload))
    )


def crafted_png(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) declaring width x height, with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def crafted_jpeg(width: int, height: int) -> bytes:
    """SOI, a quantisation table, a baseline SOF0 declaring width x height, then EOI."""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(1, 65))
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
    sof0 += b"\x01\x22\x00\x02\x11\x00\x03\x11\x00"
    return b"\xff\xd8" + dqt + sof0 + b"\xff\xd9"


def forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("cv2.imdecode must not be reached")

    monkeypatch.setattr(decode_module.cv2, "imdecode", refuse)


# ------------------------------------------------------------------------ happy path


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_decodes_every_format_to_rgb_at_analysis_size(ext: str) -> None:
    data = encode(scene(640, 360), ext)
    d = decode(data, LIMITS)
    assert isinstance(d, Decoded)
    assert d.format == FORMATS[ext]
    assert (d.width, d.height) == (640, 360)
    assert d.encoded_bytes == len(data)
    assert d.rgb.shape == (270, 480, 3)
    assert d.rgb.dtype == np.uint8 and d.rgb.flags.c_contiguous
    # The block top-left is red in RGB order (lossy formats: approximately).
    r, g, b = d.rgb[10, 10].astype(int)
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp"])
def test_lossless_decode_matches_area_resize(ext: str) -> None:
    img = scene(960, 540)
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []  # >100: lossless
    d = decode(encode(img, ext, *params), LIMITS)
    small = cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)
    expected = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(d.rgb, expected)


@pytest.mark.parametrize(
    ("w", "h", "factor", "shape"),
    [
        (1920, 1080, 4, (270, 480, 3)),  # 1/4 gives exactly 480
        (1280, 720, 2, (270, 480, 3)),  # 1/2 gives 640, then area-resized
        (3840, 2160, 8, (270, 480, 3)),
        (7680, 4320, 8, (270, 480, 3)),  # 1/8 is the most libjpeg offers: 960, resized
        (959, 540, 2, (270, 480, 3)),  # ceil(959 / 2) = 480 still reaches 480
        (958, 540, 1, (271, 480, 3)),  # ceil(958 / 2) = 479 would not: full decode
        (1080, 1920, 4, (480, 270, 3)),  # portrait
        (3000, 4000, 8, (480, 360, 3)),
        (480, 270, 1, (270, 480, 3)),
        (400, 300, 1, (300, 400, 3)),  # smaller than analysis size: never upscaled
    ],
)
def test_jpeg_reduced_decode_picks_largest_sufficient_factor(
    monkeypatch: pytest.MonkeyPatch, w: int, h: int, factor: int, shape: tuple[int, int, int]
) -> None:
    flags_seen: list[int] = []
    real_imdecode = cv2.imdecode

    def spy(buf, flags):
        flags_seen.append(flags)
        return real_imdecode(buf, flags)

    data = encode(scene(w, h), ".jpg", cv2.IMWRITE_JPEG_QUALITY, 80)
    monkeypatch.setattr(decode_module.cv2, "imdecode", spy)
    d = decode(data, LIMITS)
    # The scale bits of IMREAD_REDUCED_COLOR_{2,4,8} (16, 32, 64); the colour bits vary
    # (BGR, or RGB straight from the decoder where OpenCV offers IMREAD_COLOR_RGB).
    scale_bits = {1: 0, 2: 16, 4: 32, 8: 64}
    assert cv2.IMREAD_REDUCED_COLOR_4 & 0x70 == scale_bits[4]
    assert len(flags_seen) == 1
    assert flags_seen[0] & 0x70 == scale_bits[factor]
    assert d.rgb.shape == shape
    assert max(d.rgb.shape[:2]) == min(480, max(w, h))
    assert (d.width, d.height) == (w, h)


def test_analysis_size_is_configurable() -> None:
    d = decode(encode(scene(1920, 1080), ".jpg"), DecodeLimits(analysis_size=224))
    assert d.rgb.shape == (126, 224, 3)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp"])
def test_grayscale_becomes_three_equal_channels(ext: str) -> None:
    gray = scene(200, 100)[..., 1].copy()
    d = decode(encode(gray, ext), LIMITS)
    assert d.rgb.shape == (100, 200, 3)
    assert np.array_equal(d.rgb[..., 0], d.rgb[..., 1])
    assert np.array_equal(d.rgb[..., 1], d.rgb[..., 2])


def test_png_alpha_is_dropped_and_colour_kept() -> None:
    bgra = np.zeros((50, 60, 4), np.uint8)
    bgra[...] = (255, 0, 0, 0)  # pure blue, fully transparent
    d = decode(encode(bgra, ".png"), LIMITS)
    assert d.rgb.shape == (50, 60, 3)
    assert (d.rgb == (0, 0, 255)).all()


def test_sixteen_bit_png_is_scaled_to_uint8() -> None:
    img = np.full((40, 30, 3), 65535, np.uint16)
    d = decode(encode(img, ".png"), LIMITS)
    assert d.rgb.dtype == np.uint8 and (d.rgb == 255).all()


def test_accepts_bytes_like_input() -> None:
    data = encode(scene(64, 48), ".png")
    for view in (bytearray(data), memoryview(data)):
        assert decode(view, LIMITS).rgb.shape == (48, 64, 3)


# ------------------------------------------------------------------ header dimensions


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_read_dimensions_matches_encoder(ext: str) -> None:
    assert read_dimensions(encode(scene(123, 45), ext)) == (FORMATS[ext], 123, 45)


def test_read_dimensions_webp_lossless_and_extended() -> None:
    lossless = encode(scene(300, 17), ".webp", cv2.IMWRITE_WEBP_QUALITY, 101)
    assert lossless[12:16] == b"VP8L"
    assert read_dimensions(lossless) == ("webp", 300, 17)
    # VP8X header by hand: canvas 70000 x 3 (24-bit minus-one fields).
    vp8x = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10)
    vp8x += b"\x00\x00\x00\x00" + (69999).to_bytes(3, "little") + (2).to_bytes(3, "little")
    assert read_dimensions(vp8x) == ("webp", 70000, 3)


def test_read_dimensions_top_down_bmp() -> None:
    data = bytearray(encode(scene(20, 10), ".bmp"))
    struct.pack_into("<i", data, 22, -10)  # negative height: rows stored top-down
    assert read_dimensions(bytes(data)) == ("bmp", 20, 10)


def test_jpeg_header_walk_skips_app_segments_and_fill_bytes() -> None:
    data = encode(scene(321, 123), ".jpg")
    app = b"\xff\xe1" + struct.pack(">H", 2 + 5000) + b"x" * 5000  # a 5 KB APP1
    padded = data[:2] + app + b"\xff\xff\xff" + data[2:]  # plus fill bytes before a marker
    assert read_dimensions(padded) == ("jpeg", 321, 123)
    assert decode(padded, LIMITS).rgb.shape == (123, 321, 3)


# ----------------------------------------------------------------------------- errors


def reason_of(data: bytes, limits: DecodeLimits = LIMITS) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data, limits)
    assert info.value.reason in REASONS
    assert str(info.value).startswith(info.value.reason)
    return info.value.reason


def test_empty() -> None:
    assert reason_of(b"") == "empty"


def test_too_large_is_checked_before_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_decoding(monkeypatch)
    limits = DecodeLimits(max_encoded_bytes=1000)
    assert reason_of(b"\xff\xd8\xff" + b"\x00" * 1000, limits) == "too_large"
    assert reason_of(b"not an image at all" * 100, limits) == "too_large"


@pytest.mark.parametrize(
    "data",
    [
        b"GIF89a" + b"\x00" * 100,
        b"II*\x00" + b"\x00" * 100,  # TIFF: cv2 could decode it, we must not
        b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # RIFF but not WebP
        b"\x00" + bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        b"\xff\xd8",  # SOI without a following marker: too short to be a JPEG
    ],
)
def test_unsupported_format(data: bytes) -> None:
    assert reason_of(data) == "unsupported_format"


def test_unsupported_format_even_if_cv2_could_decode_it() -> None:
    tiff = encode(scene(32, 32), ".tiff")
    assert cv2.imdecode(np.frombuffer(tiff, np.uint8), cv2.IMREAD_COLOR) is not None
    assert reason_of(tiff) == "unsupported_format"


def test_huge_declared_png_is_rejected_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = crafted_png(100_000, 100_000)  # 10^10 pixels (30 GB as RGB) in ~100 bytes
    assert len(data) < 1024
    assert read_dimensions(data) == ("png", 100_000, 100_000)
    forbid_decoding(monkeypatch)  # proves no decode is attempted ...
    tracemalloc.start()
    try:
        assert reason_of(data) == "too_many_pixels"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # ... and nothing image-sized is allocated


def test_huge_declared_jpeg_is_rejected_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = crafted_jpeg(60_000, 60_000)  # 3.6e9 pixels
    assert read_dimensions(data) == ("jpeg", 60_000, 60_000)
    forbid_decoding(monkeypatch)
    tracemalloc.start()
    try:
        assert reason_of(data) == "too_many_pixels"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_huge_declared_webp_and_bmp_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_decoding(monkeypatch)
    vp8x = b"RIFF" + struct.pack("<I", 22) + b"WEBPVP8X" + struct.pack("<I", 10)
    vp8x += b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
    assert reason_of(vp8x) == "too_many_pixels"
    bmp = bytearray(encode(scene(8, 8), ".bmp"))
    struct.pack_into("<ii", bmp, 18, 100_000, -100_000)
    assert reason_of(bytes(bmp)) == "too_many_pixels"


def test_pixel_limit_is_configurable_and_inclusive() -> None:
    data = encode(scene(100, 50), ".png")
    assert decode(data, DecodeLimits(max_pixels=5000)).width == 100
    assert reason_of(data, DecodeLimits(max_pixels=4999)) == "too_many_pixels"


def test_side_beyond_opencv_limit_is_too_many_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    forbid_decoding(monkeypatch)
    # 2^21 x 1 is only 2 M pixels, but cv2 refuses any side over 2^20.
    assert reason_of(crafted_png(1 << 21, 1)) == "too_many_pixels"


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        DecodeLimits(analysis_size=0)
    with pytest.raises(ValueError):
        DecodeLimits(max_encoded_bytes=-1)
    with pytest.raises(ValueError):
        DecodeLimits(max_pixels=2**31)  # above OpenCV's own limit


@pytest.mark.parametrize("ext", sorted(FORMATS))
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files_are_corrupt(ext: str, keep: float) -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)  # incompressible
    data = encode(img, ext)
    assert reason_of(data[: int(len(data) * keep)]) == "corrupt"


def test_jpeg_without_end_of_image_marker_is_corrupt() -> None:
    data = encode(scene(64, 48), ".jpg")
    assert data.endswith(b"\xff\xd9")
    assert reason_of(data[:-2]) == "corrupt"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xd9",  # SOI then EOI: no frame header
        b"\xff\xd8\xff\xe0\x00",  # truncated segment length
        b"\xff\xd8\xff\xe0\x00\x01",  # segment length < 2
        b"\xff\xd8\xff\xda\x00\x08",  # scan before frame
        b"\xff\xd8\xff\xc0\x00\x11\x08\x00",  # truncated SOF
        b"\xff\xd8\xff" + b"\xfe\x00\x02" * 2000,  # more markers than the walk allows
        crafted_jpeg(640, 480),  # valid header, no scan data
        crafted_jpeg(0, 480),  # zero width
        crafted_png(0, 10),  # zero width
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IDAT", b"\x00" * 13),  # first chunk not IHDR
        b"\x89PNG\r\n\x1a\n\x00\x00",  # truncated signature block
        crafted_png(64, 48),  # valid header, IDAT far too short for 64 x 48
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 20,  # VP8 without start code
        b"RIFF\x10\x00\x00\x00WEBPABCD" + b"\x00" * 20,  # unknown WebP chunk
        b"BM" + b"\x00" * 12 + struct.pack("<I", 7) + b"\x00" * 20,  # unknown DIB header
        b"BM" + b"\x00" * 10,  # truncated BMP header
    ],
)
def test_corrupt_headers_and_bodies(data: bytes) -> None:
    assert reason_of(data) == "corrupt"


def test_header_disagreeing_with_decoded_size_is_corrupt() -> None:
    # A second frame header (SOF) after the first: our walk reads the first, and either
    # libjpeg rejects the duplicate or the decoded size must match what we report.
    good = encode(scene(64, 48), ".jpg")
    with_sof = crafted_jpeg(32, 16)[2:-2]  # DQT + SOF0 declaring 32 x 16
    data = good[:2] + with_sof + good[2:]
    try:
        d = decode(data, LIMITS)
    except DecodeError as exc:
        assert exc.reason == "corrupt"
    else:
        assert d.rgb.shape[:2] == (d.height, d.width)


def test_random_bytes_behind_a_magic_number_are_corrupt() -> None:
    noise = bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8))
    for magic in (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"BM"):
        assert reason_of(magic + noise) in ("corrupt", "too_many_pixels")


def test_decode_error_validates_reason_and_pickles() -> None:
    with pytest.raises(ValueError):
        DecodeError("bogus")
    err = pickle.loads(pickle.dumps(DecodeError("corrupt", "detail")))
    assert (err.reason, err.detail, str(err)) == ("corrupt", "detail", "corrupt: detail")


# ------------------------------------------------------------------------- properties

SMALL = {ext: encode(scene(64, 48), ext) for ext in FORMATS}
SMALL[".webp-lossless"] = encode(scene(64, 48), ".webp", cv2.IMWRITE_WEBP_QUALITY, 101)
FUZZ_SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def check_total(data: bytes) -> None:
    limits = DecodeLimits(max_pixels=1_000_000)  # keep fuzzed declared sizes cheap
    try:
        d = decode(data, limits)
    except DecodeError as exc:
        assert exc.reason in REASONS
        return
    assert d.rgb.dtype == np.uint8 and d.rgb.ndim == 3 and d.rgb.shape[2] == 3
    assert max(d.rgb.shape[:2]) <= limits.analysis_size
    assert d.width * d.height <= limits.max_pixels
    assert d.encoded_bytes == len(data)


@FUZZ_SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    check_total(data)


@FUZZ_SETTINGS
@given(
    st.sampled_from([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBP", b"BM"]),
    st.binary(max_size=2048),
)
def test_arbitrary_bytes_behind_magic_decode_or_raise_decode_error(
    magic: bytes, tail: bytes
) -> None:
    check_total(magic + tail)


@FUZZ_SETTINGS
@given(
    st.sampled_from(sorted(SMALL)),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_valid_files_decode_or_raise_decode_error(
    ext: str, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(SMALL[ext])
    for pos, value in flips:
        data[pos % len(data)] = value
    check_total(bytes(data[: max(1, len(data) - cut % len(data))]))
