"""monitor.sim.fleet's iid mode (``dynamics="iid"``): the frames the fleet rendered before it
had living cameras, bit for bit.

The CRC-32 values were taken from the iid-only fleet (commit 4483634) with the pinned numpy and
OpenCV of this repository's environment; another OpenCV build may resample a view differently.
"""

from __future__ import annotations

import zlib

import pytest

from monitor.sim.fleet import Camera, make_fleet

# (scene, width, height, seed, shift or None, t, CRC-32 of frame(t).tobytes())
PINNED = [
    ("chelsea", 320, 240, 42, None, 0, 0xEE6337F8),
    ("chelsea", 320, 240, 42, None, 7, 0xADC37143),
    ("chelsea", 320, 240, 42, None, 1234, 0x1DEDDDA8),
    ("chelsea", 320, 240, 42, None, 1_000_000, 0x1C10D426),
    ("coffee", 960, 540, 3, None, 5, 0x1C2AC2F2),
    ("rocket", 1920, 1080, 8, None, 11, 0xA5F58019),
    ("astronaut", 320, 240, 4, ("knocked", 4), 2, 0x65FFCE32),
    ("motorcycle", 320, 240, 9, ("dusk", 3), 3, 0x69B6EA74),
    ("chelsea", 320, 240, 6, ("motion_blur", 5), 10, 0x75373C57),
    ("coffee", 320, 240, 6, ("impulse_noise", 2), 10, 0x84775482),
]


def crc(frame) -> int:
    return zlib.crc32(frame.tobytes())


@pytest.mark.parametrize("scene,w,h,seed,shift,t,expected", PINNED)
def test_iid_frames_are_the_ones_rendered_before(scene, w, h, seed, shift, t, expected):
    cam = Camera("c", scene, width=w, height=h, seed=seed, dynamics="iid")
    if shift:
        cam.set_shift(*shift)
    assert crc(cam.frame(t)) == expected


def test_iid_fleet_is_the_one_made_before():
    fleet = make_fleet(3, seed=5, width=320, height=240, dynamics="iid")
    assert [(c.camera_id, c.scene, c.seed) for c in fleet] == [
        ("cam-000", "astronaut", 1216286061),
        ("cam-001", "chelsea", 440823767),
        ("cam-002", "coffee", 1109300403),
    ]
    assert [crc(c.frame(17)) for c in fleet] == [0xE9E40C4F, 0xCDCE1F4F, 0x54421C8C]


def test_iid_frames_do_not_depend_on_fps_and_context_is_always_day():
    a = Camera("c", "coffee", width=64, height=48, seed=2, dynamics="iid")
    b = Camera("c", "coffee", width=64, height=48, seed=2, dynamics="iid", fps=25)
    assert a.frame(9).tobytes() == b.frame(9).tobytes()
    assert {a.context(t).to_dict()["time_of_day"] for t in (0, 10**6)} == {"day"}
    assert not a.context(5).ir and not a.context(5).rain
