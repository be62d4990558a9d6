"""The OTel backend of ``tracing``: a CONSUMER span per record (or one per batch), linked to its producers.

Each record span is named ``process {destination}``, follows the messaging semantic conventions, is a
child of whatever span is current (the invocation span of the Lambda instrumentation, if any) and is
made current while the handler runs. Captured text stays within the limits of ``_capture``; captures
that no longer fit are counted in ``observed_batch.capture.dropped``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_BATCH_MESSAGE_COUNT,
    MESSAGING_DESTINATION_NAME,
    MESSAGING_MESSAGE_BODY_SIZE,
    MESSAGING_MESSAGE_ID,
    MESSAGING_OPERATION_TYPE,
    MESSAGING_SYSTEM,
    MessagingOperationTypeValues,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import (
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    EXCEPTION_TYPE,
)
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from observed_batch import __version__
from observed_batch.breaker import Breaker
from observed_batch.metric_schema import OTEL_BACKEND
from observed_batch.redaction import Redaction
from observed_batch.sources import producer_trace_headers
from observed_batch.typing import BatchContext, BatchSummary, Outcome, RecordContext

from ._capture import CaptureBudget
from ._otel_export import Flusher, default_provider, env_breaker
from ._otel_links import LinkCache, batch_links, exports_inline, max_links, never_samples

if TYPE_CHECKING:
    from .tracing import TracingMiddleware

__all__ = ["BACKEND", "OtelTracing"]

# By value: semconv 0.47b0 names the member DELIVER, later ones PROCESS.
_PROCESS = MessagingOperationTypeValues("process").value
_CONSUMER = SpanKind.CONSUMER
_SUCCESS = Outcome.SUCCESS

#: Attributes of our own (no semantic convention covers them).
ATTR_SKIP_REASON = "observed_batch.skip_reason"
#: How a policy resolved a failed record (``dead_lettered`` / ``dropped``): not in batchItemFailures.
ATTR_RESOLUTION = "observed_batch.resolution"
ATTR_RESPONSE = "observed_batch.response"
ATTR_RESPONSE_SIZE = "observed_batch.response.size"
ATTR_BODY = "observed_batch.body"
ATTR_CAPTURE_DROPPED = "observed_batch.capture.dropped"
ATTR_LINKS_DROPPED = "observed_batch.links.dropped"
ATTR_INCOMPLETE = "observed_batch.incomplete"
ATTR_SUCCESSES = "observed_batch.batch.successes"
ATTR_FAILURES = "observed_batch.batch.failures"
ATTR_SKIPPED = "observed_batch.batch.skipped"
#: Event on the batch span (``batch`` mode) carrying one record's captured body / response.
EVENT_RECORD = "observed_batch.record"
_OTHER_ERROR = "_OTHER"  # semconv fallback for error.type
#: ``BatchSummary.telemetry_dropped`` key and ``TelemetryDropped`` dimension value of this backend.
BACKEND = OTEL_BACKEND


class OtelTracing:
    """The OTel backend of one ``TracingMiddleware`` (whose options it reads); see docs/middleware/tracing.md.

    ``tracer_provider`` defaults to the global provider if one is set, else to a provider built once
    per process from the ``OTEL_*`` environment (OTLP/HTTP exporter, batch span processor). The global
    provider is never replaced and never re-initialised.
    """

    def __init__(self, options: TracingMiddleware, tracer_provider: trace.TracerProvider | None) -> None:
        # The middleware: its options (read when used: they may change after construction), and the
        # batch.scratch key of this backend's state (per middleware instance).
        self.key = options
        # Process-lifetime backend objects, resolved on the first batch so that a provider the user
        # configures after building the processor (module import order) is still found.
        self._provider: trace.TracerProvider | None = tracer_provider
        self._tracer: trace.Tracer | None = None
        # The thread that runs the provider's flush so that waiting for it can be bounded; kept
        # across invocations (starting a thread per invocation costs more than a small batch).
        self._flusher: Flusher | None = None
        # One per backend: ours (the provider built from OTEL_*) shares the exporter's; a provider of the
        # user's gets one of this middleware's, fed by flushes that fail or time out.
        self._breaker = Breaker(BACKEND)

    # -- batch ------------------------------------------------------------------------------------
    def on_batch_start(self, batch: BatchContext) -> None:
        tracer = self._tracer
        if tracer is None:
            if self._provider is None:
                self._provider = default_provider()
            self._breaker = env_breaker(self._provider) or self._breaker
            tracer = self._tracer = self._provider.get_tracer("observed_batch", __version__)
        state = _BatchState(
            tracer, CaptureBudget(self.key.max_batch_capture_bytes, self.key.max_response_bytes), batch.redaction
        )
        batch.scratch[self.key] = state
        state.flushes = not exports_inline(self._provider)  # nothing queued: no flush, no time kept for one
        if self._breaker.is_open:
            # The backend is down: no spans, no flush; count what this invocation would have sent.
            state.active = False
            batch.skip_record_hooks(self.key)
            batch.summary.add_dropped(BACKEND, 1 if self.key.mode == "batch" else batch.size)
            return
        parent = trace.get_current_span().get_span_context()
        if never_samples(tracer, parent):
            state.active = False
            batch.skip_record_hooks(self.key)  # unsampled records then cost what they cost without tracing
            return
        state.max_links = max_links(tracer)
        state.span_name = _span_name(batch.destination)
        system = batch.messaging_system
        state.attributes = {MESSAGING_SYSTEM: system, MESSAGING_OPERATION_TYPE: _PROCESS}
        state.is_sqs, state.per_record_destination = system == "aws_sqs", system == "kafka"  # Kafka: many topics
        if not state.per_record_destination and batch.destination is not None:
            state.attributes[MESSAGING_DESTINATION_NAME] = batch.destination
        if self.key.mode == "batch":
            self._start_batch_span(batch, state, batch.destination or _first_topic(batch))

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: _BatchState | None = batch.scratch.get(self.key)
        if state is None:
            return
        for span in list(state.open_spans):
            # A record whose chain never resumed (the core raised past it): end it, marked, so that
            # it is exported instead of leaking.
            span.set_attribute(ATTR_INCOMPLETE, True)
            span.end()
        state.open_spans.clear()
        batch_span = state.batch_span
        if batch_span is not None:
            self._end_batch_span(batch_span, state, summary)
        elif state.capture.dropped:
            invocation = trace.get_current_span()
            if invocation.is_recording():
                invocation.set_attribute(ATTR_CAPTURE_DROPPED, state.capture.dropped)
        if state.active and state.flushes and self._provider is not None and self.key.flush_timeout_ms:
            self._flush(batch, summary, self._provider)

    # -- record -----------------------------------------------------------------------------------
    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        state: _BatchState | None = record.batch.scratch.get(self.key)
        if state is None or not state.active:
            yield
            return
        if state.batch_span is not None and state.batch_context is not None:
            yield from self._within_batch_span(record, state, state.batch_span, state.batch_context)
            return

        # Per record only what differs: the message id and links (the batch's attributes are copied).
        attributes, name, raw = state.attributes.copy(), state.span_name, record.raw
        if state.is_sqs and type(raw) is dict:
            message_id = raw.get("messageId")  # RecordContext.message_id, minus two calls
        else:
            if state.per_record_destination:
                destination = record.destination
                name = _span_name(destination)  # the batch's name when it is the batch's destination
                if destination is not None:
                    attributes[MESSAGING_DESTINATION_NAME] = destination
            message_id = record.message_id
        if isinstance(message_id, str):
            attributes[MESSAGING_MESSAGE_ID] = message_id
        links, links_dropped = state.links(producer_trace_headers(raw))
        # The current context, read once: the span's parent, and what the span is made current in.
        parent = otel_context.get_current()
        span = state.tracer.start_span(name, context=parent, kind=_CONSUMER, attributes=attributes, links=links)
        if not span.is_recording():
            # The sampler dropped this record's span: it is only made current (its context propagates).
            token = otel_context.attach(trace.set_span_in_context(span, parent))
            try:
                yield
            finally:
                otel_context.detach(token)
            return
        open_spans, capture = state.open_spans, state.capture
        open_spans.add(span)
        dropped_before = capture.dropped
        if links_dropped:
            span.set_attribute(ATTR_LINKS_DROPPED, links_dropped)
        if self.key.capture_body:
            self._capture_body(span, state, record)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield
        except BaseException:
            # Closed without resuming (the core raised past the record): never leak the span as current,
            # and end it, marked incomplete, before whatever closed the generator propagates.
            otel_context.detach(token)
            open_spans.discard(span)
            span.set_attribute(ATTR_INCOMPLETE, True)
            span.end()
            raise
        otel_context.detach(token)
        try:
            # A success adds nothing unless its response is captured: no further call for it.
            if record.outcome is not _SUCCESS or self.key.capture_response:
                self._finish_record_span(span, state, record)
            if capture.dropped > dropped_before:
                # Running total: the last such span of the invocation carries the final count.
                span.set_attribute(ATTR_CAPTURE_DROPPED, capture.dropped)
        finally:
            open_spans.discard(span)
            span.end()

    def _finish_record_span(self, span: Span, state: _BatchState, record: RecordContext) -> None:
        outcome = record.outcome
        if outcome is Outcome.FAILURE:
            error_type = _error_type(record.exc_info)
            span.set_attribute(ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            self._record_exception(span, state, record.exc_info, error_type, {})
            if record.resolution is not None:
                span.set_attribute(ATTR_RESOLUTION, record.resolution)
        elif outcome is Outcome.SKIPPED:
            # Not an error of this record: Powertools reports it failed so that it is retried later.
            span.set_attribute(ATTR_SKIP_REASON, record.skip_reason or "skipped")
        elif self.key.capture_response and record.result is not None:
            captured = state.capture.response(state.redaction, record.result)
            if captured is not None:
                span.set_attributes({ATTR_RESPONSE: captured[0], ATTR_RESPONSE_SIZE: captured[1]})

    def _capture_body(self, span: Span, state: _BatchState, record: RecordContext) -> None:
        captured = state.capture.body(state.redaction, record)
        if captured is not None:
            span.set_attributes({ATTR_BODY: captured[0], MESSAGING_MESSAGE_BODY_SIZE: captured[1]})

    # -- batch mode -------------------------------------------------------------------------------
    def _start_batch_span(self, batch: BatchContext, state: _BatchState, destination: str | None) -> None:
        links, links_dropped = batch_links(batch.records, state.max_links)
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: batch.messaging_system,
            MESSAGING_OPERATION_TYPE: _PROCESS,
            MESSAGING_BATCH_MESSAGE_COUNT: batch.size,
        }
        if destination is not None:
            attributes[MESSAGING_DESTINATION_NAME] = destination
        span = state.tracer.start_span(
            _span_name(destination), kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )
        if not span.is_recording():
            state.active = False
            return
        if links_dropped:
            span.set_attribute(ATTR_LINKS_DROPPED, links_dropped)
        state.batch_span = span
        state.batch_context = trace.set_span_in_context(span)

    def _within_batch_span(
        self, record: RecordContext, state: _BatchState, span: Span, context: otel_context.Context
    ) -> Iterator[None]:
        if self.key.capture_body:
            body = state.capture.body(state.redaction, record)
            self._add_record_event(span, record, ATTR_BODY, body, MESSAGING_MESSAGE_BODY_SIZE)
        token = otel_context.attach(context)
        try:
            yield
        finally:
            otel_context.detach(token)
        outcome = record.outcome
        if outcome is Outcome.FAILURE:
            error_type = _error_type(record.exc_info)
            state.error_types.add(error_type)
            self._record_exception(span, state, record.exc_info, error_type, _message_id(record))
        elif outcome is Outcome.SUCCESS and self.key.capture_response and record.result is not None:
            response = state.capture.response(state.redaction, record.result)
            self._add_record_event(span, record, ATTR_RESPONSE, response, ATTR_RESPONSE_SIZE)

    def _add_record_event(
        self, span: Span, record: RecordContext, key: str, captured: tuple[str, int] | None, size_key: str
    ) -> None:
        if captured is not None:
            span.add_event(EVENT_RECORD, {**_message_id(record), key: captured[0], size_key: captured[1]})

    def _end_batch_span(self, span: Span, state: _BatchState, summary: BatchSummary) -> None:
        span.set_attributes(
            {
                ATTR_SUCCESSES: summary.successes,
                ATTR_FAILURES: summary.failures,
                ATTR_SKIPPED: summary.skipped,
            }
        )
        if state.capture.dropped:
            span.set_attribute(ATTR_CAPTURE_DROPPED, state.capture.dropped)
        error = summary.error
        if summary.failures or error is not None:
            if error is not None:
                error_type = type(error).__qualname__
            elif len(state.error_types) == 1:
                error_type = next(iter(state.error_types))
            else:
                error_type = _OTHER_ERROR
            span.set_attribute(ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, f"{summary.failures} of {summary.total} records failed"))
        span.end()

    def _record_exception(
        self,
        span: Span,
        state: _BatchState,
        exc_info: Any,
        error_type: str,
        extra: Mapping[str, Any],
    ) -> None:
        """The semconv ``exception`` event, with message and stack trace within the capture limits."""
        attributes: dict[str, Any] = {EXCEPTION_TYPE: error_type, **extra}
        exception = exc_info[1] if exc_info else None
        if exception is not None:
            message, stacktrace = state.capture.exception(state.redaction, exc_info, self.key.include_input_values)
            if message is not None:
                attributes[EXCEPTION_MESSAGE] = message[0]
            if stacktrace is not None:
                attributes[EXCEPTION_STACKTRACE] = stacktrace[0]
        span.add_event("exception", attributes)

    # -- flushing ---------------------------------------------------------------------------------
    def flush_budget_ms(self, batch: BatchContext) -> int:
        state: _BatchState | None = batch.scratch.get(self.key)
        if state is None or not state.active or not state.flushes or self._breaker.is_open:
            return 0
        return self.key.flush_timeout_ms

    def _flush(self, batch: BatchContext, summary: BatchSummary, provider: trace.TracerProvider) -> None:
        """Export what this invocation produced before Lambda freezes, waiting at most the flush timeout
        and never past the deadline budget; a flush that fails or runs out of time opens the breaker."""
        force_flush: Callable[..., Any] | None = getattr(provider, "force_flush", None)
        timeout_ms = int(batch.wait_budget_s(self.key.flush_timeout_ms) * 1000)
        if force_flush is None or timeout_ms <= 0:
            return
        flusher = self._flusher
        if flusher is None:
            flusher = self._flusher = Flusher(force_flush)
        summary.add_dropped(BACKEND, flusher.flush_into(self._breaker, timeout_ms))


class _BatchState(LinkCache):
    """Per-invocation tracing state, kept in ``batch.scratch[middleware]`` (per instance)."""

    __slots__ = (
        "active",
        "attributes",
        "batch_context",
        "batch_span",
        "capture",
        "error_types",
        "flushes",
        "is_sqs",
        "open_spans",
        "per_record_destination",
        "redaction",
        "span_name",
        "tracer",
    )

    def __init__(self, tracer: trace.Tracer, capture: CaptureBudget, redaction: Redaction) -> None:
        super().__init__()
        self.tracer, self.redaction, self.capture = tracer, redaction, capture
        #: False when no span of this batch can be sampled: records then cost one dict lookup. ``flushes``:
        #: False when the provider exports as spans end (nothing to flush at batch end).
        self.active = self.flushes = True
        self.span_name = _PROCESS
        #: The per-batch attributes of every record span (copied per record), set with the span name.
        self.attributes: dict[str, Any] = {}
        self.is_sqs, self.per_record_destination = False, True
        self.open_spans: set[Span] = set()
        self.batch_span: Span | None = None
        self.batch_context: otel_context.Context | None = None
        self.error_types: set[str] = set()


# -- helpers ------------------------------------------------------------------------------------------
def _span_name(destination: str | None) -> str:
    return f"process {destination}" if destination else _PROCESS


def _first_topic(batch: BatchContext) -> str | None:
    """Kafka batches have no single destination ARN: name the batch after its first record's topic."""
    first = batch.records[0] if batch.records else None
    topic = first.get("topic") if isinstance(first, Mapping) else None
    return topic if isinstance(topic, str) else None


def _message_id(record: RecordContext) -> dict[str, Any]:
    message_id = record.message_id
    return {MESSAGING_MESSAGE_ID: message_id} if message_id is not None else {}


def _error_type(exc_info: Any) -> str:
    kind = exc_info[0] if exc_info else None
    return kind.__qualname__ if isinstance(kind, type) else _OTHER_ERROR
