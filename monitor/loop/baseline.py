"""The labelled baseline set (``actions.feedback.baseline``): frames from the model's healthy
operation with their labels and the predictions the model made. It gives the error a drifted
event's labelled frames are compared with, and, for class probabilities, the calibration that
turns the model's confidences into an accuracy estimate (monitor.loop.performance)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitor.actions.sinks import _control, default_label_config
from monitor.config import Config
from monitor.errors import InputError
from monitor.loop.labels import Label, Outcome, frame_outcome, summarize
from monitor.loop.performance import Calibration
from monitor.pipeline.predictions import derive


def class_names(config: Config) -> tuple[str, ...]:
    """Class index -> name for probability vectors: the labelling config's values, the order the
    pre-annotations use (monitor.actions.sinks.pre_annotations)."""
    ls = config.actions.relabel.label_studio
    return tuple(_control(ls.label_config or default_label_config(ls.labels)).values)


@dataclass(frozen=True)
class Baseline:
    """The model on its labelled baseline: each frame's outcome, and for frames with class
    probabilities their confidence and whether the top class was right."""

    outcomes: tuple[Outcome, ...]
    confidences: np.ndarray
    correct: np.ndarray

    @property
    def error(self) -> float:
        error = summarize(self.outcomes).error_rate
        return 0.0 if error is None else error

    def calibration(self) -> Calibration:
        """Confidence -> probability of being right, fitted on the baseline (the identity with
        too few frames: ``Calibration.fit``'s minimum)."""
        return Calibration.fit(self.confidences, self.correct)


def _label(i: int, row: dict) -> Label:
    """A baseline line's label (its boxes in the frame contract's ``{"label", "box"}`` form, which
    ``Label.from_dict`` reads)."""
    return Label.from_dict(
        {
            "key": f"baseline/{i}",
            "annotator": "baseline",
            "annotation_id": str(i),
            "updated_at": 0.0,
            "classes": [row["label"]] if "label" in row else None,
            "boxes": row.get("boxes"),
        }
    )


def read_baseline(config: Config) -> Baseline | None:
    """``actions.feedback.baseline``: JSONL, one frame per line, ``{"predictions": <frame
    contract>, "label": "<class>"}`` or ``{..., "boxes": [{"label", "box": [x0, y0, x1, y1]}]}``;
    None when none is registered. A file that cannot be used fails the start, naming the line."""
    fb = config.actions.feedback
    if not fb.baseline:
        return None
    names = class_names(config)
    outcomes, confidences, correct = [], [], []
    try:
        lines = Path(fb.baseline).read_text().splitlines()
    except OSError as e:
        raise InputError(f"actions.feedback.baseline: {e}") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            label = _label(i, row)
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                f"actions.feedback.baseline: {fb.baseline} line {i + 1}: {e}"
            ) from None
        outcome = frame_outcome(row.get("predictions"), label, names, fb.iou, fb.min_score)
        if outcome is None:
            continue
        outcomes.append(outcome)
        p = derive(row.get("predictions"))
        if outcome.kind == "class" and p is not None and p.probs is not None:
            confidences.append(p.confidence)
            correct.append(outcome.correct)
    if not outcomes:
        raise InputError(f"actions.feedback.baseline: {fb.baseline} has no frame with predictions")
    return Baseline(tuple(outcomes), np.asarray(confidences), np.asarray(correct, dtype=bool))
