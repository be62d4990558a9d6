"""What ``logging`` writes, whichever logger writes it: the record context fields and their helpers.

Both backends (structlog, Powertools ``Logger``) use these, so their lines carry the same field names
(the dashboard's Logs Insights queries work for both).
"""

from __future__ import annotations

import sys
from typing import Any

from observed_batch.otel_ids import current_trace_ids
from observed_batch.sources import EVENT_SOURCES, sqs_facts
from observed_batch.sources import body_text as sources_body_text
from observed_batch.typing import RecordContext

__all__ = [
    "CONTEXT_KEYS",
    "EVENT_SOURCES",
    "BatchState",
    "body_text",
    "fields",
    "identifier_text",
]

#: Per-record context keys, bound while the record runs (the last four only when known).
CONTEXT_KEYS = (
    "message_id",
    "event_source",
    "destination",
    "index",
    "receive_count",
    "fifo_group",
    "trace_id",
    "span_id",
)


class BatchState:
    """Per-invocation state of one ``logging`` instance, in ``batch.scratch[middleware]``."""

    __slots__ = ("_otel_context", "_trace", "destination", "event_source", "is_sqs", "logger")

    def __init__(self, logger: Any, event_source: str | None, destination: str | None, is_sqs: bool) -> None:
        self.logger = logger
        self.event_source = event_source
        self.destination = destination
        self.is_sqs = is_sqs
        # The OTel context the trace ids were last read in, and those ids, as one tuple (async records
        # share this state: one assignment keeps the pair consistent).
        self._trace: tuple[Any, tuple[str, str] | None] = (None, None)
        otel_context: Any = sys.modules.get("opentelemetry.context")
        self._otel_context: Any = getattr(otel_context, "get_current", None)

    def trace_ids(self) -> tuple[str, str] | None:
        """``otel_ids.current_trace_ids()``, read again only when the current OTel context changed: records
        of a batch without per-record spans all run in the invocation's context (same object, same ids)."""
        get_current = self._otel_context
        if get_current is None:
            # OTel not loaded when the batch started: it may still be, by a handler (importing is not ours).
            return current_trace_ids() if "opentelemetry.trace" in sys.modules else None
        current = get_current()
        cached_context, ids = self._trace
        if current is not cached_context:
            ids = current_trace_ids()
            self._trace = (current, ids)
        return ids


def body_text(record: RecordContext) -> str | None:
    """The record payload as text (``observed_batch.sources.body_text``: one rule per source)."""
    return sources_body_text(record.batch.event_type, record.raw)


def identifier_text(identifier: Any) -> str:
    if isinstance(identifier, dict):  # Kafka, as RecordContext.message_id spells it
        return f"{identifier.get('partition')}@{identifier.get('offset')}"
    return str(identifier)


def fields(record: RecordContext, event_source: str | None, state: BatchState | None = None) -> dict[str, Any]:
    """The record's context fields. With the batch's ``state``: an SQS record's read straight from its
    dict (same values as the generic accessors) and the trace ids through ``state.trace_ids``."""
    raw = record.raw
    if state is not None and state.is_sqs and type(raw) is dict:
        message_id, receive_count, fifo_group = sqs_facts(raw)
        found: dict[str, Any] = {
            "message_id": message_id,
            "event_source": event_source,
            "destination": state.destination,
            "index": record.index,
        }
    else:
        found = {
            "message_id": record.message_id,
            "event_source": event_source,
            "destination": record.destination,
            "index": record.index,
        }
        receive_count, fifo_group = record.receive_count, record.fifo_group
    if receive_count is not None:
        found["receive_count"] = receive_count
    if fifo_group is not None:
        found["fifo_group"] = fifo_group
    trace = state.trace_ids() if state is not None else current_trace_ids()
    if trace is not None:
        found["trace_id"], found["span_id"] = trace
    return found
