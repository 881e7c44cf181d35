"""How well the span null (``detectors.span``) keeps its promise, by how much of a camera's life
the reference holds.

    .venv/bin/python benchmarks/span_calibration.py [--seeds 300] [--alpha 0.01]

Synthetic cameras whose statistics wander as AR(1) processes (5 independent features, unit
variance, correlation length ``tau = -1/ln(phi)`` frames). For each reference length and ``phi``:
fit the null on a reference of that length, then judge disjoint 100-frame windows of a fresh
stretch of the same camera at the threshold for a per-window false-alarm probability ``alpha``,
over ``--seeds`` cameras. Prints the measured rate with its 95% Clopper-Pearson interval and the
reference's median support (nearly independent stretches). A promise held is a measured rate at or
below ``alpha``; a short reference of a slow camera breaks it, which is what
``driftmon reference build`` warns about.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.span import fit_span_null, threshold  # noqa: E402

WINDOW, FEATURES, LIVE = 100, 5, 2000


def ar1(rng: np.random.Generator, n: int, phi: float) -> np.ndarray:
    x = np.empty((n, FEATURES))
    x[0] = rng.normal(size=FEATURES)
    noise = rng.normal(size=(n, FEATURES)) * math.sqrt(1 - phi**2)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + noise[t]
    return x


def measure(n_ref: int, phi: float, seeds: int, alpha: float) -> tuple[int, int, float]:
    z_star = threshold(alpha, FEATURES)
    fired = total = 0
    support = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        null = fit_span_null(ar1(rng, n_ref, phi), [np.arange(n_ref)], WINDOW)
        support.append(null.effective_spans)
        live = ar1(rng, LIVE, phi)
        for start in range(0, LIVE - WINDOW + 1, WINDOW):
            fired += bool(np.abs(null.z(live[start : start + WINDOW])).max() > z_star)
            total += 1
    return fired, total, float(np.median(support))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=300)
    p.add_argument("--alpha", type=float, default=0.01)
    p.add_argument("--refs", type=int, nargs="+", default=[200, 400, 1000, 4000, 20000])
    p.add_argument("--phis", type=float, nargs="+", default=[0.0, 0.9, 0.97, 0.99])
    args = p.parse_args()
    print(
        f"windows of {WINDOW} frames, {FEATURES} features, promised per-window false-alarm rate "
        f"{args.alpha}, {args.seeds} cameras x {LIVE // WINDOW} windows per cell"
    )
    print("| reference frames | phi (tau, frames) | support | false alarms | rate | 95% interval |")
    print("|---:|---:|---:|---:|---:|---|")
    for phi in args.phis:
        tau = -1 / math.log(phi) if phi > 0 else 0.0
        for n_ref in args.refs:
            fired, total, support = measure(n_ref, phi, args.seeds, args.alpha)
            ci = binomtest(fired, total).proportion_ci(0.95)
            print(
                f"| {n_ref:,} | {phi} ({tau:.0f}) | {support:.1f} | {fired}/{total} | "
                f"{fired / total:.4f} | {ci.low:.4f}-{ci.high:.4f} |"
            )


if __name__ == "__main__":
    main()
