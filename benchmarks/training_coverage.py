"""Training coverage on the living synthetic fleet: does night stay covered and does rain fall out?

A training set is built from cameras ``cam-000``..``cam-004`` (one per scene) over
``--train-days`` days: every ``--train-every``-th frame, day, dusk, dawn and night (infrared),
with every rain frame left out. Frames go the daemon's way: rendered, JPEG-encoded, decoded,
statistics and the default embedder (``monitor.pipeline.embed``, seed-initialised) on the decoded
RGB frame. Then streams are judged the daemon's way, a sliding window of ``window.size`` frames
evaluated every ``window.evaluate_every`` frames (the defaults, 200 and 50), by the share of the
window's frames that the training set covers:

(a) night: held-out nights (days after the training days) of the training cameras and of other
    cameras (``cam-005``.., other crops of the same scenes): the share should stay >= 90%;
(b) rain: the first ``--showers`` rain showers of each training camera (after the training
    days), the stream starting one window before the shower: the share should fall below 50%
    within two windows of the shower's start.

Each coverage space is measured: driftmon's rule (the raw embedding with the image statistics
beside it, standardised and weighted to carry as much variance as the embedding), the raw
embedding alone, the embedding with each dimension standardised by the training set's spread, the
standardised embedding with the image statistics appended, and the embedding's top 32 principal
components (of the training set) whitened.

    python benchmarks/training_coverage.py                  # 8 cameras, seed 0
    python benchmarks/training_coverage.py --seeds 0 1 2    # the documented figures (156 s)
    VERBOSE=1 python benchmarks/training_coverage.py        # and every stream's window shares
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import Config  # noqa: E402
from monitor.loop.coverage import Scaling, TrainingCoverage  # noqa: E402
from monitor.reference.collect import Collector, build_embedder_from  # noqa: E402
from monitor.sim.fleet import Camera, encode, make_fleet  # noqa: E402
from monitor.sim.world import Living  # noqa: E402

CHUNK = 200


@dataclass
class Frames:
    embeddings: np.ndarray
    stats: np.ndarray


def collect(cam: Camera, ts: list[int], config: Config, embedder, pool) -> Frames:
    """The daemon's view of ``cam``'s frames ``ts``: JPEG -> decode -> statistics, embeddings."""
    collector = Collector(config, embedder, pool)
    for lo in range(0, len(ts), CHUNK):
        chunk = ts[lo : lo + CHUNK]
        data = list(pool.map(lambda t: encode(cam.frame(t)), chunk))
        collector.add([(d, t / cam.fps, cam.camera_id) for t, d in zip(chunk, data, strict=True)])
    assert len(collector.out.rows) == len(ts), collector.out.errors
    return Frames(np.vstack(collector.out.embeddings), collector.out.matrix())


def rain_starts(cam: Camera, lo: int, hi: int, step: int = 5) -> list[int]:
    """Frames where a shower starts in [lo, hi) (to ``step`` frames)."""
    rain = np.array([cam.context(t).rain for t in range(lo, hi, step)])
    return [lo + int(i) * step for i in np.flatnonzero(rain[1:] & ~rain[:-1]) + 1]


def night_start(cam: Camera, lo: int, step: int = 5) -> int:
    t = lo
    while cam.context(t).time_of_day != "night" or cam.context(t).rain:
        t += step
    return t


def windows(n: int, size: int, every: int) -> list[slice]:
    return [slice(end - size, end) for end in range(size, n + 1, every)]


class Space:
    """A coverage space: how frames become the vectors TrainingCoverage sees."""

    def __init__(
        self, name: str, scaling: Scaling, with_stats: bool, whiten: int = 0, beside: bool = False
    ):
        self.name, self.scaling, self.with_stats = name, scaling, with_stats
        self.whiten = whiten  # > 0: the training set's top principal components, whitened
        # the rule driftmon uses: the raw embedding with the image statistics beside it, weighted
        # by TrainingCoverage itself (monitor.loop.coverage)
        self.beside = beside

    def statistics(self, f: Frames) -> np.ndarray | None:
        return f.stats if self.beside else None

    def vectors(self, f: Frames, train: Frames) -> np.ndarray:
        if self.whiten:
            mu = train.embeddings.mean(0)
            _, sv, vt = np.linalg.svd(train.embeddings - mu, full_matrices=False)
            sd = sv[: self.whiten] / np.sqrt(len(train.embeddings))
            return ((f.embeddings - mu) @ vt[: self.whiten].T / sd).astype(np.float32)
        if not self.with_stats:
            return f.embeddings
        # statistics standardised by the training set's spread, then weighted to carry as much
        # total variance as the (standardised) embedding: sqrt(dim_emb / dim_stats)
        mu, sd = train.stats.mean(0), train.stats.std(0) + 1e-6
        w = np.sqrt(train.embeddings.shape[1] / train.stats.shape[1])
        return np.hstack([f.embeddings, (f.stats - mu) / sd * w * train.embeddings.std(0).mean()])


SPACES = [
    Space("embedding + statistics, equal share (the rule)", "none", False, beside=True),
    Space("embedding (raw)", "none", False),
    Space("embedding, standardised", "standard", False),
    Space("embedding + statistics, std.", "standard", True),
    Space("embedding, PCA-whitened (32)", "none", False, whiten=32),
]


def run(seed: int, args, config: Config, embedder, pool) -> dict:
    living = Living(day_s=args.day_s, rain_per_hour=args.rain_per_hour)
    fleet = make_fleet(
        args.cameras, seed=seed, width=args.width, height=args.height, fps=args.fps, dynamics=living
    )
    day = int(args.day_s * args.fps)
    train_cams = fleet[:5]
    parts = []
    for cam in train_cams:
        ts = [
            t for t in range(0, args.train_days * day, args.train_every) if not cam.context(t).rain
        ]
        parts.append(collect(cam, ts, config, embedder, pool))
    train = Frames(np.vstack([p.embeddings for p in parts]), np.vstack([p.stats for p in parts]))
    size, every = config.window.size, config.window.evaluate_every
    after = args.train_days * day
    fits = {}
    for sp in SPACES:
        t0 = time.perf_counter()
        fits[sp.name] = TrainingCoverage.fit(
            sp.vectors(train, train),
            config.training.coverage_quantile,
            seed=seed,
            scaling=sp.scaling,
            statistics=sp.statistics(train),
        )
        fits[sp.name + ":fit_s"] = time.perf_counter() - t0
    out: dict = {"train_frames": len(train.embeddings), "night": [], "rain": [], "fits": fits}
    for i, cam in enumerate(fleet):
        start = night_start(cam, after + i * 37)
        ts = [t for t in range(start, start + args.night_frames) if not cam.context(t).rain]
        f = collect(cam, ts, config, embedder, pool)
        row = {"camera": cam.camera_id, "held": "training cam" if i < 5 else "other cam"}
        for sp in SPACES:
            cov = fits[sp.name]
            d = cov.distances(sp.vectors(f, train), sp.statistics(f))
            c = d <= cov.radius
            row[sp.name] = [float(c[w].mean()) for w in windows(len(c), size, every)]
            row[sp.name + ":ratio"] = float(np.median(d) / cov.radius)
        out["night"].append(row)
        if i >= len(train_cams):  # another camera's view is not covered at all (see the notes)
            continue
        for start in rain_starts(cam, after, after + args.search_days * day)[: args.showers]:
            ts = list(range(start - size, start + 2 * size))
            ctx = [cam.context(t) for t in ts]
            f = collect(cam, ts, config, embedder, pool)
            row = {
                "camera": cam.camera_id,
                "start": start,
                "tod": ctx[size].time_of_day,
                "rain_frames": int(sum(c.rain for c in ctx[size:])),
            }
            for sp in SPACES:
                d = fits[sp.name].distances(sp.vectors(f, train), sp.statistics(f))
                c = d <= fits[sp.name].radius
                row[sp.name + ":ratio"] = float(np.median(d[size:]) / fits[sp.name].radius)
                # evaluations whose window ends after the shower started, up to two windows in
                ends = list(range(size + every, 3 * size + 1, every))
                row[sp.name] = [float(c[e - size : e].mean()) for e in ends]
            out["rain"].append(row)
    return out


def _rain(rows: list[dict], name: str, size: int, every: int) -> str:
    """Showers below 50% within two windows / all, the median frames from the shower's start to the
    first evaluation below 50%, the median lowest share."""
    if not rows:
        return "-"
    met = [row for row in rows if min(row[name]) < 0.5]
    lag = [every * (1 + next(k for k, v in enumerate(row[name]) if v < 0.5)) for row in met]
    low = np.median([min(row[name]) for row in rows])
    return (
        f"{len(met)}/{len(rows)}, {np.median(lag):.0f} fr, low {low:.0%}"
        if met
        else f"0/{len(rows)}, low {low:.0%}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=180)
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--day-s", type=float, default=600.0)
    p.add_argument("--rain-per-hour", type=float, default=6.0)
    p.add_argument("--train-days", type=int, default=2)
    p.add_argument("--train-every", type=int, default=10)
    p.add_argument("--night-frames", type=int, default=600)
    p.add_argument("--search-days", type=int, default=8)
    p.add_argument("--showers", type=int, default=3)
    args = p.parse_args()
    config = Config()
    embedder = build_embedder_from(config)
    started = time.perf_counter()
    results = []
    with ThreadPoolExecutor(config.decode.workers) as pool:
        for seed in args.seeds:
            results.append(run(seed, args, config, embedder, pool))
    took = time.perf_counter() - started
    size, every = config.window.size, config.window.evaluate_every
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{args.width}x{args.height} at {args.fps:g} fps, a day of {args.day_s:g} s, "
        f"seeds {args.seeds}, window {size} every {every}, quantile "
        f"{config.training.coverage_quantile}; training frames "
        f"{[r['train_frames'] for r in results]}; {took:.0f} s"
    )
    print(
        "| coverage space | night, held-out days, training cams: mean / min window share |"
        " night, other cams | rain, long showers | rain, all showers | long, at night |"
        " long, not at night |"
    )
    print("|---|---|---|---|---|---|---|")
    for sp in SPACES:
        nights = {"training cam": [], "other cam": []}
        for r in results:
            for row in r["night"]:
                nights[row["held"]].append(row[sp.name])
        cells = []
        for k in ("training cam", "other cam"):
            flat = [s for shares in nights[k] for s in shares]
            cells.append(f"{np.mean(flat):.1%} / {np.min(flat):.1%}" if flat else "-")
        rains = [row for r in results for row in r["rain"]]
        long = [row for row in rains if row["rain_frames"] == 2 * size]
        cells += [_rain(long, sp.name, size, every), _rain(rains, sp.name, size, every)]
        for tod in ("night", "not night"):
            sub = [row for row in long if (row["tod"] == "night") == (tod == "night")]
            cells.append(_rain(sub, sp.name, size, every))
        print(f"| {sp.name} | " + " | ".join(cells) + " |")
    print(
        f"# rain: 'long' = showers raining through both windows after their start "
        f"({sum(row['rain_frames'] == 2 * size for r in results for row in r['rain'])} of "
        f"{sum(len(r['rain']) for r in results)} showers); a cell: showers below 50% within two "
        "windows, median frames from the start to the first evaluation below 50%, median lowest "
        "share"
    )
    print(
        "# median distance to the nearest training frame / radius (frames' median per stream, "
        "median over streams):"
    )
    for sp in SPACES:
        k = sp.name + ":ratio"
        night = {
            h: [row[k] for r in results for row in r["night"] if row["held"] == h]
            for h in ("training cam", "other cam")
        }
        rain = [row[k] for r in results for row in r["rain"] if row["rain_frames"] == 2 * size]
        print(
            f"#   {sp.name}: night, training cams {np.median(night['training cam']):.2f}; "
            f"night, other cams {np.median(night['other cam']):.2f}; rain (long showers, "
            f"rain frames) {np.median(rain):.2f}"
        )
    fit_s = [r["fits"][SPACES[0].name + ":fit_s"] for r in results]
    print(f"# fit {np.mean(fit_s) * 1e3:.0f} ms for {results[0]['train_frames']} frames")
    if "-v" in sys.argv or os.environ.get("VERBOSE"):
        for r in results:
            for row in r["rain"]:
                print(
                    row["camera"],
                    row["tod"],
                    row["rain_frames"],
                    {sp.name: [round(s, 2) for s in row[sp.name]] for sp in SPACES},
                )
            for row in r["night"]:
                print(
                    row["camera"],
                    row["held"],
                    {sp.name: [round(s, 2) for s in row[sp.name]] for sp in SPACES},
                )


if __name__ == "__main__":
    main()
