"""The one place ``tracing`` relies on OpenTelemetry beyond its documented API: the OTLP exporter's internals,
and three SDK attributes read to take shortcuts (``span_processors``, ``parent_based_delegate``,
``span_limits``; ``opentelemetry-sdk`` 1.26 to 1.45 name them alike; any other shape answers ``None``, and
the caller then takes no shortcut).

``otlp_span_exporter()`` builds the exporter of the provider made from ``OTEL_*``:

- a plain-HTTP collector (the collector layer's ``http://localhost:4318``, the default) gets our
  ``LeanSpanExporter`` (``_otlp_lean``) wherever it sends exactly as OTel's ``OTLPSpanExporter`` would: no
  protobuf, no exporter package import at cold start. It reads the exporter's version (its ``User-Agent``)
  from the exporter package's ``version/__init__.py`` without importing it (``importlib.metadata`` would
  cost more than the rest). The lean exporter reproduces opentelemetry-exporter-otlp-proto-http
  ``LEAN_FROM`` and newer: older exporters parse ``OTEL_*`` differently (1.44 refuses an empty compression
  or timeout, 1.26 an integer-only timeout) and send other bytes, so with them OTel's own exporter sends.
- anything else gets OTel's ``OTLPSpanExporter``, with everything it reads from ``OTEL_EXPORTER_OTLP_*``.
  Over plain HTTP with a setting the lean exporter leaves to OTel (certificates, credential providers, the
  exporter's own metrics), it sends through ``FailFastTransport`` over ``_http_connection``
  (``OTLPSpanExporter(_transport=...)`` and ``opentelemetry.exporter.http.transport._base.BaseHTTPTransport``
  are private; checked on opentelemetry-exporter-otlp-proto-http 1.45.2 with
  opentelemetry-exporter-http-transport 0.66b2). HTTPS endpoints and proxies keep going through
  ``requests`` (its CA bundle and proxy rules), as do older exporters without pluggable transports.

Every way, a refused connection or a timeout fails the export at once (``EndpointUnreachable``, which no
exporter retries): a dead collector costs an invocation milliseconds, not the exporter's backoff.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "LEAN_FROM",
    "PROXY_VARIABLES",
    "exporter_user_agent",
    "lean_reproduces",
    "otels_span_exporter",
    "otlp_span_exporter",
]

#: Proxy variables ``requests`` honours for plain-HTTP endpoints: when one is set, ``requests`` sends.
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")
#: Where the exporter reads its endpoint, in its order; its default is plain HTTP.
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


_VERSION = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.MULTILINE)
#: The first OTLP/HTTP exporter release ``LeanSpanExporter`` sends exactly as (checked on 1.45.2; 1.44.0 differs).
LEAN_FROM = (1, 45)
_RELEASE = re.compile(r"/(\d+)\.(\d+)")


def otlp_span_exporter() -> Any:
    """An OTLP/HTTP span exporter configured from ``OTEL_EXPORTER_OTLP_*``, failing fast on a dead collector:
    ours where it is exactly equivalent, else OTel's ``OTLPSpanExporter``."""
    user_agent = exporter_user_agent()
    if user_agent is not None and lean_reproduces(user_agent):
        from ._otlp_lean import LeanSpanExporter, lean_settings

        settings = lean_settings(user_agent)
        if settings is not None:
            return LeanSpanExporter(settings)
    return otels_span_exporter()


def otels_span_exporter() -> Any:
    """OTel's ``OTLPSpanExporter`` from ``OTEL_EXPORTER_OTLP_*``, failing fast: over ``FailFastTransport`` for plain
    HTTP where the exporter takes a transport, else over ``fail_fast_session()``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if _plain_http():
        try:
            return OTLPSpanExporter(_transport=_fail_fast_transport())  # type: ignore[call-overload,unused-ignore]
        except (ImportError, TypeError):  # an older exporter without pluggable transports
            pass
    return OTLPSpanExporter(session=fail_fast_session())


def _plain_http() -> bool:
    """True when the exporter will send over plain HTTP without a proxy (what ``_http_connection`` does alike)."""
    endpoint = urlsplit(next((os.environ[v] for v in _ENDPOINT_VARIABLES if os.environ.get(v)), "http://").strip())
    # Credentials in the URL are requests' to send (basic auth), as are proxies.
    plain = endpoint.scheme == "http" and endpoint.username is None
    return plain and not any(os.environ.get(v) for v in PROXY_VARIABLES)


def exporter_user_agent() -> str | None:
    """The ``User-Agent`` OTel's OTLP/HTTP exporter sends (``_OTLP_HTTP_HEADERS``), None when it is not installed."""
    import opentelemetry

    for portion in opentelemetry.__path__:
        try:
            with open(os.path.join(portion, "exporter", "otlp", "proto", "http", "version", "__init__.py")) as file:
                found = _VERSION.search(file.read())
        except OSError:
            continue
        return f"OTel-OTLP-Exporter-Python/{found.group(1)}" if found else None
    return None


def lean_reproduces(user_agent: str) -> bool:
    """The exporter sending ``user_agent`` is one ``LeanSpanExporter`` reproduces (``LEAN_FROM`` or newer)."""
    release = _RELEASE.search(user_agent)
    return release is not None and (int(release[1]), int(release[2])) >= LEAN_FROM


def fail_fast_session() -> Any:
    """A ``requests.Session`` that turns connection errors and timeouts into ``EndpointUnreachable``.
    A connection dropped by the collector (a stale keep-alive) is tried once more first."""
    import requests

    from ._http_connection import EndpointUnreachable

    class FailFastSession(requests.Session):
        def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().request(method, url, *args, **kwargs)
            except requests.exceptions.Timeout as exc:
                raise EndpointUnreachable(f"no answer from {url!s} ({type(exc).__name__})") from None
            except requests.exceptions.ConnectionError:
                pass
            try:
                return super().request(method, url, *args, **kwargs)
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                raise EndpointUnreachable(f"cannot connect to {url!s} ({type(exc).__name__})") from None

    return FailFastSession()


def _fail_fast_transport() -> Any:
    from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

    from ._http_connection import EndpointUnreachable, KeptAliveConnection

    @dataclass(frozen=True, slots=True)
    class Result(BaseHTTPResult):
        body: bytes = b""
        response_headers: Mapping[str, str] | None = None

        def content(self) -> bytes:
            return self.body

        def headers(self) -> Mapping[str, str]:
            return self.response_headers if self.response_headers is not None else {}

    class FailFastTransport(BaseHTTPTransport):
        """OTel's transport interface over our ``KeptAliveConnection``."""

        def __init__(self) -> None:
            self._connection = KeptAliveConnection()

        def request(
            self,
            method: str,
            url: str,
            *,
            headers: dict[str, str] | None = None,
            timeout: float | None = None,
            data: bytes | None = None,
        ) -> BaseHTTPResult:
            try:
                answer = self._connection.request(method, url, headers=headers or {}, timeout=timeout, data=data)
            except EndpointUnreachable as exc:
                return Result(error=exc)
            return Result(answer.status, answer.reason, None, answer.body, answer.headers)

        def is_connection_error(self, exception: Exception | None) -> bool:
            # Ours are final (EndpointUnreachable): a stale keep-alive was already tried again.
            return False

        def close(self) -> None:
            self._connection.close()

    return FailFastTransport()


# -- SDK attributes behind the shortcuts of ``_otel_links`` (checked on opentelemetry-sdk 1.26.0 and 1.45.0) --
#: ``ParentBased``'s delegates, by (parent valid, remote, sampled); an invalid parent uses the root sampler.
_PARENT_BASED_DELEGATES = {
    (True, True, True): "_remote_parent_sampled",
    (True, True, False): "_remote_parent_not_sampled",
    (True, False, True): "_local_parent_sampled",
    (True, False, False): "_local_parent_not_sampled",
}


def span_processors(provider: object) -> tuple[Any, ...] | None:
    """The span processors of an SDK ``TracerProvider`` (``_active_span_processor._span_processors``), or
    ``None`` when they cannot be seen."""
    processors = getattr(getattr(provider, "_active_span_processor", None), "_span_processors", None)
    return processors if type(processors) is tuple else None


def parent_based_delegate(sampler: object, valid: bool, remote: bool, sampled: bool) -> Any:
    """The sampler a ``ParentBased`` sampler hands a span with such a parent to (``None`` if not found)."""
    return getattr(sampler, _PARENT_BASED_DELEGATES.get((valid, remote, sampled), "_root"), None)


def span_limits(tracer: object) -> Any:
    """An SDK tracer's ``SpanLimits`` (``_span_limits``), or ``None``."""
    return getattr(tracer, "_span_limits", None)
