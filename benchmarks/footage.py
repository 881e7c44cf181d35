"""Real footage: driftmon's verdicts, Evidently's and Alibi Detect's on fixed-camera clips.

The clips and the protocol are described in ``../shared/footage/README.md`` (the clips are not in
this repository and nothing derived from them may enter it). Run from the repository root:

    .venv/bin/python benchmarks/footage.py --work /tmp/driftmon-footage            # driftmon + Evidently
    .venv/bin/python benchmarks/footage.py --alibi-python /tmp/alibi-venv/bin/python --json out.json
    .venv/bin/python benchmarks/footage.py --config candidate.yaml --no-evidently  # another configuration
    .venv/bin/python benchmarks/footage.py --clips vtest --shifts dusk view_moved  # a subset

Three stages, each cached under ``--work`` (a directory or file there is complete; delete it to
redo it), so only the first run is slow:

1. Windows (the README's protocol, n = 100). Every frame is decoded in order and cut into blocks
   of n; the reference is the frames of the even blocks (at most 400, evenly spaced), the clean
   windows the complete odd blocks, and each shifted window the first clean window with a shift
   applied to every frame: the 15 ImageNet-C corruptions of the ``imagecorruptions`` package at
   severities 1 and 3, "dusk" (gamma 1.4 / 2.0) and "view moved" (an 85% crop moved 4% / 8% of the
   frame from the centre, resized back). Frames are written as JPEG quality 88, one directory per
   window (``<work>/<clip>/{reference,clean-<block>,shift-<name>-s<severity>}/f<frame>.jpg``).
2. Features: each directory through ``monitor.collect.from_dir`` (the daemon's decode, the 20
   image statistics and the configured embedder, exactly as ``driftmon reference build
   --from-dir`` and ``driftmon check`` run them), saved as one ``.npz`` per directory under
   ``<work>/<clip>/features-<key>/`` (key: decode size and embedder identity). Statistical
   experiments load these in seconds (:func:`load_clip`).
3. Verdicts on every clean and shifted window: driftmon's (:func:`judge`: the reference made by
   ``collect.make_reference`` and stored in a ``ReferenceStore``, then ``Engine.run_tests`` as
   ``driftmon check`` does), Evidently's ``DataDriftPreset`` on the 20 statistics (its default
   dataset rule: drift when at least half the columns drifted) and, with ``--alibi-python``,
   Alibi Detect's ``MMDDrift`` (pytorch backend, p_val 0.05, its defaults) on the PCA-reduced
   embeddings driftmon's MMD test sees, run by ``benchmarks/footage_alibi.py`` in Alibi's own
   interpreter (it pins numpy < 2).

Prints Markdown tables; ``--json`` writes every window's raw results.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import types
import warnings
import zlib
from collections import Counter
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

from monitor import collect  # noqa: E402
from monitor.config import config_from_dict  # noqa: E402
from monitor.decode import decode  # noqa: E402
from monitor.embed import Embedder  # noqa: E402
from monitor.engine import Engine  # noqa: E402
from monitor.features import FEATURE_NAMES, compute_features  # noqa: E402
from monitor.reference import ReferenceStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov")
WINDOW = 100
MAX_REFERENCE = 400
JPEG_QUALITY = 88
SEVERITIES = (1, 3)
DUSK_GAMMA = {1: 1.4, 3: 2.0}
VIEW_CROP = 0.85
VIEW_SHIFT = {1: 0.04, 3: 0.08}  # of the frame's width and height, right and down from the centre
IMAGENET_C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
              "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
              "jpeg_compression")  # imagecorruptions.get_corruption_names("common"), in its order
SHIFTS = IMAGENET_C + ("dusk", "view_moved")
DETECTORS = ("driftmon", "evidently", "alibi_mmd")
DETECTOR_LABELS = {"driftmon": "driftmon", "evidently": "Evidently DataDriftPreset",
                   "alibi_mmd": "Alibi Detect MMDDrift"}


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
    def of(cls, n_frames: int, window: int = WINDOW, max_reference: int = MAX_REFERENCE) -> "Layout":
        blocks = [range(start, min(start + window, n_frames)) for start in range(0, n_frames, window)]
        even = [i for b in blocks[0::2] for i in b]
        if len(even) > max_reference:
            even = [even[j] for j in np.linspace(0, len(even) - 1, max_reference).round().astype(int)]
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
    shift, severity = name[len("shift-"):].rsplit("-s", 1)
    return kind, shift, int(severity)


def frame_file(index: int) -> str:
    return f"f{index:06d}.jpg"


def count_frames(video: Path) -> int:
    """Frames the decoder delivers (a container's frame count can be wrong: vtest.avi claims 682)."""
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
    """The ``imagecorruptions`` package (1.1.2, its last release, 2020), made importable and runnable
    on today's stack without touching its corruption code:

    - it imports ``pkg_resources`` (absent from the installed setuptools, 84) only for ``resource_filename``,
      which locates frost's texture files beside its module: a stand-in does that;
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
            os.path.dirname(sys.modules[module].__file__), name)
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
    """Top-left corner of the crop along one axis: centred, moved VIEW_SHIFT of ``size``, kept inside
    the frame (an 85% crop can move at most 7.5%: severity 3's 8% is clamped there)."""
    crop = round(VIEW_CROP * size)
    return int(np.clip(round((size - crop) / 2 + VIEW_SHIFT[severity] * size), 0, size - crop))


def view_shift(size: int, severity: int) -> float:
    """The shift ``view_moved`` actually applies along an axis of ``size`` pixels, as a fraction of it."""
    return (view_offset(size, severity) - (size - round(VIEW_CROP * size)) / 2) / size


def view_moved(bgr: np.ndarray, severity: int) -> np.ndarray:
    """The camera knocked: an 85% crop moved right and down from the centre, resized to the frame."""
    h, w = bgr.shape[:2]
    x, y = view_offset(w, severity), view_offset(h, severity)
    crop = bgr[y:y + round(VIEW_CROP * h), x:x + round(VIEW_CROP * w)]
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


def write_plain_windows(video: Path, out: Path, layout: Layout, keep: range | None) -> dict[int, np.ndarray]:
    """Decode ``video`` once, write the missing reference/clean directories, and return the decoded
    frames with indices in ``keep`` (the window the shifts are applied to)."""
    targets = {name: set(frames) for name, frames in layout.plain_windows().items() if not (out / name).is_dir()}
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


def write_shifted_windows(clip: str, out: Path, frames: dict[int, np.ndarray], shifts: Sequence[str],
                          workers: int) -> dict[str, str]:
    """Every missing shifted window, frames spread over ``workers`` processes; returns the
    directories that failed, with why (a failed window is left out, never half-written)."""
    todo = [(name, s) for name in shifts for s in SEVERITIES if not (out / shift_dir(name, s)).is_dir()]
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
        meta |= {"frames": count_frames(video), "fps": cap.get(cv2.CAP_PROP_FPS),
                 "container_frame_count": int(cap.get(cv2.CAP_PROP_FRAME_COUNT)),
                 "size": [int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))]}
        cap.release()
    layout = Layout.of(meta["frames"])
    first = layout.clean[layout.first_clean]
    needs_shift = any(not (out / shift_dir(n, s)).is_dir() for n in shifts for s in SEVERITIES)
    needs_plain = any(not (out / name).is_dir() for name in layout.plain_windows())
    frames = {}
    if needs_shift or needs_plain:
        frames = write_plain_windows(video, out, layout, keep=first if needs_shift else None)
    failed = write_shifted_windows(out.name, out, frames, shifts, workers)
    meta |= {"reference_frames": len(layout.reference), "clean_blocks": sorted(layout.clean),
             "shifted_from": f"clean-{layout.first_clean}",
             "view_moved_shift": {f"s{s}": [round(view_shift(size, s), 4) for size in meta["size"]]
                                  for s in SEVERITIES},
             "failed": meta.get("failed", {}) | failed}
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
    """One directory's frames as driftmon sees them: statistics and embeddings, in file-name order."""

    clip: str
    name: str  # reference, clean-<block> or shift-<name>-s<severity>
    features: np.ndarray  # (n, len(FEATURE_NAMES)) float32
    embeddings: np.ndarray | None  # (n, dim) float32; None with embeddings off
    files: tuple[str, ...]
    times: np.ndarray  # what from_dir records as event time: the files' mtimes

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
    """What the cached values depend on: the decode size and the embedder's identity."""
    what = {"analysis_size": config.decode.analysis_size,
            "embedder": embedder.identity.to_dict() if embedder else None}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def check_file_order(directory: Path, rows: np.ndarray, config) -> list[str]:
    """The files of ``directory`` in name order, after checking that ``from_dir``'s rows are theirs in
    that order (each file decoded and measured again on its own)."""
    files = collect.image_files(directory)
    limits = collect.limits_from(config)
    expected = np.vstack([compute_features(decode(p.read_bytes(), limits)) for p in files]).astype(np.float32)
    if expected.shape != rows.shape or not np.array_equal(expected, rows):
        raise RuntimeError(f"{directory}: from_dir's rows are not its files in file-name order")
    return [p.name for p in files]


def compute_window(directory: Path, clip: str, config, embedder: Embedder | None) -> Window:
    got = collect.from_dir(directory, config, progress=False, embedder=embedder)
    if got.errors:
        raise RuntimeError(f"{directory}: frames failed to decode: {got.errors}")
    rows = got.matrix()
    files = check_file_order(directory, rows, config)
    return Window(clip, directory.name, rows, got.embedding_matrix(), tuple(files), np.asarray(got.times))


def save_window(path: Path, w: Window) -> None:
    arrays = {"features": w.features, "files": np.array(w.files), "times": w.times,
              "feature_names": np.array(FEATURE_NAMES)}
    if w.embeddings is not None:
        arrays["embeddings"] = w.embeddings
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez(tmp, **arrays)
    tmp.rename(path)


def load_window(path: Path, clip: str) -> Window:
    with np.load(path) as z:
        if tuple(z["feature_names"]) != FEATURE_NAMES:
            raise RuntimeError(f"{path}: made with other image statistics; delete it to recompute")
        return Window(clip, path.stem, z["features"], z["embeddings"] if "embeddings" in z else None,
                      tuple(str(f) for f in z["files"]), z["times"])


def window_dirs(clip_dir: Path, shifts: Sequence[str] = SHIFTS) -> list[Path]:
    """The clip's complete window directories: the reference, the clean windows by block, then the
    shifted windows of ``shifts`` in the order of SHIFTS and severity."""
    order = {"reference": 0, "clean": 1, "shift": 2}

    def key(d: Path) -> tuple:
        kind, shift, severity = parse_window_name(d.name)
        if kind == "clean":
            return order[kind], int(d.name.split("-")[1]), 0
        return order[kind], SHIFTS.index(shift) if shift else 0, severity

    dirs = [d for d in clip_dir.iterdir() if d.is_dir() and not d.name.endswith(".partial")
            and parse_window_name(d.name)[0] in order and parse_window_name(d.name)[1] in (None, *shifts)]
    return sorted(dirs, key=key)


def load_clip(work: Path, clip: str, config=None, embedder: Embedder | None = None,
              shifts: Sequence[str] = SHIFTS) -> list[Window]:
    """A clip's windows (reference first, then clean, then the shifted ones of ``shifts``), computing
    the caches that are missing or older than their directory.

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
            save_window(path, compute_window(directory, clip, config, embedder))
            log(f"{clip}: features of {directory.name} in {time.perf_counter() - started:.1f} s")
        windows.append(load_window(path, clip))
    if not windows or windows[0].name != "reference":
        raise FileNotFoundError(f"{work / clip}: no reference window (generate the windows first)")
    return windows


# ---------------------------------------------------------------------------------------------
# Stage 3: verdicts


def window_record(w: Window) -> dict[str, Any]:
    return {"clip": w.clip, "window": w.name, "kind": w.kind, "shift": w.shift, "severity": w.severity,
            "frames": len(w.features)}


def collected(w: Window) -> collect.Collected:
    """A window's cached values in the form ``from_dir`` returns them."""
    n = len(w.features)
    return collect.Collected(rows=list(w.features), embeddings=[] if w.embeddings is None else list(w.embeddings),
                             times=list(w.times), streams=[""] * n, predictions=[None] * n)


def stored_reference(w: Window, config, embedder: Embedder | None, store_dir: Path):
    """``driftmon reference build --from-dir <reference> --out <store>``, read back as ``check`` reads it."""
    got = collected(w)
    ref = collect.make_reference(got, mask=np.ones(len(w.features), bool), stream=None,
                                 source=f"dir:{w.clip}/{w.name}", config=config, embedder=embedder)
    store = ReferenceStore(store_dir)
    store.add(ref)
    return store.load_latest(None)


def outcome_json(outcome) -> dict[str, Any]:
    return {"statistic": outcome.statistic, "p_value": outcome.p_value, "threshold": outcome.threshold,
            "drift": outcome.drift, "drifted_features": outcome.drifted_features}


def judge_clip(windows: Sequence[Window], config, embedder: Embedder | None) -> list[dict[str, Any]]:
    """driftmon's verdict on every window of a clip, as ``driftmon check --reference <store>
    clean-* shift-*`` gives them: one engine judges the windows in order (its MMD permutations
    draw from one seeded generator, so a window's MMD p-value depends on the windows before it,
    as in ``check``)."""
    reference, rest = windows[0], windows[1:]
    engine = Engine(config, FEATURE_NAMES, embedder.identity.to_dict() if embedder else None)
    with tempfile.TemporaryDirectory() as store_dir:
        fitted = engine.fit(stored_reference(reference, config, embedder, Path(store_dir)))
    out = []
    for w in rest:
        outcomes, fired = engine.run_tests(fitted, w.features, w.embeddings)
        out.append(window_record(w) | {"detector": "driftmon", "drift": bool(fired),
                                       "fired": [o.name for o in outcomes if o.drift and o.name in engine.voting],
                                       "drifted_tests": [o.name for o in outcomes if o.drift],
                                       "tests": {o.name: outcome_json(o) for o in outcomes}})
    return out


def judge(config_dict: dict[str, Any], work: Path, clips: Sequence[str]) -> list[dict[str, Any]]:
    """driftmon's verdicts under ``config_dict`` (a driftmon YAML's content; ``{}``: the defaults) on
    every clean and shifted window of ``clips`` already generated under ``work``: one record per
    window, its ``drift`` the ``drift`` of ``driftmon check``. Feature caches missing for this
    configuration's decode size and embedder are computed first."""
    config = config_from_dict(config_dict)
    embedder = collect.build_embedder_from(config)
    out = []
    for clip in clips:
        out += judge_clip(load_clip(work, clip, config, embedder), config, embedder)
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
        return Dataset.from_pandas(pd.DataFrame(np.asarray(rows, np.float64), columns=names),
                                   data_definition=definition)

    preset = DataDriftPreset(columns=names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report([preset]).run(dataset(current), dataset(reference))
    metrics = snapshot.dict()["metrics"]
    count = next(m for m in metrics if m["config"]["type"].endswith(":DriftedColumnsCount"))
    columns = {m["config"]["column"]: {"method": m["config"]["method"], "value": m["value"],
                                       "threshold": m["config"]["threshold"]}
               for m in metrics if m["config"]["type"].endswith(":ValueDrift")}
    share = float(count["value"]["share"])
    return {"drift": share >= preset.drift_share, "drifted_columns": int(count["value"]["count"]),
            "share": share, "columns": columns}


def judge_evidently(windows: Sequence[Window]) -> list[dict[str, Any]]:
    reference, rest = windows[0], windows[1:]
    return [window_record(w) | {"detector": "evidently"} | evidently_verdict(reference.features, w.features)
            for w in rest]


def reduced_embeddings(windows: Sequence[Window], config) -> dict[str, np.ndarray]:
    """Every window's embeddings through the PCA fitted on the clip's reference (as ``make_reference``
    fits it): the inputs of driftmon's MMD test."""
    from detectors.reduce import PCA

    ref = windows[0].embeddings
    k = min(config.embedding.pca_components, ref.shape[1], len(ref) - 1)
    pca = PCA().fit(ref, k)
    return {w.name: pca.transform(w.embeddings).astype(np.float32) for w in windows}


def judge_alibi(by_clip: dict[str, list[Window]], python: str, config) -> tuple[list[dict[str, Any]], dict]:
    """Alibi Detect's MMDDrift on the reduced embeddings, in a subprocess running ``python``
    (Alibi's own environment), arrays handed over in a .npz file and verdicts in a JSON file;
    and the versions it ran with."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {f"{clip}::{name}": x for clip, windows in by_clip.items()
                  for name, x in reduced_embeddings(windows, config).items()}
        np.savez(Path(tmp) / "in.npz", **arrays)
        worker = Path(__file__).with_name("footage_alibi.py")
        subprocess.run([python, str(worker), str(Path(tmp) / "in.npz"), str(Path(tmp) / "out.json")], check=True)
        result = json.loads((Path(tmp) / "out.json").read_text())
    out = []
    for clip, windows in by_clip.items():
        for w in windows[1:]:
            out.append(window_record(w) | {"detector": "alibi_mmd"} | result["verdicts"][f"{clip}::{w.name}"])
    return out, result["versions"]


# ---------------------------------------------------------------------------------------------
# Tables


def detected(records: Sequence[dict], clip: str, detector: str, kind: str, severity: int = 0) -> str:
    got = [r["drift"] for r in records if r["clip"] == clip and r["detector"] == detector
           and r["kind"] == kind and r["severity"] == severity]
    return f"{sum(got)}/{len(got)}" if got else "-"


def summary_table(records: Sequence[dict], clips: Sequence[str], meta: dict[str, dict]) -> str:
    detectors = [d for d in DETECTORS if any(r["detector"] == d for r in records)]
    lines = ["| clip | frames | reference | detector | clean windows declared drifted | "
             "severity 1 detected | severity 3 detected |", "|---|---:|---:|---|---:|---:|---:|"]
    for clip in clips:
        for d in detectors:
            lines.append(f"| {clip} | {meta[clip]['frames']} | {meta[clip]['reference_frames']} | "
                         f"{DETECTOR_LABELS[d]} | {detected(records, clip, d, 'clean')} | "
                         f"{detected(records, clip, d, 'shift', 1)} | {detected(records, clip, d, 'shift', 3)} |")
    return "\n".join(lines)


def tests_fired_table(records: Sequence[dict], clips: Sequence[str]) -> str:
    """For driftmon: in how many windows each test drifted (voting tests marked *)."""
    lines = ["| clip | windows | tests that drifted (windows); * votes |", "|---|---|---|"]
    for clip in clips:
        for kind, severity, label in (("clean", 0, "clean"), ("shift", 1, "severity 1"), ("shift", 3, "severity 3")):
            rs = [r for r in records if r["clip"] == clip and r["detector"] == "driftmon" and r["kind"] == kind
                  and r["severity"] == severity]
            if not rs:
                continue
            counts = Counter(t for r in rs for t in r["drifted_tests"])
            voting = {t for r in rs for t in r["fired"]}
            cells = ", ".join(f"{t}{'*' if t in voting else ''} {n}" for t, n in counts.most_common()) or "none"
            lines.append(f"| {clip} | {label} ({len(rs)}) | {cells} |")
    return "\n".join(lines)


def per_shift_table(records: Sequence[dict], clips: Sequence[str], shifts: Sequence[str]) -> str:
    """Which detector caught each shift: d driftmon, e Evidently, a Alibi; - none."""
    marks = {"driftmon": "d", "evidently": "e", "alibi_mmd": "a"}
    hit = {(r["clip"], r["window"], r["detector"]): r["drift"] for r in records}
    lines = ["| shift | severity | " + " | ".join(clips) + " |", "|---|---:|" + "---|" * len(clips)]
    for name in (n for n in SHIFTS if n in shifts):
        for s in SEVERITIES:
            cells = []
            for clip in clips:
                found = [(d, hit[clip, shift_dir(name, s), d]) for d in DETECTORS
                         if (clip, shift_dir(name, s), d) in hit]
                cells.append("n/a" if not found else "".join(marks[d] for d, yes in found if yes) or "-")
            lines.append(f"| {name} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {}
    for dist in ("numpy", "scipy", "opencv-python-headless", "torch", "evidently", "imagecorruptions",
                 "scikit-image"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--footage", type=Path, default=REPO.parent / "shared" / "footage",
                    help="directory of the clips (default: ../shared/footage from the repository root)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/driftmon-footage"),
                    help="where windows and feature caches go (default /tmp/driftmon-footage)")
    ap.add_argument("--clips", nargs="+", metavar="CLIP", help="clip names, with or without suffix (default: all)")
    ap.add_argument("--shifts", nargs="+", choices=SHIFTS, default=list(SHIFTS), metavar="SHIFT",
                    help=f"shifts to generate and judge (default: all {len(SHIFTS)})")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes applying the shifts (default: one per CPU)")
    ap.add_argument("--config", type=Path, help="driftmon YAML config for the verdicts (default: the defaults)")
    ap.add_argument("--evidently", action=argparse.BooleanOptionalAction, default=True,
                    help="also run Evidently's DataDriftPreset (default: yes)")
    ap.add_argument("--alibi-python", help="interpreter with alibi-detect[torch]: also run its MMDDrift")
    ap.add_argument("--json", type=Path, help="write every window's raw results here")
    return ap.parse_args(argv)


def timed(timings: dict[str, float], stage: str, fn: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = fn()
    timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - started, 1)
    return result


def run(args: argparse.Namespace, config) -> dict[str, Any]:
    """Every stage for the chosen clips; the raw results (what ``--json`` writes)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    meta = {}
    for video in clip_videos(args.footage, args.clips):
        meta[video.stem] = timed(timings, "windows", lambda: generate_clip(
            video, args.work / video.stem, args.shifts, args.workers))
    embedder = collect.build_embedder_from(config)
    by_clip = {clip: timed(timings, "features", lambda: load_clip(args.work, clip, config, embedder, args.shifts))
               for clip in meta}
    records = []
    for windows in by_clip.values():
        records += timed(timings, "driftmon", lambda: judge_clip(windows, config, embedder))
        if args.evidently:
            records += timed(timings, "evidently", lambda: judge_evidently(windows))
    alibi_versions = {}
    if args.alibi_python:
        alibi, alibi_versions = timed(timings, "alibi", lambda: judge_alibi(by_clip, args.alibi_python, config))
        records += alibi
    timings["total"] = round(time.perf_counter() - started, 1)
    return {"versions": versions(), "alibi_versions": alibi_versions, "timings": timings, "clips": meta,
            "windows": records}


def report(result: dict[str, Any], config_label: str, shifts: Sequence[str]) -> str:
    """The Markdown tables of a run."""
    clips, records = list(result["clips"]), result["windows"]
    lines = [f"machine: {platform.machine()}, {os.cpu_count()} cpus; "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items())]
    if result["alibi_versions"]:
        lines.append("Alibi's environment: " + ", ".join(f"{k} {v}" for k, v in result["alibi_versions"].items()))
    lines += [f"driftmon config: {config_label}; stage times (s): {result['timings']}", "",
              summary_table(records, clips, result["clips"]), "",
              "driftmon: tests that drifted", "", tests_fired_table(records, clips), "",
              "Shifted windows detected (d driftmon, e Evidently, a Alibi MMD; - none)", "",
              per_shift_table(records, clips, shifts)]
    failed = {clip: m["failed"] for clip, m in result["clips"].items() if m["failed"]}
    if failed:
        lines += ["", f"windows that could not be generated: {json.dumps(failed, indent=1)}"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config_dict = (yaml.safe_load(args.config.read_text()) or {}) if args.config else {}
    result = run(args, config_from_dict(config_dict))
    print(report(result, str(args.config or "defaults"), args.shifts))
    if args.json:
        args.json.write_text(json.dumps({"config": config_dict} | result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
