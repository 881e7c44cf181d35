"""Decode stage: encoded frame bytes -> RGB uint8 at analysis resolution, within limits.

The order of checks is the point of this module. Everything that can be decided from the
first few hundred bytes is decided before any pixel is allocated:

1. the encoded size (``too_large``), and emptiness (``empty``);
2. the container format, from magic bytes only (``unsupported_format``);
3. the *declared* width and height, parsed from the container header (JPEG SOFn, PNG IHDR,
   WebP VP8/VP8L/VP8X, BMP DIB header) without decoding (``too_many_pixels``; an unparsable
   header is ``corrupt``).

Only then is the image decoded, JPEGs at a reduced scale (libjpeg's DCT scaling through
``cv2.IMREAD_REDUCED_COLOR_{2,4,8}``, so a 1080p frame is never materialised at full
size), and area-resized so that its longer side is exactly ``analysis_size`` (smaller
images are never upscaled).

A decoder failure, whether OpenCV returns ``None`` or raises ``cv2.error``, becomes
``DecodeError("corrupt")``; so does a decoded image whose size disagrees with its header.

Examples
--------
>>> import cv2, numpy as np
>>> frame = np.zeros((1080, 1920, 3), np.uint8)
>>> data = cv2.imencode(".jpg", frame)[1].tobytes()
>>> d = decode(data, DecodeLimits())
>>> d.rgb.shape, d.width, d.height, d.format
((270, 480, 3), 1920, 1080, 'jpeg')
>>> decode(b"GIF89a...", DecodeLimits())
Traceback (most recent call last):
...
monitor.pipeline.decode.DecodeError: unsupported_format: not JPEG, PNG, WebP or BMP
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np

from monitor.errors import InputError

__all__ = ["DecodeLimits", "DecodeError", "Decoded", "decode", "REASONS", "read_dimensions"]

#: Every value ``DecodeError.reason`` can take (also the ``reason`` label of
#: ``driftmon_bad_records_total``).
REASONS = ("empty", "too_large", "too_many_pixels", "unsupported_format", "corrupt")

# OpenCV's own decoder limits (imgcodecs defaults of OPENCV_IO_MAX_IMAGE_PIXELS and
# OPENCV_IO_MAX_IMAGE_WIDTH/HEIGHT). This module never reads or sets those variables;
# it refuses limits above the defaults and rejects, as too_many_pixels, any declared
# side that OpenCV would refuse, so cv2 is never the one to say no.
CV2_MAX_IMAGE_PIXELS = 1 << 30
CV2_MAX_IMAGE_SIDE = 1 << 20

# OpenCV >= 4.11 can hand back RGB directly (libjpeg writes RGB; no extra pass); older
# versions decode BGR and we convert after resizing, on the smaller image.
_RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", None)
_COLOR = cv2.IMREAD_COLOR if _RGB_FLAG is None else _RGB_FLAG


def _colour(flag: int) -> int:
    return flag if _RGB_FLAG is None else (flag & ~cv2.IMREAD_COLOR) | _RGB_FLAG


_REDUCED_FLAGS = (
    (8, _colour(cv2.IMREAD_REDUCED_COLOR_8)),
    (4, _colour(cv2.IMREAD_REDUCED_COLOR_4)),
    (2, _colour(cv2.IMREAD_REDUCED_COLOR_2)),
)
# Orientation is ignored: the pixels analysed are the sensor's, in the same layout as the
# header's width/height, and no EXIF block is parsed on the hot path.
_IGNORE_ORIENTATION = getattr(cv2, "IMREAD_IGNORE_ORIENTATION", 0)

# A JPEG header walk gives up after this many markers before the frame header (real files
# have a dozen or so), so a 20 MB run of tiny segments or fill bytes cannot stall the loop.
_JPEG_MAX_MARKERS = 1024


@dataclass(frozen=True)
class DecodeLimits:
    """Limits applied to every frame before and during decoding.

    Parameters
    ----------
    max_encoded_bytes
        Largest accepted encoded frame, in bytes (``too_large`` above it).
    max_pixels
        Largest accepted declared ``width * height`` (``too_many_pixels`` above it).
        At most ``CV2_MAX_IMAGE_PIXELS`` (OpenCV's default decoder limit, 2**30).
    analysis_size
        Target length of the longer side of ``Decoded.rgb``, in pixels.
    """

    max_encoded_bytes: int = 20_000_000
    max_pixels: int = 50_000_000
    analysis_size: int = 480

    def __post_init__(self) -> None:
        for name in ("max_encoded_bytes", "max_pixels", "analysis_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"DecodeLimits.{name} must be a positive int, got {value!r}")
        if self.max_pixels > CV2_MAX_IMAGE_PIXELS:
            raise ValueError(
                f"DecodeLimits.max_pixels={self.max_pixels} exceeds OpenCV's decoder limit "
                f"({CV2_MAX_IMAGE_PIXELS}); such frames would fail inside cv2"
            )


class DecodeError(InputError):
    """A frame that cannot or must not be decoded: bad input, to count and dead-letter.

    ``reason`` is one of ``REASONS``; the message adds detail for logs.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown decode error reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)

    def __reduce__(self):  # keep picklable across process pools
        return (type(self), (self.reason, self.detail))


@dataclass(frozen=True)
class Decoded:
    """A decoded frame.

    ``rgb`` is (H, W, 3) uint8 RGB, C-contiguous, with ``max(H, W) == analysis_size``
    (or the original size if that was smaller). ``width``/``height`` are the ORIGINAL
    dimensions from the header; ``encoded_bytes`` is the size of the input; ``format`` is
    one of ``"jpeg"``, ``"png"``, ``"webp"``, ``"bmp"``.
    """

    rgb: np.ndarray
    width: int
    height: int
    encoded_bytes: int
    format: str


# --------------------------------------------------------------------------- sniffing


def _sniff(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    return None


# ------------------------------------------------------------------ header dimensions

# SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0..7 (SOI is consumed before the walk).
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8)])


def _jpeg_dimensions(data: bytes) -> tuple[int, int, int]:
    """(width, height, end of the SOF segment) from the first SOFn marker."""
    pos, n = 2, len(data)
    for _ in range(_JPEG_MAX_MARKERS):
        if pos >= n or data[pos] != 0xFF:
            raise DecodeError("corrupt", "JPEG: expected a marker")
        # Skip fill bytes (any number of 0xFF may precede a marker code).
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise DecodeError("corrupt", "JPEG: truncated header")
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0x00, 0xD8, 0xD9, 0xDA):
            raise DecodeError("corrupt", f"JPEG: marker 0x{marker:02X} before a frame header")
        if pos + 2 > n:
            raise DecodeError("corrupt", "JPEG: truncated header")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise DecodeError("corrupt", "JPEG: bad segment length")
        if marker in _JPEG_SOF:
            if length < 8 or pos + 7 > n:
                raise DecodeError("corrupt", "JPEG: truncated frame header")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            return width, height, pos + length
        pos += length
    raise DecodeError("corrupt", "JPEG: no frame header within the marker limit")


def _png_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 24:
        raise DecodeError("corrupt", "PNG: truncated header")
    length, ctype, width, height = struct.unpack_from(">I4sII", data, 8)
    if ctype != b"IHDR" or length != 13:
        raise DecodeError("corrupt", "PNG: first chunk is not IHDR")
    if width > 0x7FFFFFFF or height > 0x7FFFFFFF:
        raise DecodeError("corrupt", "PNG: dimension out of range")
    return width, height


def _webp_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 30:
        raise DecodeError("corrupt", "WebP: truncated header")
    chunk = data[12:16]
    if chunk == b"VP8 ":
        # Frame tag (3 bytes), start code 9D 01 2A, then 14-bit width and height
        # (the top two bits of each are a scaling hint, not part of the size).
        if data[23:26] != b"\x9d\x01\x2a":
            raise DecodeError("corrupt", "WebP: bad VP8 start code")
        w, h = struct.unpack_from("<HH", data, 26)
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        if data[20] != 0x2F:
            raise DecodeError("corrupt", "WebP: bad VP8L signature")
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    raise DecodeError("corrupt", f"WebP: unknown first chunk {chunk!r}")


def _bmp_dimensions(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise DecodeError("corrupt", "BMP: truncated header")
    (dib_size,) = struct.unpack_from("<I", data, 14)
    if dib_size == 12:  # BITMAPCOREHEADER (OS/2 1.x): unsigned 16-bit sides
        w, h = struct.unpack_from("<HH", data, 18)
    elif 40 <= dib_size <= 124:  # BITMAPINFOHEADER and its successors
        w, h = struct.unpack_from("<ii", data, 18)
        h = abs(h)  # negative height means top-down rows
    else:
        raise DecodeError("corrupt", f"BMP: unknown DIB header size {dib_size}")
    return w, h


def read_dimensions(data: bytes) -> tuple[str, int, int]:
    """Sniff the format and read the declared (format, width, height), decoding nothing.

    Raises ``DecodeError`` (``empty``, ``unsupported_format`` or ``corrupt``).

    >>> import struct, zlib
    >>> ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    >>> png = (b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
    ...        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)))
    >>> read_dimensions(png)
    ('png', 100000, 100000)
    """
    fmt, w, h, _ = _header(bytes(data))
    return fmt, w, h


def _header(data: bytes) -> tuple[str, int, int, int]:
    if not data:
        raise DecodeError("empty", "zero-length frame")
    fmt = _sniff(data)
    if fmt is None:
        raise DecodeError("unsupported_format", "not JPEG, PNG, WebP or BMP")
    sof_end = 0
    if fmt == "jpeg":
        w, h, sof_end = _jpeg_dimensions(data)
    elif fmt == "png":
        w, h = _png_dimensions(data)
    elif fmt == "webp":
        w, h = _webp_dimensions(data)
    else:
        w, h = _bmp_dimensions(data)
    if w <= 0 or h <= 0:
        raise DecodeError("corrupt", f"{fmt}: declared size {w}x{h}")
    return fmt, w, h, sof_end


# ------------------------------------------------------------------------- decoding


def _target_size(w: int, h: int, analysis_size: int) -> tuple[int, int]:
    """(width, height) with the longer side == analysis_size, or (w, h) if already <=."""
    longer = max(w, h)
    if longer <= analysis_size:
        return w, h
    scale = analysis_size / longer
    if w >= h:
        return analysis_size, max(1, round(h * scale))
    return max(1, round(w * scale)), analysis_size


def _jpeg_reduction(w: int, h: int, analysis_size: int) -> tuple[int, int]:
    """(factor, imdecode flag): the largest 1/2, 1/4, 1/8 scale that keeps the longer side
    at or above analysis_size (libjpeg rounds scaled sizes up: ceil(side / factor))."""
    longer = max(w, h)
    for factor, flag in _REDUCED_FLAGS:
        if -(-longer // factor) >= analysis_size:
            return factor, flag
    return 1, _COLOR


def decode(data: bytes, limits: DecodeLimits) -> Decoded:
    """Decode one encoded frame to RGB at analysis size, enforcing ``limits``.

    Raises ``DecodeError`` with ``reason`` in ``REASONS``; never anything else for any
    input bytes.
    """
    n = len(data)
    if n == 0:
        raise DecodeError("empty", "zero-length frame")
    if n > limits.max_encoded_bytes:
        raise DecodeError("too_large", f"{n} bytes > {limits.max_encoded_bytes}")
    if not isinstance(data, bytes):
        data = bytes(data)
    fmt, w, h, sof_end = _header(data)
    if w * h > limits.max_pixels or w > CV2_MAX_IMAGE_SIDE or h > CV2_MAX_IMAGE_SIDE:
        raise DecodeError("too_many_pixels", f"declared {w}x{h} > {limits.max_pixels} pixels")

    factor, flags = 1, _COLOR
    if fmt == "jpeg":
        # A truncated JPEG may still "decode" (older libjpeg fills the rest with grey and
        # only warns): require an EOI marker after the frame header.
        if data.rfind(b"\xff\xd9", sof_end) < 0:
            raise DecodeError("corrupt", "JPEG: no end-of-image marker (truncated?)")
        factor, flags = _jpeg_reduction(w, h, limits.analysis_size)
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags | _IGNORE_ORIENTATION)
    except cv2.error as exc:
        raise DecodeError("corrupt", f"{fmt}: {str(exc).strip().splitlines()[-1]}") from None
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise DecodeError("corrupt", f"{fmt}: decoder failed")
    expect = (-(-h // factor), -(-w // factor))
    if img.shape[:2] != expect:
        raise DecodeError(
            "corrupt", f"{fmt}: decoded {img.shape[1]}x{img.shape[0]}, header says {w}x{h}"
        )

    tw, th = _target_size(img.shape[1], img.shape[0], limits.analysis_size)
    if (tw, th) != (img.shape[1], img.shape[0]):
        img = cv2.resize(img, (tw, th), interpolation=cv2.INTER_AREA)
    if _RGB_FLAG is None:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return Decoded(rgb=img, width=w, height=h, encoded_bytes=n, format=fmt)
