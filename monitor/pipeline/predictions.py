"""The deployed model's outputs (a frame's ``predictions``), reduced to what the drift tests use.

A frame may carry ``{"probs": [p0, p1, ...]}`` (a class-probability vector) or
``{"detections": [{"label": ..., "score": ..., "box": [...]}, ...]}``. Per frame this keeps:

- the predicted class: for ``probs`` the index of the largest probability, written as its decimal
  string (``"0"``, ``"1"``, ...); for ``detections`` the ``label`` of the highest-scoring detection
  (a frame with an empty detection list has the class ``"<none>"`` and no confidence);
- the confidence: the largest probability, or the top detection's score;
- for ``probs``, the vector itself (for the per-class KS test).

A reference stores these aligned with its frames
(:class:`~monitor.reference.store.ReferencePredictions`: class codes into its label vocabulary, -1
where a frame had no predictions; confidences, NaN where none; probability vectors, NaN rows where
none). Malformed predictions count as none: the model's output never stops the pipeline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.files import JSONObject
from monitor.reference.store import ReferencePredictions

NO_DETECTION = "<none>"
# Fewer frames with predictions than this, in the reference or the window: the tests are skipped.
MIN_PREDICTIONS = 10
MAX_CLASSES = 100_000


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float  # NaN when there is none (no detection)
    probs: np.ndarray | None = None  # float32 (K,), for probability vectors


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def derive(predictions: JSONObject | None) -> Prediction | None:
    """A frame's predicted class, confidence and probability vector; None without (usable) ones."""
    if not isinstance(predictions, dict):
        return None
    probs = predictions.get("probs")
    if probs is not None:
        if not isinstance(probs, list) or not 1 <= len(probs) <= MAX_CLASSES:
            return None
        values = [_number(p) for p in probs]
        if any(v is None for v in values):
            return None
        vector = np.asarray(values, dtype=np.float32)
        k = int(np.argmax(vector))
        return Prediction(str(k), float(vector[k]), vector)
    detections = predictions.get("detections")
    if detections is not None:
        if not isinstance(detections, list):
            return None
        best: tuple[float, str] | None = None
        for d in detections:
            if not isinstance(d, dict):
                return None
            score, label = _number(d.get("score")), d.get("label")
            if score is None or label is None or isinstance(label, (dict, list)):
                return None
            if best is None or score > best[0]:
                best = (score, str(label))
        if best is None:
            return Prediction(NO_DETECTION, math.nan)
        return Prediction(best[1], best[0])
    return None


@dataclass(frozen=True)
class PredictionWindow:
    """Predictions of a window's frames, oldest first, aligned with its rows (None: no
    predictions)."""

    items: list[Prediction | None]

    @property
    def n(self) -> int:
        return sum(p is not None for p in self.items)

    def labels(self) -> list[str]:
        return [p.label for p in self.items if p is not None]

    def confidences(self) -> np.ndarray:
        c = np.array([p.confidence for p in self.items if p is not None], dtype=np.float64)
        return c[np.isfinite(c)]

    def probs(self, k: int) -> np.ndarray:
        """The probability vectors of length ``k`` (others are ignored), one row per frame."""
        rows = [
            p.probs
            for p in self.items
            if p is not None and p.probs is not None and len(p.probs) == k
        ]
        return np.vstack(rows).astype(np.float64) if rows else np.zeros((0, k))


def reference_predictions(items: list[Prediction | None]) -> ReferencePredictions | None:
    """What a reference keeps of its frames' predictions, aligned with them; None when no frame
    had any."""
    if not any(p is not None for p in items):
        return None
    vocab = sorted({p.label for p in items if p is not None})
    code = {label: i for i, label in enumerate(vocab)}
    classes = np.array([code[p.label] if p is not None else -1 for p in items], dtype=np.int32)
    confidences = np.array(
        [p.confidence if p is not None else np.nan for p in items], dtype=np.float32
    )
    probs = None
    sizes = {len(p.probs) for p in items if p is not None and p.probs is not None}
    if sizes:
        k = max(
            sizes,
            key=lambda s: sum(
                1 for p in items if p is not None and p.probs is not None and len(p.probs) == s
            ),
        )  # the most common size
        probs = np.full((len(items), k), np.nan, dtype=np.float32)
        for i, p in enumerate(items):
            if p is not None and p.probs is not None and len(p.probs) == k:
                probs[i] = p.probs
    return ReferencePredictions(classes, tuple(vocab), confidences, probs)


class FittedPredictions:
    """A reference's predictions, ready for the tests: the frames that had them."""

    def __init__(self, predictions: ReferencePredictions):
        codes = np.asarray(predictions.classes)
        self.labels = [predictions.labels[c] for c in codes[codes >= 0]]
        conf = np.asarray(predictions.confidences, dtype=np.float64)
        self.confidences = conf[np.isfinite(conf)]
        self.probs: np.ndarray | None = None
        if predictions.probs is not None:
            p = np.asarray(predictions.probs, dtype=np.float64)
            self.probs = p[~np.isnan(p).any(axis=1)]


def class_table(
    ref_labels: list[str], cur_labels: list[str], min_expected: float = 5.0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Integer codes for the reference's and the window's predicted classes, with the classes rare
    in the reference (expected count in the window below ``min_expected``) and the classes the
    reference never saw pooled into one category ``"<other>"``, so the chi-square approximation
    holds for small windows and a new class still counts."""
    counts: dict[str, int] = {}
    for label in ref_labels:
        counts[label] = counts.get(label, 0) + 1
    scale = len(cur_labels) / max(1, len(ref_labels))
    kept = sorted(label for label, c in counts.items() if c * scale >= min_expected)
    code = {label: i for i, label in enumerate(kept)}
    other = len(kept)
    ref = np.array([code.get(label, other) for label in ref_labels], dtype=np.int64)
    cur = np.array([code.get(label, other) for label in cur_labels], dtype=np.int64)
    return ref, cur, kept + ["<other>"]
