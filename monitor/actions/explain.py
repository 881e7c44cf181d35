"""What moved, in words a person understands and in units of the reference's own spread.

An evaluation names (test, feature) pairs; a feature is one of three kinds, and each is described
and measured in its own space:

- ``statistics``: an image statistic (``brightness_mean``); its shift is the window mean against
  the reference mean, in reference standard deviations (``z``);
- ``embeddings``: the embedding distribution as a whole (MMD, feature ``embeddings``) or one
  principal component of the reference-fitted PCA (``ks_dims``, features ``pc00``, ``pc01``...);
  a component's shift is measured like a statistic's, on the projected embeddings;
- ``predictions``: the deployed model's outputs — the predicted-class mix (``predicted_class``),
  its confidence (``confidence``), one class's probability (``class_3``).

Used when a drift event opens (its ``fired`` and ``shifts``), by the report, the contact sheet's
captions and the refresh ticket, so every place names a drift the same way.

Examples
--------
>>> describe("ks", "brightness_mean")
'mean brightness'
>>> describe("ks_dims", "pc02")
'principal component 3 of the embeddings'
>>> describe("mmd", "embeddings")
'the embedding distribution (MMD)'
>>> describe("pred_class", "predicted_class")
'the predicted-class mix'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from monitor.files import JSONObject
from monitor.pipeline.drift_tests import (
    EDGE_LAYOUT,
    EMBEDDINGS,
    LAYOUTS,
    PREDICTIONS,
    STATISTICS,
    FeatureOutcome,
    kind_of,
)

if TYPE_CHECKING:
    from monitor.pipeline.streams import WindowSnapshot

#: Image statistic -> what it measures, in a few words (docs/features.md has the definitions).
STATISTIC_WORDS = {
    "brightness_mean": "mean brightness",
    "brightness_std": "brightness spread",
    "contrast_rms": "contrast",
    "saturation_mean": "colour saturation",
    "hue_cos": "colour cast (hue, cosine)",
    "hue_sin": "colour cast (hue, sine)",
    "red_share": "red share of the colour balance",
    "green_share": "green share of the colour balance",
    "blue_share": "blue share of the colour balance",
    "sharpness_laplacian_var": "sharpness",
    "noise_sigma": "sensor noise",
    "luma_entropy": "brightness entropy (scene detail)",
    "edge_density": "edge density",
    "underexposed_fraction": "share of under-exposed pixels",
    "overexposed_fraction": "share of blown-out pixels",
    "colourfulness": "colourfulness",
    "width": "frame width",
    "height": "frame height",
    "aspect_ratio": "aspect ratio",
    "encoded_bytes_per_pixel": "encoded size per pixel (compression)",
    "orientation_entropy": "mix of edge directions (the view's layout)",
    EDGE_LAYOUT: "where the view's edges are (their alignment with the reference's)",
}


def component_index(feature: str) -> int | None:
    """``pc03`` -> 3; None for anything that is not a principal component's name."""
    if feature.startswith("pc") and feature[2:].isdigit():
        return int(feature[2:])
    return None


def describe(test: str, feature: str) -> str:
    """``feature`` of ``test`` in words."""
    kind = kind_of(test)
    if kind == EMBEDDINGS:
        pc = component_index(feature)
        if pc is not None:
            return f"principal component {pc + 1} of the embeddings"
        return "the embedding distribution (MMD)" if test == "mmd" else f"the embeddings ({test})"
    if kind == PREDICTIONS:
        if feature == "predicted_class":
            return "the predicted-class mix"
        if feature == "confidence":
            return "the model's confidence"
        if feature.startswith("class_"):
            return f"the model's probability of class {feature[len('class_') :]}"
        return f"the model's outputs ({feature})"
    return STATISTIC_WORDS.get(feature, feature)


@dataclass(frozen=True)
class MeanShift:
    """The window's mean against the reference's, in reference standard deviations (``z``; None
    when the reference does not vary)."""

    window_mean: float
    reference_mean: float
    reference_std: float
    z: float | None


@dataclass(frozen=True)
class ClassShare:
    """One class's share of the predictions, in the reference and in the window."""

    label: str  # "class" in JSON
    reference_share: float
    window_share: float

    def to_dict(self) -> JSONObject:
        return {
            "class": self.label,
            "reference_share": self.reference_share,
            "window_share": self.window_share,
        }


@dataclass(frozen=True)
class Shift:
    """How far one drifted feature moved, measured in its own space, with what it is called.

    ``mean``: for image statistics, principal components, confidences and class probabilities;
    ``shares``: for the predicted-class mix; neither for what cannot be measured so (MMD). In JSON
    the mean's fields sit beside the others and a part the feature lacks is absent.
    """

    test: str
    kind: str
    what: str
    statistic: float
    p_value: float | None
    mean: MeanShift | None = None
    shares: tuple[ClassShare, ...] | None = None

    @property
    def z(self) -> float | None:
        """The window mean's shift in reference standard deviations, when measured."""
        return None if self.mean is None else self.mean.z

    def to_dict(self) -> JSONObject:
        out = {
            "test": self.test,
            "kind": self.kind,
            "what": self.what,
            "statistic": self.statistic,
            "p_value": self.p_value,
        }
        if self.mean is not None:
            out |= asdict(self.mean)
        if self.shares is not None:
            out["shares"] = [s.to_dict() for s in self.shares]
        return out

    @classmethod
    def from_dict(cls, d: JSONObject) -> Shift:
        mean = (
            MeanShift(d["window_mean"], d["reference_mean"], d["reference_std"], d["z"])
            if "window_mean" in d
            else None
        )
        shares = (
            tuple(
                ClassShare(s["class"], s["reference_share"], s["window_share"]) for s in d["shares"]
            )
            if "shares" in d
            else None
        )
        return cls(d["test"], d["kind"], d["what"], d["statistic"], d["p_value"], mean, shares)


def _z_shift(window: np.ndarray, reference: np.ndarray) -> MeanShift:
    """Window mean against the reference's mean, in reference standard deviations."""
    mu, sd = float(np.mean(reference)), float(np.std(reference))
    wm = float(np.mean(window))
    return MeanShift(wm, mu, sd, (wm - mu) / sd if sd > 0 else None)


def measure(test: str, feature: str, outcome: FeatureOutcome, snapshot: WindowSnapshot) -> Shift:
    """How far ``feature`` of ``test`` moved on ``snapshot``, with what it is called; the parts a
    kind cannot measure are None. ``outcome`` is the feature's outcome on that window."""
    kind = kind_of(test)
    mean: MeanShift | None = None
    shares: tuple[ClassShare, ...] | None = None
    prepared = snapshot.prepared
    if kind == STATISTICS and feature in snapshot.feature_names:
        i = snapshot.feature_names.index(feature)
        mean = _z_shift(
            np.asarray(snapshot.rows)[:, i], prepared.reference.columns((feature,))[:, 0]
        )
    elif kind == EMBEDDINGS:
        pc = component_index(feature)
        ref_embeddings = prepared.reference.embeddings  # there whenever prepared.pca is
        if (
            pc is not None
            and prepared.pca is not None
            and ref_embeddings is not None
            and snapshot.embeddings is not None
        ):
            cur = prepared.pca.transform(np.asarray(snapshot.embeddings, dtype=np.float32))[:, pc]
            ref = prepared.pca.transform(ref_embeddings)[:, pc]
            mean = _z_shift(cur, ref)
    elif kind == LAYOUTS and snapshot.layouts is not None and prepared.template is not None:
        mean = _z_shift(prepared.alignment(snapshot.layouts), prepared.reference_alignment)
    elif (
        kind == PREDICTIONS
        and prepared.predictions is not None
        and snapshot.predictions is not None
    ):
        ref_p, cur_p = prepared.predictions, snapshot.predictions
        if feature == "confidence" and len(ref_p.confidences) and len(cur_p.confidences()):
            mean = _z_shift(cur_p.confidences(), ref_p.confidences)
        elif feature == "predicted_class":
            shares = class_shares(ref_p.labels, cur_p.labels())
        elif feature.startswith("class_") and ref_p.probs is not None:
            k = int(feature[len("class_") :])
            cur = cur_p.probs(ref_p.probs.shape[1])
            if len(cur) and k < ref_p.probs.shape[1]:
                mean = _z_shift(cur[:, k], ref_p.probs[:, k])
    return Shift(
        test, kind, describe(test, feature), outcome.statistic, outcome.p_value, mean, shares
    )


def class_shares(
    ref_labels: list[str], cur_labels: list[str], top: int = 5
) -> tuple[ClassShare, ...]:
    """The classes whose share of predictions changed most, reference -> window."""
    if not ref_labels or not cur_labels:
        return ()
    labels = sorted(set(ref_labels) | set(cur_labels))
    ref = {lab: 0 for lab in labels}
    cur = dict(ref)
    for lab in ref_labels:
        ref[lab] += 1
    for lab in cur_labels:
        cur[lab] += 1
    rows = [
        ClassShare(lab, ref[lab] / len(ref_labels), cur[lab] / len(cur_labels)) for lab in labels
    ]
    rows.sort(key=lambda r: -abs(r.window_share - r.reference_share))
    return tuple(rows[:top])
