"""The HTTP endpoint of `sinkframe run`: /metrics, /healthz, /readyz."""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from sinkframe.errors import SinkframeError

log = logging.getLogger(__name__)

HealthFn = Callable[[], "tuple[bool, dict]"]


class OpsServer:
    """Serves in a daemon thread from construction (the port is bound at once) until `close()`."""

    def __init__(self, port: int, *, host: str = "0.0.0.0", registry: CollectorRegistry,
                 health: HealthFn, ready: HealthFn):
        handler = _handler(registry, health, ready)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as err:
            raise SinkframeError(f"cannot serve metrics on {host}:{port}: {err.strerror}; "
                                 "choose another port with --metrics-port or SINKFRAME_METRICS_PORT") from err
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sinkframe-metrics",
                                        daemon=True)
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on %s:%d", host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def _handler(registry: CollectorRegistry, health: HealthFn, ready: HealthFn):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    encoder, content_type = choose_encoder(self.headers.get("Accept"))
                    self._send(200, content_type, encoder(registry))
                elif path in ("/healthz", "/readyz"):
                    ok, body = (health if path == "/healthz" else ready)()
                    self._send(200 if ok else 503, "application/json",
                               json.dumps(body, indent=2).encode() + b"\n")
                elif path == "/":
                    self._send(200, "text/plain; charset=utf-8", b"sinkframe: /metrics /healthz /readyz\n")
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")
            except Exception as err:  # noqa: BLE001 - answer 500 rather than drop the connection
                log.exception("serving %s", path)
                self._send(500, "text/plain; charset=utf-8", f"{type(err).__name__}: {err}\n".encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):  # scrapes every 15 s would flood the log
            log.debug("%s %s", self.address_string(), fmt % args)

    return Handler
