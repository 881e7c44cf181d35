"""``driftmon``: run the daemon, build references, judge directories, check config, run the demo."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from monitor import __version__
from monitor.config import Config, load_config, to_dict
from monitor.errors import ConfigError, DriftmonError, InputError
from monitor.files import JSONObject

if TYPE_CHECKING:  # imported where used: the CLI starts without loading the pipeline
    from monitor.reference.store import Reference


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"driftmon: invalid configuration: {e}", file=sys.stderr)
        return 2
    except (
        DriftmonError
    ) as e:  # what a user can fix; anything else is a bug and keeps its traceback
        print(f"driftmon: {e}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driftmon", description=__doc__)
    p.add_argument("--version", action="version", version=f"driftmon {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument(
        "--config", "-c", help="YAML config file (DRIFTMON_* environment overrides apply)"
    )
    run.set_defaults(func=_run)

    cfg = sub.add_parser("config", help="configuration tools").add_subparsers(metavar="ACTION")
    chk = cfg.add_parser("check", help="validate a config file without connecting to anything")
    chk.add_argument("file")
    chk.add_argument(
        "--print", action="store_true", help="print the effective configuration as JSON"
    )
    chk.set_defaults(func=_config_check)

    ref = sub.add_parser("reference", help="reference sets").add_subparsers(metavar="ACTION")
    build = ref.add_parser("build", help="build a reference from images or a Kafka topic")
    _add_frame_source(
        build,
        from_dir="a directory of images (searched recursively)",
        from_topic="a Kafka topic (brokers from --config)",
        min_frames="build from",
    )
    build.add_argument(
        "--out", required=True, help="a .npz file (shared reference) or a reference store directory"
    )
    build.add_argument(
        "--stream", help="store it as this stream's own reference (store directories only)"
    )
    build.add_argument(
        "--per-stream",
        action="store_true",
        help="with --from-topic: one reference per stream key found in the topic",
    )
    build.set_defaults(func=_reference_build)

    promote = ref.add_parser(
        "promote",
        help="make a healthy window or a labelled batch a stream's new reference "
        "version (older versions are kept)",
    )
    _add_frame_source(
        promote,
        from_dir="a directory of images, e.g. a labelled batch",
        from_topic="a Kafka topic: the stream's frames between --start and --end",
        min_frames="promote",
    )
    promote.add_argument(
        "--store", required=True, help="the reference store directory the daemon reads"
    )
    promote.add_argument("--stream", required=True, help="the stream whose reference is replaced")
    promote.set_defaults(func=_reference_promote)

    training = sub.add_parser(
        "training", help="the deployed model's training set (training coverage)"
    ).add_subparsers(metavar="ACTION")
    tbuild = training.add_parser(
        "build",
        help="register the training set as the next version of the training reference "
        "(at training.path in --config)",
    )
    _add_frame_source(
        tbuild,
        from_dir="a directory of the training images (searched recursively)",
        from_topic="a Kafka topic: the training frames between --start and --end",
        min_frames="register",
        manifest="a text file listing the training images, one path a line, relative to the "
        "manifest's directory",
    )
    tbuild.set_defaults(func=_training_build)
    tshow = training.add_parser("show", help="the training reference's versions and their ages")
    tshow.add_argument("--config", "-c", help="config file (training.path)")
    tshow.set_defaults(func=_training_show)

    check = sub.add_parser(
        "check", help="judge directories of images against a reference, one JSON line each"
    )
    check.add_argument("--reference", "-r", required=True, help="a reference file or store")
    check.add_argument(
        "--stream", help="use this stream's reference from a store (default: the shared one)"
    )
    check.add_argument("--config", "-c", help="config file (tests, thresholds, decode limits)")
    check.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    check.add_argument("dirs", nargs="+", metavar="DIR")
    check.set_defaults(func=_check)

    demo = sub.add_parser(
        "demo", help="embedded broker + synthetic camera fleet + daemon, on this machine"
    )
    demo.add_argument("--cameras", type=int, default=8)
    demo.add_argument("--fps", type=float, default=5.0, help="frames per second per camera")
    demo.add_argument(
        "--drift-after", type=float, default=30.0, help="seconds before some cameras drift"
    )
    demo.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)"
    )
    demo.add_argument(
        "--port", type=int, default=9108, help="HTTP port for /metrics and /status (0: any free)"
    )
    demo.add_argument(
        "--workdir", default="", help="where references and logs go (default: a temporary dir)"
    )
    demo.set_defaults(func=_demo)
    return p


def _add_frame_source(
    p: argparse.ArgumentParser,
    *,
    from_dir: str,
    from_topic: str,
    min_frames: str,
    manifest: str = "",
) -> None:
    """The options of commands that make a reference from collected frames (see ``_collect``);
    ``--manifest`` only where ``manifest`` says what it is."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-dir", metavar="DIR", help=from_dir)
    if manifest:
        src.add_argument("--manifest", metavar="FILE", help=manifest)
    src.add_argument("--from-topic", metavar="TOPIC", help=from_topic)
    src.add_argument(
        "--from-video",
        metavar="FILE",
        help="a recorded clip of a healthy camera (anything OpenCV reads)",
    )
    p.add_argument(
        "--order",
        choices=("auto", "name", "none"),
        default="auto",
        help="with --from-dir (or --manifest): frame times from file names, EXIF or frame numbers "
        "(auto), the "
        "file-name order alone (name), or none: an unordered bag, judged conservatively",
    )
    p.add_argument(
        "--every", type=int, default=1, help="with --from-video: every N-th frame (default 1)"
    )
    p.add_argument("--max-frames", type=int, help="with --from-video: at most this many frames")
    p.add_argument(
        "--start", help="with --from-topic: first event time (ISO 8601 or epoch seconds)"
    )
    p.add_argument("--end", help="with --from-topic: last event time (ISO 8601 or epoch seconds)")
    p.add_argument(
        "--min-frames",
        type=int,
        default=50,
        help=f"refuse to {min_frames} fewer frames (default 50)",
    )
    p.add_argument(
        "--config", "-c", help="config file (decode limits, Kafka connection, stream key)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # kafka-python logs every reconnect and slow poll at WARNING; the daemon reports those itself
    logging.getLogger("kafka").setLevel(logging.ERROR)


def _run(args: argparse.Namespace) -> int:
    from monitor.service.daemon import Daemon

    config = load_config(args.config)
    config.reference.require()
    _setup_logging(config.log_level)
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    actions = None
    if config.actions.enabled:
        from monitor.actions.coordinator import Actions

        actions = Actions(config, registry)
    daemon = Daemon(
        config,
        registry=registry,
        on_evaluation=actions.on_evaluation if actions else None,
        routes=actions.routes() if actions else None,
        on_hand_over=actions.on_hand_over if actions else None,
    )
    daemon.install_signal_handlers()
    try:
        daemon.run()
    finally:
        if actions is not None:
            actions.close()
    return 0


def _config_check(args: argparse.Namespace) -> int:
    """Validate the file; when its reference exists, say what each of its references can support."""
    from monitor.reference.store import ReferenceStore

    config = load_config(args.file)
    if args.print:
        print(json.dumps(to_dict(config), indent=2))
    if config.reference.path and Path(config.reference.path).exists():
        store = ReferenceStore(config.reference.path)
        for stream in [None, *store.streams()]:
            ref = store.load_latest(stream)
            if ref is not None:
                _report_support(ref, config)
    print(f"{args.file}: OK", file=sys.stderr)
    return 0


def _report_support(ref: Reference, config: Config) -> JSONObject:
    """What ``ref`` can support for ``config`` (monitor.reference.fit.support), on stderr; returned
    as JSON for the command's own output."""
    from monitor.pipeline.features import FEATURE_NAMES
    from monitor.reference.fit import support

    s = support(ref, config, FEATURE_NAMES)
    span = (
        f"{s.span_s:.0f} s"
        if s.span_s is not None
        else f"{s.span_frames:.0f} frames (by {s.time_source})"
    )
    contexts = ", ".join(f"{c} {v.frames}" for c, v in s.contexts.items()) or "none on its own"
    print(
        f"reference {ref.stream or '*'} v{ref.version}: {s.frames} frames spanning {span}, "
        f"{s.segments} segment(s), ~{s.effective_spans:g} independent stretches at {s.fps:g} fps; "
        f"contexts: {contexts}; a window drifts when a statistic moves more than "
        f"{s.z_threshold:.2f} span-spreads",
        file=sys.stderr,
    )
    for warning in s.warnings:
        print(f"  warning: {warning}", file=sys.stderr)
    return s.to_dict()


def _parse_time(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(
            f"{option}: not a time: {value!r} (use ISO 8601 or epoch seconds)"
        ) from None
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()


def _collect(args: argparse.Namespace, config: Config):
    """The frames of --from-dir, --manifest, --from-video, or --from-topic between --start and
    --end; a label of where they came from; and a function making the reference of the frames in a
    mask for a stream, which refuses fewer than --min-frames."""
    from monitor.reference import collect

    embedder = collect.build_embedder_from(config)
    if args.every < 1:
        raise ConfigError(f"--every: must be >= 1, got {args.every}")
    if args.from_dir:
        got = collect.from_dir(
            args.from_dir, config, progress=not args.quiet, embedder=embedder, order=args.order
        )
        source = f"dir:{Path(args.from_dir).resolve()}"
    elif getattr(args, "manifest", None):
        got = collect.from_manifest(
            args.manifest, config, progress=not args.quiet, embedder=embedder, order=args.order
        )
        source = f"manifest:{Path(args.manifest).resolve()}"
    elif args.from_video:
        got = collect.from_video(
            args.from_video,
            config,
            progress=not args.quiet,
            embedder=embedder,
            every=args.every,
            max_frames=args.max_frames,
        )
        source = f"video:{Path(args.from_video).resolve()}"
    else:
        start, end = _parse_time(args.start, "--start"), _parse_time(args.end, "--end")
        got = collect.from_topic(
            config, args.from_topic, start, end, progress=not args.quiet, embedder=embedder
        )
        source = f"kafka:{args.from_topic}[{args.start or ''}..{args.end or ''}]"

    def make_reference(mask: np.ndarray, stream: str | None):
        n = int(mask.sum())
        if n < args.min_frames:
            raise InputError(
                f"{stream or 'shared'}: only {n} usable frames (need --min-frames "
                f"{args.min_frames}); decode errors: {got.errors or 'none'}"
            )
        return collect.make_reference(
            got, mask=mask, stream=stream, source=source, config=config, embedder=embedder
        )

    return got, source, make_reference


def _reference_build(args: argparse.Namespace) -> int:
    from monitor.reference.store import ReferenceStore

    config = load_config(args.config)
    got, _, make_reference = _collect(args, config)
    store = ReferenceStore(args.out)
    groups: dict[str | None, np.ndarray] = {args.stream: np.ones(len(got.rows), bool)}
    if args.per_stream:
        if not args.from_topic:
            raise ConfigError(
                "--per-stream needs --from-topic (frames from a directory carry no stream key)"
            )
        keys = np.array(got.streams)
        groups = {k: keys == k for k in sorted(set(got.streams))}
    written = []
    for stream, mask in groups.items():
        ref = make_reference(mask, stream)
        path = store.add(ref)
        written.append(
            {
                "path": str(path),
                "stream": stream or "*",
                "frames": int(mask.sum()),
                "support": _report_support(ref, config),
            }
        )
    print(json.dumps({"written": written, "decode_errors": got.errors}))
    return 0


def _reference_promote(args: argparse.Namespace) -> int:
    """A new version of one stream's reference from a healthy window or a labelled batch."""
    from dataclasses import replace

    from monitor.reference.store import ReferenceStore

    config = load_config(args.config)
    store = ReferenceStore(args.store)
    if store.is_file:
        raise ConfigError(
            f"--store: {args.store} is a single shared reference file; promote needs a store "
            "directory"
        )
    if args.from_topic and not (args.start and args.end):
        raise ConfigError(
            "--from-topic needs --start and --end: promote a bounded, known-healthy window"
        )
    got, source, make_reference = _collect(args, config)
    # a labelled batch is all the stream's; a topic holds every stream's frames
    mask = (
        np.ones(len(got.rows), bool)
        if not args.from_topic
        else np.array([s == args.stream for s in got.streams], bool)
    )
    ref = make_reference(mask, args.stream)
    before = store.versions(args.stream)
    path = store.add(replace(ref, extra=dict(ref.extra, promoted=True, previous_versions=before)))
    print(
        json.dumps(
            {
                "stream": args.stream,
                "version": store.versions(args.stream)[-1],
                "path": str(path),
                "frames": int(mask.sum()),
                "previous_versions": before,
                "source": source,
                "decode_errors": got.errors,
                "support": _report_support(ref, config),
            }
        )
    )
    return 0


def _training_build(args: argparse.Namespace) -> int:
    """The training set as the next version of the training reference, with its coverage radius."""
    from dataclasses import replace

    from monitor.loop.coverage import ROLE, coverage_of, training_store

    config = load_config(args.config)
    store = training_store(config)  # refuses without training.path, before reading any frame
    if not config.embedding.enabled:
        raise ConfigError(
            "embedding.enabled: training coverage compares embeddings; enable it to register a "
            "training set"
        )
    if store.is_file:
        raise ConfigError(
            f"training.path: {config.training.path} is a .npz file; give a directory (the "
            "training reference is versioned)"
        )
    got, source, make_reference = _collect(args, config)
    ref = make_reference(np.ones(len(got.rows), bool), None)
    coverage = coverage_of(ref, config)
    extra = dict(
        ref.extra,
        role=ROLE,
        coverage_quantile=coverage.quantile,
        coverage_radius=coverage.radius,
        previous_versions=store.versions(None),
    )
    path = store.add(replace(ref, extra=extra))
    contexts = ref.describe()["contexts"]
    print(
        json.dumps(
            {
                "version": store.versions(None)[-1],
                "path": str(path),
                "frames": ref.n_frames,
                "source": source,
                "contexts": contexts,
                "coverage_quantile": coverage.quantile,
                "coverage_radius": coverage.radius,
                "decode_errors": got.errors,
            }
        )
    )
    return 0


def _training_show(args: argparse.Namespace) -> int:
    """The training reference's versions, newest last, one JSON line each."""
    import time

    from monitor.loop.coverage import training_store
    from monitor.reference.store import Reference

    config = load_config(args.config)
    store = training_store(config)
    versions = store.versions(None)
    if not versions:
        raise InputError(
            f"training.path: no training reference at {config.training.path} (register one "
            "with `driftmon training build`)"
        )
    now = time.time()
    for v in versions:
        ref = Reference.load(store.version_path(None, v))
        print(
            json.dumps(
                {
                    "version": v,
                    "frames": ref.n_frames,
                    "source": ref.source,
                    "created_at": ref.created_at,
                    "age_days": round((now - ref.created_at) / 86400, 2),
                    "coverage_radius": ref.extra.get("coverage_radius"),
                }
            )
        )
    return 0


def _check(args: argparse.Namespace) -> int:
    from monitor.pipeline.engine import Engine
    from monitor.pipeline.features import FEATURE_NAMES
    from monitor.reference import collect
    from monitor.reference.store import ReferenceStore

    config = load_config(args.config)
    store = ReferenceStore(args.reference)
    ref = store.for_stream(args.stream) if args.stream else store.load_latest(None)
    if ref is None:
        raise InputError(f"{args.reference}: no reference for {args.stream or 'shared use'}")
    embedder = collect.build_embedder_from(config)
    engine = Engine(config, FEATURE_NAMES, embedder.identity if embedder else None)
    prepared = engine.prepare(ref)
    for d in args.dirs:
        got = collect.from_dir(d, config, progress=not args.quiet, embedder=embedder)
        result: JSONObject = {
            "path": d,
            "frames": len(got.rows),
            "decode_errors": got.errors,
            "reference": {
                "stream": prepared.stream,
                "version": ref.version,
                "frames": ref.n_frames,
            },
        }
        if len(got.rows) < 2:
            result |= {"drifted": None, "error": "fewer than 2 decodable images", "tests": []}
        else:
            judged = engine.run_tests(
                prepared, got.matrix(), got.embedding_matrix(), layouts=got.layout_matrix()
            )
            result |= {"drifted": judged.drifted, "tests": [o.to_dict() for o in judged.tests]}
        print(json.dumps(result), flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from monitor.sim.demo import run_demo

    _setup_logging("WARNING")
    return run_demo(
        cameras=args.cameras,
        fps=args.fps,
        drift_after=args.drift_after,
        duration=args.duration,
        port=args.port,
        workdir=args.workdir or None,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
