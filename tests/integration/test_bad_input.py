"""Every kind of bad record the issue lists, interleaved with good frames, through the real broker
into the daemon: each is counted by reason and dead-lettered with the error and its origin
(topic/partition/offset); the daemon keeps running and processes every good frame. Claim-check URIs
that escape the allowed roots or point at other schemes/hosts are refused without a request
(a local HTTP server counts the requests it gets: none)."""

from __future__ import annotations

import base64
import json
import os
import struct
import threading
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

from monitor.config import config_from_dict

from .harness import read_all, run_config, stats_reference, tiny_jpeg

MAX_ENCODED = 200_000


def _png(rgb: np.ndarray) -> bytes:
    return cv2.imencode(".png", rgb)[1].tobytes()


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG header declaring a huge image (a decompression bomb's calling
    card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    idat = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _jpeg_bomb(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to declare ``width`` x ``height``."""
    data = bytearray(tiny_jpeg(1))
    i = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, i + 5, height, width)
    return bytes(data)


def _corrupt_png() -> bytes:
    data = bytearray(_png(np.full((48, 64, 3), 90, np.uint8)))
    i = data.index(b"IDAT") + 8
    data[i : i + 16] = b"\x00" * 16  # the compressed stream and its CRC no longer agree
    return bytes(data)


def _corrupt_jpeg() -> bytes:
    """A JPEG header followed by a scan marker where the frame header should be."""
    return b"\xff\xd8\xff\xda\x00\x08" + os.urandom(64) + b"\xff\xd9"


JSON = [("content-type", b"application/json")]


def _envelope(**fields) -> bytes:
    return json.dumps(fields).encode()


class _CountingServer:
    """An HTTP server that would serve a JPEG to anyone: it must never be asked."""

    def __init__(self):
        counter = self
        self.requests = 0

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                counter.requests += 1
                body = tiny_jpeg(0)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def bad_inputs(root, outside, server_url):
    """(name, key, value, headers, expected reason) for every kind of bad record."""
    jpeg = tiny_jpeg(3)
    png = _png(np.full((48, 64, 3), 120, np.uint8))
    cam = b"cam-bad"
    h = [("camera_id", cam)]

    def uri(u):
        return _envelope(camera_id="cam-bad", uri=u)

    return [
        ("truncated jpeg", cam, jpeg[: len(jpeg) // 2], h, "corrupt"),
        ("corrupt jpeg", cam, _corrupt_jpeg(), h, "corrupt"),
        ("truncated png", cam, png[: len(png) // 2], h, "corrupt"),
        ("corrupt png", cam, _corrupt_png(), h, "corrupt"),
        ("zero-length", cam, b"", h, "empty"),
        ("non-image bytes", cam, b"GIF89a this is not a supported image", h, "unsupported_format"),
        ("text", cam, b"hello, world", h, "unsupported_format"),
        ("png bomb 100000x100000", cam, _png_bomb(100_000, 100_000), h, "too_many_pixels"),
        ("jpeg bomb 65535x65535", cam, _jpeg_bomb(65_535, 65_535), h, "too_many_pixels"),
        ("oversize record", cam, jpeg + b"\x00" * (MAX_ENCODED + 1), h, "too_large"),
        ("non-utf8 header", cam, jpeg, [("camera_id", b"\xff\xfe\xfd")], "bad_header"),
        ("non-utf8 key, no camera header", b"\xff\xfe", jpeg, [], "bad_header"),
        ("bad ts header", cam, jpeg, h + [("ts", b"yesterday")], "bad_header"),
        ("no camera id", None, jpeg, [], "bad_header"),
        (
            "json that does not parse",
            cam,
            b'{"camera_id": "cam-bad", "image_b64": ',
            JSON,
            "bad_envelope",
        ),
        ("json array", cam, b"[1, 2, 3]", JSON, "bad_envelope"),
        ("json not utf-8", cam, b'{"camera_id": "\xff"}', JSON, "bad_envelope"),
        ("envelope without image", cam, _envelope(camera_id="cam-bad"), JSON, "bad_envelope"),
        (
            "image_b64 not base64",
            cam,
            _envelope(camera_id="cam-bad", image_b64="!!not base64!!"),
            JSON,
            "bad_envelope",
        ),
        (
            "predictions not an object",
            cam,
            _envelope(camera_id="cam-bad", image_b64="", predictions=[1]),
            JSON,
            "bad_envelope",
        ),
        (
            "envelope with bad ts",
            cam,
            _envelope(camera_id="cam-bad", ts="noon", image_b64=base64.b64encode(jpeg).decode()),
            JSON,
            "bad_header",
        ),
        ("http uri (ssrf)", cam, uri(f"{server_url}/frame.jpg"), JSON, "uri_not_allowed"),
        (
            "https uri to metadata",
            cam,
            uri("https://169.254.169.254/latest/meta-data/"),
            JSON,
            "uri_not_allowed",
        ),
        ("s3 uri", cam, uri("s3://bucket/frame.jpg"), JSON, "uri_not_allowed"),
        ("ftp uri", cam, uri("ftp://127.0.0.1/frame.jpg"), JSON, "uri_not_allowed"),
        ("gopher uri", cam, uri("gopher://127.0.0.1:70/_frame"), JSON, "uri_not_allowed"),
        (
            "data uri",
            cam,
            uri("data:image/jpeg;base64," + base64.b64encode(jpeg).decode()),
            JSON,
            "uri_not_allowed",
        ),
        (
            "file uri with a host",
            cam,
            uri(f"file://evil.example{root}/ok.jpg"),
            JSON,
            "uri_not_allowed",
        ),
        ("file uri outside roots", cam, uri("file:///etc/passwd"), JSON, "uri_not_allowed"),
        (
            "file uri escaping with ..",
            cam,
            uri(f"file://{root}/../{outside.name}/secret.jpg"),
            JSON,
            "uri_not_allowed",
        ),
        (
            "file uri escaping with %2e%2e",
            cam,
            uri(f"file://{root}/%2e%2e/{outside.name}/secret.jpg"),
            JSON,
            "uri_not_allowed",
        ),
        (
            "file uri via a symlink out",
            cam,
            uri(f"file://{root}/link.jpg"),
            JSON,
            "uri_not_allowed",
        ),
        (
            "file uri via a symlinked dir",
            cam,
            uri(f"file://{root}/linkdir/secret.jpg"),
            JSON,
            "uri_not_allowed",
        ),
        ("file uri missing", cam, uri(f"file://{root}/missing.jpg"), JSON, "uri_unreadable"),
        # found by the fuzz test: both used to raise out of parse_record and crash the loop (a
        # poison pill)
        ("file uri with a NUL byte", cam, uri(f"file://{root}/ok.jpg%00"), JSON, "uri_not_allowed"),
        (
            "envelope ts Infinity",
            cam,
            b'{"camera_id": "cam-bad", "ts": Infinity, "image_b64": "'
            + base64.b64encode(jpeg)
            + b'"}',
            JSON,
            "bad_header",
        ),
    ]


def test_every_bad_input_is_dead_lettered_by_reason_and_good_frames_flow(
    broker, topic, tmp_path, run_daemon
):
    root = tmp_path / "frames"
    outside = tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(tiny_jpeg(9))
    (root / "link.jpg").symlink_to(outside / "secret.jpg")
    (root / "linkdir").symlink_to(outside, target_is_directory=True)
    (root / "ok.jpg").write_bytes(tiny_jpeg(4))
    server = _CountingServer()
    try:
        bad = bad_inputs(root, outside, server.url)
        good = []
        for i in range(90):
            cam = f"cam-{i % 3}".encode()
            good.append((cam, tiny_jpeg(i % 8), [("camera_id", cam)]))
        # good envelopes: inline base64 and a claim check inside the allowed root
        good.append(
            (
                b"cam-0",
                _envelope(camera_id="cam-0", image_b64=base64.b64encode(tiny_jpeg(2)).decode()),
                JSON,
            )
        )
        good.append((b"cam-1", _envelope(camera_id="cam-1", uri=f"file://{root}/ok.jpg"), JSON))
        # interleave: a bad record after every third good one
        records, b = [], list(bad)
        for i, g in enumerate(good):
            records.append(g)
            if i % 3 == 2 and b:
                records.append(b.pop(0))
        records += b
        records = [r[-4:-1] if len(r) == 5 else r for r in records]
        from kafka import KafkaProducer

        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap, linger_ms=5, max_request_size=8 << 20
        )
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush()
        producer.close()

        cfg = run_config(
            broker.bootstrap,
            topic,
            stats_reference(tmp_path),
            f"bad-{topic}",
            source={"allowed_roots": [str(root)]},
            decode={"max_encoded_bytes": MAX_ENCODED},
            http={"port": 0},
        )
        cfg.pop("log_level")
        d = run_daemon(config_from_dict(cfg))

        def done():
            handled = d.value("driftmon_frames_total", outcome="processed") + d.value(
                "driftmon_frames_total", outcome="dead_lettered"
            )
            return handled >= len(records)

        assert d.wait_for(done, timeout=90), "not every record was handled"
        assert d.thread.is_alive(), "the daemon's loop died"

        assert d.value("driftmon_frames_total", outcome="processed") == len(good)
        assert d.value("driftmon_frames_total", outcome="dead_lettered") == len(bad)
        expected: dict[str, int] = {}
        for *_, reason in bad:
            expected[reason] = expected.get(reason, 0) + 1
        got = {r: d.value("driftmon_bad_records_total", reason=r) for r in expected}
        assert got == expected
        assert d.value("driftmon_dead_letters_total") == len(bad)
        assert server.requests == 0, "a claim-check URI made the daemon send a request (SSRF)"
        port = d.daemon.port
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
        d.stop()
    finally:
        server.close()

    # each dead letter names its reason, the error, and the origin; its value and key are the
    # original's
    originals = {(r.partition, r.offset): r for r in read_all(broker.bootstrap, topic, 3)}
    letters = read_all(broker.bootstrap, f"{topic}.dlq")
    assert len(letters) == len(bad)
    by_value = {}
    for name, key, value, _headers, reason in bad:
        by_value.setdefault((key, value), []).append((name, reason))
    seen = set()
    for letter in letters:
        h = dict(letter.headers)
        assert h["driftmon_origin_topic"] == topic.encode()
        origin = originals[(int(h["driftmon_origin_partition"]), int(h["driftmon_origin_offset"]))]
        assert (letter.key, letter.value) == (origin.key, origin.value)
        assert h["driftmon_error"]
        candidates = by_value[(origin.key, origin.value)]
        assert h["driftmon_error_reason"].decode() in {r for _, r in candidates}, (candidates, h)
        for k, v in origin.headers:  # the producer's headers travel with the dead letter
            assert (k, v) in letter.headers
        seen.add((origin.partition, origin.offset))
    assert len(seen) == len(bad)
