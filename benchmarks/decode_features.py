"""Per-frame cost of the decode and features stages on 1080p JPEGs.

Frames: the colour photographs scikit-image ships (astronaut, chelsea, coffee, rocket),
resized to 1920x1080 and JPEG-encoded at quality 90.

Measured, per frame, as wall time and as process CPU time (median over rounds; the stages
are interleaved round by round so a noisy shared machine slows all of them alike):

- ``full imdecode``     cv2.imdecode at full resolution (what a naive decoder pays)
- ``bare reduced``      cv2.imdecode with IMREAD_REDUCED_COLOR_4 only (the floor)
- ``decode()``          monitor.pipeline.decode.decode: limits, header parse, reduced decode, RGB
- ``features``          monitor.pipeline.features.compute_features on the decoded 480x270 frame
- ``decode+features``   both, as the consume loop runs them

Usage::

    python benchmarks/decode_features.py [--rounds 30] [--threads N] [--workers N]

``--threads`` sets cv2.setNumThreads for the run (default: leave OpenCV's default).
``--workers N`` runs every stage through a pool of N threads, as the daemon's decode workers run
(``decode.workers``, 2 by default): per-frame figures are then elapsed (or CPU) time over frames,
so OpenCV's own threads and the pool's share the cores as they do in the daemon.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
from skimage import data as skdata

from monitor.pipeline.decode import DecodeLimits, decode
from monitor.pipeline.features import FEATURE_NAMES, compute_features

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def make_frames() -> list[bytes]:
    frames = []
    for name in PHOTOS:
        rgb = getattr(skdata, name)()
        bgr = cv2.resize(
            cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (1920, 1080), interpolation=cv2.INTER_CUBIC
        )
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        frames.append(buf.tobytes())
    return frames


def per_frame_seconds(
    fn: Callable[[bytes], object],
    frames: list[bytes],
    reps: int,
    pool: ThreadPoolExecutor | None = None,
) -> tuple[float, float]:
    """(wall, CPU) seconds per frame, one frame after another or through ``pool``. CPU time (all
    of this process's threads) is the steadier figure on a shared machine, and the one that bounds
    a busy daemon's throughput."""
    run = pool.map if pool is not None else map
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in run(fn, frames * reps):
        pass
    k = reps * len(frames)
    return (time.perf_counter() - wall) / k, (time.process_time() - cpu) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--reps", type=int, default=5, help="passes over the frames per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--workers", type=int, default=0, help="a pool of this many threads, as the daemon's"
    )
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    frames = make_frames()
    limits = DecodeLimits()
    decoded = {f: decode(f, limits) for f in frames}
    arrays = {f: np.frombuffer(f, np.uint8) for f in frames}

    stages: dict[str, Callable[[bytes], object]] = {
        "full imdecode": lambda f: cv2.imdecode(arrays[f], cv2.IMREAD_COLOR),
        "bare reduced": lambda f: cv2.imdecode(arrays[f], cv2.IMREAD_REDUCED_COLOR_4),
        "decode()": lambda f: decode(f, limits),
        "features": lambda f: compute_features(decoded[f]),
        "decode+features": lambda f: compute_features(decode(f, limits)),
    }
    pool = ThreadPoolExecutor(args.workers) if args.workers > 0 else None
    for fn in stages.values():  # warm up
        per_frame_seconds(fn, frames, 1, pool)
    wall: dict[str, list[float]] = {k: [] for k in stages}
    cpu: dict[str, list[float]] = {k: [] for k in stages}
    for _ in range(args.rounds):
        for name, fn in stages.items():
            w, c = per_frame_seconds(fn, frames, args.reps, pool)
            wall[name].append(w)
            cpu[name].append(c)
    if pool is not None:
        pool.shutdown()

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus; "
        f"python {platform.python_version()}, opencv {cv2.__version__}, "
        f"numpy {np.__version__}; cv2 threads {cv2.getNumThreads()}; "
        + (f"a pool of {args.workers} threads" if pool is not None else "one frame at a time")
    )
    print(
        f"frames: {len(frames)} x 1920x1080 JPEG q90, mean "
        f"{statistics.mean(len(f) for f in frames) / 1e3:.0f} KB; "
        f"{len(FEATURE_NAMES)} features at {decoded[frames[0]].rgb.shape[1]}x"
        f"{decoded[frames[0]].rgb.shape[0]}; {args.rounds} rounds x {args.reps} passes"
    )
    for label, samples in (("wall", wall), ("CPU", cpu)):
        med = {k: statistics.median(v) for k, v in samples.items()}
        print(f"\n{label} time   {'ms/frame':>9s} {'frames/s':>9s}   (median; p10..p90 ms)")
        for name, v in samples.items():
            q = statistics.quantiles(v, n=10)
            print(
                f"{name:18s} {med[name] * 1e3:9.2f} {1 / med[name]:9.0f}   "
                f"({q[0] * 1e3:.2f}..{q[-1] * 1e3:.2f})"
            )
        print(
            f"features / bare reduced decode (time):            "
            f"{med['features'] / med['bare reduced']:.2f}"
        )
        print(
            f"throughput decode+features / bare reduced decode: "
            f"{med['bare reduced'] / med['decode+features']:.2f}"
        )
        print(
            f"throughput decode+features / full imdecode:       "
            f"{med['full imdecode'] / med['decode+features']:.2f}"
        )


if __name__ == "__main__":
    main()
