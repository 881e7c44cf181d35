"""Smoke test of benchmarks/footage.py on a small synthetic clip (the real clips are not in the
repository): the protocol's windows, the feature cache and driftmon's batch verdicts, end to end;
the streamed mode through the real broker to the daemon; plus the window layout for the real clips'
frame counts and the two shifts it implements itself.

The ImageNet-C corruptions (the optional ``imagecorruptions`` package) and the peers are left out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from monitor.pipeline.features import FEATURE_NAMES
from monitor.service import cli

ROOT = Path(__file__).resolve().parents[2]
FRAMES, WIDTH, HEIGHT, FPS = 250, 128, 96, 25
STREAM_FRAMES = 500


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
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    base = np.linspace(40, 200, WIDTH)[None, :, None] * np.ones((HEIGHT, 1, 3))
    for t in range(FRAMES):
        frame = base + rng.normal(0, 4, base.shape)
        x = (2 * t) % (WIDTH - 20)
        frame[30:50, x : x + 20] = 240
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    footage, work = tmp_path_factory.mktemp("footage"), tmp_path_factory.mktemp("work")
    synthetic_clip(footage / "synthetic.avi")
    return [
        "--footage",
        str(footage),
        "--work",
        str(work),
        "--shifts",
        "dusk",
        "view_moved",
        "--workers",
        "1",
    ], work


def run_mode(bench, clip, tmp_path_factory, *mode: str) -> dict:
    common, _ = clip
    out = tmp_path_factory.mktemp("out")
    assert (
        bench.main(
            [*common, *mode, "--json", str(out / "raw.json"), "--out", str(out / "report.md")]
        )
        == 0
    )
    result = json.loads((out / "raw.json").read_text())
    result["markdown"] = (out / "report.md").read_text()
    return result


@pytest.fixture(scope="module")
def batch(bench, clip, tmp_path_factory):
    return run_mode(bench, clip, tmp_path_factory, "--mode", "batch", "--no-evidently")


@pytest.mark.parametrize(
    "frames, reference, clean",
    [
        (341, 200, [1]),
        (748, 400, [1, 3, 5]),
        (412, 212, [1, 3]),
        (370, 200, [1]),
        (1000, 400, [1, 3, 5, 7, 9]),
    ],
)
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
    assert bench.view_shift(1000, 3) == pytest.approx(
        0.075
    )  # 8% clamped to what an 85% crop allows
    frame = np.zeros((100, 200, 3), np.uint8)
    assert bench.view_moved(frame, 3).shape == frame.shape


def test_pan_moves_whole_pixels(bench):
    # the probe beyond the protocol: a turned camera, nothing resampled, not in the default set
    frame = np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    out = bench.pan(frame, 3)  # 8%: 16 pixels right, 8 down
    assert out.shape == frame.shape
    assert np.array_equal(out[8:, 16:], frame[:-8, :-16])
    assert np.array_equal(out[8:, 15], frame[:-8, 1])  # the strip in view mirrors the edge
    assert "pan" not in bench.SHIFTS and "pan" in bench.ALL_SHIFTS


def test_windows_and_cache(bench, clip, batch):
    _, work = clip
    d = work / "synthetic"
    meta = batch["clips"]["synthetic"]
    assert (meta["frames"], meta["reference_frames"], meta["clean_blocks"]) == (FRAMES, 150, [1])
    assert meta["failed"] == {}
    names = sorted(p.name for p in (d / "clean-1").iterdir())
    assert names == [f"f{i:06d}.jpg" for i in range(100, 200)]
    assert sorted(p.name for p in (d / "shift-dusk-s3").iterdir()) == names
    (cache,) = d.glob("features-*")
    with np.load(cache / "shift-view_moved-s1.npz") as z:
        assert list(z["files"]) == names
        assert z["features"].shape == (100, len(FEATURE_NAMES)) and z["embeddings"].shape[0] == 100
    (window,) = [w for w in bench.load_clip(work, "synthetic") if w.name == "clean-1"]
    assert (window.timing.unit, window.timing.source) == (
        "frames",
        "frame number",
    )  # as from_dir times them
    assert window.timing.times.tolist() == list(range(100, 200))


def test_batch_verdicts_are_driftmon_checks(bench, clip, batch):
    """The harness's verdicts equal ``driftmon check``'s on the same directories."""
    _, work = clip
    d = work / "synthetic"
    records = {r["window"]: r for r in batch["batch"]["windows"] if r["detector"] == "driftmon"}
    assert set(records) == {
        "clean-1",
        "shift-dusk-s1",
        "shift-dusk-s3",
        "shift-view_moved-s1",
        "shift-view_moved-s3",
    }
    assert all(
        r["frames"] == 100 and {"shift", "emb_shift"} <= set(r["tests"]) for r in records.values()
    )
    dark = records["shift-dusk-s3"]
    assert dark["drifted"] and "shift" in dark["fired"]
    store = work / "check-reference"
    assert (
        cli.main(
            [
                "reference",
                "build",
                "--from-dir",
                str(d / "reference"),
                "--out",
                str(store),
                "--quiet",
            ]
        )
        == 0
    )
    dirs = [str(d / name) for name in sorted(records)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["check", "--reference", str(store), "--quiet", *dirs]) == 0
    for line in printed.getvalue().splitlines():
        checked = json.loads(line)
        mine = records[Path(checked["path"]).name]
        assert checked["drifted"] == mine["drifted"]
        for test in checked["tests"]:
            if test["name"] in ("shift", "emb_shift"):
                assert test["statistic"] == pytest.approx(
                    mine["tests"][test["name"]]["statistic"], rel=1e-9
                )
                assert test["threshold"] == mine["tests"][test["name"]]["threshold"]


def test_batch_markdown(batch):
    md = batch["markdown"]
    assert "| synthetic | 250 | 25 | 150 | driftmon | " in md
    assert "### Misses per shift" in md and "| dusk | 3 | · |" in md
    assert "| synthetic | shift-dusk-s3 | yes | shift" in md


@pytest.mark.integration
def test_streamed(bench, clip, tmp_path_factory):
    """Every camera's frames through the broker to the daemon: each evaluation accounted for, the
    dusk camera declared no earlier than hysteresis allows, /status and the metric agreeing."""
    from monitor.sim.broker import BrokerError, tansu_binary

    try:
        tansu_binary()
    except BrokerError as e:
        pytest.skip(str(e))
    result = run_mode(
        bench,
        clip,
        tmp_path_factory,
        "--mode",
        "stream",
        "--stream-faults",
        "dusk",
        "view_moved",
        "--stream-frames",
        str(STREAM_FRAMES),
    )
    (clip_result,) = result["streamed"]
    cameras = {c["camera"]: c for c in clip_result["cameras"]}
    assert set(cameras) == {"synthetic-clean", "synthetic-dusk", "synthetic-view"}
    for c in cameras.values():
        assert c["evaluations"] == 1 + (STREAM_FRAMES - 200) // 50
        assert [e["frame"] for e in c["evaluation_log"]] == list(range(200, STREAM_FRAMES + 1, 50))
        assert c["status_drifted"] == bool(c["metric_drifted"])
    dusk = cameras["synthetic-dusk"]
    assert dusk["fault_at"] == 100 and dusk["earliest_delay_frames"] == 300
    assert dusk["declared"] and dusk["delay_frames"] >= 300
    assert dusk["delay_s"] == pytest.approx(dusk["delay_frames"] / FPS)
    assert not cameras["synthetic-clean"]["declared"]
    assert "| synthetic | 25 | no | yes (" in result["markdown"]
