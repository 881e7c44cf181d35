"""How close the accuracy estimated from confidences (``monitor.loop.performance``, CBPE) comes to
the labelled accuracy, on synthetic classifiers with a known calibration.

    .venv/bin/python benchmarks/estimated_performance.py [--seeds 200] [--frames 5000]

Per seed, a 10-class stream of ``--frames`` frames (``monitor.sim.model_outputs``), cut into
windows of 500 and of 100 frames; per window, the estimate against the labelled accuracy of the
same frames (and against the true expected accuracy, the mean of ``P(correct | c)``, which has no
label noise). Scenarios:

- *calibrated*: ``P(correct | c) = c``; the mean confidence moves from 0.85 to 0.6 (covariate
  shift: the model gets worse, and says so);
- *overconfident, raw*: ``P(correct | c) = c ** 2``, the same shift, confidences taken as they
  are;
- *overconfident, recalibrated*: the same, through a ``Calibration`` fitted on 500 labelled frames
  of the healthy period (mean confidence 0.85); also its two halves apart (the second goes
  further below the confidences the labels covered);
- *concept shift*: the mean confidence stays at 0.8, but halfway ``P(correct | c)`` turns from
  ``c`` into ``c ** 2``; the calibration was fitted on 500 labelled frames before. Windows before
  and after the change are reported apart.

Prints a markdown table: mean absolute error (points) and the share of windows within 5 points.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.loop.performance import (  # noqa: E402
    Calibration,
    check_calibration,
    estimate_accuracy,
)
from monitor.sim.model_outputs import (  # noqa: E402
    ModelOutputs,
    calibrated,
    concatenate,
    overconfident,
    simulate,
)

WINDOWS = (500, 100)
LABELLED = 500  # labelled frames of the healthy period a calibration is fitted on


@dataclass
class Tally:
    """Per window size: the estimate's errors against the labels and against the truth."""

    vs_labels: dict[int, list[float]] = field(default_factory=lambda: {w: [] for w in WINDOWS})
    vs_truth: dict[int, list[float]] = field(default_factory=lambda: {w: [] for w in WINDOWS})

    def add(self, out: ModelOutputs, calibration: Calibration | None) -> None:
        for size in WINDOWS:
            for start in range(0, len(out) - size + 1, size):
                w = out[start : start + size]
                est = estimate_accuracy(w.confidences, calibration)
                assert est is not None
                self.vs_labels[size].append(est.accuracy - float(w.correct.mean()))
                self.vs_truth[size].append(est.accuracy - float(w.p_correct.mean()))


def drift(n: int) -> np.ndarray:
    return np.linspace(0.85, 0.6, n)


def healthy_calibration(rng: np.random.Generator, reliability) -> Calibration:
    labelled = simulate(LABELLED, rng, mean_confidence=0.85, reliability=reliability)
    return Calibration.fit(labelled.confidences, labelled.correct)


def scenarios(
    rng: np.random.Generator, n: int
) -> list[tuple[str, ModelOutputs, Calibration | None]]:
    cal_stream = simulate(n, rng, mean_confidence=drift(n))
    over = overconfident()
    over_cal = healthy_calibration(rng, over)
    over_stream = simulate(n, rng, mean_confidence=drift(n), reliability=over)
    concept_cal = healthy_calibration(rng, calibrated)
    half = n // 2
    before = simulate(half, rng, mean_confidence=0.8)
    after = simulate(n - half, rng, mean_confidence=0.8, reliability=over)
    concept = concatenate([before, after])
    return [
        ("calibrated", cal_stream, None),
        ("overconfident (c^2), raw", over_stream, None),
        ("overconfident (c^2), recalibrated", over_stream, over_cal),
        ("  - first half (mean confidence 0.85 to 0.73)", over_stream[:half], over_cal),
        ("  - second half (0.73 to 0.6)", over_stream[half:], over_cal),
        ("concept shift, before the change", concept[:half], concept_cal),
        ("concept shift, after the change", concept[half:], concept_cal),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--frames", type=int, default=5000)
    args = ap.parse_args()
    tallies: dict[str, Tally] = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for name, out, calibration in scenarios(rng, args.frames):
            tallies.setdefault(name, Tally()).add(out, calibration)
    elapsed = time.perf_counter() - t0
    # The cost of one evaluation's estimate: a 500-frame window through a fitted calibration.
    rng = np.random.default_rng(0)
    cal = healthy_calibration(rng, overconfident())
    conf = simulate(500, rng).confidences
    reps = 2000
    t1 = time.perf_counter()
    for _ in range(reps):
        estimate_accuracy(conf, cal)
    per_call_us = (time.perf_counter() - t1) / reps * 1e6

    print(
        f"{args.seeds} seeds x {args.frames} frames, 10 classes; "
        f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}; "
        f"{elapsed:.1f} s\n"
    )
    print(
        "| scenario | window | MAE vs labelled (pts) | within 5 pts of labelled "
        "| MAE vs true expected (pts) | mean error vs labelled (pts) |"
    )
    print("|---|---|---|---|---|---|")
    for name, t in tallies.items():
        for size in WINDOWS:
            lab = np.abs(t.vs_labels[size])
            tru = np.abs(t.vs_truth[size])
            print(
                f"| {name} | {size} | {100 * lab.mean():.1f} | {100 * np.mean(lab <= 0.05):.1f}% "
                f"| {100 * tru.mean():.1f} | {100 * np.mean(t.vs_labels[size]):+.1f} |"
            )
    print(
        f"\nestimate_accuracy, 500 frames through a fitted calibration: {per_call_us:.0f} us a call"
    )
    # What the labels, once they arrive, say: check_calibration on labelled frames after the
    # concept shift (through the calibration fitted before it), and on the unchanged model.
    for labelled in (100, 500):
        flagged_after, flagged_ok = [], []
        for seed in range(args.seeds):
            rng = np.random.default_rng(10_000 + seed)
            cal = healthy_calibration(rng, calibrated)
            after = simulate(labelled, rng, mean_confidence=0.8, reliability=overconfident())
            ok = simulate(labelled, rng, mean_confidence=0.8)
            check_after = check_calibration(after.confidences, after.correct, cal)
            check_ok = check_calibration(ok.confidences, ok.correct, cal)
            flagged_after.append(not check_after.calibrated)
            flagged_ok.append(not check_ok.calibrated)
        print(
            f"check_calibration on {labelled} labelled frames: flags the concept shift in "
            f"{100 * np.mean(flagged_after):.1f}% of seeds, the unchanged model in "
            f"{100 * np.mean(flagged_ok):.1f}%"
        )


if __name__ == "__main__":
    main()
