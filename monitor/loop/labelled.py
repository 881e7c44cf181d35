"""What the labels of a drift event's queued frames say: how wrong the model was on them, beside
a baseline, and how far two annotators of the same frame agree. It rides on the event
(``DriftEvent.labelled``) and from there on the tickets that link the event."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from monitor.files import JSONObject


def percent(x: float) -> str:
    return f"{100 * x:.0f}%"


@dataclass(frozen=True)
class Labelled:
    """Figures from the labels of one event's frames; None where not computable (no frame with
    both a label and the model's predictions, no frame labelled twice)."""

    frames: int  # queued frames with at least one label
    annotations: int  # labels taken in (two annotators of a frame count twice)
    first_at: float  # when the first label came back
    updated_at: float
    kind: str = ""  # "class" or "boxes": what the model's error counts
    measured: int = 0  # labelled frames that carried the model's predictions
    model_error: float | None = None  # class error rate, or object-level error for boxes
    baseline_error: float | None = None  # the same figure on the registered baseline set
    agreement_frames: int = 0  # frames labelled by two annotators
    kappa: float | None = None  # Cohen's kappa of their classes
    box_iou: float | None = None  # mean IoU of their matched boxes
    estimated_accuracy: float | None = None  # from the frames' confidences, before any label
    # the confidences checked against the labels (monitor.loop.performance.check_calibration):
    # False means the estimate is not to be trusted on this drift
    calibrated: bool | None = None
    ece: float | None = None  # expected calibration error on these frames

    def text(self) -> str:
        """One line for a ticket: "model error on the drifted frames: 38% vs 6% baseline (...)"."""
        parts = [f"{self.frames} queued frame(s) labelled"]
        if self.model_error is not None:
            what = "error" if self.kind == "class" else "object error (IoU matching)"
            said = f"model {what} on the drifted frames: {percent(self.model_error)}"
            if self.baseline_error is not None:
                said += f" vs {percent(self.baseline_error)} baseline"
            said += f" ({self.measured} frame(s))"
            if self.estimated_accuracy is not None:
                said += f"; estimated from confidences: {percent(1 - self.estimated_accuracy)}"
                if self.calibrated is False:
                    said += " (the confidences are miscalibrated here: do not trust the estimate)"
            parts.append(said)
        if self.agreement_frames:
            agreed = [
                f"kappa {self.kappa:.2f}" if self.kappa is not None else "",
                f"box IoU {self.box_iou:.2f}" if self.box_iou is not None else "",
            ]
            parts.append(
                f"annotator agreement over {self.agreement_frames} frame(s) labelled twice: "
                + (", ".join(a for a in agreed if a) or "n/a")
            )
        return "; ".join(parts)

    def to_dict(self) -> JSONObject:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: JSONObject) -> Labelled:
        return cls(**d)
