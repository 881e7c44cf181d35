import base64
import json
import os
from dataclasses import dataclass, field

import pytest

from monitor.config import SourceConfig
from monitor.pipeline.source import (
    BadRecord,
    Origin,
    RecordError,
    dead_letter_headers,
    load_image,
    parse_record,
)
from monitor.pipeline.streams import image_digest

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20


@dataclass
class Rec:
    value: bytes | None
    key: bytes | None = b"cam-1"
    headers: list = field(default_factory=list)
    topic: str = "frames"
    partition: int = 0
    offset: int = 5
    timestamp: int = 1_700_000_000_000


def parse(rec, roots=()):
    return parse_record(rec, SourceConfig(allowed_roots=tuple(roots)))


def reason(rec, roots=()):
    with pytest.raises(RecordError) as e:
        parse(rec, roots)
    return e.value.reason


def test_raw_image_with_headers():
    f = parse(
        Rec(
            JPEG,
            headers=[
                ("camera_id", b"cam-9"),
                ("ts", b"1700000001000"),
                ("frame_id", b"f1"),
                ("site", b"depot"),
                ("model_version", b"m3"),
            ],
        )
    )
    assert (f.camera_id, f.frame_id, f.ts, f.site, f.model_version) == (
        "cam-9",
        "f1",
        1_700_000_001.0,
        "depot",
        "m3",
    )
    assert f.data == JPEG


def test_key_is_the_camera_and_record_time_the_fallback():
    f = parse(Rec(JPEG))
    assert f.camera_id == "cam-1" and f.ts == 1_700_000_000.0 and f.frame_id == "frames-0-5"


def test_envelope_with_inline_image_and_predictions():
    env = {
        "camera_id": "c2",
        "ts": 1_700_000_002_000,
        "frame_id": "x",
        "image_b64": base64.b64encode(JPEG).decode(),
        "predictions": {"probs": [0.1, 0.9]},
        "meta": {"site": "north"},
    }
    f = parse(Rec(json.dumps(env).encode(), headers=[("content-type", b"application/json")]))
    assert (f.camera_id, f.ts, f.data, f.site) == ("c2", 1_700_000_002.0, JPEG, "north")
    assert f.predictions == {"probs": [0.1, 0.9]}


def test_claim_check_inside_allowed_root(tmp_path):
    (tmp_path / "a.jpg").write_bytes(JPEG)
    env = {"camera_id": "c", "uri": f"file://{tmp_path}/a.jpg"}
    f = parse(Rec(json.dumps(env).encode()), roots=[str(tmp_path)])
    assert f.data == JPEG and f.uri.endswith("a.jpg")


def test_claim_check_escapes_are_refused(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(JPEG)
    os.symlink(secret, root / "link.jpg")
    for uri in (
        f"file://{root}/../secret.jpg",
        f"file://{root}/link.jpg",
        "http://169.254.169.254/latest",
        "s3://bucket/x.jpg",
        "ftp://x/y",
        f"file://otherhost{root}/a.jpg",
    ):
        assert (
            reason(Rec(json.dumps({"camera_id": "c", "uri": uri}).encode()), [str(root)])
            == "uri_not_allowed"
        ), uri
    assert (
        reason(Rec(json.dumps({"camera_id": "c", "uri": f"file://{secret}"}).encode()))
        == "uri_not_allowed"
    )


def test_claim_check_missing_file(tmp_path):
    rec = Rec(json.dumps({"camera_id": "c", "uri": f"file://{tmp_path}/nope.jpg"}).encode())
    assert reason(rec, [str(tmp_path)]) == "uri_unreadable"


@pytest.mark.parametrize(
    "rec, expected",
    [
        (Rec(b""), "empty"),
        (Rec(None), "empty"),
        (Rec(JPEG, key=None), "bad_header"),
        (Rec(JPEG, key=b"\xff\xfe"), "bad_header"),
        (Rec(JPEG, headers=[("ts", b"yesterday")]), "bad_header"),
        (Rec(JPEG, headers=[("camera_id", b"\xc3\x28")]), "bad_header"),
        (Rec(b"{not json", headers=[("content-type", b"application/json")]), "bad_envelope"),
        (Rec(b"[1, 2]", headers=[("content-type", b"application/json")]), "bad_envelope"),
        (Rec(b'{"camera_id": "c"}'), "bad_envelope"),
        (Rec(b'{"camera_id": "c", "image_b64": "@@@"}'), "bad_envelope"),
        (Rec(b'{"camera_id": "c", "image_b64": 5}'), "bad_envelope"),
        (Rec(b'{"camera_id": "c", "image_b64": "", "predictions": [1]}'), "bad_envelope"),
        (Rec(b'{"image_b64": ""}', key=None), "bad_envelope"),
    ],
)
def test_malformed_records_have_a_reason(rec, expected):
    assert reason(rec) == expected


def test_dead_letter_headers_carry_error_and_origin():
    bad = BadRecord(
        "corrupt", "truncated", Origin("frames", 3, 42), b"k", b"v", [("camera_id", b"c")]
    )
    h = dict(dead_letter_headers(bad))
    assert h["camera_id"] == b"c"
    assert h["driftmon_error_reason"] == b"corrupt"
    assert (
        h["driftmon_origin_topic"],
        h["driftmon_origin_partition"],
        h["driftmon_origin_offset"],
    ) == (b"frames", b"3", b"42")


def test_a_deferred_inline_image_is_unpacked_only_when_loaded():
    image = base64.b64encode(JPEG).decode()
    rec = Rec(json.dumps({"camera_id": "c", "image_b64": image}).encode())
    deferred = parse_record(rec, SourceConfig(), defer_image=True)
    assert (deferred.data, deferred.pending_b64) == (b"", image)
    # two records of one image digest the same before either is unpacked (frozen-feed detection)
    assert image_digest(deferred) == image_digest(
        parse_record(rec, SourceConfig(), defer_image=True)
    )
    load_image(deferred)
    assert (deferred.data, deferred.pending_b64) == (JPEG, None)


def test_a_deferred_inline_image_that_is_not_base64_fails_only_when_loaded():
    rec = Rec(b'{"camera_id": "c", "image_b64": "@@@"}')
    frame = parse_record(rec, SourceConfig(), defer_image=True)  # a skipped frame costs no check
    with pytest.raises(RecordError) as e:
        load_image(frame)
    assert e.value.reason == "bad_envelope"


def test_a_deferred_claim_check_is_refused_at_once_but_read_only_when_loaded(tmp_path):
    (tmp_path / "a.jpg").write_bytes(JPEG)
    source = SourceConfig(allowed_roots=(str(tmp_path),))
    rec = Rec(json.dumps({"camera_id": "c", "uri": f"file://{tmp_path}/a.jpg"}).encode())
    deferred = parse_record(rec, source, defer_image=True)
    assert deferred.data == b"" and deferred.pending_path == tmp_path / "a.jpg"
    assert image_digest(deferred) is None  # not read: no digest to compare
    load_image(deferred)
    assert (deferred.data, deferred.pending_path) == (JPEG, None)
    assert image_digest(deferred) is not None
    # outside the allowed roots: refused when parsed, skipped or not
    outside = Rec(json.dumps({"camera_id": "c", "uri": "file:///etc/passwd"}).encode())
    with pytest.raises(RecordError) as e:
        parse_record(outside, source, defer_image=True)
    assert e.value.reason == "uri_not_allowed"
    # a file gone before it is read: unreadable when loaded
    gone = Rec(json.dumps({"camera_id": "c", "uri": f"file://{tmp_path}/gone.jpg"}).encode())
    frame = parse_record(gone, source, defer_image=True)
    with pytest.raises(RecordError) as e:
        load_image(frame)
    assert e.value.reason == "uri_unreadable"
