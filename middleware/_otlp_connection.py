"""One kept-alive ``http.client`` connection to a plain-HTTP OTLP collector, failing fast when it is dead.

A refused connection or a timeout raises ``CollectorUnreachable`` at once: a dead collector costs an
invocation milliseconds and opens the breaker, instead of an exporter's retries with backoff. A
kept-alive connection the collector closed meanwhile (stale) is tried once more on a new one, as
``requests``' pool does. Used by the lean exporter (``_otlp_lean``) and, under OTel's ``OTLPSpanExporter``,
by the transport of ``_otel_compat``.
"""

from __future__ import annotations

import http.client
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["CollectorUnreachable", "KeptAliveConnection", "Response"]


class CollectorUnreachable(Exception):
    """The collector refused the connection or did not answer in time: not worth an exporter's retries."""


class Response:
    """The collector's answer. (A plain class: a dataclass would cost a cold start more than this module.)"""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, body: bytes, headers: Mapping[str, str]) -> None:
        self.status, self.reason, self.body, self.headers = status, reason, body, headers


class KeptAliveConnection:
    """Plain HTTP over one kept-alive connection, one request at a time (an exporter sends from one thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: http.client.HTTPConnection | None = None
        self._origin: tuple[str | None, int | None] | None = None

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float | None, data: bytes | None
    ) -> Response:
        """The collector's answer, whatever its status; ``CollectorUnreachable`` when there is none."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        origin = (parts.hostname, parts.port)
        with self._lock:
            reused = self._connection is not None and self._origin == origin
            for attempt in (1, 2):
                try:
                    return self._send(origin, method, target, headers, timeout, data)
                except TimeoutError as exc:
                    self.close()
                    raise CollectorUnreachable(f"no answer from {url} ({type(exc).__name__})") from None
                except (OSError, http.client.HTTPException) as exc:
                    self.close()
                    # A kept-alive connection the collector closed: one more try on a new one.
                    if not reused or attempt == 2:
                        raise CollectorUnreachable(f"cannot connect to {url} ({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(
        self,
        origin: tuple[str | None, int | None],
        method: str,
        target: str,
        headers: Mapping[str, str],
        timeout: float | None,
        data: bytes | None,
    ) -> Response:
        connection = self._connection
        if connection is None or self._origin != origin:
            self.close()
            connection = self._connection = http.client.HTTPConnection(origin[0] or "localhost", origin[1] or 80)
            self._origin = origin
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        connection.request(method, target, body=data, headers=dict(headers))
        response = connection.getresponse()
        content = response.read()
        if response.will_close:
            self.close()
        return Response(response.status, response.reason, content, response.headers)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection = self._origin = None
