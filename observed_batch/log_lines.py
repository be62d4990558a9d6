"""The names of the lines the ``logging`` middleware writes, shared with the middlewares that must know them.

The ``sentry`` middleware captures each failed record once, as its own event; a ``record_failed`` error
line written through stdlib logging (the Powertools Logger backend, or structlog's stdlib interop) would
reach Sentry's logging integration as a second event of the same failure, outside
``max_events_per_batch``. ``is_failure_line`` lets it drop that event (the line stays a breadcrumb and in
the function's log).
"""

from __future__ import annotations

__all__ = ["BATCH_SUMMARY", "RECORD_FAILED", "RECORD_PROCESSED", "is_failure_line"]

RECORD_FAILED = "record_failed"
RECORD_PROCESSED = "record_processed"
BATCH_SUMMARY = "batch_summary"


def is_failure_line(log_record: object) -> bool:
    """True for a stdlib ``LogRecord`` of our ``record_failed`` line (its message, with its record fields)."""
    return getattr(log_record, "msg", None) == RECORD_FAILED and hasattr(log_record, "message_id")
