"""When each reference frame was taken, and which frames are contiguous.

A reference is a stream, not a bag: its frames' order and times are what tell how much a healthy
camera wanders in the time of one window. Frames come with times from

- a Kafka topic: each record's event time (seconds);
- a recorded clip: the frame number over the clip's frame rate (seconds);
- a directory, in file-name order: a timestamp in every file name (``20261120T080000``,
  ``2026-11-20_08-00-00.250``, epoch seconds or milliseconds), else the EXIF ``DateTimeOriginal`` of
  every JPEG, else a frame number in every file name (``f000123.jpg``: unit *frames*), else the
  modification times when they increase with the names; else the file order alone (*frames*);
- nowhere (``--order none``, or a reference built before references kept times): a bag, judged
  with the conservative choice (docs/detectors.md).

:func:`segments` cuts a time sequence into contiguous runs: a gap longer than ``GAP_STEPS`` typical
frame intervals starts a new one (a camera that was off, a reference made of several stretches).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

TimeUnit = Literal["s", "frames"]
#: A gap longer than this many typical frame intervals separates two contiguous segments.
GAP_STEPS = 5.0

_ISO = re.compile(
    r"(\d{4})-?(\d{2})-?(\d{2})[T_ -]?(\d{2})[-:]?(\d{2})[-:]?(\d{2})(?:[.,](\d{1,6}))?"
)
_EPOCH = re.compile(r"(?<!\d)(\d{13}|\d{10})(?:\.(\d{1,6}))?(?!\d)")
_NUMBER = re.compile(r"(\d+)(?!.*\d)")  # the last number in a name
_EPOCH_RANGE = (946_684_800.0, 4_102_444_800.0)  # 2000-01-01 .. 2100-01-01


@dataclass(frozen=True)
class FrameTimes:
    """Times of frames in their order (None: unordered), their unit and where they came from."""

    times: np.ndarray | None  # float64, non-decreasing
    unit: TimeUnit = "s"
    source: str = ""  # e.g. "file name", "EXIF", "frame number", "event time", "clip", "file order"


def _iso_seconds(name: str) -> float | None:
    m = _ISO.search(name)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        t = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    except ValueError:
        return None
    return t.timestamp() + (float(f"0.{frac}") if frac else 0.0)


def _epoch_seconds(name: str) -> float | None:
    m = _EPOCH.search(name)
    if m is None:
        return None
    value = float(m.group(1)) / (1000.0 if len(m.group(1)) == 13 else 1.0)
    value += float(f"0.{m.group(2)}") if m.group(2) and len(m.group(1)) == 10 else 0.0
    return value if _EPOCH_RANGE[0] <= value <= _EPOCH_RANGE[1] else None


def _all(values: Sequence[float | None]) -> np.ndarray | None:
    """The values as an array when every one is known and they never go back in time."""
    if not values or any(v is None for v in values):
        return None
    arr = np.asarray(values, dtype=np.float64)
    return arr if np.all(np.diff(arr) >= 0) else None


def exif_datetime(path: Path) -> float | None:
    """EXIF DateTimeOriginal (else DateTime) of a JPEG, as UTC epoch seconds; None when absent.

    Reads only the APP1 segment's TIFF directory entries (no image decoding, no dependency)."""
    try:
        with open(path, "rb") as f:
            head = f.read(65_536)
    except OSError:
        return None
    at = head.find(b"Exif\x00\x00")
    if not head.startswith(b"\xff\xd8") or at < 0:
        return None
    tiff = head[at + 6 :]
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    end = "<" if tiff[:2] == b"II" else ">"

    def entries(offset: int) -> dict[int, tuple[int, int, int]]:
        if offset + 2 > len(tiff):
            return {}
        (count,) = struct.unpack_from(end + "H", tiff, offset)
        out = {}
        for i in range(count):
            pos = offset + 2 + 12 * i
            if pos + 12 > len(tiff):
                break
            tag, kind, n, value = struct.unpack_from(end + "HHII", tiff, pos)
            out[tag] = (kind, n, value)
        return out

    def text(entry: tuple[int, int, int] | None) -> str | None:
        if entry is None or entry[0] != 2 or entry[1] < 19 or entry[2] + 19 > len(tiff):
            return None
        return tiff[entry[2] : entry[2] + 19].decode("ascii", "replace")

    ifd0 = entries(struct.unpack_from(end + "I", tiff, 4)[0])
    exif = entries(ifd0[0x8769][2]) if 0x8769 in ifd0 else {}
    stamp = text(exif.get(0x9003)) or text(ifd0.get(0x0132))
    if stamp is None:
        return None
    try:
        return datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def file_times(
    files: Sequence[Path], order: Literal["auto", "name", "none"] = "auto"
) -> FrameTimes:
    """Times of image files taken in file-name order (``files`` already sorted by name).

    ``order="none"``: a bag (no times); ``"name"``: the file order alone; ``"auto"``: the best
    source every file agrees on (module docstring)."""
    if order == "none" or not files:
        return FrameTimes(None, source="none")
    names = [p.name for p in files]
    if order == "auto":
        for source, values in (
            ("file name", [_iso_seconds(n) for n in names]),
            ("file name (epoch)", [_epoch_seconds(n) for n in names]),
        ):
            found = _all(values)
            if found is not None:
                return FrameTimes(found, "s", source)
        found = (
            _all([exif_datetime(p) for p in files])
            if all(p.suffix.lower() in (".jpg", ".jpeg") for p in files)
            else None
        )
        if found is not None and np.ptp(found) > 0:
            return FrameTimes(found, "s", "EXIF")
        numbers = [_NUMBER.search(p.stem) for p in files]
        found = _all([float(m.group(1)) if m else None for m in numbers])
        if found is not None and len(np.unique(found)) == len(found):
            return FrameTimes(found, "frames", "frame number")
        found = _all([p.stat().st_mtime for p in files])
        if found is not None and len(np.unique(found)) == len(found):
            return FrameTimes(found, "s", "modification time")
    return FrameTimes(np.arange(len(files), dtype=np.float64), "frames", "file order")


def segments(times: np.ndarray | None, n_frames: int) -> list[np.ndarray]:
    """Index arrays of the contiguous runs of frames (one run when the frames have no times: a bag
    has no order to cut, and no contiguity either — callers treat it conservatively)."""
    if times is None or n_frames < 2:
        return [np.arange(n_frames)]
    steps = np.diff(times)
    positive = steps[steps > 0]
    typical = float(np.median(positive)) if len(positive) else 1.0
    cuts = np.flatnonzero(steps > GAP_STEPS * typical) + 1
    return np.split(np.arange(n_frames), cuts)
