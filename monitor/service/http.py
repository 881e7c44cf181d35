"""HTTP: /metrics, /healthz, /readyz, /status, plus routes other stages register (drift
events, the Alertmanager webhook), served from a background thread.

The server only reads what the daemon publishes (a status snapshot and two health predicates);
it never touches the consume loop's state directly. A route is a function
``(request) -> Response``, registered by method and path prefix. :class:`Router` decides every
answer and needs no socket; :class:`HttpServer` only carries requests and answers over one.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.files import JSONObject

log = logging.getLogger(__name__)


MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-cased names
    body: bytes


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response]


class Router:
    """Answers requests without a socket: the routes other stages registered (method and path
    prefix, longest prefix first), then the built-in endpoints, else 404.

    Every answer comes back ready for the wire: its body is bytes (a route's bytes as they are,
    anything else as JSON with ``application/json``). A registered route that raises answers 500
    and is logged, so a bug in one route cannot take the server down; a built-in endpoint that
    raises propagates (the adapter's server logs it and drops the connection).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        status: Callable[[], JSONObject],
        alive: Callable[[], bool],
        ready: Callable[[], bool],
        routes: dict[tuple[str, str], Route] | None = None,
    ):
        self._registry = registry
        self._status = status
        self._alive = alive
        self._ready = ready
        # longest prefix first, so "/events/" wins over "/events"
        self._routes = sorted((routes or {}).items(), key=lambda kv: -len(kv[0][1]))
        self._builtin: dict[str, Callable[[], Response]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/readyz": self._readyz,
            "/status": self._status_page,
        }

    def handle(self, request: Request) -> Response:
        """The answer to ``request``, its body encoded."""
        route = self._match(request.method, request.path)
        if route is not None:
            return _encoded(self._call(route, request))
        builtin = self._builtin.get(request.path) if request.method == "GET" else None
        if builtin is not None:
            return _encoded(builtin())
        return _encoded(Response(404, {"error": f"no such path: {_not_found_path(request)}"}))

    def _match(self, method: str, path: str) -> Route | None:
        """The registered route for ``method`` whose prefix is ``path`` itself or, when the prefix
        ends with "/", a parent of it."""
        for (m, prefix), route in self._routes:
            if m == method and (
                path == prefix or (prefix.endswith("/") and path.startswith(prefix))
            ):
                return route
        return None

    def _call(self, route: Route, request: Request) -> Response:
        if _body_length(request) > MAX_BODY_BYTES:
            return Response(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
        try:
            return route(request)
        except Exception:  # a bug in a route must not kill the server thread
            log.exception("http %s %s failed", request.method, request.path)
            return Response(500, {"error": "internal error"})

    def _metrics(self) -> Response:
        return Response(200, generate_latest(self._registry), CONTENT_TYPE_LATEST)

    def _healthz(self) -> Response:
        ok = self._alive()
        return Response(200 if ok else 503, {"alive": ok})

    def _readyz(self) -> Response:
        ok = self._ready()
        return Response(200 if ok else 503, {"ready": ok})

    def _status_page(self) -> Response:
        return Response(200, self._status())


def _body_length(request: Request) -> int:
    """The body's declared length (Content-Length; the adapter leaves an oversized body unread),
    else its actual one. A malformed Content-Length raises."""
    declared = request.headers.get("content-length")
    return int(declared) if declared else len(request.body)


def _not_found_path(request: Request) -> str:
    """The path a 404 names: a POST's with its query, as the server always answered."""
    if request.method == "POST" and request.query:
        return f"{request.path}?{request.query}"
    return request.path


def _encoded(res: Response) -> Response:
    """``res`` with its body as the bytes to send: bytes as they are, anything else as JSON."""
    if isinstance(res.body, (bytes, bytearray)):
        return Response(res.status, bytes(res.body), res.content_type, res.headers)
    return Response(
        res.status,
        json.dumps(res.body, default=_jsonable).encode(),
        "application/json",
        res.headers,
    )


class HttpServer:
    """A :class:`Router` on a socket, served from a background thread: parses each GET or POST
    into a :class:`Request` and writes the router's answer (other methods get the stdlib's 501)."""

    def __init__(self, host: str, port: int, router: Router):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                self._answer(router.handle(self._request("GET")))

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                self._answer(router.handle(self._request("POST")))

            def _request(self, method: str) -> Request:
                path, _, query = self.path.partition("?")
                return Request(
                    method,
                    path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    self._body(),
                )

            def _body(self) -> bytes:
                """The body, read only when its declared length is within the limit: the router
                refuses an oversized one without it ever being read."""
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:  # the router raises on it when a route would take the body
                    return b""
                return self.rfile.read(length) if 0 < length <= MAX_BODY_BYTES else b""

            def _answer(self, res: Response) -> None:
                self.send_response(res.status)
                self.send_header("Content-Type", res.content_type)
                for k, v in res.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(res.body)))
                self.end_headers()
                self.wfile.write(res.body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http %s", fmt % args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="driftmon-http", daemon=True
        )
        self.port = self._httpd.server_address[1]

    def start(self) -> HttpServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
