"""A classifier's outputs with a known calibration, for the tests and the benchmark of
:mod:`monitor.loop.performance`.

Each frame gets a K-class probability vector whose largest entry (the confidence ``c``) is drawn
from a Beta distribution stretched over ``[1/K, 1]``, and a true label drawn so that the predicted
class is right with probability ``reliability(c)``. ``reliability`` is the ground truth that a
confidence-based estimate has to get right: the identity for a perfectly calibrated model
(``P(correct | c) = c``), ``c ** 2`` for an overconfident one. Shifts are spelled by the caller: a
per-frame ``mean_confidence`` (inputs get harder, confidences move down, the calibration holds)
or a different ``reliability`` for a later segment (concept shift: the same confidences mean
something else).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Reliability = Callable[[np.ndarray], np.ndarray]


def calibrated(c: np.ndarray) -> np.ndarray:
    """A perfectly calibrated model: right with probability equal to its confidence."""
    return np.asarray(c, dtype=np.float64)


def overconfident(power: float = 2.0) -> Reliability:
    """A model right with probability ``c ** power`` at confidence ``c`` (power > 1: it claims
    more than it delivers, like an unscaled network trained to zero loss)."""

    def reliability(c: np.ndarray) -> np.ndarray:
        return np.asarray(c, dtype=np.float64) ** power

    return reliability


@dataclass(frozen=True)
class ModelOutputs:
    """Per frame: the probability vector, the predicted and true class, whether the prediction is
    right, and the true probability that it is (``reliability(confidence)``)."""

    probs: np.ndarray  # (n, K) float64, rows sum to 1
    predicted: np.ndarray  # (n,) int64, argmax of probs
    labels: np.ndarray  # (n,) int64, the true class
    correct: np.ndarray  # (n,) bool
    p_correct: np.ndarray  # (n,) float64, the ground truth P(correct | confidence)

    @property
    def confidences(self) -> np.ndarray:
        return self.probs.max(axis=1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: slice) -> ModelOutputs:
        return ModelOutputs(
            self.probs[index],
            self.predicted[index],
            self.labels[index],
            self.correct[index],
            self.p_correct[index],
        )


def simulate(
    n: int,
    rng: np.random.Generator,
    *,
    classes: int = 10,
    mean_confidence: float | np.ndarray = 0.8,
    concentration: float = 8.0,
    reliability: Reliability = calibrated,
) -> ModelOutputs:
    """``n`` frames of a ``classes``-way classifier; ``mean_confidence`` (a float or one value per
    frame, in ``(1/K, 1)``) is the mean of the confidence, ``concentration`` the Beta's
    ``a + b`` (larger: confidences closer to their mean)."""
    if classes < 2:
        raise ValueError("classes must be at least 2")
    floor = 1.0 / classes
    mean = np.broadcast_to(np.asarray(mean_confidence, dtype=np.float64), (n,))
    if np.any(mean <= floor) or np.any(mean >= 1.0):
        raise ValueError(f"mean_confidence must lie in ({floor}, 1)")
    m = (mean - floor) / (1.0 - floor)
    c = floor + (1.0 - floor) * rng.beta(m * concentration, (1.0 - m) * concentration)
    c = np.clip(c, floor + 1e-6, 1.0 - 1e-9)
    # The rest of the mass over the other K-1 classes: a flat Dirichlet draw, pulled towards the
    # even split just enough that no other class reaches the confidence.
    rest = 1.0 - c
    w = rng.dirichlet(np.ones(classes - 1), size=n)
    even = rest / (classes - 1)
    top = w.max(axis=1) * rest
    room = 0.999 * (c - even)
    pull = np.where(top - even > room, room / np.maximum(top - even, 1e-300), 1.0)
    others = rest[:, None] * (pull[:, None] * w + (1.0 - pull[:, None]) / (classes - 1))
    predicted = rng.integers(0, classes, size=n)
    probs = np.empty((n, classes))
    rows = np.arange(n)
    probs[rows, predicted] = c
    # The other classes in turn after the predicted one (the Dirichlet draw is exchangeable).
    cols = (predicted[:, None] + 1 + np.arange(classes - 1)) % classes
    probs[rows[:, None], cols] = others
    p_correct = np.clip(reliability(c), 0.0, 1.0)
    correct = rng.random(n) < p_correct
    wrong = (predicted + rng.integers(1, classes, size=n)) % classes
    labels = np.where(correct, predicted, wrong)
    return ModelOutputs(probs, predicted, labels, correct, p_correct)


def concatenate(parts: list[ModelOutputs]) -> ModelOutputs:
    """Segments one after another (a stream whose reliability changes at a boundary)."""
    return ModelOutputs(
        np.concatenate([p.probs for p in parts]),
        np.concatenate([p.predicted for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.correct for p in parts]),
        np.concatenate([p.p_correct for p in parts]),
    )
