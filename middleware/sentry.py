"""``sentry``: each failed record's own exception sent to Sentry, with record context, limits and privacy.

After the core has decided a record's outcome, a **failed** record's exception (the handler's, as
Powertools' failure path saw it) is captured inside a fresh isolation scope, tagged with
``event_source``, ``queue``/``stream``/``table``/``topic``, ``message_id``, ``receive_count``,
``fifo_group`` and ``observed_batch.mode`` (``sync`` or ``async``), with an ``observed_batch``
context block of record metadata. Skipped records (FIFO short-circuit, timeout guard) are never
captured: they did not fail, they were not tried.

Flood control: at most ``max_events_per_batch`` exception events per invocation. Further failures
are counted (per exception type, with their message ids) and reported at batch end as **one summary
event** (level ``warning``, one issue per destination), so a bad deploy costs ``cap + 1`` events per
invocation and no failure disappears from the count.

Privacy: no record body unless ``include_body`` (then cut to ``max_body_bytes`` and put in ``extra``
where the SDK's ``EventScrubber`` and ``before_send`` see it); frame local variables are dropped
unless ``include_local_variables`` (the handler's frames hold the record); a pydantic
``ValidationError`` is sent as its error list without input values.

Which client: an injected ``client=``; else the active one from the user's ``sentry_sdk.init``; else,
when ``SENTRY_DSN`` is set, one created at construction from ``SENTRY_DSN`` / ``SENTRY_ENVIRONMENT`` /
``SENTRY_RELEASE``; else the middleware does nothing (one info log at cold start).

Deadlines: an invocation that captured something ends with ``flush()``, bounded by ``flush_timeout_ms``
and by the invocation's deadline budget (``BatchContext.wait_budget_s``); one that captured nothing does
not flush. A flush that runs out of time, or an envelope the transport could not deliver (connection
refused, 5xx), opens the client's breaker: while it is open, nothing is captured or flushed and the
events that would have been sent are counted in ``BatchSummary.telemetry_dropped["sentry"]``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.client import BaseClient
from sentry_sdk.utils import event_from_exception

from observed_batch.breaker import Breaker
from observed_batch.errors import ConfigError
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

from ._sentry_compat import watch_transport
from .metrics import SENTRY_BACKEND

if TYPE_CHECKING:
    from sentry_sdk.types import Event

__all__ = ["SentryMiddleware"]

logger = logging.getLogger("observed_batch")

#: ``eventSource`` as Lambda spells it, by ``BatchContext.messaging_system`` (same values as the logs).
_EVENT_SOURCES = {
    "aws_sqs": "aws:sqs",
    "aws_kinesis": "aws:kinesis",
    "aws_dynamodb": "aws:dynamodb",
    "kafka": "aws:kafka",
}
_CONTEXT = "observed_batch"
_MODE_TAG = "observed_batch.mode"
#: The handler raised and nothing in the user's code handled it; Powertools only reported it.
_MECHANISM = {"type": "observed_batch", "handled": False}
_SUMMARY_FINGERPRINT = "observed_batch.suppressed_failures"
#: Bounds on what one summary / validation context carries (Sentry's databags cut lists at 10 anyway).
_MAX_SUPPRESSED_IDS = 50
_MAX_EXCEPTION_TYPES = 20
_MAX_VALIDATION_ERRORS = 10
_MAX_CHAIN = 10
_OTHER_TYPES = "(other)"
#: ``BatchSummary.telemetry_dropped`` key and ``TelemetryDropped`` dimension value of this backend.
BACKEND = SENTRY_BACKEND
#: One breaker per client, shared by every middleware that sends through it.
_BREAKERS: weakref.WeakKeyDictionary[BaseClient, Breaker] = weakref.WeakKeyDictionary()


def breaker_for(client: BaseClient) -> Breaker:
    breaker = _BREAKERS.get(client)
    if breaker is None:
        breaker = _BREAKERS[client] = Breaker(BACKEND)
        watch_transport(client, breaker)
    return breaker


class _BatchState:
    """What one invocation has sent and held back (lives in ``batch.scratch``)."""

    __slots__ = ("breaker", "client", "destination", "sent", "suppressed", "suppressed_ids", "suppressed_types")

    def __init__(self, client: BaseClient, breaker: Breaker) -> None:
        self.client = client
        self.breaker = breaker
        #: Where the held-back records came from (Kafka: the topic, which the batch's ARN does not name).
        self.destination: str | None = None
        self.sent = 0
        self.suppressed = 0
        self.suppressed_ids: list[str] = []
        self.suppressed_types: dict[str, int] = {}

    def hold_back(self, record: RecordContext, exception: BaseException) -> None:
        if not self.suppressed:
            self.destination = record.destination
        self.suppressed += 1
        if len(self.suppressed_ids) < _MAX_SUPPRESSED_IDS and record.message_id is not None:
            self.suppressed_ids.append(record.message_id)
        name = type(exception).__qualname__
        if name not in self.suppressed_types and len(self.suppressed_types) >= _MAX_EXCEPTION_TYPES:
            name = _OTHER_TYPES
        self.suppressed_types[name] = self.suppressed_types.get(name, 0) + 1


class SentryMiddleware(Middleware):
    """Captures failed records' exceptions in Sentry (see the module docstring for what is sent)."""

    name = "sentry"

    def __init__(
        self,
        *,
        include_body: bool = False,
        max_body_bytes: int = 1024,
        max_events_per_batch: int = 10,
        flush_timeout_ms: int = 2000,
        include_local_variables: bool = False,
        client: BaseClient | None = None,
    ) -> None:
        self._include_body = _flag("include_body", include_body)
        self._include_local_variables = _flag("include_local_variables", include_local_variables)
        self._max_body_bytes = _count("max_body_bytes", max_body_bytes)
        self._max_events_per_batch = _count("max_events_per_batch", max_events_per_batch)
        self._flush_timeout_s = _count("flush_timeout_ms", flush_timeout_ms) / 1000.0
        if client is not None and not isinstance(client, BaseClient):
            raise ConfigError(f"client={client!r} is not a sentry_sdk client (sentry_sdk.Client)")
        self._client = client
        current = client if client is not None else sentry_sdk.get_client()
        if client is None and not current.is_active():
            _init_from_environment()
        elif not _can_send(current):
            logger.info("observed_batch sentry: the sentry_sdk client has no DSN; failed records are not sent")

    # -- hooks --------------------------------------------------------------------------------
    def on_batch_start(self, batch: BatchContext) -> None:
        # Resolved per invocation: a user may call sentry_sdk.init after building the processor.
        client = self._client if self._client is not None else sentry_sdk.get_client()
        if _can_send(client):
            batch.scratch[self] = _BatchState(client, breaker_for(client))
        else:
            batch.skip_record_hooks(self)  # no DSN: nothing to capture, nothing to pay per record

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        yield
        if record.outcome is not Outcome.FAILURE:
            return
        state: _BatchState | None = record.batch.scratch.get(self)
        exc_info = record.exc_info
        # BaseExceptions (KeyboardInterrupt, task cancellation) end the invocation: not a record's failure.
        if state is None or exc_info is None or not isinstance(exc_info[1], Exception):
            return
        if state.sent >= self._max_events_per_batch:
            state.hold_back(record, exc_info[1])
            return
        state.sent += 1
        if state.breaker.is_open:
            # Sentry is down: the event is counted (in time for the logging summary line), not built or sent.
            record.batch.summary.add_dropped(BACKEND, 1)
            return
        self._capture(record, exc_info, state.client)

    def flush_budget_ms(self, batch: BatchContext) -> int:
        state: _BatchState | None = batch.scratch.get(self)
        if state is None or not (state.sent or state.suppressed) or state.breaker.is_open:
            return 0  # a batch without captured failures does not flush
        return int(self._flush_timeout_s * 1000)

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: _BatchState | None = batch.scratch.pop(self, None)
        if state is None or not (state.sent or state.suppressed):
            return  # nothing captured: nothing to flush
        breaker = state.breaker
        if breaker.is_open:
            summary.add_dropped(BACKEND, 1 if state.suppressed else 0)
            return
        if state.suppressed:
            self._capture_summary(batch, summary, state)
        timeout_s = batch.wait_budget_s(int(self._flush_timeout_s * 1000))
        if timeout_s <= 0:
            return
        failures, dropped = breaker.failures, breaker.dropped
        started = time.monotonic()
        state.client.flush(timeout=timeout_s)
        # flush() returns nothing either way: a flush that used up its time left events behind.
        if time.monotonic() - started >= timeout_s * 0.95:
            breaker.failed(f"flush did not finish within {timeout_s * 1000:.0f} ms")
        elif breaker.failures == failures:
            breaker.succeeded()
        summary.add_dropped(BACKEND, breaker.dropped - dropped)

    # -- events -------------------------------------------------------------------------------
    def _capture(self, record: RecordContext, exc_info: Any, client: BaseClient) -> None:
        options = client.options
        if not self._include_local_variables and options.get("include_local_variables", True):
            # Not collected at all rather than scrubbed later: cheaper, and nothing to leak.
            options = {**options, "include_local_variables": False}
        event, hint = event_from_exception(exc_info, client_options=options, mechanism=dict(_MECHANISM))
        validation = _redact_validation_errors(event, exc_info[1])
        trace_ids = _otel_trace_ids()
        with sentry_sdk.isolation_scope() as scope:
            if self._client is not None:
                sentry_sdk.get_current_scope().set_client(client)
            scope.set_tags(_record_tags(record, trace_ids))
            scope.set_context(_CONTEXT, _record_context(record))
            if validation is not None:
                scope.set_context("validation_errors", validation)
            if self._include_body:
                body = _record_body(record)
                if body is not None:
                    scope.set_extra("record_body", _bounded_body(body, self._max_body_bytes))
            if trace_ids is not None and sentry_sdk.get_current_span() is None:
                # Without a Sentry span of its own, the event joins the OpenTelemetry trace.
                event.setdefault("contexts", {})["trace"] = {"trace_id": trace_ids[0], "span_id": trace_ids[1]}
            sentry_sdk.capture_event(event, hint=hint)

    def _capture_summary(self, batch: BatchContext, summary: BatchSummary, state: _BatchState) -> None:
        destination = state.destination
        where = f"{batch.destination_kind} {destination}" if destination else batch.destination_kind
        event: Event = {
            "level": "warning",
            "message": (
                f"observed_batch: {state.suppressed} more failed records in {where} were not sent to Sentry"
                f" (max_events_per_batch={self._max_events_per_batch})"
            ),
            "fingerprint": [_SUMMARY_FINGERPRINT, batch.messaging_system, destination or ""],
        }
        details = {
            "suppressed": state.suppressed,
            "sent": state.sent,
            "failures": summary.failures,
            "batch_size": batch.size,
            "max_events_per_batch": self._max_events_per_batch,
            "suppressed_by_exception_type": dict(state.suppressed_types),
            "suppressed_message_ids": list(state.suppressed_ids),
            "aws_request_id": getattr(batch.lambda_context, "aws_request_id", None),
        }
        with sentry_sdk.isolation_scope() as scope:
            if self._client is not None:
                sentry_sdk.get_current_scope().set_client(state.client)
            scope.set_tags(_batch_tags(batch, destination))
            scope.set_context(_CONTEXT, {k: v for k, v in details.items() if v is not None})
            sentry_sdk.capture_event(event)


# -- construction -----------------------------------------------------------------------------------
def _flag(option: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"sentry option {option}={value!r} must be true or false")
    return value


def _count(option: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"sentry option {option}={value!r} must be a non-negative integer")
    return value


def _can_send(client: BaseClient) -> bool:
    """Initialized with somewhere to send to (``sentry_sdk.init()`` without a DSN is active but mute)."""
    return client.is_active() and client.transport is not None


def _init_from_environment() -> None:
    """``sentry_sdk.init`` from ``SENTRY_*`` when nobody initialized Sentry; else say why nothing is sent."""
    dsn = os.environ.get("SENTRY_DSN", "").strip()
    if not dsn:
        logger.info(
            "observed_batch sentry: no active sentry_sdk client and SENTRY_DSN is not set; "
            "failed records are not sent to Sentry"
        )
        return
    options: dict[str, Any] = {"dsn": dsn}
    for option, variable in (("environment", "SENTRY_ENVIRONMENT"), ("release", "SENTRY_RELEASE")):
        value = os.environ.get(variable, "").strip()
        if value:
            options[option] = value
    try:
        sentry_sdk.init(**options)
    except Exception as exc:
        raise ConfigError(f"SENTRY_DSN is not a usable Sentry DSN: {exc}") from None


# -- what an event says about a record ----------------------------------------------------------------
def _batch_tags(batch: BatchContext, destination: str | None) -> dict[str, str]:
    tags = {
        "event_source": _EVENT_SOURCES[batch.messaging_system],
        _MODE_TAG: "async" if batch.is_async else "sync",
    }
    if destination:
        tags[batch.destination_kind] = destination
    return tags


def _record_tags(record: RecordContext, trace_ids: tuple[str, str] | None) -> dict[str, str]:
    batch = record.batch
    tags = {
        "event_source": _EVENT_SOURCES[batch.messaging_system],
        _MODE_TAG: "async" if batch.is_async else "sync",
    }
    optional = {
        batch.destination_kind: record.destination,
        "message_id": record.message_id,
        "receive_count": record.receive_count,
        "fifo_group": record.fifo_group,
    }
    tags.update({key: str(value) for key, value in optional.items() if value is not None})
    if trace_ids is not None:
        tags["trace_id"], tags["span_id"] = trace_ids
    return tags


def _record_context(record: RecordContext) -> dict[str, Any]:
    """Record metadata, never its body."""
    batch = record.batch
    sent = record.sent_timestamp_ms
    context = {
        "index": record.index,
        "message_id": record.message_id,
        "event_source": _EVENT_SOURCES[batch.messaging_system],
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


def _otel_trace_ids() -> tuple[str, str] | None:
    """The current OpenTelemetry span's ids, if the application uses OpenTelemetry (never imported here)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _redact_validation_errors(event: Event, exception: BaseException) -> dict[str, Any] | None:
    """Replace pydantic ``ValidationError`` messages (which quote the input) by an input-free summary.

    Returns the first validation error's list as a context block, or ``None`` if there is none.
    """
    pydantic_core = sys.modules.get("pydantic_core")
    if pydantic_core is None:
        return None
    validation_type = pydantic_core.ValidationError
    found: list[Any] = []
    seen: set[int] = set()
    current: BaseException | None = exception
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        if isinstance(current, validation_type):
            found.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    if not found:
        return None
    # The SDK lists a chain oldest first; ours is newest first.
    redacted = [_validation_message(error) for error in reversed(found)]
    for value in event.get("exception", {}).get("values", []):
        if value.get("type") == "ValidationError" and str(value.get("module", "")).startswith("pydantic") and redacted:
            value["value"] = redacted.pop(0)
    first = found[0]
    errors = first.errors(include_url=False, include_context=False, include_input=False)
    return {"title": first.title, "error_count": first.error_count(), "errors": errors[:_MAX_VALIDATION_ERRORS]}


def _validation_message(error: Any) -> str:
    details = error.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for item in details[:_MAX_VALIDATION_ERRORS]:
        location = ".".join(str(part) for part in item.get("loc", ())) or "(root)"
        parts.append(f"{location}: {item.get('msg')} [type={item.get('type')}]")
    count = error.error_count()
    more = f"; and {count - len(parts)} more" if count > len(parts) else ""
    return f"{count} validation error{'s' if count != 1 else ''} for {error.title}: {'; '.join(parts)}{more}"


# -- bodies (opt-in) --------------------------------------------------------------------------------
def _record_body(record: RecordContext) -> str | None:
    """The producer's payload as text: SQS body, decoded Kinesis data / Kafka value, DynamoDB images."""
    raw = record.raw
    system = record.batch.messaging_system
    if system == "aws_sqs":
        body = _field(raw, "body")
        return body if isinstance(body, str) else None
    if system == "aws_kinesis":
        return _decode(_field(_field(raw, "kinesis"), "data"))
    if system == "kafka":
        return _decode(_field(raw, "value"))
    stream = _field(raw, "dynamodb")
    images = {key: _field(stream, key) for key in ("Keys", "NewImage", "OldImage")}
    present = {key: image for key, image in images.items() if image is not None}
    return json.dumps(present, default=str) if present else None


def _field(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _decode(data: Any) -> str | None:
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", "replace")
    except ValueError:  # not base64 (binascii.Error is a ValueError): the text as it came
        return data


def _bounded_body(body: str, max_bytes: int) -> Any:
    """A JSON object/array that fits goes as structure (so key-based scrubbing applies), else cut text."""
    data = body.encode("utf-8", "replace")
    if len(data) > max_bytes:
        kept = data[:max_bytes].decode("utf-8", "ignore")
        return f"{kept}...[truncated {len(data) - max_bytes} of {len(data)} bytes]"
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    return parsed if isinstance(parsed, (dict, list)) else body
