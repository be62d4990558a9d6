"""What ``tracing`` captures as text (responses, bodies, exception messages and stack traces), and the
limits that keep a batch's trace documents below X-Ray's 64 KB: both backends (OTel, X-Ray) use these.

Every text is cut to ``max_response_bytes`` (with ``TRUNCATION_MARKER``) and charged to the invocation's
``max_batch_capture_bytes`` budget; once one text does not fit, nothing more is captured in that
invocation and what was left out is counted.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from observed_batch.sources import body_text
from observed_batch.text import TRUNCATION_MARKER, cut_bytes

if TYPE_CHECKING:
    from observed_batch.redaction import Redaction
    from observed_batch.typing import RecordContext

__all__ = ["MIN_CAPTURE_BYTES", "TRUNCATION_MARKER", "CaptureBudget", "to_text"]

MIN_CAPTURE_BYTES = 64


class CaptureBudget:
    """One invocation's capture budget (per middleware instance)."""

    __slots__ = ("budget", "dropped", "exhausted", "max_bytes")

    def __init__(self, budget: int, max_bytes: int) -> None:
        self.budget = budget
        self.max_bytes = max_bytes
        self.dropped = 0
        self.exhausted = False

    def take(self, text: str, keep_tail: bool = False) -> tuple[str, int] | None:
        """Text cut to ``max_bytes`` and its original size, or ``None`` (counted) when the invocation's
        budget cannot take it. Once one capture does not fit, none are attached any more."""
        if self.exhausted:
            self.dropped += 1
            return None
        kept, size = cut_bytes(text, self.max_bytes, keep_tail, fit_marker=True)
        cost = min(size, self.max_bytes)
        if cost > self.budget:
            self.exhausted = True
            self.dropped += 1
            return None
        self.budget -= cost
        return kept, size

    def response(self, redaction: Redaction, result: Any) -> tuple[str, int] | None:
        """The handler's return value as redacted text, within the limits (``None``: not captured)."""
        return self.take(redaction.text(to_text(result)))

    def body(self, redaction: Redaction, record: RecordContext) -> tuple[str, int] | None:
        """The record's payload (``sources.body_text``) as redacted text, within the limits."""
        body = body_text(record.batch.event_type, record.raw)
        return None if body is None else self.take(redaction.text(body))

    def exception(
        self, redaction: Redaction, exc_info: Any, include_input_values: bool
    ) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
        """A failure's redacted message and stack trace (its tail kept), each within the limits."""
        exception = exc_info[1]
        message = self.take(redaction.exception_message(exception, include_input_values))
        text = redaction.exception_text(exception, exc_info[2], include_input_values)
        return message, self.take(text, keep_tail=True)


def safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


def to_text(value: Any) -> str:
    """A handler response as text: strings as they are, pydantic models and JSON types as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    try:
        dump = getattr(value, "model_dump_json", None)
        if callable(dump):
            return str(dump())
        return json.dumps(value, default=repr, ensure_ascii=False)
    except Exception:
        return safe_str(value)
