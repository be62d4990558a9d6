"""The current OpenTelemetry span's W3C ids, for correlating logs and Sentry events with traces."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["current_trace_ids"]


def current_trace_ids(otel_context: Any = None) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` in hex, or ``None`` when there is no valid current span or the application
    never imported OpenTelemetry (importing it is not our call: it costs a cold start).

    ``otel_context``: an OpenTelemetry ``Context`` to read the span from instead of the current one (one
    captured earlier, when what it was then matters)."""
    otel_trace: Any = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    context = otel_trace.get_current_span(otel_context).get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
