"""OpenTelemetry tracing: a CONSUMER span per record (or one per batch), linked to its producers.

Each record span is named ``process {destination}``, follows the messaging semantic conventions, is a
child of whatever span is current (the invocation span of the Lambda instrumentation, if any) and is
made current while the handler runs. Producer contexts found in the record (W3C ``traceparent`` /
``tracestate`` message attributes, X-Ray ``AWSTraceHeader``) become span **links**, not parents: a
batch mixes messages from many traces.

Captured text (handler responses, exception messages and stack traces, bodies) is capped per item by
``max_response_bytes`` and per invocation by ``max_batch_capture_bytes``, so a batch of large responses
cannot produce trace documents beyond X-Ray's 64 KB segment limit. Captures that no longer fit are
counted in ``observed_batch.capture.dropped``.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.aws.aws_xray_propagator import TRACE_HEADER_KEY
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, StaticSampler, TraceIdRatioBased
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
from opentelemetry.trace import Link, Span, SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from observed_batch import __version__
from observed_batch.breaker import Breaker
from observed_batch.errors import ConfigError
from observed_batch.metric_schema import OTEL_BACKEND
from observed_batch.redaction import Redaction
from observed_batch.sources import producer_trace_headers
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

from ._otel_export import Flusher, default_provider, env_breaker

__all__ = ["TracingMiddleware"]

logger = logging.getLogger("observed_batch.tracing")

_PROCESS = MessagingOperationTypeValues.PROCESS.value

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

#: Appended to (or, for stack traces, prepended to) text cut at ``max_response_bytes``.
TRUNCATION_MARKER = "...[truncated]"
_MARKER_BYTES = len(TRUNCATION_MARKER.encode())
_MIN_CAPTURE_BYTES = 64
_OTHER_ERROR = "_OTHER"  # semconv fallback for error.type
_LINK_CACHE_LIMIT = 1024
#: ``BatchSummary.telemetry_dropped`` key and ``TelemetryDropped`` dimension value of this backend.
BACKEND = OTEL_BACKEND

_W3C = TraceContextTextMapPropagator()
_XRAY = AwsXRayPropagator()


class TracingMiddleware(Middleware):
    """OpenTelemetry spans for batch records; see docs/middleware/tracing.md for what is and is not sent.

    ``tracer_provider`` defaults to the global provider if one is set, else to a provider built once
    per process from the ``OTEL_*`` environment (OTLP/HTTP exporter, batch span processor). The global
    provider is never replaced and never re-initialised.
    """

    name = "tracing"

    def __init__(
        self,
        *,
        mode: Literal["per_record", "batch"] = "per_record",
        capture_response: bool = False,
        capture_body: bool = False,
        max_response_bytes: int = 1024,
        max_batch_capture_bytes: int = 49152,
        flush_timeout_ms: int = 2000,
        include_input_values: bool = False,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        if mode not in ("per_record", "batch"):
            raise ConfigError(f"tracing option mode={mode!r} is not one of: per_record, batch")
        flags = (
            ("capture_response", capture_response),
            ("capture_body", capture_body),
            ("include_input_values", include_input_values),
        )
        for option, flag in flags:
            if not isinstance(flag, bool):
                raise ConfigError(f"tracing option {option}={flag!r} must be true or false")
        _check_int("max_response_bytes", max_response_bytes, _MIN_CAPTURE_BYTES)
        _check_int("max_batch_capture_bytes", max_batch_capture_bytes, 0)
        _check_int("flush_timeout_ms", flush_timeout_ms, 0)
        if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
            raise ConfigError(f"tracing option tracer_provider={tracer_provider!r} is not a TracerProvider")
        self.mode = mode
        self.capture_response = capture_response
        self.capture_body = capture_body
        self.max_response_bytes = max_response_bytes
        self.max_batch_capture_bytes = max_batch_capture_bytes
        self.flush_timeout_ms = flush_timeout_ms
        self.include_input_values = include_input_values
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
        state = _BatchState(tracer, self.max_batch_capture_bytes, batch.redaction)
        batch.scratch[self] = state
        if self._breaker.is_open:
            # The backend is down: no spans, no flush; count what this invocation would have sent.
            state.active = False
            batch.skip_record_hooks(self)
            batch.summary.add_dropped(BACKEND, 1 if self.mode == "batch" else batch.size)
            return
        parent = trace.get_current_span().get_span_context()
        if _never_samples(tracer, parent):
            state.active = False
            batch.skip_record_hooks(self)  # unsampled records then cost what they cost without tracing
            return
        state.max_links = _max_links(tracer)
        state.span_name = _span_name(batch.destination)
        if self.mode == "batch":
            self._start_batch_span(batch, state, batch.destination or _first_topic(batch))

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: _BatchState | None = batch.scratch.get(self)
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
        elif state.dropped:
            invocation = trace.get_current_span()
            if invocation.is_recording():
                invocation.set_attribute(ATTR_CAPTURE_DROPPED, state.dropped)
        if state.active and self._provider is not None and self.flush_timeout_ms:
            self._flush(batch, summary, self._provider)

    # -- record -----------------------------------------------------------------------------------
    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        state: _BatchState | None = record.batch.scratch.get(self)
        if state is None or not state.active:
            yield
            return
        if state.batch_span is not None and state.batch_context is not None:
            yield from self._within_batch_span(record, state, state.batch_span, state.batch_context)
            return

        links, links_dropped = state.links(record.trace_headers)
        destination = record.destination
        attributes: dict[str, Any] = {
            MESSAGING_SYSTEM: record.batch.messaging_system,
            MESSAGING_OPERATION_TYPE: _PROCESS,
        }
        if destination is not None:
            attributes[MESSAGING_DESTINATION_NAME] = destination
        message_id = record.message_id
        if message_id is not None:
            attributes[MESSAGING_MESSAGE_ID] = message_id
        name = state.span_name if destination == record.batch.destination else _span_name(destination)
        span = state.tracer.start_span(name, kind=SpanKind.CONSUMER, attributes=attributes, links=links)
        recording = span.is_recording()
        dropped_before = state.dropped
        if recording:
            state.open_spans.add(span)
            if links_dropped:
                span.set_attribute(ATTR_LINKS_DROPPED, links_dropped)
            if self.capture_body:
                self._capture_body(span, state, record)
        token = otel_context.attach(trace.set_span_in_context(span))
        resumed = False
        try:
            yield
            resumed = True
        finally:
            # Also when the generator is closed without resuming: never leak the span as current, and
            # end the span (marked incomplete) before whatever closed it propagates.
            otel_context.detach(token)
            if not resumed and recording:
                state.open_spans.discard(span)
                span.set_attribute(ATTR_INCOMPLETE, True)
                span.end()
        if recording:
            try:
                self._finish_record_span(span, state, record)
                if state.dropped > dropped_before:
                    # Running total: the last such span of the invocation carries the final count.
                    span.set_attribute(ATTR_CAPTURE_DROPPED, state.dropped)
            finally:
                state.open_spans.discard(span)
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
        elif self.capture_response and record.result is not None:
            captured = self._capture(state, state.redaction.text(_to_text(record.result)))
            if captured is not None:
                span.set_attributes({ATTR_RESPONSE: captured[0], ATTR_RESPONSE_SIZE: captured[1]})

    def _capture_body(self, span: Span, state: _BatchState, record: RecordContext) -> None:
        body = _body_text(record.raw)
        if body is None:
            return
        captured = self._capture(state, state.redaction.text(body))
        if captured is not None:
            span.set_attributes({ATTR_BODY: captured[0], MESSAGING_MESSAGE_BODY_SIZE: captured[1]})

    # -- batch mode -------------------------------------------------------------------------------
    def _start_batch_span(self, batch: BatchContext, state: _BatchState, destination: str | None) -> None:
        links, links_dropped = _batch_links(batch.records, state.max_links)
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
        if self.capture_body:
            body = _body_text(record.raw)
            if body is not None:
                body = state.redaction.text(body)
                self._add_record_event(span, state, record, ATTR_BODY, body, MESSAGING_MESSAGE_BODY_SIZE)
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
        elif outcome is Outcome.SUCCESS and self.capture_response and record.result is not None:
            response = state.redaction.text(_to_text(record.result))
            self._add_record_event(span, state, record, ATTR_RESPONSE, response, ATTR_RESPONSE_SIZE)

    def _add_record_event(
        self, span: Span, state: _BatchState, record: RecordContext, key: str, text: str, size_key: str
    ) -> None:
        captured = self._capture(state, text)
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
        if state.dropped:
            span.set_attribute(ATTR_CAPTURE_DROPPED, state.dropped)
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

    # -- captures ---------------------------------------------------------------------------------
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
            redaction = state.redaction
            message = self._capture(state, redaction.exception_message(exception, self.include_input_values))
            if message is not None:
                attributes[EXCEPTION_MESSAGE] = message[0]
            text = redaction.exception_text(exception, exc_info[2], self.include_input_values)
            stacktrace = self._capture(state, text, keep_tail=True)
            if stacktrace is not None:
                attributes[EXCEPTION_STACKTRACE] = stacktrace[0]
        span.add_event("exception", attributes)

    def _capture(self, state: _BatchState, text: str, keep_tail: bool = False) -> tuple[str, int] | None:
        """Text cut to ``max_response_bytes`` and its original size, or ``None`` (counted) when the
        invocation's budget cannot take it. Once one capture does not fit, none are attached any more."""
        if state.exhausted:
            state.dropped += 1
            return None
        kept, size = _truncate(text, self.max_response_bytes, keep_tail)
        cost = min(size, self.max_response_bytes)
        if cost > state.budget:
            state.exhausted = True
            state.dropped += 1
            return None
        state.budget -= cost
        return kept, size

    # -- flushing ---------------------------------------------------------------------------------
    def flush_budget_ms(self, batch: BatchContext) -> int:
        state: _BatchState | None = batch.scratch.get(self)
        if state is None or not state.active or self._breaker.is_open:
            return 0
        return self.flush_timeout_ms

    def _flush(self, batch: BatchContext, summary: BatchSummary, provider: trace.TracerProvider) -> None:
        """Export what this invocation produced before Lambda freezes, waiting at most the flush timeout
        and never past the deadline budget; a flush that fails or runs out of time opens the breaker."""
        breaker = self._breaker
        force_flush: Callable[..., Any] | None = getattr(provider, "force_flush", None)
        timeout_ms = int(batch.wait_budget_s(self.flush_timeout_ms) * 1000)
        if force_flush is None or timeout_ms <= 0:
            return
        flusher = self._flusher
        if flusher is None:
            flusher = self._flusher = Flusher(force_flush)
        failures, dropped = breaker.failures, breaker.dropped
        if not flusher.flush(timeout_ms):
            breaker.failed(f"span flush did not finish within {timeout_ms} ms")
        elif breaker.failures == failures:
            breaker.succeeded()
        summary.add_dropped(BACKEND, breaker.dropped - dropped)


class _BatchState:
    """Per-invocation tracing state, kept in ``batch.scratch[middleware]`` (per instance)."""

    __slots__ = (
        "_link_cache",
        "active",
        "batch_context",
        "batch_span",
        "budget",
        "dropped",
        "error_types",
        "exhausted",
        "max_links",
        "open_spans",
        "redaction",
        "span_name",
        "tracer",
    )

    def __init__(self, tracer: trace.Tracer, budget: int, redaction: Redaction) -> None:
        self.tracer = tracer
        self.redaction = redaction
        #: False when no span of this batch can be sampled: records then cost one dict lookup.
        self.active = True
        self.budget = budget
        self.dropped = 0
        self.exhausted = False
        self.max_links: int | None = None
        self.span_name = _PROCESS
        self.open_spans: set[Span] = set()
        self.batch_span: Span | None = None
        self.batch_context: otel_context.Context | None = None
        self.error_types: set[str] = set()
        self._link_cache: dict[tuple[str | None, ...], tuple[tuple[Link, ...], int]] = {}

    def links(self, headers: Mapping[str, str]) -> tuple[tuple[Link, ...], int]:
        """Links to the producer contexts in a record's headers, capped, and how many were cut.

        Messages sent in one ``SendMessageBatch`` carry the same context, hence the cache.
        """
        if not headers:
            return (), 0
        key = (headers.get("traceparent"), headers.get("tracestate"), headers.get("x-amzn-trace-id"))
        cached = self._link_cache.get(key)
        if cached is None:
            contexts = _producer_contexts(headers)
            cap = len(contexts) if self.max_links is None else self.max_links
            cached = tuple(Link(c) for c in contexts[:cap]), max(0, len(contexts) - cap)
            if len(self._link_cache) < _LINK_CACHE_LIMIT:
                self._link_cache[key] = cached
        return cached


# -- helpers ----------------------------------------------------------------------------------------
def _check_int(option: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"tracing option {option}={value!r} must be an integer")
    if value < minimum:
        raise ConfigError(f"tracing option {option}={value!r} must be at least {minimum}")


def _never_samples(tracer: trace.Tracer, parent: SpanContext) -> bool:
    """True when the tracer's sampler is certain to drop every child of ``parent``: then records
    skip span creation entirely (a non-recording span would cost more than Powertools itself)."""
    if isinstance(tracer, trace.NoOpTracer):
        return True
    sampler = getattr(tracer, "sampler", None)
    return isinstance(sampler, Sampler) and _drops_all(sampler, parent, 0)


def _drops_all(sampler: Sampler, parent: SpanContext, depth: int) -> bool:
    if isinstance(sampler, StaticSampler) and sampler.get_description() == "AlwaysOffSampler":
        return True
    if isinstance(sampler, ParentBased) and depth < 4:
        if parent.is_valid:
            sampled = parent.trace_flags.sampled
            if parent.is_remote:
                attribute = "_remote_parent_sampled" if sampled else "_remote_parent_not_sampled"
            else:
                attribute = "_local_parent_sampled" if sampled else "_local_parent_not_sampled"
        else:
            attribute = "_root"
        delegate = getattr(sampler, attribute, None)
        return isinstance(delegate, Sampler) and _drops_all(delegate, parent, depth + 1)
    if isinstance(sampler, TraceIdRatioBased):
        return sampler.rate <= 0
    return False  # a sampler we cannot reason about: ask it per span


def _max_links(tracer: trace.Tracer) -> int | None:
    limits = getattr(tracer, "_span_limits", None)
    if not isinstance(limits, SpanLimits):
        limits = SpanLimits()
    return limits.max_links


def _producer_contexts(headers: Mapping[str, str]) -> list[SpanContext]:
    """Valid producer span contexts from W3C and X-Ray headers; malformed headers are ignored."""
    contexts: list[SpanContext] = []
    if "traceparent" in headers:
        _append_context(contexts, lambda: _W3C.extract(headers))
    xray = headers.get("x-amzn-trace-id")
    if xray:
        _append_context(contexts, lambda: _XRAY.extract({TRACE_HEADER_KEY: xray}))
    return contexts


def _append_context(contexts: list[SpanContext], extract: Callable[[], otel_context.Context]) -> None:
    try:
        found = trace.get_current_span(extract()).get_span_context()
    except Exception:
        return
    if not found.is_valid:
        return
    for known in contexts:
        if known.trace_id == found.trace_id and known.span_id == found.span_id:
            return
    contexts.append(found)


def _batch_links(records: Sequence[Any], max_links: int | None) -> tuple[list[Link], int]:
    """Links to every distinct producer of the batch, up to the link limit.

    Once the limit is reached, the remaining headers are not parsed: distinct header values are
    counted as dropped links instead, which keeps a 10,000-record batch cheap.
    """
    links: list[Link] = []
    linked: set[tuple[int, int]] = set()
    unexamined: set[tuple[str | None, ...]] = set()
    seen: set[tuple[str | None, ...]] = set()
    for raw in records:
        headers = producer_trace_headers(raw)
        if not headers:
            continue
        key = (headers.get("traceparent"), headers.get("tracestate"), headers.get("x-amzn-trace-id"))
        if key in seen:
            continue
        seen.add(key)
        if max_links is not None and len(links) >= max_links:
            unexamined.add(key)
            continue
        for found in _producer_contexts(headers):
            if (found.trace_id, found.span_id) in linked:
                continue
            if max_links is not None and len(links) >= max_links:
                unexamined.add(key)
                break
            linked.add((found.trace_id, found.span_id))
            links.append(Link(found))
    return links, len(unexamined)


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


def _safe_str(value: object) -> str:
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__qualname__}>"


def _to_text(value: Any) -> str:
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
        return _safe_str(value)


def _body_text(raw: Any) -> str | None:
    """The record's payload as the producer sent it (base64 payloads decoded), or ``None``."""
    if not isinstance(raw, Mapping):
        return None
    try:
        if "body" in raw:  # SQS
            body = raw["body"]
            return body if isinstance(body, str) else None
        if "kinesis" in raw:
            return base64.b64decode(raw["kinesis"]["data"]).decode("utf-8", "replace")
        if "dynamodb" in raw:
            change = raw["dynamodb"]
            return json.dumps(change.get("NewImage") or change.get("Keys"), ensure_ascii=False)
        value = raw.get("value")  # Kafka
        return base64.b64decode(value).decode("utf-8", "replace") if isinstance(value, str) else None
    except Exception:
        return None


def _truncate(text: str, limit: int, keep_tail: bool = False) -> tuple[str, int]:
    """``text`` within ``limit`` UTF-8 bytes, cut with a marker, and its original size in bytes."""
    data = text.encode("utf-8", "replace")
    size = len(data)
    if size <= limit:
        return text, size
    room = limit - _MARKER_BYTES
    if keep_tail:
        return TRUNCATION_MARKER + data[size - room :].decode("utf-8", "ignore"), size
    return data[:room].decode("utf-8", "ignore") + TRUNCATION_MARKER, size
