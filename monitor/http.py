"""HTTP: /metrics, /healthz, /readyz, /status, served from a background thread.

The server only reads what the daemon publishes (a status snapshot and two health predicates);
it never touches the consume loop's state directly.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HttpServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry, *,
                 status: Callable[[], dict[str, Any]], alive: Callable[[], bool], ready: Callable[[], bool]):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
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

            def _json(self, code: int, body: Any) -> None:
                self._send(code, json.dumps(body, default=_jsonable).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
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
