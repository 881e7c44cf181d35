"""Everything derived from a reference's frames, in two steps.

1. :func:`fit_reference` fits what a reference *stores*, once: the PCA of its embeddings and the
   calibrated thresholds the configuration asks for (``tests.run_length``). It returns a new
   :class:`~monitor.reference.store.Reference`; a reference is never changed after it. ``driftmon
   reference build`` and ``promote`` run it, and so does the daemon at start for a shared reference
   built without it. Deterministic: the same frames and configuration give the same arrays.
2. :class:`PreparedReference` builds what the tests *keep in memory* for every window of a stream
   (sorted columns, histogram bins, the MMD kernel block of a seeded subsample), once per reference
   version, in the daemon and in ``driftmon check``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np

from detectors.calibration import calibrate_ks
from detectors.mmd import MMDReference
from detectors.reduce import PCA
from detectors.reference import UnivariateReference
from monitor.config import Config
from monitor.pipeline.predictions import FittedPredictions
from monitor.reference.store import BadReference, Calibration, Reference

log = logging.getLogger(__name__)

#: Every random draw of fitting (calibration streams, the MMD subsample) starts from this seed, so
#: the same reference fits the same way wherever it is fitted.
SEED = 0


@dataclass(frozen=True)
class CalibrationPlan:
    """What a calibrated KS threshold holds for: the schedule, the promise and the columns.
    A stored calibration is used only for exactly this plan and the reference's size."""

    window: int
    stride: int
    run_length: int
    block: int
    features: tuple[str, ...]

    @classmethod
    def from_config(cls, config: Config, features: tuple[str, ...]) -> CalibrationPlan | None:
        t = config.tests
        if not t.run_length:
            return None
        return cls(config.window.size, config.evaluation_stride, t.run_length, t.run_length_block, features)

    def describe(self) -> str:
        return f"window {self.window} every {self.stride} frames, run length {self.run_length}"

    def matches(self, cal: Calibration, n_ref: int) -> bool:
        return ((cal.window, cal.stride, cal.run_length, cal.block, cal.features, cal.n_ref)
                == (self.window, self.stride, self.run_length, self.block, self.features, n_ref))

    def stored(self, reference: Reference) -> Calibration | None:
        """The calibration stored in ``reference`` for exactly this plan, if any."""
        cal = reference.calibration("ks")
        return cal if cal is not None and self.matches(cal, reference.n_frames) else None

    def calibrate(self, reference: Reference) -> Calibration:
        columns = reference.columns(self.features)
        if columns.shape[0] < self.window:
            raise BadReference(f"{columns.shape[0]} reference frames cannot calibrate windows of {self.window}")
        started = time.perf_counter()
        res = calibrate_ks(columns, window=self.window, stride=self.stride, target_run_length=self.run_length,
                           resample_block=min(self.block, columns.shape[0]), seed=SEED)
        log.info("calibrated KS on %d reference frames for %s in %.1f s: fires when D > %.4f (p < %.3g)",
                 columns.shape[0], self.describe(), time.perf_counter() - started, res.statistic_threshold, res.level)
        return Calibration("ks", float(res.statistic_threshold), float(res.level), self.window, self.stride,
                           self.run_length, self.block, columns.shape[0], self.features)


def tested_features(config: Config, all_features: tuple[str, ...]) -> tuple[str, ...]:
    """The image statistics the tests look at: ``tests.features``, or every one."""
    return tuple(config.tests.features) or all_features


def pca_components(config: Config, embeddings: np.ndarray) -> int:
    """Principal components kept: the configured number, at most the embedding's dimension and one
    fewer than the reference's frames."""
    return min(config.embedding.pca_components, embeddings.shape[1], len(embeddings) - 1)


def fit_reference(reference: Reference, config: Config) -> Reference:
    """``reference`` with everything the configuration needs fitted on it: the PCA of its embeddings
    (when it has embeddings and no PCA yet) and the KS calibration for the daemon's schedule (when
    ``tests.run_length`` asks for one it does not hold). Returns the same object when nothing was
    missing, else a new one."""
    changes: dict[str, object] = {}
    emb = reference.embeddings
    if emb is not None and reference.pca is None and len(emb) >= 2:
        changes["pca"] = PCA().fit(emb, pca_components(config, emb))
    plan = CalibrationPlan.from_config(config, tested_features(config, reference.feature_names))
    if plan is not None and plan.stored(reference) is None:
        kept = tuple(c for c in reference.calibrations if c.test != "ks")
        changes["calibrations"] = (*kept, plan.calibrate(reference))
    return dataclasses.replace(reference, **changes) if changes else reference


class PreparedReference:
    """A fitted reference made ready for every window of its streams: sorted columns, bins and
    scales for the image statistics; with embeddings, the per-component sorted columns and the MMD
    kernel block of a bounded, seeded subsample; the model outputs' summaries."""

    def __init__(self, reference: Reference, feature_names: tuple[str, ...], config: Config, *,
                 embeddings: bool):
        self.reference = reference
        self.feature_names = feature_names
        self.univariate = UnivariateReference(reference.columns(feature_names), feature_names=list(feature_names),
                                              psi_bins=config.tests.psi_bins)
        plan = CalibrationPlan.from_config(config, feature_names)
        self.ks_calibration = plan.stored(reference) if plan is not None else None
        self.predictions = FittedPredictions(reference.predictions) if reference.predictions is not None else None
        self.pca: PCA | None = None
        self.mmd: MMDReference | None = None
        self.reduced_ks: UnivariateReference | None = None
        if embeddings and reference.embeddings is not None and reference.pca is not None:
            self.pca = reference.pca
            reduced = self.pca.transform(reference.embeddings)
            # sorted once here, not per window: ks_dims compares every window with these columns
            self.reduced_ks = UnivariateReference(reduced, feature_names=[f"pc{i:02d}" for i in range(reduced.shape[1])])
            size = config.embedding.mmd_reference_size
            sample = reduced
            if len(sample) > size:  # seeded, so a restart prepares the same kernel block
                sample = sample[np.random.default_rng(SEED).choice(len(sample), size, replace=False)]
            self.mmd = MMDReference(sample, dtype="float32")

    @property
    def stream(self) -> str:
        return self.reference.stream or "*"
