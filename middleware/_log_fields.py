"""What ``logging`` writes, whichever logger writes it: the record context fields and their helpers.

Both backends (structlog, Powertools ``Logger``) use these, so their lines carry the same field names
(the dashboard's Logs Insights queries work for both).
"""

from __future__ import annotations

from typing import Any

from observed_batch.otel_ids import current_trace_ids
from observed_batch.sources import EVENT_SOURCES
from observed_batch.sources import body_text as sources_body_text
from observed_batch.typing import RecordContext

__all__ = [
    "CONTEXT_KEYS",
    "EVENT_SOURCES",
    "BatchState",
    "body_text",
    "fields",
    "identifier_text",
    "receive_count_of",
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

    __slots__ = ("destination", "event_source", "is_sqs", "logger")

    def __init__(self, logger: Any, event_source: str | None, destination: str | None, is_sqs: bool) -> None:
        self.logger = logger
        self.event_source = event_source
        self.destination = destination
        self.is_sqs = is_sqs


def body_text(record: RecordContext) -> str | None:
    """The record payload as text (``observed_batch.sources.body_text``: one rule per source)."""
    return sources_body_text(record.batch.event_type, record.raw)


def identifier_text(identifier: Any) -> str:
    if isinstance(identifier, dict):  # Kafka, as RecordContext.message_id spells it
        return f"{identifier.get('partition')}@{identifier.get('offset')}"
    return str(identifier)


def receive_count_of(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def fields(record: RecordContext, event_source: str | None) -> dict[str, Any]:
    """The record's context fields, through the generic accessors (lines and the portable path)."""
    found: dict[str, Any] = {
        "message_id": record.message_id,
        "event_source": event_source,
        "destination": record.destination,
        "index": record.index,
    }
    receive_count = record.receive_count
    if receive_count is not None:
        found["receive_count"] = receive_count
    fifo_group = record.fifo_group
    if fifo_group is not None:
        found["fifo_group"] = fifo_group
    trace = current_trace_ids()
    if trace is not None:
        found["trace_id"], found["span_id"] = trace
    return found
