"""What a ``sentry`` event says about a record: tags, the record context block, the OpenTelemetry trace,
pydantic errors without their input values, the opt-in body, and the redaction of a whole event."""

from __future__ import annotations

import json
from functools import cache
from typing import TYPE_CHECKING, Any

from observed_batch.redaction import Redaction, is_validation_error, validation_message
from observed_batch.sources import EVENT_SOURCES, body_text
from observed_batch.text import TRUNCATION_MARKER, cut_bytes
from observed_batch.typing import BatchContext, RecordContext

if TYPE_CHECKING:
    from sentry_sdk.types import Event

__all__ = [
    "add_source_context",
    "batch_tags",
    "bounded_body",
    "event_options",
    "is_application_frame",
    "record_body",
    "record_context",
    "record_tags",
    "redact_event",
    "redact_validation_errors",
    "summary_event",
]

_MODE_TAG = "observed_batch.mode"
_SUMMARY_FINGERPRINT = "observed_batch.suppressed_failures"
#: Bounds on what a validation context carries (Sentry's databags cut lists at 10 anyway).
_MAX_VALIDATION_ERRORS = 10
_MAX_CHAIN = 10
_LIBRARY_MARKERS = ("/site-packages/", "/dist-packages/", "<frozen ")
#: Libraries a Lambda zip bundles next to the handler (``/var/task``), where no path gives them away.
_LIBRARY_MODULES = ("aws_lambda_powertools", "observed_batch", "sentry_sdk", "pydantic", "boto3", "botocore")


# -- what an event says about a record ----------------------------------------------------------------
def batch_tags(batch: BatchContext, destination: str | None) -> dict[str, str]:
    tags = {
        "event_source": EVENT_SOURCES[batch.event_type],
        _MODE_TAG: "async" if batch.is_async else "sync",
    }
    if destination:
        tags[batch.destination_kind] = destination
    return tags


def summary_event(batch: BatchContext, summary: Any, state: Any, max_events: int) -> tuple[Event, dict[str, Any]]:
    """The batch-end event for the failures ``max_events_per_batch`` held back, and its context block
    (``state``: the middleware's batch state, with ``suppressed``, ``sent``, ``destination``, ...)."""
    destination = state.destination
    where = f"{batch.destination_kind} {destination}" if destination else batch.destination_kind
    event: Event = {
        "level": "warning",
        "message": (
            f"observed_batch: {state.suppressed} more failed records in {where} were not sent to Sentry"
            f" (max_events_per_batch={max_events})"
        ),
        "fingerprint": [_SUMMARY_FINGERPRINT, batch.messaging_system, destination or ""],
    }
    details = {
        "suppressed": state.suppressed,
        "sent": state.sent,
        "failures": summary.failures,
        "batch_size": batch.size,
        "max_events_per_batch": max_events,
        "suppressed_by_exception_type": dict(state.suppressed_types),
        "suppressed_message_ids": list(state.suppressed_ids),
        "aws_request_id": getattr(batch.lambda_context, "aws_request_id", None),
    }
    return event, {k: v for k, v in details.items() if v is not None}


def record_tags(context: dict[str, Any], trace_ids: tuple[str, str] | None) -> dict[str, str]:
    """The searchable part of a record's context block (``record_context``), as Sentry tags."""
    tags = {"event_source": context["event_source"], _MODE_TAG: context["mode"]}
    destination = context.get("destination")
    if destination is not None:
        tags[context["destination_kind"]] = str(destination)
    for key in ("message_id", "receive_count", "fifo_group"):
        value = context.get(key)
        if value is not None:
            tags[key] = str(value)
    if trace_ids is not None:
        tags["trace_id"], tags["span_id"] = trace_ids
    return tags


def record_context(record: RecordContext) -> dict[str, Any]:
    """Record metadata, never its body."""
    batch = record.batch
    sent = record.sent_timestamp_ms
    context = {
        "index": record.index,
        "message_id": record.message_id,
        "event_source": EVENT_SOURCES[batch.event_type],
        "destination_kind": batch.destination_kind,
        "destination": record.destination,
        "event_source_arn": batch.event_source_arn,
        "receive_count": record.receive_count,
        "fifo_group": record.fifo_group,
        "sent_timestamp_ms": sent,
        "age_ms": round(batch.started_at * 1000.0 - sent, 3) if sent is not None else None,
        "duration_ms": round(record.duration_ms, 3),
        "batch_size": batch.size,
        "mode": "async" if batch.is_async else "sync",
        "aws_request_id": getattr(batch.lambda_context, "aws_request_id", None),
    }
    return {key: value for key, value in context.items() if value is not None}


def redact_validation_errors(event: Event, exception: BaseException) -> dict[str, Any] | None:
    """Replace pydantic ``ValidationError`` messages (which quote the input) by an input-free summary.

    Returns the first validation error's list as a context block, or ``None`` if there is none.
    """
    found: list[Any] = []
    seen: set[int] = set()
    current: BaseException | None = exception
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        if is_validation_error(current):
            found.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    if not found:
        return None
    # The SDK lists a chain oldest first; ours is newest first.
    redacted = [validation_message(error) for error in reversed(found)]
    for value in event.get("exception", {}).get("values", []):
        if value.get("type") == "ValidationError" and str(value.get("module", "")).startswith("pydantic") and redacted:
            value["value"] = redacted.pop(0)
    first = found[0]
    errors = first.errors(include_url=False, include_context=False, include_input=False)
    return {"title": first.title, "error_count": first.error_count(), "errors": errors[:_MAX_VALIDATION_ERRORS]}


# -- frames ----------------------------------------------------------------------------------------------
def event_options(options: dict[str, Any], include_local_variables: bool) -> dict[str, Any]:
    """The client's options for building an event: frame locals off unless asked for (not collected at all
    rather than scrubbed later), source context left to ``add_source_context``. Built once per batch."""
    changes: dict[str, Any] = {}
    if not include_local_variables and options.get("include_local_variables", True):
        changes["include_local_variables"] = False
    if options.get("include_source_context", True):
        changes["include_source_context"] = False
    return {**options, **changes} if changes else options


@cache
def _library_paths() -> tuple[str, ...]:
    """Where code that is not the application's lives: its frames get no source context (Powertools, the SDK,
    this package, the standard library). ``sysconfig`` is imported at the first failure, not at cold start."""
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple({path for key in ("stdlib", "platstdlib", "purelib", "platlib") if (path := paths.get(key))})


def is_application_frame(path: str, module: object) -> bool:
    if path.startswith(_library_paths()) or any(marker in path for marker in _LIBRARY_MARKERS):
        return False
    return not (isinstance(module, str) and module.partition(".")[0] in _LIBRARY_MODULES)


#: Source lines of one frame (``pre_context``, ``context_line``, ``post_context``), ``None`` for a library frame.
SourceLines = tuple[list[Any], Any, list[Any]] | None


def add_source_context(
    event: Event, max_value_length: int | None, seen: dict[tuple[str, int, object], SourceLines]
) -> None:
    """Source lines around each frame of the application's own code, as the SDK adds them to every frame.

    Library frames get none, and files are read through ``linecache`` (read once per process, not per
    event and frame as the SDK does through the module loader). ``seen`` keeps each frame's lines for the
    batch: its failures mostly share their frames.
    """
    from sentry_sdk.utils import get_lines_from_file

    for value in event.get("exception", {}).get("values", []):
        for frame in (value.get("stacktrace") or {}).get("frames", []):
            path, lineno, module = frame.get("abs_path"), frame.get("lineno"), frame.get("module")
            if not isinstance(path, str) or not isinstance(lineno, int):
                continue
            key = (path, lineno, module)
            if key in seen:
                lines = seen[key]
            else:
                lines = None
                if is_application_frame(path, module):
                    pre, line, post = get_lines_from_file(path, lineno - 1, max_value_length)
                    lines = (pre, line, post) if line is not None else None
                seen[key] = lines
            if lines is not None:
                # Lists of their own: an event processor or before_send may change one event's frames.
                pre, line, post = lines
                frame["pre_context"], frame["context_line"], frame["post_context"] = list(pre), line, list(post)


# -- bodies (opt-in) --------------------------------------------------------------------------------
def record_body(record: RecordContext) -> str | None:
    """The producer's payload as text (``observed_batch.sources.body_text``: one rule per source)."""
    return body_text(record.batch.event_type, record.raw)


def bounded_body(body: str, max_bytes: int) -> Any:
    """A JSON object/array that fits goes as structure (so key-based scrubbing applies), else cut text."""
    kept, size = cut_bytes(body, max_bytes, marker="")
    if size > max_bytes:
        return f"{kept}{TRUNCATION_MARKER[:-1]} {size - max_bytes} of {size} bytes]"
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return parsed if isinstance(parsed, (dict, list)) else body


def redact_event(event: Any, redaction: Redaction) -> Any:
    """Every string of an event (exception values, breadcrumbs, contexts, extra) through ``redaction``:
    a scope event processor, so the user's ``before_send`` still sees (and may change) the result."""
    if isinstance(event, str):
        return redaction.text(event)
    if isinstance(event, dict):
        return {key: redact_event(value, redaction) for key, value in event.items()}
    if isinstance(event, list):
        return [redact_event(value, redaction) for value in event]
    return event
