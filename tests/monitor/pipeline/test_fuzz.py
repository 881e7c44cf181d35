"""Fuzzing the record parser and the decoder (hypothesis, a bounded number of cases per run).

Whatever bytes, keys, headers and envelopes arrive, the only outcomes are a Frame, a RecordError
(parse) and a Decoded or a DecodeError (decode): never another exception, which in the daemon
would be a crash and an uncommitted batch read again forever. Claim-check paths generated from
``..``, symlinks and encodings never read a file outside the allowed root.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import SourceConfig
from monitor.pipeline.decode import REASONS, Decoded, DecodeError, DecodeLimits, decode
from monitor.pipeline.source import Frame, RecordError, parse_record, read_claim_check

FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
LIMITS = DecodeLimits(max_encoded_bytes=200_000, max_pixels=4_000_000, analysis_size=64)
RECORD_REASONS = {"empty", "bad_header", "bad_envelope", "uri_not_allowed", "uri_unreadable"}


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    out = [cv2.imencode(ext, img)[1].tobytes() for ext in (".jpg", ".png", ".bmp")]
    webp = cv2.imencode(".webp", img)
    if webp[0]:
        out.append(webp[1].tobytes())
    return out


SEEDS = _seed_images()


@st.composite
def mutated_images(draw) -> bytes:
    """A valid image, then truncated, bit-flipped, spliced or with its declared size rewritten."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "dims", "zero"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(max_size=32))
        elif op == "zero":
            data[i : i + 16] = b"\x00" * len(data[i : i + 16])
        else:  # rewrite the declared size where each format keeps it
            w, h = draw(st.integers(0, 70_000)), draw(st.integers(0, 70_000))
            if data[:2] == b"\xff\xd8" and (j := data.find(b"\xff\xc0")) > 0 and j + 9 <= len(data):
                struct.pack_into(">HH", data, j + 5, min(h, 65535), min(w, 65535))
            elif data[:4] == b"\x89PNG" and len(data) >= 24:
                struct.pack_into(">II", data, 16, w, h)
            elif data[:2] == b"BM" and len(data) >= 26:
                struct.pack_into("<ii", data, 18, w, -h)
    return bytes(data)


def png_with_ihdr(width: int, height: int, depth: int, colour: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)

    def chunk(k: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + k + d + struct.pack(">I", zlib.crc32(k + d))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


MAGICS = [
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    b"RIFF\x10\x00\x00\x00WEBPVP8L",
    b"RIFF\x10\x00\x00\x00WEBPVP8X",
    b"BM",
    b"",
]

any_image_bytes = st.one_of(
    mutated_images(),
    st.builds(lambda m, rest: m + rest, st.sampled_from(MAGICS), st.binary(max_size=300)),
    st.builds(
        png_with_ihdr,
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.sampled_from([1, 8, 16, 3]),
        st.sampled_from([0, 2, 3, 6, 7]),
    ),
    st.binary(max_size=400),
)


def check_decode(data: bytes) -> None:
    try:
        out = decode(data, LIMITS)
    except DecodeError as e:
        assert e.reason in REASONS
        return
    assert isinstance(out, Decoded)
    assert out.rgb.dtype == np.uint8 and out.rgb.ndim == 3 and out.rgb.shape[2] == 3
    assert max(out.rgb.shape[:2]) <= LIMITS.analysis_size
    assert out.width * out.height <= LIMITS.max_pixels


@FUZZ
@given(any_image_bytes)
def test_decode_only_decodes_or_raises_decode_error(data):
    check_decode(data)


text = st.text(max_size=40)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=True), text
)
uris = st.one_of(
    st.builds(
        lambda s, rest: f"{s}://{rest}",
        st.sampled_from(["file", "http", "https", "s3", "ftp", "gopher", "data", "FILE", ""]),
        text,
    ),
    st.builds(
        lambda parts: "file:///" + "/".join(parts),
        st.lists(
            st.sampled_from(["..", ".", "%2e%2e", "etc", "passwd", "root", "x.jpg", "", "%00"]),
            max_size=6,
        ),
    ),
    text,
)


@st.composite
def envelopes(draw) -> bytes:
    env = draw(
        st.dictionaries(
            st.sampled_from(
                [
                    "camera_id",
                    "ts",
                    "frame_id",
                    "uri",
                    "image_b64",
                    "predictions",
                    "meta",
                    "site",
                    "model_version",
                    "other",
                ]
            ),
            st.one_of(
                json_scalars,
                st.lists(json_scalars, max_size=3),
                st.dictionaries(text, json_scalars, max_size=3),
            ),
            max_size=8,
        )
    )
    if draw(st.booleans()):
        env["ts"] = draw(
            st.one_of(
                json_scalars,
                st.sampled_from(
                    [
                        float("inf"),
                        float("-inf"),
                        float("nan"),
                        1e400,
                        -1,
                        0,
                        2**70,
                        True,
                        "1700000000000",
                        "noon",
                    ]
                ),
            )
        )
    if draw(st.booleans()):
        env["image_b64"] = base64.b64encode(draw(any_image_bytes)).decode()
    if draw(st.booleans()):
        env["uri"] = draw(uris)
    raw = json.dumps(env).encode()
    if draw(st.booleans()):  # truncate or corrupt the JSON itself
        raw = raw[: draw(st.integers(0, len(raw)))] + draw(st.binary(max_size=4))
    return raw


header_names = st.sampled_from(
    [
        "camera_id",
        "frame_id",
        "ts",
        "content-type",
        "site",
        "model_version",
        "Content-Type",
        "TS",
        "x",
    ]
)
header_values = st.one_of(
    st.none(),
    st.binary(max_size=20),
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"image/jpeg",
            b"123",
            b"-1",
            b"1e3",
            b"\xff\xfe",
        ]
    ),
    text.map(str.encode),
)


@st.composite
def records(draw):
    value = draw(st.one_of(any_image_bytes, envelopes(), st.none(), st.just(b"")))
    return SimpleNamespace(
        topic="frames",
        partition=draw(st.integers(0, 3)),
        offset=draw(st.integers(0, 2**40)),
        key=draw(st.one_of(st.none(), st.binary(max_size=16), text.map(str.encode))),
        value=value,
        headers=draw(st.lists(st.tuples(header_names, header_values), max_size=5)),
        timestamp=draw(st.one_of(st.none(), st.integers(-(2**40), 2**42))),
    )


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz")
    root, outside = base / "root", base / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "x.jpg").write_bytes(SEEDS[0])
    (outside / "x.jpg").write_bytes(b"SECRET" + SEEDS[0])
    (root / "out.jpg").symlink_to(outside / "x.jpg")
    (root / "dir").symlink_to(outside, target_is_directory=True)
    return root, outside


@FUZZ
@given(records())
def test_parse_then_decode_only_yields_frames_or_known_errors(roots, record):
    source = SourceConfig(allowed_roots=(str(roots[0]),))
    try:
        frame = parse_record(record, source)
    except RecordError as e:
        assert e.reason in RECORD_REASONS, e.reason
        return
    assert isinstance(frame, Frame) and frame.camera_id and isinstance(frame.data, bytes)
    assert not frame.data.startswith(b"SECRET"), (
        "a claim check read a file outside the allowed root"
    )
    assert isinstance(frame.ts, float) and np.isfinite(frame.ts)
    check_decode(frame.data)


@FUZZ
@given(
    st.lists(
        st.sampled_from(
            [
                "..",
                ".",
                "x.jpg",
                "out.jpg",
                "dir",
                "outside",
                "root",
                "%2e%2e",
                "%2F",
                "",
                "x.jpg%00",
            ]
        ),
        max_size=6,
    )
)
def test_claim_checks_never_escape_the_allowed_root(roots, parts):
    root, _ = roots
    for uri in (f"file://{root}/" + "/".join(parts), f"file://localhost{root}/" + "/".join(parts)):
        try:
            data = read_claim_check(uri, [str(root)])
        except RecordError as e:
            assert e.reason in ("uri_not_allowed", "uri_unreadable")
            continue
        assert data == (root / "x.jpg").read_bytes()


def test_the_fuzzers_reach_every_outcome(roots):
    """The generators are not vacuous: good frames and every decode reason are produced."""
    reasons = set()
    ok = 0
    for data in [
        *SEEDS,
        b"",
        b"GIF89a",
        SEEDS[0][:40],
        png_with_ihdr(100_000, 100_000, 8, 2),
        SEEDS[0] + b"\0" * 200_001,
        png_with_ihdr(10, 10, 8, 2),
    ]:
        try:
            decode(data, LIMITS)
            ok += 1
        except DecodeError as e:
            reasons.add(e.reason)
    assert ok >= 3 and reasons == set(REASONS)
    assert Path(roots[0] / "out.jpg").resolve().parent == roots[1]
