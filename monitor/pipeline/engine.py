"""Engine: judge a stream's window against its reference and keep its drift state.

Each evaluation runs every enabled test on every tested image statistic (one vectorised call per
test, corrected across features), and the stream's evaluation *fires* when any of the voting
tests drifted. Hysteresis then decides when a stream is declared drifted or recovered, so one
unlucky window does not page anyone.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from detectors.calibration import calibrate_ks
from detectors.categorical import chi2_test
from detectors.hysteresis import Hysteresis
from detectors.ks import ks_test
from detectors.mmd import MMDReference
from detectors.reduce import PCA
from detectors.reference import UnivariateReference
from detectors.result import FeatureTestResult
from monitor.config import EMBEDDING_TESTS, PREDICTION_TESTS, Config
from monitor.pipeline.embed import EmbedderIdentity, EmbedderMismatch, check_compatible
from monitor.actions.explain import EMBEDDING_DISTRIBUTION
from monitor.pipeline.predictions import MIN_PREDICTIONS, FittedPredictions, PredictionWindow, class_table
from monitor.reference.store import Reference, ReferenceError
from monitor.pipeline.streams import StreamState

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class KSCalibrationPlan:
    """What a calibrated KS threshold holds for: the schedule, the promise and the columns.

    A reference stores the calibration it was built with (``fitted["calibration.ks"]``); it is
    reused only for exactly this plan and this reference's size."""

    window: int
    stride: int
    run_length: int
    block: int
    features: tuple[str, ...]

    KEY = "calibration.ks"

    @classmethod
    def from_config(cls, config: Config, features: tuple[str, ...]) -> "KSCalibrationPlan | None":
        t = config.tests
        if not t.run_length:
            return None
        return cls(config.window.size, config.evaluation_stride, t.run_length, t.run_length_block, features)

    def describe(self) -> str:
        return f"window {self.window} every {self.stride} frames, run length {self.run_length}"

    def calibrate(self, columns: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        """Arrays to store in a reference's ``fitted``: the threshold on max D and what it holds for."""
        if columns.shape[0] < self.window:
            raise ReferenceError(f"{columns.shape[0]} reference frames cannot calibrate windows of {self.window}")
        started = time.perf_counter()
        cal = calibrate_ks(columns, window=self.window, stride=self.stride, target_run_length=self.run_length,
                           resample_block=min(self.block, columns.shape[0]), seed=seed)
        log.info("calibrated KS on %d reference frames for %s in %.1f s: fires when D > %.4f (p < %.3g)",
                 columns.shape[0], self.describe(), time.perf_counter() - started, cal.statistic_threshold,
                 cal.level)
        return {self.KEY: np.array([cal.statistic_threshold, cal.level, columns.shape[0], self.window,
                                    self.stride, self.run_length, self.block], dtype=np.float64),
                f"{self.KEY}.features": np.array(self.features, dtype=str)}

    def stored(self, reference: Reference) -> tuple[float, float] | None:
        """``(threshold on max D, per-feature level)`` stored for this plan in ``reference``, if any."""
        arr = reference.fitted.get(self.KEY)
        names = reference.fitted.get(f"{self.KEY}.features")
        if arr is None or names is None:
            return None
        d, level, n_ref, window, stride, run_length, block = arr.tolist()
        if ((int(n_ref), int(window), int(stride), int(run_length), int(block))
                != (reference.n_frames, self.window, self.stride, self.run_length, self.block)
                or tuple(str(n) for n in names) != self.features):
            return None
        return d, level


class FittedReference:
    """A reference prepared once and reused for every window: sorted columns, bins and scales for
    the image statistics; with embeddings, the PCA fitted on the reference and the MMD kernel block
    of a bounded subsample of it."""

    def __init__(self, reference: Reference, feature_names: tuple[str, ...], config: Config,
                 embedder: dict[str, Any] | None):
        self.reference = reference
        self.feature_names = feature_names
        columns = reference.columns(feature_names)
        self.univariate = UnivariateReference(columns, feature_names=list(feature_names), psi_bins=config.tests.psi_bins)
        self.pca: PCA | None = None
        self.mmd: MMDReference | None = None
        self.reduced_ks: UnivariateReference | None = None
        self.predictions = FittedPredictions.from_reference(reference)  # None: built without any
        # (threshold on the largest KS statistic, per-feature level) when tests.run_length is set
        self.ks_calibration: tuple[float, float] | None = None
        plan = KSCalibrationPlan.from_config(config, feature_names)
        if plan is not None:
            self.ks_calibration = plan.stored(reference)
            if self.ks_calibration is None:  # e.g. the shared reference, at start: calibrate now
                reference.fitted.update(plan.calibrate(columns, seed=reference.version))
                self.ks_calibration = plan.stored(reference)
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
        reduced = self.pca.transform(ref.embeddings)
        # sorted once here, not per window: ks_dims compares every window with these columns
        self.reduced_ks = UnivariateReference(reduced, feature_names=[f"pc{i:02d}" for i in range(reduced.shape[1])])
        size = config.embedding.mmd_reference_size
        sample = reduced
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

    @property
    def calibration_plan(self) -> KSCalibrationPlan | None:
        return KSCalibrationPlan.from_config(self.config, self.feature_names)

    def new_detector(self) -> Hysteresis:
        h = self.config.hysteresis
        return Hysteresis(k=h.k, m=h.m, recover=h.recover)

    def check(self, reference: Reference) -> None:
        """Raise what fitting ``reference`` would raise (missing features or embeddings, another
        embedder), without building its kernel blocks."""
        reference.columns(self.feature_names)
        if set(self.active) & set(EMBEDDING_TESTS):
            FittedReference.check_embeddings(reference, self.embedder)
        plan = self.calibration_plan
        if plan is not None and plan.stored(reference) is None:
            raise ReferenceError(f"reference {reference.stream or '*'} v{reference.version} is not calibrated for "
                                 f"tests.run_length ({plan.describe()}): rebuild it with this config "
                                 "(driftmon reference build -c ...)")

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
            if fitted.ks_calibration is not None and len(window) == self.config.window.size:
                return self._calibrated_ks(fitted, window)
            return summarize(name, ref.ks(window, alpha=self._alpha(name), correction=t.correction),
                             self.feature_names)
        if name == "psi":
            return summarize(name, ref.psi(window, threshold=t.psi_threshold), self.feature_names)
        if name == "wasserstein":
            return summarize(name, ref.wasserstein(window, threshold=t.wasserstein_threshold), self.feature_names)
        if name == "mmd":
            res = fitted.mmd.test(reduced, n_permutations=self.config.embedding.mmd_permutations,
                                  alpha=self._alpha(name), seed=self._rng)
            # one feature, the distribution as a whole: every drifted test names what moved
            whole = FeatureOutcome(EMBEDDING_DISTRIBUTION, float(res.statistic), float(res.p_value), bool(res.drift))
            return TestOutcome(name, float(res.statistic), float(res.p_value), float(res.threshold),
                               res.drift, "none", res.p_value_note, (whole,))
        if name == "ks_dims":  # KS per principal component, Bonferroni across them (Rabanser et al. 2019)
            dims = fitted.reduced_ks
            return summarize(name, dims.ks(reduced, alpha=self._alpha(name), correction="bonferroni"),
                             tuple(dims.feature_names))
        raise ValueError(f"unknown test {name!r}")  # pragma: no cover - the config admits no other

    def _calibrated_ks(self, fitted: FittedReference, window: np.ndarray) -> TestOutcome:
        """KS against the threshold calibrated for the run length: a feature drifts when its statistic
        exceeds it, i.e. when its raw p-value is below the calibrated level."""
        d_max, level = fitted.ks_calibration
        res = fitted.univariate.ks(window, correction="none")
        stat, p = np.asarray(res.statistic, dtype=float), np.asarray(res.p_value, dtype=float)
        features = tuple(FeatureOutcome(f, float(stat[i]), float(p[i]), bool(stat[i] > d_max))
                         for i, f in enumerate(self.feature_names))
        return TestOutcome(
            name="ks", statistic=float(stat.max()), p_value=float(p.min()), threshold=level,
            drift=any(f.drift for f in features), correction="calibrated",
            p_value_note=(f"{res.p_value_note}; threshold calibrated on the reference for a mean run length "
                          f">= {self.config.tests.run_length} evaluations: fires when D > {d_max:.4g} "
                          f"(p < {level:.3g})"),
            features=features)

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
