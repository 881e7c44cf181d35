"""Benchmark of driftmon's multivariate drift tests: time per window, memory, correctness of the
fast permutation p-value, and a power table.

Run from the repository root:

    .venv/bin/python benchmarks/detectors_multivariate.py            # everything (~5-10 min)
    .venv/bin/python benchmarks/detectors_multivariate.py --seeds 20 # quicker power table

Prints Markdown tables (pasted into docs/detectors.md, "## Multivariate tests").
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import tracemalloc

import numpy as np
from scipy.spatial.distance import cdist

from detectors import (
    PCA,
    EnergyReference,
    MMDReference,
    classifier_test,
    ks_dims_test,
    mmd_rff_test,
)


def timed(fn, repeat: int = 3) -> float:
    """Best of ``repeat`` wall-clock runs (the machine is shared: the minimum is the least
    noisy)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def peak_mib(fn) -> float:
    """Peak Python/numpy heap allocated while ``fn`` runs (tracemalloc), in MiB."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def timing_table() -> None:
    print("## Timing (best of 3, per window unless stated)\n")
    print(
        "| test | reference x window x dims | B | fit once (s) | per window (s) | kept (MiB) | "
        "peak per window (MiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for m, n, d in ((5000, 1000, 32), (1000, 200, 32)):
        x = rng.normal(size=(m, d))
        y = rng.normal(size=(n, d))
        for dtype in ("float64", "float32"):
            fit = timed(lambda x=x, dtype=dtype: MMDReference(x, dtype=dtype), repeat=1)
            ref = MMDReference(x, dtype=dtype)
            per = timed(lambda ref=ref, y=y: ref.test(y, n_permutations=100, seed=1))
            peak = peak_mib(lambda ref=ref, y=y: ref.test(y, n_permutations=100, seed=1))
            print(
                f"| mmd (exact, {dtype}) | {m} x {n} x {d} | 100 | {fit:.2f} | {per:.3f} | "
                f"{ref.nbytes / 2**20:.0f} | {peak:.0f} |"
            )
        fit = timed(lambda x=x: EnergyReference(x), repeat=1)
        eref = EnergyReference(x)
        per = timed(lambda eref=eref, y=y: eref.test(y, n_permutations=100, seed=1))
        peak = peak_mib(lambda eref=eref, y=y: eref.test(y, n_permutations=100, seed=1))
        print(
            f"| energy | {m} x {n} x {d} | 100 | {fit:.2f} | {per:.3f} | {eref.nbytes / 2**20:.0f} "
            f"| {peak:.0f} |"
        )
        per = timed(lambda x=x, y=y: mmd_rff_test(x, y, n_features=256, n_permutations=100, seed=1))
        peak = peak_mib(
            lambda x=x, y=y: mmd_rff_test(x, y, n_features=256, n_permutations=100, seed=1)
        )
        print(
            f"| mmd_rff (D=256, linear time) | {m} x {n} x {d} | 100 | - | {per:.3f} | 0 | "
            f"{peak:.0f} |"
        )
        for feats in ("linear", "quadratic"):
            per = timed(
                lambda x=x, y=y, feats=feats: classifier_test(x, y, seed=1, features=feats),
                repeat=2,
            )
            peak = peak_mib(
                lambda x=x, y=y, feats=feats: classifier_test(x, y, seed=1, features=feats)
            )
            print(
                f"| classifier ({feats}, 5 folds) | {m} x {n} x {d} | 100 | - | {per:.3f} | 0 | "
                f"{peak:.0f} |"
            )
        per = timed(lambda x=x, y=y: ks_dims_test(x, y))
        peak = peak_mib(lambda x=x, y=y: ks_dims_test(x, y))
        print(
            f"| ks_dims (per-dim KS, auto; exact p-values cached after the first window) | {m} x "
            f"{n} x {d} | - | - | {per:.3f} | 0 | {peak:.0f} |"
        )
    large_reference_rff(rng)
    x512 = rng.normal(size=(5000, 512))
    fit = timed(lambda: PCA().fit(x512, n_components=32), repeat=1)
    pca = PCA().fit(x512, n_components=32)
    y512 = rng.normal(size=(1000, 512))
    per = timed(lambda: ks_dims_test(x512, y512, pca=pca))
    print(
        f"| PCA 512->32 + ks_dims | 5000 x 1000 x 512 | - | {fit:.2f} | {per:.3f} | "
        f"{pca.components_.nbytes / 2**20:.2f} | - |"
    )
    print()


def large_reference_rff(rng) -> None:
    """A reference too large for the exact test (8 m^2 bytes = 19 GB at m = 50,000)."""
    x = rng.normal(size=(50_000, 32))
    y = rng.normal(size=(1000, 32))
    per = timed(lambda: mmd_rff_test(x, y, n_features=256, n_permutations=100, seed=1), repeat=2)
    peak = peak_mib(lambda: mmd_rff_test(x, y, n_features=256, n_permutations=100, seed=1))
    print(
        f"| mmd_rff (D=256, linear time) | 50000 x 1000 x 32 | 100 | - | {per:.3f} | 0 | "
        f"{peak:.0f} |"
    )


def slow_mmd_p_value(x, y, sigma, n_perm, rng) -> tuple[float, float]:
    """Reference implementation: recompute the unbiased MMD^2 from scratch for each relabelling."""

    def mmd2(a, b):
        kaa = np.exp(-cdist(a, a, "sqeuclidean") / (2 * sigma**2))
        kbb = np.exp(-cdist(b, b, "sqeuclidean") / (2 * sigma**2))
        kab = np.exp(-cdist(a, b, "sqeuclidean") / (2 * sigma**2))
        na, nb = len(a), len(b)
        return (
            (kaa.sum() - na) / (na * (na - 1)) + (kbb.sum() - nb) / (nb * (nb - 1)) - 2 * kab.mean()
        )

    obs = mmd2(x, y)
    pooled = np.concatenate([x, y])
    count = 0
    for _ in range(n_perm):
        perm = rng.permutation(len(pooled))
        count += mmd2(pooled[perm[len(x) :]], pooled[perm[: len(x)]]) >= obs
    return obs, (1 + count) / (1 + n_perm)


def slow_energy_p_value(x, y, n_perm, rng) -> tuple[float, float]:
    def energy(a, b):
        return 2 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()

    obs = energy(x, y)
    pooled = np.concatenate([x, y])
    count = 0
    for _ in range(n_perm):
        perm = rng.permutation(len(pooled))
        count += energy(pooled[perm[: len(x)]], pooled[perm[len(x) :]]) >= obs
    return obs, (1 + count) / (1 + n_perm)


def p_value_check() -> None:
    print("## Fast vs direct permutation p-value (same data, independent relabellings)\n")
    rng = np.random.default_rng(42)
    x = rng.normal(size=(300, 8))
    y = rng.normal(size=(100, 8))
    y[:, 0] += 0.25  # a mild shift: p-value in the middle of [0, 1]
    b = 2000
    ref = MMDReference(x)
    t0 = time.perf_counter()
    fast = ref.test(y, n_permutations=b, seed=1)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs, slow = slow_mmd_p_value(x, y, ref.bandwidth, b, np.random.default_rng(2))
    t_slow = time.perf_counter() - t0
    se = np.sqrt(2 * slow * (1 - slow) / b)
    print(
        "| test | statistic (fast) | statistic (direct) | p fast | p direct | 3 x s.e. of "
        "difference | within | time fast / direct (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ok = abs(fast.p_value - slow) <= 3 * se
    print(
        f"| mmd, 300 x 100 x 8, B={b} | {fast.statistic:.6g} | {obs:.6g} | {fast.p_value:.4f} | "
        f"{slow:.4f} | {3 * se:.4f} | {ok} | {t_fast:.2f} / {t_slow:.1f} |"
    )
    eref = EnergyReference(x)
    t0 = time.perf_counter()
    fast = eref.test(y, n_permutations=b, seed=1)
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    obs, slow = slow_energy_p_value(x, y, b, np.random.default_rng(2))
    t_slow = time.perf_counter() - t0
    se = np.sqrt(2 * slow * (1 - slow) / b)
    ok = abs(fast.p_value - slow) <= 3 * se
    print(
        f"| energy, 300 x 100 x 8, B={b} | {fast.statistic:.6g} | {obs:.6g} | {fast.p_value:.4f} | "
        f"{slow:.4f} | {3 * se:.4f} | {ok} | {t_fast:.2f} / {t_slow:.1f} |"
    )
    print()


# ---------------------------------------------------------------------------------------------
# Power table
# ---------------------------------------------------------------------------------------------
D = 16
M_REF = 1000


def draw_window(rng, n, shift):
    y = rng.normal(size=(n, D))
    if shift == "none":
        return y
    if shift == "mean":  # +0.2 sd on 4 of 16 dims
        y[:, :4] += 0.2
    elif shift == "scale":  # sd 1.0 -> 1.25 on 4 of 16 dims
        y[:, :4] *= 1.25
    elif shift == "correlation":  # rho 0 -> 0.5 on pairs (0,1),(2,3),(4,5),(6,7); marginals kept
        for j in range(0, 8, 2):
            y[:, j + 1] = 0.5 * y[:, j] + np.sqrt(1 - 0.25) * y[:, j + 1]
    elif shift == "subpop10":  # 10% of frames from a cluster shifted by +1.5 sd on 4 dims
        k = max(1, int(round(0.1 * n)))
        y[:k, :4] += 1.5
    else:
        raise ValueError(shift)
    return y


def power_table(n_seeds: int, only: list[str] | None = None) -> None:
    methods = {
        "mmd": lambda x, y, s, refs: refs["mmd"].test(y, n_permutations=100, seed=s).drifted,
        "energy": lambda x, y, s, refs: refs["energy"].test(y, n_permutations=100, seed=s).drifted,
        "mmd_rff": lambda x, y, s, refs: mmd_rff_test(x, y, n_permutations=100, seed=s).drifted,
        "classifier": lambda x, y, s, refs: classifier_test(x, y, seed=s).drifted,
        "classifier_q": lambda x, y, s, refs: (
            classifier_test(x, y, seed=s, features="quadratic").drifted
        ),
        "ks_dims": lambda x, y, s, refs: ks_dims_test(x, y).drifted,
    }
    if only:
        methods = {k: v for k, v in methods.items() if k in only}
    shifts = ("none", "mean", "scale", "correlation", "subpop10")
    sizes = (50, 100, 200, 500)
    counts = {(sh, n, meth): 0 for sh in shifts for n in sizes for meth in methods}
    elapsed = {meth: 0.0 for meth in methods}
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(M_REF, D))
        refs = {"mmd": MMDReference(x), "energy": EnergyReference(x)}
        for sh in shifts:
            for n in sizes:
                y = draw_window(rng, n, sh)
                for meth, fn in methods.items():
                    t0 = time.perf_counter()
                    counts[sh, n, meth] += fn(x, y, seed, refs)
                    elapsed[meth] += time.perf_counter() - t0
    print(
        f"## Detection rate at alpha = 0.05 ({n_seeds} seeds; reference {M_REF} x {D}, N(0, I); "
        "each seed draws a new reference; B = 100 where permutations are used)\n"
    )
    print("| shift | window | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for sh in shifts:
        for n in sizes:
            cells = " | ".join(f"{counts[sh, n, meth] / n_seeds:.2f}" for meth in methods)
            print(f"| {sh} | {n} | {cells} |")
    print()
    print("time spent per method (s): " + ", ".join(f"{k} {v:.0f}" for k, v in elapsed.items()))
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="seeds for the power table")
    parser.add_argument("--methods", nargs="*", help="subset of the power table's methods")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-power", action="store_true")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"{platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"load average at start: {os.getloadavg()}\n")
    if not args.skip_timing:
        timing_table()
        p_value_check()
    if not args.skip_power:
        power_table(args.seeds, args.methods)


if __name__ == "__main__":
    main()
