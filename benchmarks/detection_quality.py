"""Detection quality: how often driftmon's verdicts fire on shifted and on unshifted camera windows.

Run from the repository root:

    .venv/bin/python benchmarks/detection_quality.py --out docs/detection-quality.md  # ~20-25 min
    .venv/bin/python benchmarks/detection_quality.py --quick  # ~1 min smoke run
    .venv/bin/python benchmarks/detection_quality.py --shifts jpeg pixelate --severities 3

Every frame goes through the daemon's own code: ``Camera.frame(t)`` (monitor/fleet) ->
``encode`` (JPEG q90, what the demo's producer sends) -> ``Collector.add`` (monitor/collect:
``decode`` at the analysis size, ``compute_features``, the configured embedder on the decoded
image; exactly what ``driftmon reference build`` runs) -> references by ``collect.make_reference``
(statistics, embeddings, the PCA fitted on them) -> verdicts by ``Engine.prepare`` and
``Engine.run_tests``. Three verdicts, each from its own ``Engine`` with its own configuration:

``stats``     image statistics alone: ``tests.enabled = tests.vote = [shift]`` (the span-calibrated
              shift of all 21 statistics, its threshold from the default false-alarm target);
``emb``       embeddings alone: ``tests.enabled = tests.vote = [emb_shift]`` (the same on the
              leading principal components of the default embeddings);
``combined``  driftmon's default configuration unchanged (every default test enabled, ``vote =
              [shift, emb_shift]``, the target split between them).

Sampling. The cameras draw every frame independently (``make_fleet(..., dynamics="iid")``): this
benchmark measures power and false alarms on independent frames; living cameras, whose frames are
correlated in time, are ``benchmarks/fleet_false_alarms.py`` and ``benchmarks/footage.py`` (real
clips). Each camera looks at a different scene. A camera's reference is frames
``t = 0 .. reference-1``. Every window is drawn from fresh frame indices that no reference and no
other window uses: frames are produced in *groups* of ``max(windows)`` consecutive indices, and a
group of 200 frames is cut into 4 disjoint windows of 50, 2 of 100 and 1 of 200. Windows of one
size are therefore independent draws given the camera's reference (the binomial intervals printed
for false alarms are exact Clopper-Pearson intervals under that model); windows of different sizes
share frames (a 50-frame window is a quarter of a 200-frame one), which makes the comparison across
sizes a paired one and changes no rate. Unshifted windows: ``fa-groups`` groups per camera.
Shifted windows: ``groups`` groups per camera, shift and severity.

Writes the tables to stdout, optionally into a Markdown file (``--out``: between the markers
``<!-- BEGIN GENERATED: detection_quality.py -->`` and ``<!-- END GENERATED ... -->``, keeping the
hand-written text around them) and the raw counts as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.config import Config, config_from_dict  # noqa: E402
from monitor.pipeline.embed import Embedder  # noqa: E402
from monitor.pipeline.engine import Engine  # noqa: E402
from monitor.pipeline.features import FEATURE_NAMES  # noqa: E402
from monitor.reference.collect import Collector, build_embedder_from, make_reference  # noqa: E402
from monitor.reference.fit import PreparedReference  # noqa: E402
from monitor.sim.fleet import SHIFTS, Camera, encode, make_fleet  # noqa: E402

VERDICTS = ("stats", "emb", "combined")
#: The default voting tests, as the labels say them.
DEFAULT_VOTERS = " + ".join(Config().voting_tests)
VERDICT_LABELS = {
    "stats": "statistics (shift)",
    "emb": "embeddings (emb_shift)",
    "combined": f"combined ({DEFAULT_VOTERS}, default)",
}
#: Test configuration of each verdict; "combined" is driftmon's default ``tests`` section.
VERDICT_TESTS: dict[str, dict[str, Any]] = {
    "stats": {"enabled": ["shift"], "vote": ["shift"]},
    "emb": {"enabled": ["emb_shift"], "vote": ["emb_shift"]},
    "combined": {},
}
BEGIN = "<!-- BEGIN GENERATED: detection_quality.py -->"
END = "<!-- END GENERATED: detection_quality.py -->"
TARGET_WINDOW, TARGET_SEVERITY, TARGET_RATE = 100, 3, 0.95

# Frame indices: the reference uses 0 .. reference-1; unshifted windows start at FA_BASE; the cell
# (shift i, severity s) starts at CELL_BASE + (5 * i + s) * CELL_STRIDE. Fixed bases keep a run of
# a subset of shifts on exactly the frames the full run uses.
FA_BASE = 1_000_000
CELL_BASE = 2_000_000
CELL_STRIDE = 100_000

FULL = dict(
    cameras=5,
    width=640,
    height=360,
    analysis_size=480,
    reference=400,
    windows=(50, 100, 200),
    groups=1,
    fa_groups=30,
    severities=(1, 2, 3, 4, 5),
    seed=2026,
)
QUICK = dict(
    cameras=2,
    width=320,
    height=180,
    analysis_size=160,
    reference=120,
    windows=(25, 50),
    groups=1,
    fa_groups=4,
    severities=(3, 5),
    seed=2026,
)
QUICK_SHIFTS = ("dusk", "gaussian_noise", "jpeg", "knocked")


@dataclass
class Tally:
    """Windows evaluated and windows that fired, per (verdict, shift, severity, window size);
    shift "none" with severity 0 is the unshifted stream. Plus which tests/features fired."""

    fired: Counter = field(default_factory=Counter)
    total: Counter = field(default_factory=Counter)
    # (shift, severity, n) -> Counter of what fired inside the combined verdict (the voting tests
    # that drifted, joined by "+"; "-" for none)
    combined_parts: dict = field(default_factory=dict)
    # (shift, severity, n) -> Counter of statistics that drifted in the stats verdict
    stats_features: dict = field(default_factory=dict)
    # (shift, severity, n) -> Counter of each statistic's shift |z| summed over the windows
    stats_effect: dict = field(default_factory=dict)

    def add(self, verdict: str, shift: str, severity: int, n: int, fired: bool) -> None:
        self.total[verdict, shift, severity, n] += 1
        self.fired[verdict, shift, severity, n] += int(fired)

    def rate(self, verdict: str, shift: str, severity: int, n: int) -> float:
        t = self.total[verdict, shift, severity, n]
        return self.fired[verdict, shift, severity, n] / t if t else float("nan")

    def to_json(self) -> dict[str, Any]:
        def key(k: tuple) -> str:
            return "|".join(str(x) for x in k)

        return {
            "fired": {key(k): v for k, v in self.fired.items()},
            "total": {key(k): v for k, v in self.total.items()},
            "combined_parts": {key(k): dict(v) for k, v in self.combined_parts.items()},
            "stats_features": {key(k): dict(v) for k, v in self.stats_features.items()},
            "stats_effect": {key(k): dict(v) for k, v in self.stats_effect.items()},
        }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def tally_from_json(d: dict[str, Any]) -> Tally:
    """The inverse of :meth:`Tally.to_json` (to re-render tables from a saved run)."""

    def key(k: str) -> tuple:
        return tuple(int(x) if x.isdigit() else x for x in k.split("|"))

    t = Tally(
        fired=Counter({key(k): v for k, v in d["fired"].items()}),
        total=Counter({key(k): v for k, v in d["total"].items()}),
    )
    for name in ("combined_parts", "stats_features", "stats_effect"):
        setattr(t, name, {key(k): Counter(v) for k, v in d.get(name, {}).items()})
    return t


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def make_config(args: argparse.Namespace, tests: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {
        "decode": {"analysis_size": args.analysis_size, "workers": args.workers},
        "embedding": {"threads": args.workers, "device": "cpu"},
    }
    if tests:
        raw["tests"] = tests
    return config_from_dict(raw)


class Pipeline:
    """Frames of a camera -> (statistics, embeddings), on the daemon's code path."""

    def __init__(self, config: Config, embedder: Embedder, pool: ThreadPoolExecutor, quality: int):
        self.config, self.embedder, self.pool, self.quality = config, embedder, pool, quality
        self.frames = 0

    def collect(self, cam: Camera, ts: Sequence[int]):
        encoded = list(self.pool.map(lambda t: encode(cam.frame(t), self.quality), ts))
        collector = Collector(self.config, self.embedder, self.pool)
        collector.add(
            [(data, float(t), cam.camera_id) for t, data in zip(ts, encoded, strict=True)]
        )
        got = collector.out
        if got.errors:  # the fleet's JPEGs always decode: anything else is a bug
            raise RuntimeError(f"{cam.camera_id}: frames failed to decode: {got.errors}")
        self.frames += len(ts)
        return got


def evaluate_group(
    engines: dict[str, Engine],
    fitted: dict[str, PreparedReference],
    rows: np.ndarray,
    emb: np.ndarray,
    layouts: np.ndarray,
    windows: Sequence[int],
    shift: str,
    severity: int,
    tally: Tally,
) -> None:
    """Cut one group of frames into disjoint windows of each size and run every verdict on each."""
    for n in windows:
        parts = tally.combined_parts.setdefault((shift, severity, n), Counter())
        feats = tally.stats_features.setdefault((shift, severity, n), Counter())
        effect = tally.stats_effect.setdefault((shift, severity, n), Counter())
        for start in range(0, len(rows) - n + 1, n):
            w = slice(start, start + n)
            for verdict, engine in engines.items():
                judged = engine.run_tests(fitted[verdict], rows[w], emb[w], layouts=layouts[w])
                outcomes = judged.tests
                tally.add(verdict, shift, severity, n, judged.drifted)
                if verdict == "combined":
                    voted = [o.name for o in outcomes if o.name in engine.voting and o.drifted]
                    parts["+".join(sorted(voted)) or "-"] += 1
                elif verdict == "stats":
                    for o in outcomes:
                        feats.update(o.drifted_features)
                        effect.update({f.feature: f.statistic for f in o.features})


def run(args: argparse.Namespace, log=print) -> tuple[Tally, dict[str, Any]]:
    t_start = time.perf_counter()
    configs = {v: make_config(args, VERDICT_TESTS[v]) for v in VERDICTS}
    base = configs["combined"]
    embedder = build_embedder_from(base)
    identity = embedder.identity
    engines = {
        v: Engine(configs[v], FEATURE_NAMES, identity, seed=args.seed + i)
        for i, v in enumerate(VERDICTS)
    }
    cameras = make_fleet(
        args.cameras, seed=args.seed, width=args.width, height=args.height, dynamics="iid"
    )
    group = max(args.windows)
    if args.groups * group > CELL_STRIDE or args.fa_groups * group > CELL_BASE - FA_BASE:
        raise SystemExit("too many groups for the frame-index layout")
    shift_index = {name: i for i, name in enumerate(SHIFTS)}
    tally = Tally()
    timings: dict[str, float] = {}
    with ThreadPoolExecutor(args.workers) as pool:
        pipe = Pipeline(base, embedder, pool, args.quality)
        fitted: dict[str, dict[str, PreparedReference]] = {}
        t0 = time.perf_counter()
        for cam in cameras:
            got = pipe.collect(cam, range(args.reference))
            ref = make_reference(
                got,
                stream=cam.camera_id,
                source=f"fleet:{cam.scene}",
                config=base,
                embedder=embedder,
            )
            fitted[cam.camera_id] = {v: engines[v].prepare(ref) for v in VERDICTS}
        timings["reference"] = time.perf_counter() - t0
        log(f"references: {len(cameras)} x {args.reference} frames in {timings['reference']:.0f} s")

        def cell(shift: str, severity: int, groups: int, t_base: int) -> None:
            for cam in cameras:
                cam.set_shift(None if shift == "none" else shift, max(severity, 1))
                for g in range(groups):
                    ts = range(t_base + g * group, t_base + (g + 1) * group)
                    got = pipe.collect(cam, ts)
                    evaluate_group(
                        engines,
                        fitted[cam.camera_id],
                        got.matrix(),
                        got.embedding_matrix(),
                        got.layout_matrix(),
                        args.windows,
                        shift,
                        severity,
                        tally,
                    )
                cam.set_shift(None)

        t0 = time.perf_counter()
        cell("none", 0, args.fa_groups, FA_BASE)
        timings["unshifted"] = time.perf_counter() - t0
        fa_window = TARGET_WINDOW if TARGET_WINDOW in args.windows else group
        fa = ", ".join(f"{v} {tally.rate(v, 'none', 0, fa_window):.3f}" for v in VERDICTS)
        log(
            f"unshifted: {args.cameras * args.fa_groups} groups in {timings['unshifted']:.0f} s; "
            f"false alarms {fa}"
        )

        t0 = time.perf_counter()
        for shift in args.shifts:
            for severity in args.severities:
                c0 = time.perf_counter()
                cell(
                    shift,
                    severity,
                    args.groups,
                    CELL_BASE + (5 * shift_index[shift] + severity) * CELL_STRIDE,
                )
                n = TARGET_WINDOW if TARGET_WINDOW in args.windows else group
                rates = " ".join(f"{v}={tally.rate(v, shift, severity, n):.2f}" for v in VERDICTS)
                log(
                    f"{shift:>15} s{severity}: window {n}: {rates}  "
                    f"({time.perf_counter() - c0:.1f} s, {time.perf_counter() - t_start:.0f} s "
                    "total)"
                )
        timings["shifted"] = time.perf_counter() - t0
    embedder.close()
    timings["total"] = time.perf_counter() - t_start
    meta = {
        "command": "python benchmarks/detection_quality.py " + " ".join(args.argv),
        "cameras": [(c.camera_id, c.scene) for c in cameras],
        "frames": pipe.frames,
        "timings_s": timings,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu_model()}), no GPU used, "
        f"Python {platform.python_version()}",
        "args": {k: v for k, v in vars(args).items() if k != "argv"},
        "embedder": embedder.identity.label,
        "vote_alpha": {v: engines[v].vote_alpha for v in VERDICTS},
    }
    return tally, meta


# ---------------------------------------------------------------------------------------------
# Tables


def _pct(x: float) -> str:
    return "–" if math.isnan(x) else f"{100 * x:.0f}"


def false_alarm_table(tally: Tally, windows: Sequence[int]) -> list[str]:
    lines = [
        "| verdict | window | fired / windows | false-alarm rate "
        "| 95% interval (Clopper-Pearson) |",
        "|---|---:|---:|---:|---|",
    ]
    for v in VERDICTS:
        for n in windows:
            k, t = tally.fired[v, "none", 0, n], tally.total[v, "none", 0, n]
            if not t:
                continue
            lo, hi = clopper_pearson(k, t)
            lines.append(
                f"| {VERDICT_LABELS[v]} | {n} | {k} / {t} | {k / t:.3f} | {lo:.3f} – {hi:.3f} |"
            )
    return lines


def headline_table(
    tally: Tally, shifts: Sequence[str], severities: Sequence[int], n: int
) -> list[str]:
    sev = [s for s in severities if s >= TARGET_SEVERITY]
    head = (
        "| shift | "
        + " | ".join(f"severity {s}" for s in sev)
        + " | target (≥ 95% at every severity ≥ 3) |"
    )
    lines = [head, "|---|" + "---:|" * len(sev) + "---|"]
    for shift in shifts:
        cells, ok = [], True
        for s in sev:
            k, t = tally.fired["combined", shift, s, n], tally.total["combined", shift, s, n]
            cells.append(f"{k}/{t}" if t else "–")
            ok = ok and t > 0 and k / t >= TARGET_RATE
        lines.append(f"| {shift} | " + " | ".join(cells) + f" | {'met' if ok else '**missed**'} |")
    k = sum(tally.fired["combined", sh, s, n] for sh in shifts for s in sev)
    t = sum(tally.total["combined", sh, s, n] for sh in shifts for s in sev)
    if t:
        lo, hi = clopper_pearson(k, t)
        per_cell = min(tally.total["combined", sh, s, n] for sh in shifts for s in sev)
        lo1 = clopper_pearson(per_cell, per_cell)[0] if per_cell else float("nan")
        lines += [
            "",
            f"All these cells together: {k} / {t} windows fired ({k / t:.3f}; 95% interval "
            f"{lo:.3f} – {hi:.3f}). One cell alone has only {per_cell} windows: even "
            f"{per_cell}/{per_cell} bounds its rate below only by {lo1:.2f}.",
        ]
    return lines


def full_table(
    tally: Tally, shifts: Sequence[str], severities: Sequence[int], windows: Sequence[int]
) -> list[str]:
    head = "| shift | sev | " + " | ".join(f"{v} @{n}" for n in windows for v in VERDICTS) + " |"
    lines = [head, "|---|---:|" + "---:|" * (len(windows) * len(VERDICTS))]
    rows = [("none", 0)] + [(s, sv) for s in shifts for sv in severities]
    for shift, sev in rows:
        cells = [_pct(tally.rate(v, shift, sev, n)) for n in windows for v in VERDICTS]
        lines.append(
            f"| {shift if shift != 'none' else '*none (false alarms)*'} | {sev or '–'} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def attribution_table(
    tally: Tally, shifts: Sequence[str], severities: Sequence[int], n: int
) -> list[str]:
    """What fired inside the combined verdict, and which statistics moved most, at window n."""
    lines = [
        "| shift | sev | combined fired by: shift only / emb_shift only / view only / several / "
        "neither | "
        "statistics drifted per window (of 20) | largest moves: mean \\|z\\| (share of windows "
        "drifted) |",
        "|---|---:|---|---:|---|",
    ]
    for shift in shifts:
        for sev in severities:
            parts = tally.combined_parts.get((shift, sev, n))
            t = tally.total["combined", shift, sev, n]
            if not t or parts is None:
                continue
            several = sum(k for p, k in parts.items() if "+" in p)
            alone = [parts.get(p, 0) for p in ("shift", "emb_shift", "view")]
            split = " / ".join(str(k) for k in (*alone, several, parts.get("-", 0)))
            feats = tally.stats_features.get((shift, sev, n), Counter())
            effect = tally.stats_effect.get((shift, sev, n), Counter())
            per_window = sum(feats.values()) / t
            top = ", ".join(
                f"{f} {d / t:.2f} ({feats.get(f, 0) / t:.0%})" for f, d in effect.most_common(3)
            )
            lines.append(f"| {shift} | {sev} | {split} | {per_window:.1f} | {top} |")
    return lines


def report(tally: Tally, meta: dict[str, Any]) -> str:
    a = meta["args"]
    shifts, severities, windows = a["shifts"], a["severities"], a["windows"]
    n = TARGET_WINDOW if TARGET_WINDOW in windows else max(windows)
    t = meta["timings_s"]
    out = [
        f"Command: `{meta['command']}`",
        "",
        f"Cameras: {', '.join(f'{c} ({s})' for c, s in meta['cameras'])}; frames "
        f"{a['width']}x{a['height']} JPEG q{a['quality']}, analysis size {a['analysis_size']}, "
        f"embedder {meta['embedder']}; reference {a['reference']} frames per camera; windows "
        f"{', '.join(map(str, windows))}; unshifted: {a['fa_groups']} groups of {max(windows)} "
        f"frames per camera; shifted: {a['groups']} group(s) of {max(windows)} frames per camera, "
        f"shift and severity; seed {a['seed']}.",
        "",
        f"Machine: {meta['machine']}. Frames analysed: {meta['frames']:,}. Wall time "
        f"{t['total'] / 60:.1f} min (references {t['reference']:.0f} s, unshifted "
        f"{t['unshifted']:.0f} s, shifted {t['shifted']:.0f} s).",
        "",
        "### False alarms on unshifted windows (the default target: one per 30 days, per camera)",
        "",
        *false_alarm_table(tally, windows),
        "",
        f"### Target: combined verdict, window {n}, severities ≥ {TARGET_SEVERITY} (windows fired "
        "/ windows)",
        "",
        *headline_table(tally, shifts, severities, n),
        "",
        "### Detection rate (% of windows that fired), every shift, severity and window size",
        "",
        "`stats` = image statistics alone (shift), `emb` = embeddings alone (emb_shift), "
        f"`combined` = driftmon's default verdict ({DEFAULT_VOTERS}); `@n` = window of n frames.",
        "",
        *full_table(tally, shifts, severities, windows),
        "",
        f"### Inside the verdicts at window {n}",
        "",
        *attribution_table(tally, shifts, severities, n),
    ]
    return "\n".join(out) + "\n"


def write_markdown(path: Path, body: str) -> None:
    block = f"{BEGIN}\n{body}{END}\n"
    if path.exists():
        text = path.read_text()
        if BEGIN in text and END in text:
            pre, rest = text.split(BEGIN, 1)
            post = rest.split(END, 1)[1].lstrip("\n")
            path.write_text(pre + block + post)
            return
        path.write_text(text.rstrip("\n") + "\n\n" + block)
        return
    path.write_text("# Detection quality\n\n" + block)


# ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 2 cameras at 320x180, windows 25/50, shifts "
        f"{', '.join(QUICK_SHIFTS)} at severities 3 and 5 (explicit options still win)",
    )
    p.add_argument("--cameras", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--height", type=int)
    p.add_argument("--analysis-size", type=int)
    p.add_argument(
        "--quality", type=int, default=90, help="JPEG quality of the frames sent (default 90)"
    )
    p.add_argument("--reference", type=int, help="reference frames per camera")
    p.add_argument("--windows", type=int, nargs="+")
    p.add_argument(
        "--groups", type=int, help="groups of max(windows) frames per camera, shift and severity"
    )
    p.add_argument(
        "--fa-groups", type=int, help="unshifted groups of max(windows) frames per camera"
    )
    p.add_argument("--shifts", nargs="+", choices=list(SHIFTS))
    p.add_argument("--severities", type=int, nargs="+", choices=[1, 2, 3, 4, 5])
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--workers", type=int, default=2, help="decode threads and torch threads (default 2)"
    )
    p.add_argument("--out", type=Path, help="Markdown file to write the tables into")
    p.add_argument("--json", type=Path, help="write the raw counts here")
    p.add_argument(
        "--from-json",
        type=Path,
        help="re-render the tables of a saved run (--json) instead of running",
    )
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    for k, v in preset.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.shifts is None:
        args.shifts = list(QUICK_SHIFTS if args.quick else SHIFTS)
    args.windows = sorted(set(args.windows))
    args.severities = sorted(set(args.severities))
    group = max(args.windows)
    if any(group % n for n in args.windows):
        p.error(f"every window size must divide the largest ({group})")
    if args.reference < 2:
        p.error("--reference must be at least 2")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        tally, meta = tally_from_json(saved["tally"]), saved["meta"]
    else:
        tally, meta = run(args, log=log)
    body = report(tally, meta)
    print(body)
    if args.out:
        write_markdown(args.out, body)
    if args.json and not args.from_json:
        args.json.write_text(
            json.dumps({"meta": meta, "tally": tally.to_json()}, indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
