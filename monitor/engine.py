"""Engine: judge a stream's window against its reference and keep its drift state.

Each evaluation runs every enabled test on every tested image statistic (one vectorised call per
test, corrected across features), and the stream's evaluation *fires* when any of the voting
tests drifted. Hysteresis then decides when a stream is declared drifted or recovered, so one
unlucky window does not page anyone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detectors.hysteresis import Hysteresis
from detectors.reference import UnivariateReference
from detectors.result import FeatureTestResult
from monitor.config import Config
from monitor.reference import Reference
from monitor.streams import StreamState


@dataclass(frozen=True)
class FeatureOutcome:
    feature: str
    statistic: float
    p_value: float | None  # multiplicity-adjusted
    drift: bool


@dataclass(frozen=True)
class TestOutcome:
    name: str
    statistic: float  # the largest per-feature statistic
    p_value: float | None  # the smallest adjusted p-value; None for threshold-only tests
    threshold: float
    drift: bool
    correction: str
    p_value_note: str
    features: tuple[FeatureOutcome, ...]

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drift]


@dataclass(frozen=True)
class Verdict:
    stream: str
    evaluated_at: float
    reference_stream: str  # "*" for the shared reference
    reference_version: int
    n_ref: int
    n_cur: int
    tests: tuple[TestOutcome, ...]
    fired: bool  # a voting test drifted on this window
    drifted: bool  # the stream's state after hysteresis
    changed: bool  # this evaluation flipped the state

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for test, outcome in zip(d["tests"], self.tests):
            test["drifted_features"] = outcome.drifted_features
        return d


class FittedReference:
    """A reference prepared once (sorted columns, bins, scales) and reused for every window."""

    def __init__(self, reference: Reference, feature_names: tuple[str, ...], config: Config):
        self.reference = reference
        self.feature_names = feature_names
        self.univariate = UnivariateReference(
            reference.columns(feature_names), feature_names=list(feature_names), psi_bins=config.tests.psi_bins)

    @property
    def stream(self) -> str:
        return self.reference.stream or "*"


class Engine:
    """Runs the configured tests on due streams; owns nothing but configuration."""

    def __init__(self, config: Config, all_features: tuple[str, ...]):
        self.config = config
        self.tests = config.tests
        self.feature_names = tuple(config.tests.features) or all_features
        self._columns = np.array([all_features.index(n) for n in self.feature_names])

    def fit(self, reference: Reference) -> FittedReference:
        return FittedReference(reference, self.feature_names, self.config)

    def run_tests(self, fitted: FittedReference, rows: np.ndarray) -> tuple[tuple[TestOutcome, ...], bool]:
        """Every enabled test on ``rows`` (all image statistics, one row per frame); and whether a
        voting test fired."""
        window = rows[:, self._columns]
        outcomes = tuple(self._run(name, fitted, window) for name in self.tests.enabled)
        return outcomes, any(o.drift for o in outcomes if o.name in self.tests.vote)

    def evaluate(self, state: StreamState, fitted: FittedReference, now: float | None = None) -> Verdict:
        rows = state.window.values()
        outcomes, fired = self.run_tests(fitted, rows)
        if state.detector_state is None:
            h = self.config.hysteresis
            state.detector_state = Hysteresis(k=h.k, m=h.m, recover=h.recover)
        step = state.detector_state.update(fired)
        state.window.mark_evaluated()
        verdict = Verdict(
            stream=state.key, evaluated_at=time.time() if now is None else now,
            reference_stream=fitted.stream, reference_version=fitted.reference.version,
            n_ref=fitted.reference.n_frames, n_cur=int(rows.shape[0]), tests=outcomes,
            fired=fired, drifted=bool(step.drifted), changed=bool(step.changed))
        state.verdict = verdict
        state.last_evaluated_at = verdict.evaluated_at
        return verdict

    def _run(self, name: str, fitted: FittedReference, window: np.ndarray) -> TestOutcome:
        ref = fitted.univariate
        t = self.tests
        if name == "ks":
            res = ref.ks(window, alpha=t.alpha, correction=t.correction)
        elif name == "psi":
            res = ref.psi(window, threshold=t.psi_threshold)
        elif name == "wasserstein":
            res = ref.wasserstein(window, threshold=t.wasserstein_threshold)
        else:  # pragma: no cover - the config only admits the names above
            raise ValueError(f"unknown test {name!r}")
        return summarize(name, res, self.feature_names)


def summarize(name: str, res: FeatureTestResult, feature_names: tuple[str, ...]) -> TestOutcome:
    stat = np.asarray(res.statistic, dtype=float)
    adj = None if res.adjusted_p_value is None else np.asarray(res.adjusted_p_value, dtype=float)
    features = tuple(
        FeatureOutcome(f, float(stat[i]), None if adj is None else float(adj[i]), bool(res.drifted[i]))
        for i, f in enumerate(feature_names))
    return TestOutcome(
        name=name, statistic=float(np.max(stat)), p_value=None if adj is None else float(np.min(adj)),
        threshold=float(res.threshold), drift=res.drift, correction=res.correction,
        p_value_note=res.p_value_note, features=features)
