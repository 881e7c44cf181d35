"""Engine: judge a stream's window against its reference and keep its drift state.

Each evaluation runs every enabled test on every tested image statistic (one vectorised call per
test, corrected across features), and the stream's evaluation *fires* when any of the voting
tests drifted. Hysteresis then decides when a stream is declared drifted or recovered, so one
unlucky window does not page anyone.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detectors.categorical import chi2_test
from detectors.hysteresis import Hysteresis
from detectors.ks import ks_test
from detectors.ks_dims import ks_dims_test
from detectors.mmd import MMDReference
from detectors.reduce import PCA
from detectors.reference import UnivariateReference
from detectors.result import FeatureTestResult
from monitor.config import EMBEDDING_TESTS, PREDICTION_TESTS, Config
from monitor.embed import EmbedderIdentity, EmbedderMismatch, check_compatible
from monitor.predictions import MIN_PREDICTIONS, FittedPredictions, PredictionWindow, class_table
from monitor.reference import Reference, ReferenceError
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


# Tests whose verdict comes from a p-value (the others compare an effect size to a threshold).
P_VALUE_TESTS = ("ks", "mmd", "ks_dims", "pred_class", "confidence", "probs_ks")
# probs_ks reports every class as a feature up to this many classes, beyond it only the drifted ones
MAX_CLASS_FEATURES = 32


class FittedReference:
    """A reference prepared once and reused for every window: sorted columns, bins and scales for
    the image statistics; with embeddings, the PCA fitted on the reference and the MMD kernel block
    of a bounded subsample of it."""

    def __init__(self, reference: Reference, feature_names: tuple[str, ...], config: Config,
                 embedder: dict[str, Any] | None):
        self.reference = reference
        self.feature_names = feature_names
        self.univariate = UnivariateReference(
            reference.columns(feature_names), feature_names=list(feature_names), psi_bins=config.tests.psi_bins)
        self.pca: PCA | None = None
        self.mmd: MMDReference | None = None
        self.reduced: np.ndarray | None = None
        self.predictions = FittedPredictions.from_reference(reference)  # None: built without any
        if set(config.active_tests) & set(EMBEDDING_TESTS):
            self._fit_embeddings(config, embedder)

    @staticmethod
    def check_embeddings(ref: Reference, embedder: dict[str, Any] | None) -> None:
        where = f"reference {ref.stream or '*'} v{ref.version}"
        if ref.embeddings is None or ref.embedder is None:
            raise ReferenceError(f"{where} has no embeddings: rebuild it with embedding enabled, "
                                 "or set embedding.enabled: false")
        if embedder is not None:
            try:
                check_compatible(EmbedderIdentity.from_dict(ref.embedder), EmbedderIdentity.from_dict(embedder))
            except EmbedderMismatch as e:
                raise EmbedderMismatch(f"{where}: {e}") from None

    def _fit_embeddings(self, config: Config, embedder: dict[str, Any] | None) -> None:
        ref = self.reference
        self.check_embeddings(ref, embedder)
        pca_arrays = {k[len("pca."):]: v for k, v in ref.fitted.items() if k.startswith("pca.")}
        if pca_arrays:
            self.pca = PCA.from_arrays(pca_arrays)
        else:  # a reference built elsewhere: fit now, the same way `reference build` does
            k = min(config.embedding.pca_components, ref.embeddings.shape[1], ref.n_frames - 1)
            self.pca = PCA().fit(ref.embeddings, k)
        self.reduced = self.pca.transform(ref.embeddings)
        size = config.embedding.mmd_reference_size
        sample = self.reduced
        if len(sample) > size:  # seeded, so a restart fits the same kernel block
            sample = sample[np.random.default_rng(ref.version).choice(len(sample), size, replace=False)]
        self.mmd = MMDReference(sample, dtype="float32")

    @property
    def stream(self) -> str:
        return self.reference.stream or "*"


class Engine:
    """Runs the configured tests on due streams; owns only configuration and its random generator."""

    def __init__(self, config: Config, all_features: tuple[str, ...], embedder: dict[str, Any] | None = None,
                 seed: int = 0):
        self.config = config
        self.tests = config.tests
        self.active = config.active_tests
        self.voting = config.voting_tests
        self.embedder = embedder
        self.feature_names = tuple(config.tests.features) or all_features
        self._columns = np.array([all_features.index(n) for n in self.feature_names])
        # Bonferroni across the voting tests with p-values: one evaluation fires with
        # probability at most `alpha` on unshifted data
        with_p = [t for t in self.voting if t in P_VALUE_TESTS]
        self.vote_alpha = config.tests.alpha / max(1, len(with_p))
        self._rng = np.random.default_rng(seed)

    def fit(self, reference: Reference) -> FittedReference:
        return FittedReference(reference, self.feature_names, self.config, self.embedder)

    def new_detector(self) -> Hysteresis:
        h = self.config.hysteresis
        return Hysteresis(k=h.k, m=h.m, recover=h.recover)

    def check(self, reference: Reference) -> None:
        """Raise what fitting ``reference`` would raise (missing features or embeddings, another
        embedder), without building its kernel blocks."""
        reference.columns(self.feature_names)
        if set(self.active) & set(EMBEDDING_TESTS):
            FittedReference.check_embeddings(reference, self.embedder)

    def run_tests(self, fitted: FittedReference, rows: np.ndarray, embeddings: np.ndarray | None = None,
                  predictions: PredictionWindow | None = None) -> tuple[tuple[TestOutcome, ...], bool]:
        """Every active test on ``rows`` (all image statistics, one row per frame) and, when given,
        the frames' embeddings and model outputs; and whether a voting test fired. A test without
        its inputs (no embeddings, too few predictions) is skipped: absent from the outcomes."""
        window = rows[:, self._columns]
        reduced = None if embeddings is None or fitted.pca is None else fitted.pca.transform(embeddings)
        outcomes = []
        for name in self.active:
            if name in EMBEDDING_TESTS and reduced is None:
                continue
            if name in PREDICTION_TESTS:
                outcome = self._run_prediction(name, fitted.predictions, predictions)
                if outcome is not None:
                    outcomes.append(outcome)
                continue
            outcomes.append(self._run(name, fitted, window, reduced))
        return tuple(outcomes), any(o.drift for o in outcomes if o.name in self.voting)

    def evaluate(self, state: StreamState, fitted: FittedReference, now: float | None = None) -> Verdict:
        rows = state.window.values()
        outcomes, fired = self.run_tests(fitted, rows, state.window.embeddings(), state.window.predictions())
        if state.detector_state is None:
            state.detector_state = self.new_detector()
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

    def _alpha(self, name: str) -> float:
        return self.vote_alpha if name in self.voting else self.tests.alpha

    def _run(self, name: str, fitted: FittedReference, window: np.ndarray, reduced: np.ndarray | None
             ) -> TestOutcome:
        ref = fitted.univariate
        t = self.tests
        if name == "ks":
            return summarize(name, ref.ks(window, alpha=self._alpha(name), correction=t.correction),
                             self.feature_names)
        if name == "psi":
            return summarize(name, ref.psi(window, threshold=t.psi_threshold), self.feature_names)
        if name == "wasserstein":
            return summarize(name, ref.wasserstein(window, threshold=t.wasserstein_threshold), self.feature_names)
        if name == "mmd":
            res = fitted.mmd.test(reduced, n_permutations=self.config.embedding.mmd_permutations,
                                  alpha=self._alpha(name), seed=self._rng)
            return TestOutcome(name, float(res.statistic), float(res.p_value), float(res.threshold),
                               res.drift, "none", res.p_value_note, ())
        if name == "ks_dims":
            res = ks_dims_test(fitted.reduced, reduced, alpha=self._alpha(name))
            k = len(res.dim_p_value)
            dims = tuple(FeatureOutcome(f"pc{i:02d}", float(res.dim_statistic[i]),
                                        float(min(1.0, k * res.dim_p_value[i])),
                                        bool(min(1.0, k * res.dim_p_value[i]) <= res.threshold)) for i in range(k))
            return TestOutcome(name, float(res.statistic), float(res.p_value), float(res.threshold), res.drift,
                               "bonferroni", res.p_value_note, dims)
        raise ValueError(f"unknown test {name!r}")  # pragma: no cover - the config admits no other

    def _run_prediction(self, name: str, ref: FittedPredictions | None, cur: PredictionWindow | None
                        ) -> TestOutcome | None:
        """A test on the model's outputs, or None when the reference or the window has fewer than
        MIN_PREDICTIONS frames with what the test needs."""
        if ref is None or cur is None:
            return None
        alpha = self._alpha(name)
        if name == "pred_class":
            ref_labels, cur_labels = ref.labels, cur.labels()
            if min(len(ref_labels), len(cur_labels)) < MIN_PREDICTIONS:
                return None
            ref_codes, cur_codes, _ = class_table(ref_labels, cur_labels)
            res = chi2_test(ref_codes, cur_codes, alpha=alpha, correction="none")
            return summarize(name, res, ("predicted_class",))
        if name == "confidence":
            cur_conf = cur.confidences()
            if min(len(ref.confidences), len(cur_conf)) < MIN_PREDICTIONS:
                return None
            return summarize(name, ks_test(ref.confidences, cur_conf, alpha=alpha, correction="none"),
                             ("confidence",))
        if name == "probs_ks":
            if ref.probs is None or len(ref.probs) < MIN_PREDICTIONS:
                return None
            k = ref.probs.shape[1]
            cur_probs = cur.probs(k)
            if len(cur_probs) < MIN_PREDICTIONS:
                return None
            out = summarize(name, ks_test(ref.probs, cur_probs, alpha=alpha, correction="bonferroni"),
                            tuple(f"class_{i}" for i in range(k)))
            if k > MAX_CLASS_FEATURES:  # bounded metric series for 1000-class models
                out = dataclasses.replace(out, features=tuple(f for f in out.features if f.drift))
            return out
        raise ValueError(f"unknown test {name!r}")  # pragma: no cover


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
