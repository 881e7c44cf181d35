"""What the data loop watches on every evaluated window, beside the drift tests: the share of the
window the training set covers, the model's accuracy estimated from its confidences, and the age
of the reference the window was judged against."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from monitor.config import Config
from monitor.errors import ConfigError
from monitor.loop.baseline import read_baseline
from monitor.loop.coverage import (
    TrainingCoverage,
    coverage_of,
    coverage_statistics,
    load_training,
)
from monitor.loop.freshness import data_time
from monitor.loop.performance import estimate_window
from monitor.pipeline.embed import EmbedderIdentity, EmbedderMismatch, check_compatible
from monitor.pipeline.features import FEATURE_NAMES
from monitor.pipeline.predictions import PredictionWindow
from monitor.reference.store import BadReference, Reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopFigures:
    """One window's figures; None where the window lacks what a figure needs."""

    coverage: float | None  # share of the window's frames the training set covers
    covered: np.ndarray | None  # per frame, aligned with the window
    estimated_accuracy: float | None  # from the confidences of frames with class probabilities
    reference_time: float  # newest frame of the reference (freshness.data_time)


class LoopWatch:
    """The training set's coverage, fitted once at start, and the per-window figures."""

    def __init__(self, config: Config, embedder: EmbedderIdentity | None):
        self.config = config
        self.training: Reference | None = load_training(config)
        self.coverage: TrainingCoverage | None = None
        # with a labelled baseline, confidences are read through its calibration
        baseline = read_baseline(config)
        self.calibration = None if baseline is None else baseline.calibration()
        self._statistics: list[int] = []  # columns of a window's rows that coverage compares
        if self.training is None:
            return
        where = f"training.path: training reference v{self.training.version}"
        if not config.embedding.enabled:
            raise ConfigError(f"{where}: coverage needs embeddings, but embedding.enabled is false")
        if self.training.embeddings is None or self.training.embedder is None:
            raise ConfigError(f"{where} has no embeddings: rebuild it with embedding enabled")
        if embedder is not None:
            try:
                check_compatible(EmbedderIdentity.from_dict(self.training.embedder), embedder)
            except EmbedderMismatch as e:
                raise ConfigError(f"{where}: {e}") from None
        try:
            self.coverage = coverage_of(self.training, config)
        except BadReference as e:  # a training set without today's image statistics
            raise ConfigError(f"{where}: {e} (driftmon training build)") from None
        compared = coverage_statistics(self.training)
        self._statistics = [FEATURE_NAMES.index(n) for n in compared]
        lacking = [n for n in FEATURE_NAMES if n not in compared]
        if lacking:
            log.warning(
                "%s was built before the image statistic(s) %s existed: coverage compares the "
                "others; rebuild it (driftmon training build) to use them",
                where,
                lacking,
            )

    @property
    def training_time(self) -> float | None:
        return None if self.training is None else data_time(self.training)

    def observe(
        self,
        reference: Reference,
        rows: np.ndarray,
        embeddings: np.ndarray | None,
        predictions: PredictionWindow | None,
    ) -> LoopFigures:
        """The window's figures: ``rows`` its image statistics (``FEATURE_NAMES``), with its
        embeddings and model outputs where it has them."""
        covered = None
        if self.coverage is not None and embeddings is not None and len(embeddings):
            covered = self.coverage.covered(embeddings, rows[:, self._statistics])
        estimate = None if predictions is None else estimate_window(predictions, self.calibration)
        return LoopFigures(
            coverage=None if covered is None else float(covered.mean()),
            covered=covered,
            estimated_accuracy=estimate,
            reference_time=data_time(reference),
        )
