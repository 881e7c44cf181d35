"""Labels back from the relabel queue: reading them (Label Studio JSON, a CVAT export of a directory
the real directory sink wrote, webhooks), the model's error on them and annotator agreement, with
every expected number worked out by hand in the test."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from monitor.actions.sinks import DirectorySink
from monitor.errors import InputError
from monitor.loop.label_studio import parse_webhook
from monitor.loop.labels import (
    Box,
    Label,
    Outcome,
    agreement,
    box_iou,
    cohen_kappa,
    consensus,
    frame_outcome,
    label_from_label_studio,
    latest_per_annotator,
    read_cvat_export,
    summarize,
)
from tests.monitor.actions.conftest import drift_event, sample

CLASSES = ("day", "night")


def boxes_label(*boxes, key="cam/1", annotator="u1", aid="1", at=0.0):
    return Label(key, annotator, aid, at, boxes=tuple(boxes))


def class_label(*classes, key="cam/1", annotator="u1", aid="1", at=0.0):
    return Label(key, annotator, aid, at, classes=tuple(classes))


def det(label, box, score=0.9):
    return {"label": label, "score": score, "box": list(box)}


# --- Label ---------------------------------------------------------------------------------------


def test_a_label_survives_a_json_round_trip():
    lb = Label("cam/1", "u1", "7", 12.5, ("day",), (Box("car", 1, 2, 3, 4),))
    assert Label.from_dict(json.loads(json.dumps(lb.to_dict()))) == lb
    assert lb.to_dict()["boxes"] == [{"label": "car", "x0": 1, "y0": 2, "x1": 3, "y1": 4}]
    contract = lb.to_dict() | {"boxes": [{"label": "car", "box": [1, 2, 3, 4]}]}
    assert Label.from_dict(contract) == lb  # the frame contract's box shape reads too
    empty = Label("cam/1", "u1", "8", 1.0)
    assert Label.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty


# --- Label Studio --------------------------------------------------------------------------------


def ls_task(key="cam-1/f-1"):
    return {"id": 3, "data": {"image": "/data/upload/1/x.png", "driftmon_key": key}}


def test_label_studio_rectangles_in_percent_become_pixel_boxes():
    annotation = {
        "id": 11,
        "completed_by": 2,
        "was_cancelled": False,
        "updated_at": "2026-12-01T14:38:57.5Z",
        "result": [
            {
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": 640,
                "original_height": 480,
                # x 10 % of 640 = 64, y 25 % of 480 = 120, 50 % wide = 320, 50 % high = 240
                "value": {"x": 10, "y": 25, "width": 50, "height": 50, "rectanglelabels": ["car"]},
            }
        ],
    }
    lb = label_from_label_studio(ls_task(), annotation)
    assert lb == Label(
        key="cam-1/f-1",
        annotator="2",
        annotation_id="11",
        updated_at=1_796_135_937.5,  # 2026-12-01T14:38:57.5Z
        classes=None,
        boxes=(Box("car", 64.0, 120.0, 384.0, 360.0),),
    )


def test_label_studio_choices_become_classes_and_skips_are_no_label():
    choice = {"type": "choices", "value": {"choices": ["night"]}}
    annotation = {"id": 1, "completed_by": {"id": 5, "email": "a@x"}, "result": [choice]}
    lb = label_from_label_studio(ls_task(), annotation)
    assert lb is not None and lb.classes == ("night",) and lb.boxes is None
    assert lb.annotator == "a@x" and lb.updated_at == 0.0
    assert label_from_label_studio(ls_task(), annotation | {"was_cancelled": True}) is None
    assert label_from_label_studio({"id": 1, "data": {"image": "x"}}, annotation) is None
    empty = label_from_label_studio(ls_task(), {"id": 2, "completed_by": 1, "result": []})
    assert empty is not None and empty.boxes == () and empty.classes is None
    sizeless = {"type": "rectanglelabels", "value": {"x": 1, "y": 1, "width": 5, "height": 5}}
    dropped = label_from_label_studio(ls_task(), {"id": 3, "result": [sizeless]})
    assert dropped is not None and dropped.boxes == ()  # no image size: cannot be in pixels


# --- CVAT ----------------------------------------------------------------------------------------


def png(w=64, h=48):
    ok, buf = cv2.imencode(".png", np.full((h, w, 3), 90, np.uint8))
    assert ok
    return buf.tobytes()


def test_a_cvat_export_of_a_directory_sink_event_maps_back_to_frame_keys(tmp_path):
    event = drift_event()
    samples = [sample(event, i) for i in range(3)]
    sink = DirectorySink(tmp_path)
    for s in samples:
        sink.deliver(s, lambda _: png())
    event_dir = next(tmp_path.iterdir())
    manifest = [
        json.loads(line) for line in (event_dir / "manifest.jsonl").read_text().splitlines()
    ]
    names = [m["name"] + m["extension"] for m in manifest[2:]]  # as CVAT names the task's images
    assert len(names) == 3
    # CVAT for images 1.1, as CVAT exports a task imported from the manifest; the third image
    # named by its bare file name (images uploaded without the manifest)
    (event_dir / "annotations.xml").write_text(
        f"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task><id>42</id><name>relabel</name><updated>2026-12-01 10:00:00.000000+00:00</updated>
      <owner><username>admin</username></owner><assignee><username>ann</username></assignee>
    </task>
    <dumped>2026-12-01 11:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="{names[0]}" width="64" height="48">
    <box label="car" source="manual" occluded="0" xtl="1.50" ytl="2.00" xbr="30.25" ybr="40.00"
      z_order="0"></box>
    <box label="person" source="manual" occluded="0" xtl="0" ytl="0" xbr="5" ybr="5" z_order="0">
    </box>
  </image>
  <image id="1" name="{names[1]}" width="64" height="48">
    <tag label="night" source="manual"></tag>
  </image>
  <image id="2" name="{names[2].split("/")[-1]}" width="64" height="48"></image>
  <image id="3" name="images/not-ours.png" width="64" height="48"></image>
</annotations>
"""
    )
    at = 1_796_119_200.0  # 2026-12-01T10:00:00Z
    got = read_cvat_export(event_dir)
    assert got == [
        Label(
            samples[0].key,
            "ann",
            "cvat:42:0",
            at,
            None,
            (Box("car", 1.5, 2.0, 30.25, 40.0), Box("person", 0, 0, 5, 5)),
        ),
        Label(samples[1].key, "ann", "cvat:42:1", at, ("night",), None),
        Label(samples[2].key, "ann", "cvat:42:2", at, None, ()),
    ]
    assert read_cvat_export(event_dir / "annotations.xml") == got


def test_a_cvat_export_beside_no_driftmon_manifest_is_refused(tmp_path):
    (tmp_path / "annotations.xml").write_text("<annotations/>")
    with pytest.raises(InputError, match="driftmon.jsonl"):
        read_cvat_export(tmp_path)


# --- the model's error ---------------------------------------------------------------------------


def test_probs_argmax_against_the_labelled_class():
    assert frame_outcome({"probs": [0.3, 0.7]}, class_label("night"), CLASSES) == Outcome(
        "class", 0, 1
    )
    wrong = frame_outcome({"probs": [0.6, 0.4]}, class_label("night"), CLASSES)
    assert wrong == Outcome("class", 1, 1) and not wrong.correct
    # unusable: no predictions, a vector of the wrong length, a box-only label
    assert frame_outcome(None, class_label("night"), CLASSES) is None
    assert frame_outcome({"probs": [1.0]}, class_label("night"), CLASSES) is None
    assert frame_outcome({"probs": [0.3, 0.7]}, boxes_label(), CLASSES) is None


CAR = (0, 0, 10, 10)


@pytest.mark.parametrize(
    ("detections", "labelled", "errors", "total"),
    [
        ([det("car", CAR)], [Box("car", *CAR)], 0, 1),  # TP
        ([det("car", CAR), det("car", (20, 20, 30, 30))], [Box("car", *CAR)], 1, 2),  # + FP
        ([det("car", CAR)], [Box("car", *CAR), Box("car", 20, 20, 30, 30)], 1, 2),  # + FN
        ([det("person", CAR)], [Box("car", *CAR)], 2, 2),  # wrong class: FP and FN
        ([det("car", (5, 0, 15, 10))], [Box("car", *CAR)], 2, 2),  # IoU 50/150 = 1/3 < 0.5
        ([det("car", (0, 0, 10, 12.5))], [Box("car", *CAR)], 0, 1),  # IoU 100/125 = 0.8
        ([det("car", CAR, score=0.3)], [Box("car", *CAR)], 1, 1),  # below min_score: FN
        ([], [], 0, 0),  # nothing on either side: right
    ],
)
def test_detections_are_matched_to_labelled_boxes(detections, labelled, errors, total):
    got = frame_outcome({"detections": detections}, boxes_label(*labelled), CLASSES)
    assert got == Outcome("boxes", errors, total)
    assert got.correct == (errors == 0)


def test_greedy_matching_takes_the_highest_iou_first():
    # A-L2 1.0, A-L1 90/110, B-L1 90/110, B-L2 80/120: A takes L2, B then L1 -> 2 TP
    preds = [det("car", (0, 0, 10, 10)), det("car", (2, 0, 12, 10))]
    labelled = [Box("car", 1, 0, 11, 10), Box("car", 0, 0, 10, 10)]
    assert frame_outcome({"detections": preds}, boxes_label(*labelled), CLASSES) == Outcome(
        "boxes", 0, 2
    )
    # at IoU 0.9 only the exact pair matches: 1 TP, B a FP, L1 a FN
    assert frame_outcome(
        {"detections": preds}, boxes_label(*labelled), CLASSES, iou=0.9
    ) == Outcome("boxes", 2, 3)  # 1 TP, 1 FP, 1 FN
    assert box_iou(Box("car", 0, 0, 10, 10), Box("car", 2, 0, 12, 10)) == pytest.approx(80 / 120)


def test_summary_of_box_frames():
    s = summarize(
        [
            Outcome("boxes", 0, 1),
            Outcome("boxes", 2, 2),
            Outcome("boxes", 1, 2),
            Outcome("boxes", 0, 0),
        ]
    )
    # 2 of 4 frames wrong; objects: (0+2+1+0) errors of (1+2+2+0)
    assert (s.frames, s.frame_errors, s.errors, s.total) == (4, 2, 3, 5)
    assert s.frame_error_rate == 0.5 and s.object_error_rate == pytest.approx(0.6)
    assert s.error_rate == pytest.approx(0.6)


def test_summary_of_class_frames_and_of_none():
    s = summarize([Outcome("class", 1, 1), Outcome("class", 0, 1), Outcome("class", 0, 1)])
    assert (
        s.kind == "class" and s.error_rate == pytest.approx(1 / 3) and s.object_error_rate is None
    )
    empty = summarize([])
    assert (empty.frames, empty.error_rate, empty.kind) == (0, None, None)
    with pytest.raises(ValueError, match="more than one kind"):
        summarize([Outcome("class", 1, 1), Outcome("boxes", 0, 1)])


# --- which label counts, agreement ---------------------------------------------------------------


def test_consensus_takes_the_most_recent_annotation_per_frame():
    old = class_label("day", aid="1", at=1.0)
    new = class_label("night", annotator="u2", aid="2", at=2.0)
    edited = dataclasses.replace(old, classes=("dusk",), updated_at=3.0)  # annotation 1 edited
    other = class_label("day", key="cam/2", aid="3", at=1.0)
    assert consensus([old, new, other]) == {"cam/1": new, "cam/2": other}
    assert consensus([old, new, edited])["cam/1"] == edited
    assert latest_per_annotator([old, new, edited]) == {
        ("cam/1", "u1"): edited,
        ("cam/1", "u2"): new,
    }


def test_cohen_kappa_of_a_hand_computed_table():
    # 10 items: yes/yes 4, yes/no 2, no/yes 1, no/no 3. p_o = 7/10; A says yes 6/10, B 5/10:
    # p_e = 0.6*0.5 + 0.4*0.5 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    a = ["y"] * 6 + ["n"] * 4
    b = ["y"] * 4 + ["n"] * 2 + ["y"] + ["n"] * 3
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(a, a) == pytest.approx(1.0)
    assert cohen_kappa(["y"], ["y"]) is None  # fewer than 2 items
    assert cohen_kappa(["y", "y"], ["y", "y"]) is None  # p_e = 1
    with pytest.raises(ValueError):
        cohen_kappa(["y"], ["y", "n"])


def test_agreement_over_frames_two_annotators_labelled():
    labels = [
        # classes: u1/u2 pairs (a, a), (a, b), (b, b) -> p_o 2/3, p_e 2/3*1/3 + 1/3*2/3 = 4/9,
        # kappa = (2/3 - 4/9) / (5/9) = 0.4
        class_label("a", key="k1", annotator="u1", aid="1", at=5.0),
        class_label("b", key="k1", annotator="u1", aid="1", at=1.0),  # an older version of 1
        class_label("a", key="k1", annotator="u2", aid="2", at=2.0),
        class_label("a", key="k2", annotator="u2", aid="3", at=1.0),  # u2 before u1 this time
        class_label("b", key="k2", annotator="u1", aid="4", at=1.5),
        class_label("b", key="k3", annotator="u1", aid="5", at=1.0),
        class_label("b", key="k3", annotator="u2", aid="6", at=2.0),
        class_label("a", key="k4", annotator="u1", aid="7", at=1.0),  # one label: not compared
    ]
    ag = agreement(labels)
    assert (ag.frames, ag.class_frames, ag.box_frames, ag.boxes) == (3, 3, 0, 0)
    assert ag.kappa == pytest.approx(0.4) and ag.observed == pytest.approx(2 / 3)
    assert ag.mean_iou is None


def test_agreement_of_boxes_counts_unmatched_boxes_as_zero():
    labels = [
        boxes_label(Box("car", *CAR), key="k5", annotator="u1", aid="1"),
        boxes_label(
            Box("car", *CAR), Box("car", 20, 20, 30, 30), key="k5", annotator="u2", aid="2"
        ),
        # one annotator twice: its two annotations are compared; IoU 100/125 = 0.8
        boxes_label(Box("car", *CAR), key="k6", annotator="u1", aid="3", at=1.0),
        boxes_label(Box("car", 0, 0, 10, 12.5), key="k6", annotator="u1", aid="4", at=2.0),
    ]
    ag = agreement(labels)
    # IoUs: k5 1.0 and 0 (the unmatched box), k6 0.8 -> (1 + 0 + 0.8) / 3 = 0.6
    assert (ag.frames, ag.box_frames, ag.boxes, ag.class_frames) == (2, 2, 3, 0)
    assert ag.mean_iou == pytest.approx(0.6) and ag.kappa is None


# --- webhooks ------------------------------------------------------------------------------------

CHOICE = {"from_name": "cls", "to_name": "image", "type": "choices", "value": {"choices": ["a"]}}


def hook(action, annotation, task):
    return json.dumps(
        {"action": action, "annotation": annotation, "task": task, "project": {"id": 1}}
    ).encode()


def test_webhook_annotation_created_updated_and_bulk():
    task = {"id": 1, "data": {"driftmon_key": "cam/1"}}
    ann = {"id": 9, "task": 1, "completed_by": 1, "result": [CHOICE], "updated_at": None}
    (one,) = parse_webhook(hook("ANNOTATION_CREATED", ann, task))
    assert (one.key, one.annotation_id, one.classes) == ("cam/1", "9", ("a",))
    assert parse_webhook(hook("ANNOTATION_UPDATED", ann, task)) == [one]
    task2 = {"id": 2, "data": {"driftmon_key": "cam/2"}}
    ann2 = ann | {"id": 10, "task": 2}
    bulk = parse_webhook(hook("ANNOTATIONS_CREATED", [ann2, ann], [task, task2]))
    assert [(lb.key, lb.annotation_id) for lb in bulk] == [("cam/2", "10"), ("cam/1", "9")]
    assert parse_webhook(hook("TASKS_CREATED", None, None)) == []


def test_a_malformed_webhook_is_an_input_error():
    with pytest.raises(InputError, match="not JSON"):
        parse_webhook(b"{nope")
    with pytest.raises(InputError, match="not a JSON object"):
        parse_webhook(b"[]")
    with pytest.raises(InputError, match="no annotation and task"):
        parse_webhook(json.dumps({"action": "ANNOTATION_CREATED"}).encode())
