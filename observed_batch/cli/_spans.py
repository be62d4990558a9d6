"""Spans for ``observed-batch invoke``: an in-memory collector on the global OpenTelemetry SDK provider
(installed if there is none; nothing is exported), and ended spans as plain dicts for the report."""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import Any

__all__ = ["deployed_destination", "span_collector", "span_dict"]

# One span collector per SDK TracerProvider, so repeated invokes in one process (tests) do not stack
# span processors on the same provider.
_COLLECTORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def span_collector() -> Any:
    """Attach (once per provider) a span processor keeping ended spans while ``active``, or ``None``
    without the OpenTelemetry SDK."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    except ImportError:
        return None

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # pragma: no cover - set refused by a foreign provider
            return None
    collector = _COLLECTORS.get(provider)
    if collector is None:

        class _Collector(SpanProcessor):
            def __init__(self) -> None:
                self.active = False
                self.spans: list[ReadableSpan] = []

            def on_end(self, span: ReadableSpan) -> None:
                if self.active:
                    self.spans.append(span)

        collector = _Collector()
        provider.add_span_processor(collector)
        _COLLECTORS[provider] = collector
    collector.spans = []
    return collector


def deployed_destination(environ: Mapping[str, str]) -> str:
    """Where ``tracing`` would send the spans in Lambda with this environment (and no provider of the
    user's): what ``invoke`` says instead of exporting them."""
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip()
    if exporters:
        return f"OTEL_TRACES_EXPORTER={exporters}"
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    if base:
        return base.rstrip("/") + "/v1/traces"
    return "http://localhost:4318/v1/traces (no OTEL_EXPORTER_OTLP_ENDPOINT: a collector layer must listen there)"


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def span_dict(span: Any) -> dict[str, Any]:
    context = span.context
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6  # collected spans have ended
    return {
        "name": span.name,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "duration_ms": duration,
        "trace_id": _hex(context.trace_id, 32),
        "span_id": _hex(context.span_id, 16),
        "parent_span_id": _hex(span.parent.span_id, 16) if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": _hex(link.context.trace_id, 32),
                "span_id": _hex(link.context.span_id, 16),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "events": [event.name for event in span.events],
    }
