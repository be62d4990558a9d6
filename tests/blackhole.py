"""A TCP server on 127.0.0.1 that accepts connections and never answers: a collector that hangs.

    with Blackhole() as hole:
        exporter = OTLPSpanExporter(endpoint=hole.url("/v1/traces"))

Connections are accepted (so the client's connect succeeds) and held open without reading or
writing until the server stops; a connection is never held longer than ``hold_limit_s``.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

__all__ = ["Blackhole"]


class Blackhole:
    def __init__(self, hold_limit_s: float = 30.0) -> None:
        self.hold_limit_s = hold_limit_s
        self.accepted = 0
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.settimeout(0.05)
        self._held: list[tuple[socket.socket, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="blackhole", daemon=True)

    @property
    def port(self) -> int:
        port: int = self._socket.getsockname()[1]
        return port

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def sentry_dsn(self) -> str:
        return f"http://key@127.0.0.1:{self.port}/1"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except (TimeoutError, OSError):
                connection = None
            if connection is not None:
                self.accepted += 1
                self._held.append((connection, time.monotonic()))
            now = time.monotonic()
            for held in [h for h in self._held if now - h[1] > self.hold_limit_s]:
                self._held.remove(held)
                held[0].close()

    def __enter__(self) -> Blackhole:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5.0)
        for connection, _ in self._held:
            connection.close()
        self._socket.close()
