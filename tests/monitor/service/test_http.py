"""The HTTP router, without a socket: built-in endpoints, registered routes, error answers; and
one round trip through the socket adapter."""

import json
import logging
import urllib.error
import urllib.request

import numpy as np
import pytest
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from monitor.service.http import MAX_BODY_BYTES, HttpServer, Request, Response, Router


def request(path, method="GET", query="", headers=None, body=b""):
    return Request(method, path, query, headers or {}, body)


def router(routes=None, *, alive=True, ready=True, status=None, registry=None):
    return Router(
        registry or CollectorRegistry(),
        status=status or (lambda: {"streams": {}}),
        alive=lambda: alive,
        ready=lambda: ready,
        routes=routes,
    )


def answer(route_name):
    """A route that says which route answered and what it was given."""
    return lambda req: Response(
        200, {"route": route_name, "path": req.path, "query": req.query, "body": req.body.decode()}
    )


def body(res):
    return json.loads(res.body)


# --- built-in endpoints ---------------------------------------------------------------------------


def test_metrics_are_the_registry_in_the_prometheus_text_format():
    registry = CollectorRegistry()
    Counter("driftmon_test_things", "things", registry=registry).inc(3)
    res = router(registry=registry).handle(request("/metrics"))
    assert res.status == 200 and res.content_type == CONTENT_TYPE_LATEST
    assert b"driftmon_test_things_total 3.0" in res.body


@pytest.mark.parametrize("path,key", [("/healthz", "alive"), ("/readyz", "ready")])
def test_health_and_readiness_follow_their_predicates(path, key):
    up = router(alive=True, ready=True).handle(request(path))
    down = router(alive=False, ready=False).handle(request(path))
    assert (up.status, body(up)) == (200, {key: True})
    assert (down.status, body(down)) == (503, {key: False})
    assert up.content_type == down.content_type == "application/json"


def test_health_and_readiness_are_independent():
    r = router(alive=True, ready=False)
    assert (
        r.handle(request("/healthz")).status == 200 and r.handle(request("/readyz")).status == 503
    )


def test_status_is_the_published_snapshot_as_json_numpy_values_included():
    snapshot = {"streams": {"cam-1": {"frames": np.int64(7), "means": np.array([0.5, 1.5])}}}
    res = router(status=lambda: snapshot).handle(request("/status", query="pretty=1"))
    assert res.status == 200 and res.content_type == "application/json"
    assert body(res) == {"streams": {"cam-1": {"frames": 7, "means": [0.5, 1.5]}}}


def test_built_in_endpoints_answer_get_only():
    for path in ("/metrics", "/healthz", "/readyz", "/status"):
        res = router().handle(request(path, method="POST"))
        assert (res.status, body(res)) == (404, {"error": f"no such path: {path}"})


def test_a_failing_status_snapshot_is_not_masked_as_an_answer():
    def broken():
        raise RuntimeError("status bug")

    with pytest.raises(RuntimeError, match="status bug"):
        router(status=broken).handle(request("/status"))


# --- registered routes ----------------------------------------------------------------------------


def test_a_route_gets_the_request_and_its_answer_is_encoded_as_json():
    seen = []

    def route(req):
        seen.append(req)
        return Response(201, {"ok": True, "n": np.float32(0.5)}, headers={"X-Driftmon": "yes"})

    req = request("/alerts/alertmanager", "POST", "a=1", {"authorization": "Bearer t"}, b'{"x": 1}')
    res = router({("POST", "/alerts/alertmanager"): route}).handle(req)
    assert seen == [req]
    assert (res.status, res.content_type, res.headers) == (
        201,
        "application/json",
        {"X-Driftmon": "yes"},
    )
    assert body(res) == {"ok": True, "n": 0.5}


def test_a_bytes_answer_is_sent_as_it_is_with_its_content_type():
    jpeg = b"\xff\xd8\xff\xe0 not json"
    r = router({("GET", "/events/"): lambda req: Response(200, bytearray(jpeg), "image/jpeg")})
    res = r.handle(request("/events/e1/contact-sheet.jpg"))
    assert (res.status, res.content_type, res.body) == (200, "image/jpeg", jpeg)


def test_a_json_answer_is_always_application_json():
    res = router({("GET", "/x"): lambda req: Response(200, {"a": 1}, "text/plain")}).handle(
        request("/x")
    )
    assert res.content_type == "application/json" and body(res) == {"a": 1}


def test_the_longest_matching_prefix_wins_whatever_the_registration_order():
    routes = {
        ("GET", "/"): answer("root"),
        ("GET", "/events"): answer("list"),
        ("GET", "/events/"): answer("one"),
        ("GET", "/events/e1/"): answer("artefact"),
    }
    r = router(routes)
    assert body(r.handle(request("/events")))["route"] == "list"
    assert body(r.handle(request("/events/e1")))["route"] == "one"
    assert body(r.handle(request("/events/e1/report")))["route"] == "artefact"
    assert body(r.handle(request("/elsewhere")))["route"] == "root"


def test_a_prefix_without_a_trailing_slash_matches_only_itself():
    r = router({("GET", "/events"): answer("list")})
    assert r.handle(request("/events")).status == 200
    for path in ("/events/e1", "/eventsx", "/event"):
        assert r.handle(request(path)).status == 404


def test_registered_routes_come_before_the_built_in_endpoints():
    r = router({("GET", "/status"): answer("mine")}, status=lambda: {"built_in": True})
    assert body(r.handle(request("/status")))["route"] == "mine"


def test_an_unknown_path_is_404_naming_it():
    res = router({("GET", "/events"): answer("list")}).handle(request("/nope", query="a=1"))
    assert res.status == 404 and res.content_type == "application/json"
    assert body(res) == {"error": "no such path: /nope"}


def test_an_unknown_post_is_404_naming_its_query_too():
    res = router().handle(request("/nope", "POST", query="a=1"))
    assert (res.status, body(res)) == (404, {"error": "no such path: /nope?a=1"})


def test_the_wrong_method_is_answered_as_an_unknown_path():
    called = []
    r = router(
        {
            ("POST", "/alerts/alertmanager"): lambda req: called.append(req) or Response(200, {}),
            ("GET", "/events"): answer("list"),
        }
    )
    for method, path in (("GET", "/alerts/alertmanager"), ("POST", "/events")):
        res = r.handle(request(path, method))
        assert (res.status, body(res)) == (404, {"error": f"no such path: {path}"})
    assert called == []


def test_a_body_over_the_limit_is_refused_before_the_route_runs():
    called = []
    r = router({("POST", "/in"): lambda req: called.append(req) or Response(200, {})})
    declared = r.handle(request("/in", "POST", headers={"content-length": str(MAX_BODY_BYTES + 1)}))
    actual = r.handle(request("/in", "POST", body=b"x" * (MAX_BODY_BYTES + 1)))
    for res in (declared, actual):
        assert (res.status, body(res)) == (413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
    assert called == []
    at_limit = r.handle(
        request(
            "/in",
            "POST",
            headers={"content-length": str(MAX_BODY_BYTES)},
            body=b"x" * MAX_BODY_BYTES,
        )
    )
    assert at_limit.status == 200 and len(called) == 1


def test_a_route_that_raises_answers_500_and_is_logged(caplog):
    def broken(req):
        raise KeyError("bug")

    r = router({("GET", "/events/"): broken, ("GET", "/events"): answer("list")})
    with caplog.at_level(logging.ERROR, logger="monitor.service.http"):
        res = r.handle(request("/events/e1"))
    assert (res.status, body(res)) == (500, {"error": "internal error"})
    assert "http GET /events/e1 failed" in caplog.text and "KeyError: 'bug'" in caplog.text
    # the router goes on answering
    assert body(r.handle(request("/events")))["route"] == "list"


# --- the socket adapter ---------------------------------------------------------------------------


def test_the_server_carries_requests_and_answers_over_a_socket():
    seen = []

    def echo(req):
        seen.append(req)
        return Response(202, {"got": req.body.decode()}, headers={"X-Echo": req.headers["x-token"]})

    server = HttpServer("127.0.0.1", 0, router({("POST", "/echo"): echo}, ready=False)).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        post = urllib.request.Request(
            base + "/echo?a=1", data=b"hello", method="POST", headers={"X-Token": "t"}
        )
        with urllib.request.urlopen(post, timeout=10) as res:
            assert (res.status, res.headers["X-Echo"], json.loads(res.read())) == (
                202,
                "t",
                {"got": "hello"},
            )
        assert (seen[0].path, seen[0].query, seen[0].body) == ("/echo", "a=1", b"hello")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/readyz", timeout=10)
        assert (e.value.code, e.value.headers["Content-Type"], json.loads(e.value.read())) == (
            503,
            "application/json",
            {"ready": False},
        )
    finally:
        server.close()
