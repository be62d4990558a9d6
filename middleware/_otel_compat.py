"""The one place ``tracing`` relies on OpenTelemetry beyond its documented API: the OTLP exporter's HTTP layer.

``OTLPSpanExporter(_transport=...)`` and ``opentelemetry.exporter.http.transport._base.BaseHTTPTransport``
are private (checked on opentelemetry-exporter-otlp-proto-http 1.45.2 with
opentelemetry-exporter-http-transport 0.66b2). Through them the exporter keeps everything it reads from
``OTEL_EXPORTER_OTLP_*`` (endpoint, headers, timeout, compression, certificates, retries on 429/502/503/504)
while ``FailFastTransport`` sends over ``http.client``: a plain-HTTP collector next to the function (the
collector layer's ``http://localhost:4318``) then costs no ``requests``/``urllib3`` import at cold start.
HTTPS endpoints (certificates from ``OTEL_EXPORTER_OTLP_*CERTIFICATE``/``*CLIENT_KEY``) and proxies keep
going through ``requests`` (its CA bundle and proxy rules), as do older exporters without pluggable
transports (no ``opentelemetry-exporter-http-transport``). Either way a refused connection or a timeout fails
the export at once (``CollectorUnreachable``, which the exporter does not retry): a dead collector costs
an invocation milliseconds, not the exporter's backoff.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["CollectorUnreachable", "otlp_span_exporter"]

#: Proxy variables ``requests`` honours for plain-HTTP endpoints: when one is set, ``requests`` sends.
_PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
#: Where the exporter reads its endpoint, in its order; its default is plain HTTP.
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


class CollectorUnreachable(Exception):
    """The collector refused the connection or did not answer in time: not worth the exporter's retries."""


def otlp_span_exporter() -> Any:
    """OTel's ``OTLPSpanExporter`` configured from ``OTEL_EXPORTER_OTLP_*``, failing fast on a dead collector."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if _plain_http():
        try:
            return OTLPSpanExporter(_transport=_fail_fast_transport())  # type: ignore[call-overload,unused-ignore]
        except (ImportError, TypeError):  # an older exporter without pluggable transports
            pass
    return OTLPSpanExporter(session=fail_fast_session())


def _plain_http() -> bool:
    """True when the exporter will send over plain HTTP without a proxy (what ``http.client`` does alike)."""
    endpoint = urlsplit(next((os.environ[v] for v in _ENDPOINT_VARIABLES if os.environ.get(v)), "http://").strip())
    # Credentials in the URL are requests' to send (basic auth), as are proxies.
    plain = endpoint.scheme == "http" and endpoint.username is None
    return plain and not any(os.environ.get(v) for v in _PROXY_VARIABLES)


def fail_fast_session() -> Any:
    """A ``requests.Session`` that turns connection errors and timeouts into ``CollectorUnreachable``.
    A connection dropped by the collector (a stale keep-alive) is tried once more first."""
    import requests

    class FailFastSession(requests.Session):
        def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().request(method, url, *args, **kwargs)
            except requests.exceptions.Timeout as exc:
                raise CollectorUnreachable(f"no answer from {url!s} ({type(exc).__name__})") from None
            except requests.exceptions.ConnectionError:
                pass
            try:
                return super().request(method, url, *args, **kwargs)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise CollectorUnreachable(f"cannot connect to {url!s} ({type(exc).__name__})") from None

    return FailFastSession()


def _fail_fast_transport() -> Any:
    import http.client

    from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

    @dataclass(frozen=True, slots=True)
    class Result(BaseHTTPResult):
        body: bytes = b""
        response_headers: Mapping[str, str] | None = None

        def content(self) -> bytes:
            return self.body

        def headers(self) -> Mapping[str, str]:
            return self.response_headers if self.response_headers is not None else {}

    class FailFastTransport(BaseHTTPTransport):
        """Plain HTTP over one kept-alive ``http.client`` connection (the exporter sends from one thread)."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._connection: http.client.HTTPConnection | None = None
            self._origin: tuple[str | None, int | None] | None = None

        def request(
            self,
            method: str,
            url: str,
            *,
            headers: dict[str, str] | None = None,
            timeout: float | None = None,
            data: bytes | None = None,
        ) -> BaseHTTPResult:
            parts = urlsplit(url)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            origin = (parts.hostname, parts.port)
            with self._lock:
                reused = self._connection is not None and self._origin == origin
                for attempt in (1, 2):
                    try:
                        return self._send(origin, method, target, headers or {}, timeout, data)
                    except TimeoutError as exc:
                        self.close()
                        return Result(error=CollectorUnreachable(f"no answer from {url} ({type(exc).__name__})"))
                    except (OSError, http.client.HTTPException) as exc:
                        self.close()
                        # A kept-alive connection the collector closed: one more try on a new one.
                        if not reused or attempt == 2:
                            return Result(error=CollectorUnreachable(f"cannot connect to {url} ({type(exc).__name__})"))
            raise AssertionError("unreachable")  # pragma: no cover

        def _send(
            self,
            origin: tuple[str | None, int | None],
            method: str,
            target: str,
            headers: dict[str, str],
            timeout: float | None,
            data: bytes | None,
        ) -> BaseHTTPResult:
            connection = self._connection
            if connection is None or self._origin != origin:
                self.close()
                connection = self._connection = http.client.HTTPConnection(origin[0] or "localhost", origin[1] or 80)
                self._origin = origin
            connection.timeout = timeout
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
            connection.request(method, target, body=data, headers=headers)
            response = connection.getresponse()
            content = response.read()
            if response.will_close:
                self.close()
            return Result(response.status, response.reason, None, content, response.headers)  # type: ignore[arg-type]

        def is_connection_error(self, exception: Exception | None) -> bool:
            # Ours are final (CollectorUnreachable): a stale keep-alive was already tried again.
            return False

        def close(self) -> None:
            if self._connection is not None:
                self._connection.close()
            self._connection = self._origin = None

    return FailFastTransport()
