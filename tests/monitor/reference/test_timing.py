"""Frame times of a reference: file names, EXIF, frame numbers, modification times, file order; and
contiguous segments."""

import io
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from monitor.reference.timing import exif_datetime, file_times, segments

Image = pytest.importorskip("PIL.Image")


def touch(tmp_path, names, mtimes=None):
    paths = []
    for i, name in enumerate(names):
        p = tmp_path / name
        p.write_bytes(b"x")
        if mtimes is not None:
            os.utime(p, (mtimes[i], mtimes[i]))
        paths.append(p)
    return sorted(paths)


def jpeg_with_exif(path, stamp):
    exif = Image.Exif()
    exif[0x0132] = "2000:01:01 00:00:00"  # DateTime, overridden by DateTimeOriginal in the Exif IFD
    exif.get_ifd(0x8769)[0x9003] = stamp
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "JPEG", exif=exif)
    path.write_bytes(buf.getvalue())
    return path


def utc(*args):
    return datetime(*args, tzinfo=UTC).timestamp()


def test_timestamps_in_file_names_win():
    names = [
        "cam1_20261120T080000.jpg",
        "cam1_20261120T080000.500.jpg",
        "cam1_2026-11-20_08-00-01.jpg",
    ]
    got = file_times([Path(n) for n in names])
    assert got.unit == "s" and got.source == "file name"
    np.testing.assert_allclose(
        got.times, [utc(2026, 11, 20, 8), utc(2026, 11, 20, 8) + 0.5, utc(2026, 11, 20, 8, 0, 1)]
    )


def test_epoch_milliseconds_in_names(tmp_path):
    got = file_times(touch(tmp_path, ["1795600000000.jpg", "1795600000200.jpg"]))
    assert got.source == "file name (epoch)" and got.times.tolist() == [1795600000.0, 1795600000.2]


def test_exif_then_frame_numbers_then_mtime_then_order(tmp_path):
    a = jpeg_with_exif(tmp_path / "a.jpg", "2026:11:20 08:00:00")
    b = jpeg_with_exif(tmp_path / "b.jpg", "2026:11:20 08:00:05")
    assert exif_datetime(a) == utc(2026, 11, 20, 8)
    got = file_times([a, b])
    assert got.source == "EXIF" and got.times.tolist() == [
        utc(2026, 11, 20, 8),
        utc(2026, 11, 20, 8, 0, 5),
    ]

    (tmp_path / "n").mkdir()
    numbered = touch(tmp_path / "n", ["f000010.jpg", "f000011.jpg", "f000200.jpg"])
    got = file_times(numbered)
    assert (got.unit, got.source, got.times.tolist()) == (
        "frames",
        "frame number",
        [10.0, 11.0, 200.0],
    )

    (tmp_path / "m").mkdir()
    dated = touch(tmp_path / "m", ["alpha.png", "beta.png"], mtimes=[1000.0, 1002.0])
    assert file_times(dated).source == "modification time"

    (tmp_path / "o").mkdir()
    same = touch(tmp_path / "o", ["alpha.png", "beta.png", "gamma.png"], mtimes=[5.0, 5.0, 5.0])
    got = file_times(same)
    assert (got.source, got.unit, got.times.tolist()) == ("file order", "frames", [0.0, 1.0, 2.0])
    assert file_times(same, "none").times is None
    assert file_times(numbered, "name").source == "file order"


def test_segments_cut_at_gaps():
    times = np.array([0, 1, 2, 3, 103, 104, 105, 400], float)
    assert [s.tolist() for s in segments(times, 8)] == [[0, 1, 2, 3], [4, 5, 6], [7]]
    assert [s.tolist() for s in segments(None, 3)] == [[0, 1, 2]]
    jittered = np.cumsum(
        np.r_[0, np.random.default_rng(0).uniform(0.18, 0.22, 50)]
    )  # 5 fps with jitter
    assert len(segments(jittered, 51)) == 1
