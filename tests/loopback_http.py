"""The plumbing the local test receivers (otlp_receiver.py, sentry_receiver.py) share.

``LoopbackServer`` runs a threaded HTTP server on 127.0.0.1 (random port) in a daemon thread, started and
stopped around a test (also as a context manager); ``QuietHandler`` is a keep-alive request handler that
logs nothing and answers with ``_reply``. ``unused_port()`` names a port where nothing listens.
"""

from __future__ import annotations

import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

__all__ = ["LoopbackServer", "QuietHandler", "unused_port"]

_Server = TypeVar("_Server", bound="LoopbackServer")


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), no request log; replies carry ``content_type`` and ``default_payload``."""

    protocol_version = "HTTP/1.1"
    content_type = "application/octet-stream"
    default_payload = b""

    def _reply(self, status: int, payload: bytes | None = None) -> None:
        body = self.default_payload if payload is None else payload
        self.send_response(status)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in self.reply_headers().items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_headers(self) -> dict[str, str]:
        """Headers every reply carries besides the content's (none here)."""
        return {}

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackServer:
    """A threaded HTTP server on 127.0.0.1 (random port), served from a daemon thread named ``name``; HTTPS
    with ``ssl_context`` (a server context holding its certificate)."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], name: str, port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        if ssl_context is not None:
            # Each accepted connection does its handshake first (a client refusing the certificate is dropped).
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self: _Server) -> _Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self: _Server) -> _Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def unused_port() -> int:
    """A port on 127.0.0.1 with no listener (bound then closed), so connections are refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
