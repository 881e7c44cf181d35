"""Smoke test of benchmarks/footage.py on a small synthetic clip (the real clips are not in the
repository): the protocol's windows, the feature cache and driftmon's verdicts, end to end; plus the
window layout for the real clips' frame counts and the two shifts it implements itself.

The ImageNet-C corruptions (the optional ``imagecorruptions`` package) and the peers are left out.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FRAMES, WIDTH, HEIGHT = 250, 128, 96


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("footage", ROOT / "benchmarks" / "footage.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def synthetic_clip(path: Path) -> None:
    """A fixed 'camera': a lit gradient with a bright square crossing it, and sensor noise."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (WIDTH, HEIGHT))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    base = np.linspace(40, 200, WIDTH)[None, :, None] * np.ones((HEIGHT, 1, 3))
    for t in range(FRAMES):
        frame = base + rng.normal(0, 4, base.shape)
        x = (2 * t) % (WIDTH - 20)
        frame[30:50, x:x + 20] = 240
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    footage, work = tmp_path_factory.mktemp("footage"), tmp_path_factory.mktemp("work")
    synthetic_clip(footage / "synthetic.avi")
    raw = work / "results.json"
    argv = ["--footage", str(footage), "--work", str(work), "--shifts", "dusk", "view_moved",
            "--workers", "1", "--no-evidently", "--json", str(raw)]
    assert bench.main(argv) == 0
    return work, json.loads(raw.read_text())


@pytest.mark.parametrize("frames, reference, clean", [
    (341, 200, [1]), (748, 400, [1, 3, 5]), (412, 212, [1, 3]), (370, 200, [1]), (1000, 400, [1, 3, 5, 7, 9])])
def test_layout_follows_the_protocol(bench, frames, reference, clean):
    layout = bench.Layout.of(frames)
    assert len(layout.reference) == reference == len(set(layout.reference))
    assert list(layout.clean) == clean
    assert all(len(b) == 100 and b.start == 100 * k for k, b in layout.clean.items())
    assert all((i // 100) % 2 == 0 for i in layout.reference)
    assert list(layout.reference) == sorted(layout.reference)


def test_dusk_and_view_moved(bench):
    img = np.arange(256, dtype=np.uint8)[None, :, None].repeat(3, axis=2)
    out = bench.dusk(img, 3)
    assert out[0, 0, 0] == 0 and out[0, 255, 0] == 255
    assert out[0, 128, 0] == round(255 * (128 / 255) ** 2.0)
    assert bench.view_shift(1000, 1) == pytest.approx(0.04)
    assert bench.view_shift(1000, 3) == pytest.approx(0.075)  # 8% clamped to what an 85% crop allows
    frame = np.zeros((100, 200, 3), np.uint8)
    assert bench.view_moved(frame, 3).shape == frame.shape


def test_windows_and_cache(run):
    work, result = run
    clip = work / "synthetic"
    meta = result["clips"]["synthetic"]
    assert (meta["frames"], meta["reference_frames"], meta["clean_blocks"]) == (FRAMES, 150, [1])
    assert meta["failed"] == {}
    names = sorted(p.name for p in (clip / "clean-1").iterdir())
    assert names == [f"f{i:06d}.jpg" for i in range(100, 200)]
    assert sorted(p.name for p in (clip / "shift-dusk-s3").iterdir()) == names
    (cache,) = clip.glob("features-*")
    with np.load(cache / "shift-view_moved-s1.npz") as z:
        assert list(z["files"]) == names
        assert z["features"].shape == (100, 20) and z["embeddings"].shape[0] == 100


def test_verdicts(run):
    _, result = run
    records = {r["window"]: r for r in result["windows"] if r["detector"] == "driftmon"}
    assert set(records) == {"clean-1", "shift-dusk-s1", "shift-dusk-s3", "shift-view_moved-s1",
                            "shift-view_moved-s3"}
    assert all(r["frames"] == 100 and set(r["tests"]) >= {"ks", "mmd"} for r in records.values())
    dark = records["shift-dusk-s3"]
    assert dark["drift"] and "brightness_mean" in dark["tests"]["ks"]["drifted_features"]
