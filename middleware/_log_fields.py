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
    "RecordFields",
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


#: ``trace_ids`` / ``fields`` without a context given: the one current now.
_NOW: Any = object()


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

    def otel_context(self) -> Any:
        """The current OpenTelemetry context (one call: the trace ids are read from it when a line needs
        them), or ``None`` while the application has not imported OpenTelemetry."""
        get_current = self._otel_context
        if get_current is None:
            # OTel not loaded when the batch started: it may still be, by a handler (importing is not ours).
            if "opentelemetry.trace" not in sys.modules:
                return None
            get_current = self._otel_context = getattr(sys.modules.get("opentelemetry.context"), "get_current", None)
            if get_current is None:  # pragma: no cover - opentelemetry.trace imports opentelemetry.context
                return None
        return get_current()

    def trace_ids(self, otel_context: Any = _NOW) -> tuple[str, str] | None:
        """``otel_ids.current_trace_ids`` in ``otel_context`` (default: the current one), read again only
        when that context is another object: records of a batch without per-record spans all run in the
        invocation's context (same object, same ids)."""
        if otel_context is _NOW:
            otel_context = self.otel_context()
        if otel_context is None:
            return None
        cached_context, ids = self._trace
        if otel_context is not cached_context:
            ids = current_trace_ids(otel_context)
            self._trace = (otel_context, ids)
        return ids


class RecordFields:
    """One record's context fields, computed when the first line needs them (a success writes no line by
    default: then never), and kept for the record's other lines.

    They describe the record as it started: the trace ids are those of the OpenTelemetry context current
    when the record started (captured with one call), so a span the handler starts does not leak its ids
    into the record's lines, nor into its later lines once it ended, exactly as when they were computed
    upfront."""

    __slots__ = ("_fields", "otel_context", "record", "state")

    def __init__(self, record: RecordContext, state: BatchState) -> None:
        self.record = record
        self.state = state
        self.otel_context = state.otel_context()
        self._fields: dict[str, Any] | None = None

    @property
    def computed(self) -> bool:
        """Whether a line needed the fields (they were computed)."""
        return self._fields is not None

    def fields(self) -> dict[str, Any]:
        """The fields (``fields``), computed once; callers that add to them copy first."""
        found = self._fields
        if found is None:
            state = self.state
            found = self._fields = fields(self.record, state.event_source, state, self.otel_context)
        return found


def body_text(record: RecordContext) -> str | None:
    """The record payload as text (``observed_batch.sources.body_text``: one rule per source)."""
    return sources_body_text(record.batch.event_type, record.raw)


def identifier_text(identifier: Any) -> str:
    if isinstance(identifier, dict):  # Kafka, as RecordContext.message_id spells it
        return f"{identifier.get('partition')}@{identifier.get('offset')}"
    return str(identifier)


def fields(
    record: RecordContext, event_source: str | None, state: BatchState | None = None, otel_context: Any = _NOW
) -> dict[str, Any]:
    """The record's context fields. With the batch's ``state``: an SQS record's read straight from its
    dict (same values as the generic accessors) and the trace ids through ``state.trace_ids``, in
    ``otel_context`` if given (``RecordFields``: the context of the record's start), else the current one."""
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
    trace = state.trace_ids(otel_context) if state is not None else current_trace_ids()
    if trace is not None:
        found["trace_id"], found["span_id"] = trace
    return found
