"""False declarations per camera-day on living synthetic cameras, with driftmon's defaults.

    .venv/bin/python benchmarks/fleet_false_alarms.py [--cameras 8] [--reference-days 3] [--days 30]

Living cameras (``monitor.sim.fleet``: a compressed day and night cycle with an infrared night,
clouds, traffic and rain showers; ``--day-s`` seconds a day at ``--fps``) that never develop a
fault. Each camera's reference is its first ``--reference-days`` days, built as
``driftmon reference build --from-topic --per-stream`` builds it (times and the producer's context
labels kept). The following ``--days`` days go through the engine exactly as the daemon runs it:
the default window schedule (200 frames every 50), the default tests and the derived hysteresis
on one ``StreamState`` per camera. Every frame goes through the daemon's decode, statistics and
default embedder.

Prints the false declarations (healthy cameras declared drifted), per camera-day with a 95% Poisson
interval, the windows that drifted, and which test and statistic fired. Target: at most one false
declaration per camera per 30 simulated days.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from scipy.stats import chi2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import Config, config_from_dict  # noqa: E402
from monitor.pipeline.engine import Engine  # noqa: E402
from monitor.pipeline.features import FEATURE_NAMES, LAYOUT_SIZE  # noqa: E402
from monitor.pipeline.streams import FrameRef, StreamState, Window  # noqa: E402
from monitor.reference.collect import Collector, build_embedder_from, make_reference  # noqa: E402
from monitor.sim.fleet import Camera, encode, make_fleet  # noqa: E402
from monitor.sim.world import Living  # noqa: E402

EPOCH_S = 1_790_000_000.0
CHUNK = 200


def frames(cam: Camera, ts: range, config: Config, embedder, pool: ThreadPoolExecutor):
    """The daemon's view of ``cam``'s frames ``ts``: statistics, embeddings, times, context
    labels."""
    collector = Collector(config, embedder, pool)
    for start in range(ts.start, ts.stop, CHUNK):
        chunk = range(start, min(ts.stop, start + CHUNK))
        data = list(pool.map(lambda t: encode(cam.frame(t)), chunk))
        collector.add(
            [
                (d, EPOCH_S + t / cam.fps, cam.camera_id, None, cam.context(t).label)
                for t, d in zip(chunk, data, strict=True)
            ]
        )
    return collector.out


def poisson_interval(k: int, exposure: float) -> tuple[float, float]:
    """Exact (Garwood) 95% interval of a Poisson rate from ``k`` events in ``exposure``."""
    low = chi2.ppf(0.025, 2 * k) / 2 / exposure if k else 0.0
    return low, chi2.ppf(0.975, 2 * k + 2) / 2 / exposure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--reference-days", type=int, default=3)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--day-s", type=float, default=180.0, help="seconds a simulated day lasts")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument(
        "--window",
        type=int,
        nargs=2,
        metavar=("SIZE", "EVERY"),
        help="window size and stride (default: the daemon's defaults)",
    )
    args = p.parse_args()
    config = (
        config_from_dict({"window": {"size": args.window[0], "evaluate_every": args.window[1]}})
        if args.window
        else Config()
    )
    embedder = build_embedder_from(config)
    engine = Engine(config, FEATURE_NAMES, embedder.identity)
    fleet = make_fleet(
        args.cameras,
        seed=args.seed,
        width=args.width,
        height=args.height,
        fps=args.fps,
        dynamics=Living(day_s=args.day_s),
    )
    day = int(args.day_s * args.fps)
    started = time.perf_counter()
    declarations = evaluations = drifted_windows = 0
    fired: Counter[str] = Counter()
    with ThreadPoolExecutor(config.decode.workers) as pool:
        for cam in fleet:
            past = frames(cam, range(args.reference_days * day), config, embedder, pool)
            prepared = engine.prepare(
                make_reference(
                    past, stream=cam.camera_id, source="bench", config=config, embedder=embedder
                )
            )
            state = StreamState(
                cam.camera_id,
                Window(
                    len(FEATURE_NAMES),
                    config.window,
                    embedder.identity.output_dim,
                    LAYOUT_SIZE if config.uses_layouts else 0,
                ),
            )
            first = args.reference_days * day
            for start in range(
                first, first + args.days * day, day
            ):  # one day at a time, bounded memory
                got = frames(cam, range(start, start + day), config, embedder, pool)
                emb = got.embedding_matrix()
                layouts = got.layout_matrix()
                for i, (row, ts, context) in enumerate(
                    zip(got.rows, got.times, got.contexts(config), strict=True)
                ):
                    state.window.append(
                        row,
                        FrameRef(f"{i}", cam.camera_id, ts, "bench", 0, i, None, context),
                        emb[i],
                        layout=None if layouts is None else layouts[i],
                    )
                    if state.window.due():
                        e = engine.evaluate(state, prepared, now=ts)
                        evaluations += 1
                        drifted_windows += e.window_drifted
                        if e.changed and e.drifted:
                            declarations += 1
                            for t in e.tests:
                                if t.name in config.voting_tests and t.drifted:
                                    fired[f"{t.name}:{t.drifted_features[0]} ({e.context})"] += 1
            print(f"  {cam.camera_id}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    camera_days = args.cameras * args.days
    low, high = poisson_interval(declarations, camera_days)
    print(
        f"machine: {platform.machine()}, 2-core VM; {args.cameras} living cameras at "
        f"{args.width}x{args.height}, {args.fps:g} fps, a day of {args.day_s:g} s; references of "
        f"{args.reference_days} days; defaults (window {config.window.size} every "
        f"{config.window.evaluate_every}, hysteresis {config.hysteresis_k_m[0]} of "
        f"{config.hysteresis_k_m[1]}); {time.perf_counter() - started:.0f} s"
    )
    print(
        "| camera-days | evaluations | windows drifted | false declarations | per camera-day | 95% "
        "interval | per 30 camera-days |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|")
    print(
        f"| {camera_days} | {evaluations} | {drifted_windows} | {declarations} | "
        f"{declarations / camera_days:.4f} | {low:.4f}-{high:.4f} | "
        f"{30 * declarations / camera_days:.2f} (upper {30 * high:.2f}) |"
    )
    if fired:
        print("declared on:", ", ".join(f"{k} x{v}" for k, v in fired.most_common()))


if __name__ == "__main__":
    main()
