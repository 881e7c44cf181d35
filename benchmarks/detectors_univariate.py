"""Benchmark of driftmon's univariate drift tests.

Run:  .venv/bin/python benchmarks/detectors_univariate.py [--repeats 15] [--seeds 200]

Prints markdown tables:
1. time per call on a 20-feature table, 5,000-row reference vs 1,000-row window: each test
   as a pure function and through ``UnivariateReference``; the KS + PSI + normed Wasserstein
   set; scipy per-column loops; Evidently's DataDriftPreset on the same table, same run;
2. false-alarm rates on unshifted data (single feature and 20-feature families);
3. the run length delivered by ``calibrate_threshold`` against its promise, and by the
   daemon's calibrated KS rule (``calibrate_ks``) over many references;
4. power: detection rate against window size for three kinds of shift.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import warnings

import numpy as np
from scipy import stats

from detectors import (
    UnivariateReference,
    anderson_test,
    calibrate_ks,
    calibrate_threshold,
    correct,
    cvm_test,
    hellinger_test,
    jensen_shannon_test,
    ks_test,
    psi_test,
    wasserstein_test,
)
from detectors.ks import _exact_p

N_REF, N_CUR, K = 5000, 1000, 20
ALL = ("ks", "cvm", "anderson", "psi", "wasserstein", "jensen_shannon", "hellinger")
SET = ("ks", "psi", "wasserstein")
P_VALUE_TESTS = ("ks", "cvm", "anderson")


def on_one_window(ref, x_cur, tests=SET, correction="bonferroni"):
    """Several tests of one window, placed in the reference once (as the daemon runs them)."""
    placed = ref.place(x_cur)
    return {
        t: getattr(ref, t)(placed, correction=correction)
        if t in P_VALUE_TESTS
        else getattr(ref, t)(placed)
        for t in tests
    }


def timed(fn, repeats):
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out) * 1e3


def timing(repeats: int) -> None:
    rng = np.random.default_rng(0)
    x_ref = rng.normal(size=(N_REF, K))
    x_cur = rng.normal(size=(N_CUR, K)) + np.r_[np.zeros(K - 2), 0.2, 0.0]
    ref = UnivariateReference(x_ref)
    rows = []

    def add(name, ms, note=""):
        rows.append((name, ms, note))

    # KS p-values: exact ones are cached per (n_ref, n_cur, h). Report cold and warm.
    def ks_cold():
        _exact_p.cache_clear()
        ref.ks(x_cur)

    add(
        "UnivariateReference.ks, cold p-value cache",
        timed(ks_cold, repeats),
        "every exact p-value computed (scipy's kernel)",
    )
    ref.ks(x_cur)
    add(
        "UnivariateReference.ks, warm cache",
        timed(lambda: ref.ks(x_cur), repeats),
        "same window again",
    )
    windows = [rng.normal(size=(N_CUR, K)) for _ in range(300)]
    for w in windows:  # a daemon's warm-up: 300 unshifted windows
        ref.ks(w)
    fresh = [rng.normal(size=(N_CUR, K)) for _ in range(repeats)]
    it = iter(fresh)
    add(
        "UnivariateReference.ks, fresh windows after 300",
        timed(lambda: ref.ks(next(it)), repeats),
        "steady state",
    )
    add(
        "UnivariateReference.ks(method='asymp')",
        timed(lambda: ref.ks(x_cur, method="asymp"), repeats),
        "",
    )
    for name in ALL[1:]:
        add(f"UnivariateReference.{name}", timed(lambda n=name: getattr(ref, n)(x_cur), repeats))
    it = iter([rng.normal(size=(N_CUR, K)) for _ in range(repeats)])
    set_ms = timed(lambda: on_one_window(ref, next(it)), repeats)
    add("**KS + PSI + Wasserstein (placed once), fresh windows**", set_ms, "target < 20 ms")
    it = iter([rng.normal(size=(N_CUR, K)) for _ in range(repeats)])
    all_ms = timed(lambda: on_one_window(ref, next(it), ALL), repeats)
    add("**all 7 tests (placed once), fresh windows**", all_ms, "target < 20 ms")
    # last: clearing the p-value cache would make every later "fresh window" row a cold one
    set_cold = timed(
        lambda: (_exact_p.cache_clear(), on_one_window(ref, x_cur)), max(3, repeats // 3)
    )
    add("KS + PSI + Wasserstein (placed once), cold cache", set_cold, "first windows only")
    add("UnivariateReference(x_ref) fit", timed(lambda: UnivariateReference(x_ref), 5), "once")

    pure = {
        "ks_test": ks_test,
        "cvm_test": cvm_test,
        "anderson_test": anderson_test,
        "psi_test": psi_test,
        "wasserstein_test": wasserstein_test,
        "jensen_shannon_test": jensen_shannon_test,
        "hellinger_test": hellinger_test,
    }
    for name, fn in pure.items():
        add(f"{name} (pure function, warm KS cache)", timed(lambda f=fn: f(x_ref, x_cur), repeats))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loops = {
            "ks_2samp": lambda: [stats.ks_2samp(x_ref[:, c], x_cur[:, c]) for c in range(K)],
            "ks_2samp(method='asymp')": lambda: [
                stats.ks_2samp(x_ref[:, c], x_cur[:, c], method="asymp") for c in range(K)
            ],
            "cramervonmises_2samp": lambda: [
                stats.cramervonmises_2samp(x_ref[:, c], x_cur[:, c]) for c in range(K)
            ],
            "anderson_ksamp": lambda: [
                stats.anderson_ksamp([x_ref[:, c], x_cur[:, c]], variant="midrank")
                for c in range(K)
            ],
            "wasserstein_distance": lambda: [
                stats.wasserstein_distance(x_ref[:, c], x_cur[:, c]) for c in range(K)
            ],
        }
        loop_ms = {n: timed(f, max(3, repeats // 3)) for n, f in loops.items()}
    for n, ms in loop_ms.items():
        add(f"scipy loop over 20 columns: {n}", ms)

    evid_ms = evidently_time(x_ref, x_cur, repeats=3)
    add(
        "Evidently 0.7 DataDriftPreset (Report.run)",
        evid_ms,
        "its default per-column tests (K-S p-values / normed Wasserstein by size)",
    )

    print(f"\n### Timing: {K} features, {N_REF} x {N_CUR} (median of {repeats})\n")
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, numpy {np.__version__}\n"
    )
    print("| what | ms per call | note |\n|---|---:|---|")
    for name, ms, note in rows:
        print(f"| {name} | {ms:.2f} | {note} |")
    print(f"\nratio Evidently / driftmon KS+PSI+Wasserstein: {evid_ms / set_ms:.0f}x")
    print(
        f"ratio scipy ks_2samp loop / UnivariateReference.ks (steady state): "
        f"{loop_ms['ks_2samp'] / rows[2][1]:.1f}x"
    )


def evidently_time(x_ref, x_cur, repeats):
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    cols = [f"f{i}" for i in range(x_ref.shape[1])]
    definition = DataDefinition(numerical_columns=cols)

    def run():
        ref = Dataset.from_pandas(pd.DataFrame(x_ref, columns=cols), data_definition=definition)
        cur = Dataset.from_pandas(pd.DataFrame(x_cur, columns=cols), data_definition=definition)
        Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()  # import/first-use costs out of the measurement
        return timed(run, repeats)


def false_alarms(n_seeds: int) -> None:
    alpha = 0.05
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, n_seeds * 20))
    y = rng.normal(size=(100, n_seeds * 20))
    lo, hi = stats.binom.interval(0.99, n_seeds, alpha)
    print(
        f"\n### False alarms on unshifted data: {n_seeds} seeds, n_ref=300, n_cur=100, "
        f"alpha=0.05 (99% binomial interval of the count at 5%: [{lo:.0f}, {hi:.0f}])\n"
    )
    print(
        "| test | single feature | 20 features, Bonferroni (family-wise) | 20 features, BH "
        "(family-wise) | 20 features, uncorrected |\n|---|---:|---:|---:|---:|"
    )
    for name, fn in (("ks", ks_test), ("cvm", cvm_test), ("anderson", anderson_test)):
        p = fn(x, y, correction="none").p_value.reshape(n_seeds, 20)
        single = np.mean(p[:, 0] <= alpha)
        bonf = correct(p, method="bonferroni").drifted.any(axis=1).mean()
        bh = correct(p, method="bh").drifted.any(axis=1).mean()
        none = (p <= alpha).any(axis=1).mean()
        print(f"| {name} | {single:.3f} | {bonf:.3f} | {bh:.3f} | {none:.3f} |")


def run_length(n_streams: int) -> None:
    window, stride, target = 50, 10, 2000

    def stat(w):
        return np.abs(w.mean(axis=(1, 2))) * np.sqrt(window)

    ref = np.random.default_rng(0).normal(size=(50_000, 1))
    t = time.perf_counter()
    cal = calibrate_threshold(
        ref,
        stat,
        window=window,
        stride=stride,
        target_run_length=target,
        n_blocks=6000,
        vectorized=True,
        seed=11,
    )
    t_cal = time.perf_counter() - t
    rng = np.random.default_rng(12)
    cap = 15 * target
    rls = []
    for _ in range(0, n_streams, 25):
        xs = rng.normal(size=(25, window + (cap - 1) * stride)).astype(np.float64)
        c = np.cumsum(np.c_[np.zeros(25), xs], axis=1)
        ends = window + stride * np.arange(cap)
        hit = np.abs(c[:, ends] - c[:, ends - window]) / np.sqrt(window) > cal.threshold
        rls.append(np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, cap))
    rl = np.concatenate(rls)[:n_streams]
    se = rl.std(ddof=1) / np.sqrt(len(rl))
    naive = stats.norm.isf(0.025)
    print(
        f"\n### Calibrated run length (window={window}, stride={stride}, |z| of window mean, "
        f"N(0,1) frames)\n"
    )
    print(
        f"target {target} evaluations; threshold {cal.threshold:.3f} (per-window 5% would be "
        f"{naive:.2f}); block L={cal.block_evaluations}, {cal.n_blocks} blocks, "
        f"calibration took {t_cal:.1f} s"
    )
    print(
        f"delivered mean run length over {len(rl)} fresh streams: {rl.mean():.0f} "
        f"+/- {se:.0f} (1 s.e.); censored at {cap}: {np.sum(rl == cap)} streams"
    )


def ks_run_length(n_refs: int, per_ref: int = 10) -> None:
    """The daemon's calibrated rule (tests.run_length) on fresh streams, over many references."""
    window, stride, target, k, n_ref = 50, 10, 200, 5, 4000
    cap = 20 * target
    rls, secs, levels = [], [], []
    for i in range(n_refs):
        ref_x = np.random.default_rng(500 + i).normal(size=(n_ref, k))
        t = time.perf_counter()
        cal = calibrate_ks(ref_x, window=window, stride=stride, target_run_length=target, seed=i)
        secs.append(time.perf_counter() - t)
        levels.append(cal.level)
        ref = UnivariateReference(ref_x)
        rng = np.random.default_rng(5000 + i)
        for _ in range(per_ref):
            stream = rng.normal(size=(window + (cap - 1) * stride, k))
            n = cap
            for e in range(cap):
                w = stream[e * stride : e * stride + window]
                if ref.ks(w, correction="none").statistic.max() > cal.statistic_threshold:
                    n = e + 1
                    break
            rls.append(n)
    rl = np.array(rls)
    se = rl.std(ddof=1) / np.sqrt(len(rl))
    per_ref_means = rl.reshape(n_refs, per_ref).mean(axis=1)
    print(
        f"\n### Calibrated KS (`calibrate_ks`, the daemon's `tests.run_length`): {k} features, "
        f"window {window} every {stride}, reference {n_ref} frames\n"
    )
    print(
        f"target {target} evaluations; {n_refs} references (each calibrated, median "
        f"{np.median(secs):.2f} s), {per_ref} fresh N(0, I) streams each; per-feature level "
        f"median {np.median(levels):.2e} (Bonferroni {0.05 / k:.0e})"
    )
    print(
        f"delivered mean run length: {rl.mean():.0f} +/- {se:.0f} (1 s.e.); per-reference means "
        f"5th-95th percentile {np.percentile(per_ref_means, 5):.0f}-"
        f"{np.percentile(per_ref_means, 95):.0f}; censored at {cap}: {np.sum(rl == cap)}"
    )


def power(n_seeds: int) -> None:
    rng = np.random.default_rng(3)
    x_ref = rng.normal(size=(N_REF, n_seeds))
    ref = UnivariateReference(x_ref)
    scenarios = {
        "none (false alarms)": lambda n: rng.normal(size=(n, n_seeds)),
        "mean +0.2 sd": lambda n: rng.normal(0.2, 1.0, size=(n, n_seeds)),
        "scale x1.25": lambda n: rng.normal(0.0, 1.25, size=(n, n_seeds)),
        "10% sub-population +2 sd": lambda n: (
            rng.normal(size=(n, n_seeds)) + 2.0 * (rng.uniform(size=(n, n_seeds)) < 0.1)
        ),
    }
    print(
        f"\n### Power: detection rate over {n_seeds} seeds, one feature, reference "
        f"{N_REF} rows, alpha = 0.05, default thresholds (PSI 0.2, Wasserstein 0.1, "
        f"JS 0.1, Hellinger 0.1)\n"
    )
    print("| shift | window | " + " | ".join(ALL) + " |")
    print("|---|---:|" + "---:|" * len(ALL))
    for sname, gen in scenarios.items():
        for n in (50, 100, 200, 500):
            res = on_one_window(ref, gen(n), ALL, correction="none")
            rates = " | ".join(f"{res[t].drifted.mean():.2f}" for t in ALL)
            print(f"| {sname} | {n} | {rates} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seeds", type=int, default=200, help="seeds for the power table")
    ap.add_argument("--fa-seeds", type=int, default=2000, help="seeds for false alarms")
    ap.add_argument("--streams", type=int, default=1000, help="streams for run length")
    ap.add_argument(
        "--refs", type=int, default=60, help="references for the calibrated KS run length"
    )
    args = ap.parse_args()
    timing(args.repeats)
    false_alarms(args.fa_seeds)
    run_length(args.streams)
    ks_run_length(args.refs)
    power(args.seeds)


if __name__ == "__main__":
    main()
