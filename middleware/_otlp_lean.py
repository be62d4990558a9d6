"""OTLP/HTTP span export to a plain-HTTP collector without OTel's exporter package on the import path.

``lean_span_exporter`` stands in for OTel's ``OTLPSpanExporter`` only where it behaves the same: an
``http://`` endpoint without credentials in the URL, no proxy variable, no certificate, client-key or
credential-provider variable, compression ``none``/``gzip``/``deflate``, a timeout that parses, the
exporter's internal metrics off. It reads the same ``OTEL_EXPORTER_OTLP_[TRACES_]*`` variables with the
same precedence and parsing (endpoint, or base endpoint + ``/v1/traces``; headers through OTel's own
``parse_env_headers``, lower-cased, over ``content-type`` and the exporter's ``user-agent``; timeout in
seconds, default 10), refuses requests over 64 MiB before sending, and retries 429/502/503/504 as OTel's
HTTP client does: up to 6 tries, backoff 1, 2, 4 ... s (±20 % jitter) or the collector's ``Retry-After``,
never past the timeout. It logs on the exporter's logger, with its messages. Everything else (HTTPS,
certificates, proxies, another compression) gets OTel's exporter (``_otel_compat``).

What it saves a cold start: protobuf, the generated ``*_pb2`` modules, the exporter's ``importlib.metadata``
and metrics-API imports (``_otlp_encode`` writes the protobuf bytes by hand).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ._http_connection import KeptAliveConnection, retry_after
from ._otel_compat import PROXY_VARIABLES
from ._otlp_encode import encode_spans

__all__ = ["LeanSettings", "LeanSpanExporter", "lean_settings"]

#: OTel's exporter logs there; ``_otel_export`` keeps those lines out of the function's logs.
logger = logging.getLogger("opentelemetry.exporter.otlp.proto.http.trace_exporter")

_DEFAULT_BASE_ENDPOINT = "http://localhost:4318"
_DEFAULT_TIMEOUT_S = 10.0
_MAX_REQUEST_BYTES = 64 * 1024 * 1024
_MAX_TRIES = 6
_JITTER = 0.2
_RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
_COMPRESSIONS = frozenset({"none", "gzip", "deflate"})
#: Set, any of these makes OTel's exporter send differently (``requests``' proxies, TLS files, a session
#: from a credential provider, metrics about itself): it then sends, not us.
_OTEL_ONLY_VARIABLES = (
    *PROXY_VARIABLES,
    "OTEL_EXPORTER_OTLP_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY",
    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
    "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
    "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER",
)


class LeanSettings:
    """Where and how ``LeanSpanExporter`` sends."""

    __slots__ = ("compression", "endpoint", "headers", "timeout_s")

    def __init__(self, endpoint: str, headers: dict[str, str], timeout_s: float, compression: str) -> None:
        self.endpoint, self.headers, self.timeout_s, self.compression = endpoint, headers, timeout_s, compression


def lean_settings(user_agent: str, environ: Mapping[str, str] | None = None) -> LeanSettings | None:
    """The exporter's settings from ``OTEL_*`` as OTel's ``OTLPSpanExporter()`` resolves them, or None
    when that exporter would send differently from ``LeanSpanExporter``."""
    environ = os.environ if environ is None else environ
    if any(environ.get(name) for name in _OTEL_ONLY_VARIABLES):
        return None
    if environ.get("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "").strip().lower() == "true":
        return None
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or _DEFAULT_BASE_ENDPOINT).removesuffix("/") + "/v1/traces"
    )
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return None
    # Credentials in the URL are requests' to send (basic auth); odd spacing is requests' to clean up.
    if parts.scheme != "http" or not parts.hostname or parts.username is not None or endpoint != endpoint.strip():
        return None
    compression = (
        (
            environ.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
            or environ.get("OTEL_EXPORTER_OTLP_COMPRESSION")
            or "none"
        )
        .lower()
        .strip()
    )
    raw_timeout = environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or environ.get("OTEL_EXPORTER_OTLP_TIMEOUT")
    try:
        timeout_s = float(raw_timeout) if raw_timeout else _DEFAULT_TIMEOUT_S
    except ValueError:  # OTel's exporter warns about it
        return None
    if compression not in _COMPRESSIONS:  # OTel's exporter warns about it
        return None
    headers = {"content-type": "application/x-protobuf", "user-agent": user_agent}
    raw_headers = environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or environ.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    if raw_headers:  # OTel's parser reads none from "" (and compiles its patterns on import)
        from opentelemetry.util.re import parse_env_headers

        headers.update(parse_env_headers(raw_headers, liberal=True))
    if compression != "none" and "content-encoding" not in headers:
        headers["Content-Encoding"] = compression
    return LeanSettings(endpoint, headers, timeout_s, compression)


class LeanSpanExporter(SpanExporter):
    """Sends spans as OTel's ``OTLPSpanExporter`` does, over a ``KeptAliveConnection``: a refused
    connection or a timeout fails the export at once (no retries; the breaker takes it from there)."""

    def __init__(self, settings: LeanSettings) -> None:
        self.settings = settings
        self._connection = KeptAliveConnection()
        self._shutdown = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown.is_set():
            logger.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        try:
            data = encode_spans(spans)
        except Exception as error:
            logger.error("Failed to encode span batch: %s", error)
            return SpanExportResult.FAILURE
        if len(data) > _MAX_REQUEST_BYTES:
            logger.warning(
                "Dropping span batch: serialized size %d bytes exceeds max_request_size %d bytes.",
                len(data),
                _MAX_REQUEST_BYTES,
            )
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self._send(self._compress(data)) else SpanExportResult.FAILURE

    def _compress(self, data: bytes) -> bytes:
        if self.settings.compression == "gzip":
            import gzip

            return gzip.compress(data)
        if self.settings.compression == "deflate":
            import zlib

            return zlib.compress(data)
        return data

    def _send(self, data: bytes) -> bool:
        """OTel's retry loop (``opentelemetry.exporter.otlp.common.http._OTLPHTTPClient.export``)."""
        settings = self.settings
        deadline = time.time() + settings.timeout_s
        for attempt in range(_MAX_TRIES):
            backoff = 2**attempt * random.uniform(1 - _JITTER, 1 + _JITTER)
            try:
                answer = self._connection.request(
                    "POST",
                    settings.endpoint,
                    headers=settings.headers,
                    timeout=max(deadline - time.time(), 0.0),
                    data=data,
                )
            except Exception as error:  # EndpointUnreachable above all: not retried
                logger.error("Failed to export %s batch code: %s, reason: %s", "spans", None, error)
                return False
            if 200 <= answer.status < 400:
                return True
            if answer.status not in _RETRYABLE_STATUS:
                logger.error(
                    "Failed to export %s batch code: %s, reason: %s", "spans", answer.status, answer.reason or "unknown"
                )
                return False
            server_says = retry_after(answer.headers)
            if server_says is not None:
                backoff = server_says
            if attempt + 1 == _MAX_TRIES or backoff > deadline - time.time() or self._shutdown.is_set():
                logger.error("Failed to export %s batch due to timeout, max retries or shutdown.", "spans")
                return False
            logger.warning(
                "Transient error %s encountered while exporting %s batch, retrying in %.2fs.",
                answer.reason or None,
                "spans",
                backoff,
            )
            if self._shutdown.wait(backoff):
                logger.warning("Shutdown in progress, aborting retry.")
                return False
        return False  # pragma: no cover - the loop returns on its last try

    def shutdown(self) -> None:
        if self._shutdown.is_set():
            logger.warning("Exporter already shutdown, ignoring call")
            return
        self._shutdown.set()
        self._connection.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered in this exporter."""
        return True
