"""Labels that come back from the relabel queue, and what they say about the deployed model.

Annotators answer each queued frame in Label Studio or CVAT; an answer becomes a :class:`Label`
(the frame's ``driftmon_key``, who answered, when, and the chosen classes or boxes in pixels).
From labels and the predictions the model made on those frames:

- :func:`frame_outcome` / :func:`summarize`: the model's error on the labelled frames (class
  error rate; for boxes, FP + FN over TP + FP + FN after greedy IoU matching);
- :func:`agreement`: how far two annotators of one frame agree (Cohen's kappa over classes, mean
  IoU of matched boxes): the noise floor below which a model error cannot be told apart.

Pure logic: nothing here talks to a server; :func:`read_cvat_export` only reads files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from monitor.errors import InputError

log = logging.getLogger(__name__)

OutcomeKind = Literal["class", "boxes"]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of the original image."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap or both are empty)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    inter = max(0.0, w) * max(0.0, h)
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Label:
    """One annotator's answer on one frame.

    ``classes``: the chosen classes (a classification config), None when the answer has none;
    ``boxes``: the drawn boxes, None when the answer is not a box answer; an empty tuple is an
    answer too ("no object here").
    """

    key: str  # the frame's driftmon_key: "<camera>/<frame>"
    annotator: str
    annotation_id: str
    updated_at: float  # epoch seconds
    classes: tuple[str, ...] | None = None
    boxes: tuple[Box, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "annotator": self.annotator,
            "annotation_id": self.annotation_id,
            "updated_at": self.updated_at,
            "classes": None if self.classes is None else list(self.classes),
            "boxes": None if self.boxes is None else [dataclasses.asdict(b) for b in self.boxes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Label:
        boxes = d.get("boxes")
        classes = d.get("classes")
        return cls(
            key=str(d["key"]),
            annotator=str(d["annotator"]),
            annotation_id=str(d["annotation_id"]),
            updated_at=float(d["updated_at"]),
            classes=None if classes is None else tuple(str(c) for c in classes),
            boxes=None if boxes is None else tuple(_box(b) for b in boxes),
        )


def _box(d: dict[str, Any]) -> Box:
    """A box from ``{"label", "x0", "y0", "x1", "y1"}`` or the frame contract's ``{"label", "box":
    [x0, y0, x1, y1]}``."""
    corners = d["box"] if "box" in d else [d[k] for k in ("x0", "y0", "x1", "y1")]
    x0, y0, x1, y1 = (float(v) for v in corners)
    return Box(str(d["label"]), x0, y0, x1, y1)


# --- reading labels --------------------------------------------------------------------------


def _epoch(text: Any) -> float | None:
    """An ISO 8601 time as Label Studio and CVAT write it ("...Z" or an offset) in epoch s."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _annotator(completed_by: Any) -> str:
    """Label Studio's ``completed_by``: a user id in the API and webhooks, a user object in some
    exports."""
    if isinstance(completed_by, dict):
        return str(completed_by.get("email") or completed_by.get("id") or "")
    return "" if completed_by is None else str(completed_by)


def label_from_label_studio(task: dict[str, Any], annotation: dict[str, Any]) -> Label | None:
    """One Label Studio annotation of a driftmon task as a :class:`Label`.

    ``choices`` results give the classes; ``rectanglelabels`` results the boxes, converted from
    Label Studio's percent of ``original_width``/``original_height`` to pixels (a rectangle's
    ``rotation`` is not applied: driftmon's boxes are axis-aligned; a rectangle without the
    original size is dropped, it cannot be put in pixels). An annotation with no result at all is
    an empty box answer (nothing to box). None for a cancelled (skipped) annotation and for a task
    driftmon did not create (no ``data.driftmon_key``).
    """
    key = (task.get("data") or {}).get("driftmon_key")
    if not isinstance(key, str) or annotation.get("was_cancelled"):
        return None
    classes: list[str] = []
    boxes: list[Box] = []
    kinds: set[str] = set()
    for r in annotation.get("result") or []:
        if not isinstance(r, dict):
            continue
        value = r.get("value") or {}
        kind = r.get("type")
        if kind == "choices":
            kinds.add(kind)
            classes.extend(str(c) for c in value.get("choices") or [])
        elif kind == "rectanglelabels":
            kinds.add(kind)
            nums = [r.get("original_width"), r.get("original_height")] + [
                value.get(k) for k in ("x", "y", "width", "height")
            ]
            sizes = [float(v) for v in nums if isinstance(v, (int, float))]
            if len(sizes) != len(nums):
                log.warning(
                    "label studio annotation %s: a rectangle without its size, dropped", key
                )
                continue
            w, h, px, py, pw, ph = sizes
            x, y = px * w / 100.0, py * h / 100.0
            bw, bh = pw * w / 100.0, ph * h / 100.0
            for name in value.get("rectanglelabels") or []:
                boxes.append(Box(str(name), x, y, x + bw, y + bh))
    updated = _epoch(annotation.get("updated_at")) or _epoch(annotation.get("created_at"))
    return Label(
        key=key,
        annotator=_annotator(annotation.get("completed_by")),
        annotation_id=str(annotation.get("id", "")),
        updated_at=updated or 0.0,
        classes=tuple(classes) if "choices" in kinds else None,
        boxes=tuple(boxes) if "rectanglelabels" in kinds or not kinds else None,
    )


def _image_keys(event_dir: Path) -> dict[str, str]:
    """Image name -> driftmon key, from the directory sink's ``driftmon.jsonl`` (its ``image``:
    ``images/<camera>__<frame>.<ext>``, the manifest's name and extension)."""
    path = event_dir / "driftmon.jsonl"
    if not path.exists():
        raise InputError(f"{event_dir}: no driftmon.jsonl (not a directory the relabel sink wrote)")
    keys: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            keys[r["image"]] = r["key"]
    return keys


def read_cvat_export(directory: str | Path) -> list[Label]:
    """The labels of a CVAT-for-images 1.1 export (``annotations.xml``) of an event directory
    the directory sink wrote.

    ``directory`` is the event directory (``annotations.xml`` in it) or the XML file itself, beside
    the event's ``driftmon.jsonl``. CVAT names an image as it was imported: ``images/<stem>.<ext>``
    from the manifest, or its bare file name when the images were uploaded alone; both map back to
    the frame's key. ``<box>`` elements are boxes (pixels already), ``<tag>`` elements classes; an
    image with neither is an empty box answer (CVAT exports no "not labelled yet" mark). The
    annotator is the task's assignee (else its owner), the time the export's ``updated`` (else
    ``dumped``).
    """
    path = Path(directory)
    xml_path = path if path.is_file() else path / "annotations.xml"
    keys = _image_keys(xml_path.parent)
    by_name = dict(keys) | {Path(name).name: key for name, key in keys.items()}
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError(f"{xml_path}: not a CVAT export: {e}") from None
    task = next(
        (t for t in (root.find("meta/task"), root.find("meta/job")) if t is not None),
        ET.Element("task"),
    )
    annotator = (
        task.findtext("assignee/username") or task.findtext("owner/username") or "cvat"
    ).strip()
    updated = (
        _epoch(task.findtext("updated"))
        or _epoch(root.findtext("meta/dumped"))
        or xml_path.stat().st_mtime
    )
    task_id = (task.findtext("id") or "").strip() or xml_path.parent.name
    labels = []
    for image in root.iter("image"):
        name = image.get("name", "")
        key = by_name.get(name) or by_name.get(Path(name).name)
        if key is None:
            log.warning("%s: image %r is not one of the event's frames", xml_path, name)
            continue
        boxes = tuple(
            Box(
                b.get("label", ""),
                float(b.get("xtl", 0)),
                float(b.get("ytl", 0)),
                float(b.get("xbr", 0)),
                float(b.get("ybr", 0)),
            )
            for b in image.iter("box")
        )
        tags = tuple(t.get("label", "") for t in image.iter("tag"))
        labels.append(
            Label(
                key=key,
                annotator=annotator,
                annotation_id=f"cvat:{task_id}:{image.get('id', name)}",
                updated_at=updated,
                classes=tags or None,
                boxes=boxes if boxes or not tags else None,
            )
        )
    return labels


# --- the model's error -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """The deployed model's result on one labelled frame: ``errors`` of ``total`` (classes: 0 or
    1 of 1; boxes: FP + FN of TP + FP + FN), ``correct`` when the frame is fully right."""

    kind: OutcomeKind
    errors: int
    total: int

    @property
    def correct(self) -> bool:
        return self.errors == 0


@dataclass(frozen=True)
class Match:
    """Greedy one-to-one matching of two box sets: matched pairs' IoUs, and what is left over."""

    ious: tuple[float, ...]
    unmatched_a: int
    unmatched_b: int


def match_boxes(a: Sequence[Box], b: Sequence[Box], threshold: float) -> Match:
    """Pairs of same-label boxes at IoU >= ``threshold``, highest IoU first, each box used once
    (the usual detection-evaluation matching)."""
    pairs = sorted(
        (
            (v, i, j)
            for i, x in enumerate(a)
            for j, y in enumerate(b)
            if x.label == y.label and (v := box_iou(x, y)) >= threshold
        ),
        key=lambda p: -p[0],
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    ious = []
    for v, i, j in pairs:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            ious.append(v)
    return Match(tuple(ious), len(a) - len(used_a), len(b) - len(used_b))


def _detections(predictions: dict[str, Any], min_score: float) -> list[Box] | None:
    """The model's boxes (the frame contract's ``detections``, pixels) at ``min_score`` or more;
    None when the predictions carry no detections list."""
    dets = predictions.get("detections")
    if not isinstance(dets, list):
        return None
    boxes = []
    for d in dets:
        if not isinstance(d, dict) or not isinstance(d.get("label"), str):
            continue
        box, score = d.get("box"), d.get("score", 1.0)
        if not (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) for v in box)
            and isinstance(score, (int, float))
        ):
            continue
        if score >= min_score:
            boxes.append(Box(d["label"], *(float(v) for v in box)))
    return boxes


def frame_outcome(
    predictions: dict[str, Any] | None,
    label: Label,
    class_names: Sequence[str],
    iou: float = 0.5,
    min_score: float = 0.5,
) -> Outcome | None:
    """The deployed model's result on one labelled frame.

    - ``probs`` and a class label: the predicted class, ``class_names[argmax]``, is right when the
      annotator chose it (errors 0 or 1 of 1). Needs one probability per class name.
    - ``detections`` and a box label: detections scoring ``min_score`` or more are matched to the
      labelled boxes (:func:`match_boxes` at ``iou``); errors = FP + FN of TP + FP + FN. A frame
      with no box on either side is right (0 of 0).

    None when the predictions or the label give nothing to compare.
    """
    if not isinstance(predictions, dict):
        return None
    probs = predictions.get("probs")
    if (
        label.classes
        and isinstance(probs, list)
        and len(probs) == len(class_names) > 0
        and all(isinstance(p, (int, float)) for p in probs)
    ):
        best = max(range(len(probs)), key=lambda i: probs[i])
        return Outcome("class", int(class_names[best] not in label.classes), 1)
    predicted = _detections(predictions, min_score)
    if label.boxes is not None and predicted is not None:
        m = match_boxes(predicted, label.boxes, iou)
        tp = len(m.ious)
        errors = m.unmatched_a + m.unmatched_b
        return Outcome("boxes", errors, tp + errors)
    return None


@dataclass(frozen=True)
class ErrorSummary:
    """The model's error over labelled frames.

    ``frame_error_rate``: the share of frames not fully right (for classes, the error rate);
    ``object_error_rate`` (boxes only): sum of errors over sum of totals, i.e. (FP + FN) / (TP +
    FP + FN) over all frames; None when there is nothing to divide by.
    """

    kind: OutcomeKind | None  # None: no frames
    frames: int
    frame_errors: int
    frame_error_rate: float | None
    errors: int
    total: int
    object_error_rate: float | None

    @property
    def error_rate(self) -> float | None:
        """The headline figure: class error rate for classes, object-level error for boxes."""
        return self.object_error_rate if self.kind == "boxes" else self.frame_error_rate


def summarize(outcomes: Iterable[Outcome]) -> ErrorSummary:
    """Frames, frame error rate and (boxes) object-level error of ``outcomes``, which must all be
    of one kind (a project labels either classes or boxes); ValueError otherwise."""
    got = list(outcomes)
    kinds = {o.kind for o in got}
    if len(kinds) > 1:
        raise ValueError(f"outcomes of more than one kind: {sorted(kinds)}")
    kind = next(iter(kinds)) if kinds else None
    frames = len(got)
    wrong = sum(not o.correct for o in got)
    errors = sum(o.errors for o in got)
    total = sum(o.total for o in got)
    return ErrorSummary(
        kind=kind,
        frames=frames,
        frame_errors=wrong,
        frame_error_rate=wrong / frames if frames else None,
        errors=errors,
        total=total,
        object_error_rate=errors / total if kind == "boxes" and total else None,
    )


# --- which labels count ------------------------------------------------------------------------


def _newest_first(labels: Iterable[Label]) -> list[Label]:
    """Labels newest first, one per annotation (the newest version of each)."""
    seen: set[str] = set()
    out = []
    for lb in sorted(labels, key=lambda lb: (lb.updated_at, lb.annotation_id), reverse=True):
        if lb.annotation_id not in seen:
            seen.add(lb.annotation_id)
            out.append(lb)
    return out


def consensus(labels: Iterable[Label]) -> dict[str, Label]:
    """One label per frame for the model's error: the most recently updated annotation."""
    out: dict[str, Label] = {}
    for lb in _newest_first(labels):
        out.setdefault(lb.key, lb)
    return out


def latest_per_annotator(labels: Iterable[Label]) -> dict[tuple[str, str], Label]:
    """(frame key, annotator) -> that annotator's most recent label of the frame."""
    out: dict[tuple[str, str], Label] = {}
    for lb in _newest_first(labels):
        out.setdefault((lb.key, lb.annotator), lb)
    return out


# --- agreement between annotators --------------------------------------------------------------


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' nominal answers on the same items.

    kappa = (p_o - p_e) / (1 - p_e), p_o the share of items they agree on, p_e = sum over
    categories of the product of each rater's share of that category (chance agreement).
    None when undefined: fewer than 2 items, or p_e = 1 (both raters always gave one and the same
    category: there is no disagreement to measure against). ValueError when the lengths differ.
    """
    if len(a) != len(b):
        raise ValueError(f"two raters' answers of different lengths: {len(a)} and {len(b)}")
    n = len(a)
    if n < 2:
        return None
    p_o = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1.0 - p_e)


@dataclass(frozen=True)
class Agreement:
    """Two annotators' agreement on the frames both labelled.

    ``frames``: frames compared; ``class_frames`` of them had classes from both, giving ``kappa``
    (Cohen's) and ``observed`` (share identical); ``box_frames`` had boxes from both, giving
    ``mean_iou`` over ``boxes`` boxes (matched pairs' IoU, each unmatched box 0). None where not
    computable.
    """

    frames: int
    class_frames: int
    kappa: float | None
    observed: float | None
    box_frames: int
    boxes: int
    mean_iou: float | None


def _pair(labels: Sequence[Label]) -> tuple[Label, Label] | None:
    """The two labels of a frame to compare: the newest of the two most recent distinct
    annotators; with one annotator only, its two most recent distinct annotations. Ordered by
    annotator, so the same two people are the same two raters on every frame (Cohen's kappa
    keeps each rater's own category shares)."""
    ordered = _newest_first(labels)
    by_annotator: dict[str, Label] = {}
    for lb in ordered:
        by_annotator.setdefault(lb.annotator, lb)
    two = list(by_annotator.values())[:2] if len(by_annotator) >= 2 else ordered[:2]
    if len(two) < 2:
        return None
    first, second = sorted(two, key=lambda lb: (lb.annotator, lb.annotation_id))
    return first, second


def agreement(labels: Sequence[Label], iou: float = 0.5) -> Agreement:
    """Annotator agreement over frames with two or more annotations (Label Studio's overlap).

    Classes: Cohen's kappa of the pairs' answers (a multi-class answer is one category: its sorted
    classes). Boxes: the pairs' boxes matched as :func:`match_boxes` does at ``iou``; the mean of
    the matched IoUs with every unmatched box counted as 0.
    """
    by_key: dict[str, list[Label]] = defaultdict(list)
    for lb in labels:
        by_key[lb.key].append(lb)
    a_classes: list[tuple[str, ...]] = []
    b_classes: list[tuple[str, ...]] = []
    ious: list[float] = []
    frames = box_frames = 0
    for key in sorted(by_key):
        pair = _pair(by_key[key])
        if pair is None:
            continue
        frames += 1
        x, y = pair
        if x.classes and y.classes:
            a_classes.append(tuple(sorted(x.classes)))
            b_classes.append(tuple(sorted(y.classes)))
        if x.boxes is not None and y.boxes is not None:
            box_frames += 1
            m = match_boxes(x.boxes, y.boxes, iou)
            ious.extend(m.ious)
            ious.extend([0.0] * (m.unmatched_a + m.unmatched_b))
    n = len(a_classes)
    return Agreement(
        frames=frames,
        class_frames=n,
        kappa=cohen_kappa(a_classes, b_classes),
        observed=sum(p == q for p, q in zip(a_classes, b_classes, strict=True)) / n if n else None,
        box_frames=box_frames,
        boxes=len(ious),
        mean_iou=sum(ious) / len(ious) if ious else None,
    )
