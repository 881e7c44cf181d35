"""HTTP: /metrics, /healthz, /readyz, /status, plus routes other stages register (drift
events, the Alertmanager webhook), served from a background thread.

The server only reads what the daemon publishes (a status snapshot and two health predicates);
it never touches the consume loop's state directly. A route is a function
``(request) -> Response``, registered by method and path prefix.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from dataclasses import dataclass, field
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

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


class HttpServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, *,
                 status: Callable[[], dict[str, Any]], alive: Callable[[], bool], ready: Callable[[], bool],
                 routes: dict[tuple[str, str], Route] | None = None):
        server = self
        # longest prefix first, so "/events/" wins over "/events"
        extra = sorted((routes or {}).items(), key=lambda kv: -len(kv[0][1]))

        class Handler(BaseHTTPRequestHandler):
            def _route(self, method: str) -> bool:
                path, _, query = self.path.partition("?")
                for (m, prefix), route in extra:
                    if m == method and (path == prefix or (prefix.endswith("/") and path.startswith(prefix))):
                        length = int(self.headers.get("Content-Length") or 0)
                        if length > MAX_BODY_BYTES:
                            self._json(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                            return True
                        body = self.rfile.read(length) if length else b""
                        req = Request(method, path, query, {k.lower(): v for k, v in self.headers.items()}, body)
                        try:
                            res = route(req)
                        except Exception:  # a bug in a route must not kill the server thread
                            log.exception("http %s %s failed", method, path)
                            res = Response(500, {"error": "internal error"})
                        if isinstance(res.body, (bytes, bytearray)):
                            self._send(res.status, bytes(res.body), res.content_type, res.headers)
                        else:
                            self._json(res.status, res.body, res.headers)
                        return True
                return False

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                if not self._route("POST"):
                    self._json(404, {"error": f"no such path: {self.path}"})

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                if self._route("GET"):
                    return
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = alive()
                    self._json(200 if ok else 503, {"alive": ok})
                elif path == "/readyz":
                    ok = ready()
                    self._json(200 if ok else 503, {"ready": ok})
                elif path == "/status":
                    self._json(200, status())
                else:
                    self._json(404, {"error": f"no such path: {path}"})

            def _json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                self._send(code, json.dumps(body, default=_jsonable).encode(), "application/json", headers)

            def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("http %s", fmt % args)

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="driftmon-http", daemon=True)
        server.port = self._httpd.server_address[1]

    def start(self) -> "HttpServer":
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
