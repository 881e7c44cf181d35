"""What calibrating a reference costs next to analysing its frames, and a fleet of references.

    .venv/bin/python benchmarks/calibration_cost.py [--frames 400 2000] [--width 1920 --height 1080]

For each reference size:

1. *analysis*: the frames of one synthetic camera (1080p JPEGs) through the daemon's own decode,
   image statistics and default embedder (``monitor.reference.collect.Collector``, as
   ``driftmon reference build`` runs it), timed;
2. *calibration*: everything the calibrated tests need from that reference, on the default
   configuration: the PCA (``fit_reference``), the prepared reference (sorted columns, MMD block)
   the `view` test's edge template, and the span nulls of the image statistics, of the embeddings
   and of the frames' alignments with the template for the daemon's window in
   every context the reference holds, plus the support report (``fit.support``), timed.

Prints both, their ratio (target: calibration <= 2x analysis) and what a fleet of 1,000 such
references costs on this machine (target: under an hour on one 2-core machine): calibration alone,
and with the analysis of their frames (which already uses both cores, on ``decode.workers``
threads).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import Config  # noqa: E402
from monitor.pipeline.drift_tests import EMBEDDINGS, LAYOUTS, STATISTICS  # noqa: E402
from monitor.pipeline.engine import Engine  # noqa: E402
from monitor.pipeline.features import FEATURE_NAMES  # noqa: E402
from monitor.reference.collect import Collector, build_embedder_from, make_reference  # noqa: E402
from monitor.reference.fit import support  # noqa: E402
from monitor.sim.fleet import Camera, encode  # noqa: E402


def analyse(config: Config, frames: int, width: int, height: int, pool: ThreadPoolExecutor):
    """Encode one camera's frames (not timed), then decode + statistics + embeddings (timed)."""
    cam = Camera("cam-000", "coffee", width=width, height=height, seed=3)
    encoded = list(pool.map(lambda t: encode(cam.frame(t)), range(frames)))
    embedder = build_embedder_from(config)
    collector = Collector(config, embedder, pool)
    started = time.perf_counter()
    for i in range(0, frames, 64):
        collector.add(
            [(data, (i + j) / 5.0, "cam-000") for j, data in enumerate(encoded[i : i + 64])]
        )
    return collector.out, embedder, time.perf_counter() - started


def calibrate(config: Config, got, embedder) -> float:
    """The reference's fitting, preparation and span nulls for the daemon's window, timed."""
    started = time.perf_counter()
    ref = make_reference(got, stream="cam-000", source="bench", config=config, embedder=embedder)
    engine = Engine(config, FEATURE_NAMES, embedder.identity if embedder else None)
    prepared = engine.prepare(ref)
    for context in set(ref.contexts.tolist()):
        prepared.null(STATISTICS, context, config.window.size)
        if prepared.components:
            prepared.null(EMBEDDINGS, context, config.window.size)
        if prepared.template is not None:
            prepared.null(LAYOUTS, context, config.window.size)
    support(ref, config, FEATURE_NAMES)
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[400, 2000], help="reference sizes")
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--repeats", type=int, default=3, help="calibrations timed per size (median)")
    args = p.parse_args()
    config = Config()
    print(
        f"machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cpus; "
        f"window {config.window.size} every {config.window.evaluate_every}, default embedder"
    )
    print(
        "| reference frames | analysis (s) | calibration (s) | ratio | 1,000 references: "
        "calibration (min) | with analysis (min) |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    with ThreadPoolExecutor(config.decode.workers) as pool:
        for frames in args.frames:
            got, embedder, analysis = analyse(config, frames, args.width, args.height, pool)
            cal = statistics.median(calibrate(config, got, embedder) for _ in range(args.repeats))
            print(
                f"| {frames:,} | {analysis:.1f} | {cal:.2f} | {cal / analysis:.3f} | "
                f"{1000 * cal / 60:.1f} | {1000 * (analysis + cal) / 60:.0f} |"
            )


if __name__ == "__main__":
    main()
