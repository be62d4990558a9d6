"""Where ``tracing``'s spans go, and how long an invocation waits for them.

- ``default_provider()``: the global tracer provider if the user (or the OTel Lambda layer) set one,
  else one built once per process from ``OTEL_*`` (``provider_from_env``).
- Our own OTLP exporter (``_otel_compat.otlp_span_exporter``: the lean one of ``_otlp_lean`` for a
  plain-HTTP collector, else OTel's) is built by the first flush (or export), not with the provider
  (``DeferredSpanExporter``): its imports (an encoder, an HTTP client) are not paid by building the
  processor or starting a batch, nor ever by a process that sends no span. It sits
  behind ``GuardedSpanExporter``: a connection that is refused or times out fails the export at once
  (the OTLP exporter would otherwise retry with backoff for up to its timeout, logging each retry),
  the failure opens the process's OTLP ``Breaker``, and while it is open spans are dropped and counted
  without touching the network. The exporter's own log lines are kept out of the function's logs:
  the breaker says it once.
- ``Flusher``: runs the provider's ``force_flush`` on a thread so that the invocation's wait is
  bounded (the SDK's batch span processor does not bound its own flush).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from observed_batch.breaker import Breaker

from ._otel_compat import otlp_span_exporter

__all__ = [
    "COLLECTOR_CONVENTION",
    "ENV_BREAKER",
    "DeferredSpanExporter",
    "Flusher",
    "GuardedSpanExporter",
    "default_provider",
    "env_breaker",
    "provider_from_env",
]

logger = logging.getLogger("observed_batch.tracing")

#: Where the OTLP/HTTP exporter sends without configuration: a collector next to the function (the
#: ADOT / OTel Lambda layer's extension listens there).
COLLECTOR_CONVENTION = "http://localhost:4318/v1/traces"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
#: Loggers the OTLP/HTTP exporter writes its per-export errors and retry warnings to (by version).
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http",
    "opentelemetry.exporter.otlp.common.http",
)
_FLUSHER_IDLE_S = 60.0

#: The breaker of the process's own OTLP exporter (the provider built from ``OTEL_*``).
ENV_BREAKER = Breaker("otel")
_ENV_PROVIDER: SdkTracerProvider | None = None
_ENV_PROVIDER_LOCK = threading.Lock()


def default_provider() -> trace.TracerProvider:
    """The global provider if the user (or the OTel Lambda layer) set one, else ours from ``OTEL_*``.

    Ours is not installed globally: user code that later sets its own provider must not find ours.
    """
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current
    global _ENV_PROVIDER
    with _ENV_PROVIDER_LOCK:
        if _ENV_PROVIDER is None:
            _ENV_PROVIDER = provider_from_env()
        return _ENV_PROVIDER


def env_breaker(provider: object) -> Breaker | None:
    """The breaker of our own exporter when ``provider`` is the one built from ``OTEL_*``."""
    return ENV_BREAKER if provider is not None and provider is _ENV_PROVIDER else None


def provider_from_env(environ: Mapping[str, str] | None = None) -> SdkTracerProvider:
    """An SDK provider configured the way the SDK's autoconfiguration would, from ``OTEL_*``:
    sampler, limits and resource by the SDK itself; exporters from ``OTEL_TRACES_EXPORTER``
    (``otlp`` over HTTP/protobuf, ``console``, ``none``) behind a batch span processor.
    The service name falls back to ``POWERTOOLS_SERVICE_NAME``, then the Lambda function name."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    environ = os.environ if environ is None else environ
    attributes: dict[str, Any] = {}
    if "OTEL_SERVICE_NAME" not in environ and "service.name=" not in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        service = environ.get("POWERTOOLS_SERVICE_NAME") or environ.get("AWS_LAMBDA_FUNCTION_NAME")
        if service:
            attributes[SERVICE_NAME] = service
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for name in {n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")} - {"", "none"}:
        exporter: SpanExporter
        if name == "otlp":
            deferred = DeferredSpanExporter(otlp_span_exporter)
            _DEFERRED.setdefault(provider, []).append(deferred)
            exporter = GuardedSpanExporter(deferred, ENV_BREAKER)
            if "OTEL_TRACES_EXPORTER" not in environ and not any(environ.get(v) for v in _ENDPOINT_VARIABLES):
                logger.warning(
                    "observed_batch tracing: no tracer provider is set and neither OTEL_EXPORTER_OTLP_ENDPOINT nor"
                    " OTEL_TRACES_EXPORTER is; spans go to %s (the collector convention: an OTel/ADOT collector"
                    " layer). Set OTEL_EXPORTER_OTLP_ENDPOINT to send them elsewhere, OTEL_TRACES_EXPORTER=console"
                    " to print them, or =none to drop them.",
                    COLLECTOR_CONVENTION,
                )
        elif name == "console":
            exporter = ConsoleSpanExporter(out=sys.stdout)  # today's stdout, not the one at import
        else:
            logger.warning("OTEL_TRACES_EXPORTER=%r is not supported by observed_batch; use otlp or console", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _ExportLog(logging.Filter):
    """Keeps the exporter's log lines out of the function's logs while ``GuardedSpanExporter`` exports
    on this thread, remembering the last one as the reason of a failure."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(self.local, "active", False):
            self.local.last = record.getMessage()
            return False
        return True


_EXPORT_LOG = _ExportLog()
for _name in _EXPORTER_LOGGERS:
    logging.getLogger(_name).addFilter(_EXPORT_LOG)


class DeferredSpanExporter(SpanExporter):
    """Builds its exporter with ``factory`` when the first spans are exported, or when ``build`` is called.

    ``Flusher.flush`` builds the deferred exporters of the provider it flushes on the calling thread, before
    its bounded wait: the one-time imports are set-up, and must not make a first flush time out (and open
    the breaker) on a slow cold start.
    """

    def __init__(self, factory: Callable[[], SpanExporter]) -> None:
        self._factory = factory
        self._exporter: SpanExporter | None = None
        self._lock = threading.Lock()

    def build(self) -> SpanExporter:
        with self._lock:
            if self._exporter is None:
                self._exporter = self._factory()
            return self._exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.build().export(spans)

    def shutdown(self) -> None:
        if self._exporter is not None:
            self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True if self._exporter is None else self._exporter.force_flush(timeout_millis)


#: The deferred exporters of the providers built from ``OTEL_*``, by provider.
_DEFERRED: weakref.WeakKeyDictionary[SdkTracerProvider, list[DeferredSpanExporter]] = weakref.WeakKeyDictionary()


def _build_deferred(force_flush: Callable[..., Any]) -> None:
    """Builds the not yet built exporters of the provider whose ``force_flush`` this is (once per provider)."""
    provider = getattr(force_flush, "__self__", None)
    pending = _DEFERRED.pop(provider, ()) if isinstance(provider, SdkTracerProvider) else ()
    for deferred in pending:
        try:
            deferred.build()
        except Exception:  # the export fails the same way, and the breaker says so
            logger.debug("building the OTLP exporter failed", exc_info=True)


class GuardedSpanExporter(SpanExporter):
    """Wraps an exporter with a ``Breaker``: failures open it, and while it is open spans are dropped
    (counted in ``breaker.dropped``) without calling the wrapped exporter."""

    def __init__(self, exporter: SpanExporter, breaker: Breaker) -> None:
        self.exporter = exporter
        self.breaker = breaker

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        breaker = self.breaker
        if breaker.is_open:
            breaker.drop(len(spans))
            return SpanExportResult.FAILURE
        local = _EXPORT_LOG.local
        local.active, local.last = True, None
        try:
            result = self.exporter.export(spans)
            reason = local.last or "the exporter reported a failure"
        except Exception as exc:
            result, reason = SpanExportResult.FAILURE, f"{type(exc).__name__}: {exc}"
        finally:
            local.active = False
        if result is SpanExportResult.SUCCESS:
            breaker.succeeded()
        else:
            breaker.drop(len(spans))
            breaker.failed(reason)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class Flusher:
    """Runs ``force_flush`` on a daemon thread so that callers can stop waiting after a timeout.

    A dead collector then costs an invocation at most its timeout, and one stuck thread in all:
    requests queued while a flush runs are all answered by the next one. The thread exits after
    ``_FLUSHER_IDLE_S`` without requests and is started again on demand.
    """

    def __init__(self, force_flush: Callable[..., Any]) -> None:
        self._force_flush = force_flush
        self._requests: queue.SimpleQueue[tuple[threading.Event, int, list[bool]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def flush(self, timeout_ms: int) -> bool:
        """True when the flush finished within ``timeout_ms`` and the provider reported success."""
        _build_deferred(self._force_flush)
        done, result = threading.Event(), [False]
        self._requests.put((done, timeout_ms, result))
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="observed-batch-flush", daemon=True)
                self._thread.start()
        return done.wait(timeout_ms / 1000.0) and result[0]

    def flush_into(self, breaker: Breaker, timeout_ms: int) -> int:
        """``flush``, its outcome fed to ``breaker``: how many spans the breaker counted dropped meanwhile."""
        failures, dropped = breaker.failures, breaker.dropped
        if not self.flush(timeout_ms):
            breaker.failed(f"span flush did not finish within {timeout_ms} ms")
        elif breaker.failures == failures:
            breaker.succeeded()
        return breaker.dropped - dropped

    def _serve(self) -> None:
        while True:
            try:
                waiting = [self._requests.get(timeout=_FLUSHER_IDLE_S)]
            except queue.Empty:
                with self._lock:
                    if self._requests.empty():
                        self._thread = None
                        return
                continue
            while not self._requests.empty():
                waiting.append(self._requests.get_nowait())
            try:
                flushed = self._force_flush(max(timeout_ms for _, timeout_ms, _ in waiting)) is not False
            except Exception:
                logger.debug("tracer provider force_flush failed", exc_info=True)
                flushed = False
            for done, _, result in waiting:
                result[0] = flushed
                done.set()
