"""driftmon's detectors against the peers a user would pick instead, timed in the same run.

Run with any interpreter that has numpy and scipy; each peer is timed only where it imports:

    .venv/bin/python benchmarks/peers.py                  # driftmon + Evidently (a dependency)
    PYTHONPATH=. /tmp/alibi-venv/bin/python benchmarks/peers.py   # driftmon + Alibi Detect

Alibi Detect pins numpy < 2 and is licensed for non-production use only: install it in a
separate virtualenv used for this comparison, never beside driftmon (docs/benchmarks.md has the
commands). Prints a Markdown table: driftmon's time, the peer's time, and their ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import time

import numpy as np

from detectors import MMDReference, UnivariateReference, mmd_test
from detectors.ks import _exact_p

UNIVARIATE = ("ks", "cvm", "anderson", "psi", "wasserstein", "jensen_shannon", "hellinger")


def timed(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call, in seconds."""
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def mmd_rows(repeats: int):
    rng = np.random.default_rng(0)
    for m, n, d in ((5000, 1000, 32), (1000, 200, 32)):
        x, y = rng.normal(size=(m, d)), rng.normal(size=(n, d))
        ref = MMDReference(x, dtype="float32")
        ours = timed(lambda ref=ref, y=y: ref.test(y, n_permutations=100, seed=1), repeats)
        note = "MMDReference (kernel block fitted once), float32, B=100"
        peer = None
        if has("alibi_detect") and has("torch"):
            from alibi_detect.cd import MMDDrift

            cd = MMDDrift(x.astype(np.float32), backend="pytorch", p_val=0.05, n_permutations=100)
            peer_repeats = 1 if m >= 5000 else repeats
            peer = timed(lambda cd=cd, y=y: cd.predict(y.astype(np.float32)), peer_repeats)
            yield (
                f"MMD, {m} x {n} x {d}",
                ours,
                "Alibi Detect MMDDrift (pytorch, B=100)",
                peer,
                note,
            )
        else:
            yield (f"MMD, {m} x {n} x {d}", ours, "Alibi Detect (not installed here)", None, note)
        # the one-call function pays the reference block every time, as a peer's predict does
        once = timed(
            lambda x=x, y=y: mmd_test(x, y, n_permutations=100, seed=1), 1 if m >= 5000 else repeats
        )
        yield (
            f"MMD, {m} x {n} x {d}, one call (mmd_test)",
            once,
            "Alibi Detect MMDDrift" if peer is not None else "-",
            peer,
            "reference block recomputed per call",
        )


def univariate_rows(repeats: int):
    rng = np.random.default_rng(1)
    n_ref, n_cur, k = 5000, 1000, 20
    x = rng.normal(size=(n_ref, k))
    ref = UnivariateReference(x)
    # A daemon's steady state: exact KS p-values are cached per (n_ref, n_cur, D); 300 unshifted
    # windows warm the cache, then every timed call gets a fresh window.
    for _ in range(300):
        ref.ks(rng.normal(size=(n_cur, k)))
    fresh = iter([rng.normal(size=(n_cur, k)) for _ in range(5 * repeats + 5)])
    ks = timed(lambda: ref.ks(next(fresh)), repeats)
    ks_asymp = timed(lambda: ref.ks(next(fresh), method="asymp"), repeats)

    def every_test(x_cur):
        placed = ref.place(x_cur)  # validated, sorted and placed once for all seven
        return [getattr(ref, t)(placed) for t in UNIVARIATE]

    every = timed(lambda: every_test(next(fresh)), repeats)
    y = next(fresh)

    def cold():
        _exact_p.cache_clear()
        ref.ks(y)

    ks_cold = timed(cold, max(3, repeats // 3))
    peers = []
    if has("alibi_detect"):
        from alibi_detect.cd import KSDrift

        cd = KSDrift(x, p_val=0.05)
        peers.append(("Alibi Detect KSDrift", timed(lambda: cd.predict(y), repeats)))
    if has("evidently") and has("pandas"):
        from detectors_univariate import evidently_time  # noqa: PLC0415 - the same measurement

        peers.append(("Evidently DataDriftPreset", evidently_time(x, y, repeats=3) / 1e3))
    if not peers:
        peers.append(("(no peer installed here)", None))
    for peer, t in peers:
        yield (
            f"KS, {k} features, {n_ref} x {n_cur}, asymptotic p-values",
            ks_asymp,
            peer,
            t,
            "UnivariateReference.ks(method='asymp'), fresh windows (Alibi's KSDrift uses "
            "scipy's asymptotic mode)",
        )
        yield (
            f"KS, {k} features, {n_ref} x {n_cur}",
            ks,
            peer,
            t,
            "UnivariateReference.ks, exact p-values, fresh windows, warm p-value cache",
        )
        yield (
            f"KS, {k} features, {n_ref} x {n_cur}, cold p-value cache",
            ks_cold,
            peer,
            t,
            "every exact p-value computed",
        )
        yield (
            f"all 7 univariate tests, {k} features, {n_ref} x {n_cur}",
            every,
            peer,
            t,
            "KS, CvM, Anderson-Darling, PSI, Wasserstein, JS, Hellinger on one placed window",
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    versions = {
        m: __import__(m).__version__
        for m in ("numpy", "scipy", "torch", "alibi_detect", "evidently")
        if has(m)
    }
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus; "
        + ", ".join(f"{m} {v}" for m, v in versions.items())
        + "\n"
    )
    print("| what | driftmon (ms) | peer | peer (ms) | peer / driftmon | driftmon path |")
    print("|---|---:|---|---:|---:|---|")
    rows = list(univariate_rows(args.repeats)) + list(mmd_rows(args.repeats))
    for what, ours, peer, theirs, note in rows:
        ratio = f"{theirs / ours:.0f}x" if theirs else "-"
        peer_ms = f"{theirs * 1e3:.1f}" if theirs else "-"
        print(f"| {what} | {ours * 1e3:.1f} | {peer} | {peer_ms} | {ratio} | {note} |")


if __name__ == "__main__":
    main()
