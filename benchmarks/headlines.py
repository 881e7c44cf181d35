"""Does a drift event's headline name the right cause and the right time?

Run from the repository root:

    .venv/bin/python benchmarks/headlines.py --out docs/actions.md            # synthetic, ~5 min
    .venv/bin/python benchmarks/headlines.py --footage-work /path/to/work ...  # and real clips

Each stream is healthy frames followed by frames with one shift, evaluated every ``stride`` frames
as the daemon evaluates a stream (the real ``Engine``, the stream's ``History``); at the first
evaluation whose window lies wholly after the change (where a drift event's window lies once the
hysteresis has declared it) the event's headline is made exactly as ``Actions`` makes it
(``headline.effects``, ``estimate_change``, ``headline``). Scored:

- *cause*: the family of the cause the headline names (``headline.CAUSES``) against the families
  that fit the shift (:data:`EXPECTED`; a blur and a pixelation are both "less detail", so a few
  shifts accept two);
- *time*: the estimated change against the true one, in frames (the history's resolution is one
  stride).

Sources: the synthetic fleet (``monitor.sim``, every shift of ``SHIFTS`` at ``--severity``,
``--cameras`` cameras with independent frames); with ``--footage-work``, the real clips of
``benchmarks/footage.py``'s protocol (its cached windows: the reference, then the clean window
``clean-1`` followed by the same frames with each corruption at severity 3).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.actions import headline  # noqa: E402
from monitor.actions.events import fired_from  # noqa: E402
from monitor.actions.explain import EMBEDDINGS, PREDICTIONS  # noqa: E402
from monitor.config import config_from_dict  # noqa: E402
from monitor.pipeline.engine import Engine, Evaluation  # noqa: E402
from monitor.pipeline.features import FEATURE_NAMES  # noqa: E402
from monitor.pipeline.streams import FrameRef, History, WindowSnapshot  # noqa: E402
from monitor.reference.collect import Collector, build_embedder_from, make_reference  # noqa: E402
from monitor.sim.fleet import SHIFTS, encode, make_fleet  # noqa: E402

#: Shift -> the cause families a right headline names.
EXPECTED: dict[str, set[str]] = {
    "brightness": {"less_light"},
    "dusk": {"less_light"},
    "lens_covered": {"less_light", "view", "blur"},
    "contrast": {"haze"},
    "fog": {"haze"},
    "gaussian_noise": {"noise"},
    "impulse_noise": {"noise"},
    "shot_noise": {"noise"},
    "defocus_blur": {"blur"},
    "motion_blur": {"blur"},
    "zoom_blur": {"blur"},
    "glass_blur": {"blur"},
    "jpeg": {"compression"},
    "jpeg_compression": {"compression"},
    "pixelate": {"blur", "compression"},
    "colour_cast": {"colour_cast"},
    "saturation": {"colour"},
    "knocked": {"view"},
    "view_moved": {"view"},
    "elastic_transform": {"blur", "view"},
    # ice and snow whiten the frame as much as they flatten or speckle it
    "frost": {"haze", "view", "more_light"},
    "snow": {"haze", "noise", "view", "more_light"},
}
#: Where the real clips' corruption (imagecorruptions) differs from the simulator's shift of the
#: same name: its brightness brightens, the simulator's darkens.
FOOTAGE_EXPECTED: dict[str, set[str]] = {"brightness": {"more_light"}}
FPS = 5.0


def headline_at_change(
    engine: Engine,
    prepared,
    rows: np.ndarray,
    embeddings: np.ndarray | None,
    change: int,
    size: int,
    stride: int,
) -> dict[str, Any]:
    """Evaluate ``rows`` (healthy up to ``change``, shifted after) every ``stride`` frames; the
    headline at the first window wholly after the change."""
    history = History(720)
    times = np.arange(len(rows)) / FPS
    last = None
    for end in range(size, len(rows) + 1, stride):
        window = rows[end - size : end]
        emb = None if embeddings is None else embeddings[end - size : end]
        judged = engine.run_tests(prepared, window, emb)
        history.add(
            float(times[end - 1]), window, size if last is None else end - last, judged.drifted
        )
        last = end
        if end - size >= change:
            break
    assert last is not None and last - size >= change, "too few frames after the change"
    at = [float(t) for t in times[last - size : last]]
    evaluation = Evaluation("cam", at[-1], "cam", 1, 0, size, judged.tests, True, True, True)
    refs = [FrameRef(str(i), "cam", t, "", 0, i, None) for i, t in enumerate(at)]
    snap = WindowSnapshot("cam", window, refs, emb, FEATURE_NAMES, prepared, None, history.recent())
    effects = headline.effects(evaluation, snap)
    drifted = tuple(e for e in effects if e.drifted)
    found = headline.estimate_change(drifted[:3], snap, at)
    kinds = {f.kind for f in fired_from(evaluation, engine.voting)}
    family, _ = headline.likely_cause(drifted, EMBEDDINGS in kinds, PREDICTIONS in kinds)
    said = headline.headline(
        drifted, found, embeddings=EMBEDDINGS in kinds, predictions=PREDICTIONS in kinds
    )
    error = None
    if found.at is not None and not found.before:
        error = int(round(found.at * FPS)) + 1 - change  # first frame after the estimate
    return {
        "declared": judged.drifted,
        "family": family,
        "headline": said,
        "change_error": error,
        "before": found.before,
    }


def synthetic(args: argparse.Namespace, log=print) -> list[dict[str, Any]]:
    config = config_from_dict(
        {
            "window": {"size": args.window, "evaluate_every": args.stride},
            "embedding": {"device": "cpu"},
        }
    )
    embedder = build_embedder_from(config)
    engine = Engine(config, FEATURE_NAMES, embedder.identity if embedder else None)
    cameras = make_fleet(args.cameras, seed=args.seed, width=480, height=270, dynamics="iid")
    out = []
    with ThreadPoolExecutor(2) as pool:

        def collect(cam, ts):
            encoded = list(pool.map(lambda t: encode(cam.frame(t)), ts))
            c = Collector(config, embedder, pool)
            c.add([(data, float(t), cam.camera_id) for t, data in zip(ts, encoded, strict=True)])
            return c.out

        for cam in cameras:
            got = collect(cam, range(args.reference))
            ref = make_reference(
                got, stream="cam", source="fleet", config=config, embedder=embedder
            )
            prepared = engine.prepare(ref)
            healthy = collect(cam, range(args.reference, args.reference + args.healthy))
            for shift in SHIFTS:
                cam.set_shift(shift, args.severity)
                start = args.reference + args.healthy
                # enough for a window wholly after the change wherever it falls in a stride
                shifted = collect(cam, range(start, start + args.window + args.stride))
                cam.set_shift(None)
                rows = np.vstack([healthy.matrix(), shifted.matrix()])
                emb = np.vstack([healthy.embedding_matrix(), shifted.embedding_matrix()])
                got_h = headline_at_change(
                    engine, prepared, rows, emb, args.healthy, args.window, args.stride
                )
                out.append({"source": "synthetic", "stream": cam.camera_id, "shift": shift} | got_h)
                log(f"{cam.camera_id} {shift}: {got_h['family']} | {got_h['headline']}")
    return out


def footage(args: argparse.Namespace, log=print) -> list[dict[str, Any]]:
    from benchmarks.footage import collected, load_clip

    config = config_from_dict({"window": {"size": 100, "evaluate_every": args.stride}})
    embedder = build_embedder_from(config)
    engine = Engine(config, FEATURE_NAMES, embedder.identity if embedder else None)
    work = Path(args.footage_work)
    out = []
    for clip in sorted(p.name for p in work.iterdir() if (p / "windows.json").is_file()):
        windows = {w.name: w for w in load_clip(work, clip, config, embedder)}
        ref = make_reference(
            collected(windows["reference"]),
            stream="cam",
            source="footage",
            config=config,
            embedder=embedder,
        )
        prepared = engine.prepare(ref)
        clean = windows["clean-1"]
        for name, w in windows.items():
            if not name.startswith("shift-") or not name.endswith("-s3"):
                continue
            shift = name[len("shift-") : -len("-s3")]
            rows = np.vstack([clean.features, w.features])
            emb = (
                None
                if clean.embeddings is None or w.embeddings is None
                else np.vstack([clean.embeddings, w.embeddings])
            )
            got = headline_at_change(
                engine, prepared, rows, emb, len(clean.features), 100, args.stride
            )
            out.append({"source": "footage", "stream": clip, "shift": shift} | got)
            log(f"{clip} {shift}: {got['family']} | {got['headline']}")
    return out


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| source | shift | declared | right cause | causes named | change found (frames off) |",
        "|---|---|---:|---:|---|---|",
    ]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["source"], r["shift"]), []).append(r)
    total = right = declared_total = 0
    for (source, shift), rs in groups.items():
        declared = [r for r in rs if r["declared"]]
        expected = (FOOTAGE_EXPECTED if source == "footage" else {}).get(shift, EXPECTED[shift])
        ok = sum(r["family"] in expected for r in declared)
        named = Counter(r["family"] for r in declared)
        errors = [abs(r["change_error"]) for r in declared if r["change_error"] is not None]
        found = f"{len(errors)}/{len(declared)}" + (
            f" (median {np.median(errors):.0f}, max {max(errors)})" if errors else ""
        )
        lines.append(
            f"| {source} | {shift} | {len(declared)}/{len(rs)} | {ok}/{len(declared)} | "
            f"{', '.join(f'{k} {v}' for k, v in named.most_common())} | {found} |"
        )
        total += len(declared)
        right += ok
        declared_total += len(declared)
    lines.append(f"| **all** | | {declared_total}/{len(results)} | **{right}/{total}** | | |")
    return "\n".join(lines)


def write_markdown(path: Path, body: str) -> None:
    begin, end = "<!-- BEGIN GENERATED: headlines.py -->", "<!-- END GENERATED: headlines.py -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--severity", type=int, default=3)
    p.add_argument("--reference", type=int, default=600)
    p.add_argument("--healthy", type=int, default=200)
    p.add_argument("--window", type=int, default=200)
    p.add_argument("--stride", type=int, default=50)
    p.add_argument("--footage-work", help="benchmarks/footage.py's --work directory")
    p.add_argument("--no-synthetic", action="store_true")
    p.add_argument("--out", type=Path, help="Markdown file to write the table into")
    args = p.parse_args(argv)
    started = time.perf_counter()
    results = [] if args.no_synthetic else synthetic(args)
    if args.footage_work:
        results += footage(args)
    body = (
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{len(results)} streams in {time.perf_counter() - started:.0f} s: "
        f"`{' '.join(['benchmarks/headlines.py', *(argv or sys.argv[1:])])}`\n\n{table(results)}"
    )
    print(body)
    if args.out:
        write_markdown(args.out, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
