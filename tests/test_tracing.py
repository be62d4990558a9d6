"""The ``tracing`` middleware against the real OpenTelemetry SDK (in-memory exporter, simple processor).

Spans are exported synchronously when they end, so once ``process_partial_response`` returns every
span of the batch is in the exporter: structure, attributes and links are asserted exactly.
Export over OTLP/HTTP, provider resolution and the differential check are in test_tracing_export.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import process_partial_response as powertools_process_partial_response
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import SpanContext, SpanKind, StatusCode, TraceFlags
from pydantic import BaseModel
from record_hook import counting_record_hooks, enter_one_record

from observed_batch import (
    AsyncBatchProcessor,
    BatchProcessingError,
    BatchProcessor,
    Config,
    ConfigError,
    EventType,
    FailRecord,
    Middleware,
    Outcome,
    RecordContext,
    SqsFifoPartialProcessor,
    async_process_partial_response,
    process_partial_response,
    sources,
)
from observed_batch.middleware import TracingMiddleware
from observed_batch.middleware import _otel_export as otel_export
from observed_batch.middleware import _otel_links as otel_links
from observed_batch.middleware import tracing as tracing_module
from observed_batch.testing import (
    RecordingMiddleware,
    dynamodb_event,
    kafka_event,
    kinesis_event,
    sqs_event,
    sqs_fifo_event,
    sqs_record,
)

W3C_TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
W3C_SPAN_ID = 0xB7AD6B7169203331
TRACEPARENT = f"00-{W3C_TRACE_ID:032x}-{W3C_SPAN_ID:016x}-01"
XRAY_TRACE_ID = 0x5759E988BD862E3FE1BE46A994272793
XRAY_SPAN_ID = 0x53995C3F42CD8AD8
XRAY_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
BODY_MARKER = "BODY-MARKER-4c1d"
MARKER = tracing_module.TRUNCATION_MARKER


# -- fixtures and helpers -----------------------------------------------------------------------------
@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def make_provider(
    exporter: InMemorySpanExporter, sampler: Sampler = ALWAYS_ON, limits: SpanLimits | None = None
) -> TracerProvider:
    provider = TracerProvider(sampler=sampler, span_limits=limits, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    return make_provider(exporter)


def tracing(provider: trace.TracerProvider, **options: Any) -> TracingMiddleware:
    return TracingMiddleware(tracer_provider=provider, **options)


def ours(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """Spans the middleware produced (the test's own invocation / handler spans excluded)."""
    return [
        s
        for s in exporter.get_finished_spans()
        if s.instrumentation_scope and s.instrumentation_scope.name == "observed_batch"
    ]


def by_name(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def message_id(record: Any) -> str:
    return str(record.message_id)


def process(
    event: dict[str, Any],
    handler: Callable[[Any], Any],
    middleware: Sequence[Any],
    event_type: EventType = EventType.SQS,
    *,
    raise_on_entire_batch_failure: bool = True,
) -> dict[str, Any]:
    processor = BatchProcessor(
        event_type, raise_on_entire_batch_failure=raise_on_entire_batch_failure, middleware=list(middleware)
    )
    return process_partial_response(event, handler, processor)


def fail_index(*indexes: int, error: type[Exception] = ValueError) -> Callable[[Any], str]:
    """Handler raising ``error`` for records whose body is ``order-<i>`` with i in ``indexes``."""

    def handler(record: Any) -> str:
        index = int(json.loads(record.body)["order_id"].split("-")[1])
        if index in indexes:
            raise error(f"order {index} rejected")
        return "ok"

    return handler


def event_with_headers(count: int = 1, **headers: str) -> dict[str, Any]:
    return {"Records": [sqs_record(i, **headers) for i in range(count)]}


class CountingResponse(BaseModel):
    """A handler result that counts how often it is serialised."""

    order_id: str

    serialised: int = 0

    def model_dump_json(self, **kwargs: Any) -> str:
        CountingResponse.serialised += 1
        return super().model_dump_json(**kwargs)


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    CountingResponse.serialised = 0


# -- span structure and semantic conventions ----------------------------------------------------------
def test_each_record_gets_one_consumer_span_named_after_its_queue(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a batch of three SQS records from the "orders" queue
    event = sqs_event(3)

    # WHEN it is processed with tracing on
    process(event, message_id, [tracing(provider)])

    # THEN there is one CONSUMER span per record, named "process orders"
    spans = ours(exporter)
    assert [(s.name, s.kind) for s in spans] == [("process orders", SpanKind.CONSUMER)] * 3


def test_record_span_carries_messaging_semantic_convention_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN one SQS record
    event = sqs_event(1)

    # WHEN it is processed with tracing on
    process(event, message_id, [tracing(provider)])

    # THEN its span says what was processed, in semconv terms
    (span,) = ours(exporter)
    assert dict(span.attributes or {}) == {
        "messaging.system": "aws_sqs",
        "messaging.operation.type": "process",
        "messaging.destination.name": "orders",
        "messaging.message.id": event["Records"][0]["messageId"],
    }
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.parametrize(
    ("event", "event_type", "system", "destination", "message_id_of"),
    [
        (
            kinesis_event(1),
            EventType.KinesisDataStreams,
            "aws_kinesis",
            "clickstream",
            lambda r: r["kinesis"]["sequenceNumber"],
        ),
        (
            dynamodb_event(1),
            EventType.DynamoDBStreams,
            "aws_dynamodb",
            "Orders",
            lambda r: r["dynamodb"]["SequenceNumber"],
        ),
        (kafka_event(1, topic="payments"), EventType.Kafka, "kafka", "payments", lambda r: "payments-0@15"),
    ],
    ids=["kinesis", "dynamodb", "kafka"],
)
def test_stream_sources_name_their_system_destination_and_message_id(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    event: dict[str, Any],
    event_type: EventType,
    system: str,
    destination: str,
    message_id_of: Callable[[dict[str, Any]], str],
) -> None:
    # GIVEN one record of a stream source
    raw = event["Records"][0] if "Records" in event else next(iter(event["records"].values()))[0]

    # WHEN it is processed with tracing on
    process(event, lambda record: None, [tracing(provider)], event_type)

    # THEN the span uses that source's system, destination and identifier
    (span,) = ours(exporter)
    attributes = span.attributes or {}
    assert span.name == f"process {destination}"
    assert attributes["messaging.system"] == system
    assert attributes["messaging.destination.name"] == destination
    assert attributes["messaging.message.id"] == message_id_of(raw)


def test_a_record_without_destination_is_named_process(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN an SQS record whose event source ARN is missing
    event = sqs_event(1)
    del event["Records"][0]["eventSourceARN"]

    # WHEN it is processed
    process(event, message_id, [tracing(provider)])

    # THEN the span is named after the operation only, without a destination attribute
    (span,) = ours(exporter)
    assert span.name == "process"
    assert "messaging.destination.name" not in (span.attributes or {})


def test_record_spans_are_children_of_the_current_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN an invocation span (as the Lambda instrumentation opens) around the batch
    with provider.get_tracer("test").start_as_current_span("invocation") as invocation:
        # WHEN the batch is processed
        process(sqs_event(2), message_id, [tracing(provider)])

    # THEN both record spans are its children, in its trace
    for span in ours(exporter):
        assert span.parent is not None
        assert span.parent.span_id == invocation.get_span_context().span_id
        assert span.context.trace_id == invocation.get_span_context().trace_id


def test_span_processors_see_each_record_span_start_in_the_callers_context_and_end(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a span processor of the application's next to the exporting one, and an invocation span
    class Seeing(SpanProcessor):
        def __init__(self) -> None:
            self.started: list[tuple[str, trace.Span]] = []
            self.ended: list[str] = []

        def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
            self.started.append((span.name, trace.get_current_span(parent_context)))

        def on_end(self, span: ReadableSpan) -> None:
            self.ended.append(span.name)

    seeing = Seeing()
    provider.add_span_processor(seeing)
    with provider.get_tracer("test").start_as_current_span("invocation") as invocation:
        # WHEN a batch of two records, one failing, is processed
        process(sqs_event(2), fail_index(1), [tracing(provider)], raise_on_entire_batch_failure=False)

    # THEN the processor saw both record spans start with the invocation span as the parent context's
    # span, and end, in order
    assert seeing.started[1:] == [("process orders", invocation), ("process orders", invocation)]
    assert seeing.ended == ["process orders", "process orders", "invocation"]


def test_record_spans_without_a_current_span_are_separate_roots(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN no span is current
    # WHEN two records are processed
    process(sqs_event(2), message_id, [tracing(provider)])

    # THEN each record span starts its own trace
    spans = ours(exporter)
    assert [s.parent for s in spans] == [None, None]
    assert spans[0].context.trace_id != spans[1].context.trace_id


def test_record_span_is_current_while_the_handler_runs(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a handler that opens its own span
    handler_tracer = provider.get_tracer("handler")

    def handler(record: Any) -> None:
        with handler_tracer.start_as_current_span(f"handle {record.message_id}"):
            pass

    # WHEN two records are processed
    event = sqs_event(2)
    process(event, handler, [tracing(provider)])

    # THEN each handler span is the child of its own record's span
    record_spans = {(s.attributes or {})["messaging.message.id"]: s for s in ours(exporter)}
    for raw in event["Records"]:
        (child,) = by_name(exporter, f"handle {raw['messageId']}")
        assert child.parent is not None
        assert child.parent.span_id == record_spans[raw["messageId"]].context.span_id


def test_the_callers_context_is_restored_after_the_batch(provider: TracerProvider) -> None:
    # GIVEN an invocation span current before the batch
    with provider.get_tracer("test").start_as_current_span("invocation") as invocation:
        # WHEN a batch with a failing record is processed
        process(sqs_event(2), fail_index(1), [tracing(provider)])

        # THEN the invocation span is current again afterwards
        assert trace.get_current_span() is invocation


# -- producer links -----------------------------------------------------------------------------------
def test_w3c_traceparent_becomes_a_link_not_a_parent(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a record whose producer propagated W3C trace context with a tracestate
    event = event_with_headers(traceparent=TRACEPARENT)
    event["Records"][0]["messageAttributes"]["tracestate"] = {"stringValue": "vendor=abc", "dataType": "String"}

    # WHEN it is processed
    process(event, message_id, [tracing(provider)])

    # THEN the span links to the producer (trace state kept) and stays in its own trace
    (span,) = ours(exporter)
    (link,) = span.links
    assert (link.context.trace_id, link.context.span_id) == (W3C_TRACE_ID, W3C_SPAN_ID)
    assert link.context.trace_state.get("vendor") == "abc"
    assert span.context.trace_id != W3C_TRACE_ID


def test_xray_aws_trace_header_becomes_a_link(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a record carrying the X-Ray AWSTraceHeader system attribute
    event = event_with_headers(xray_header=XRAY_HEADER)

    # WHEN it is processed
    process(event, message_id, [tracing(provider)])

    # THEN the span links to the X-Ray producer segment
    (span,) = ours(exporter)
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [(XRAY_TRACE_ID, XRAY_SPAN_ID)]


def test_both_producer_headers_give_two_links(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a record with both W3C and X-Ray producer contexts
    event = event_with_headers(traceparent=TRACEPARENT, xray_header=XRAY_HEADER)

    # WHEN it is processed
    process(event, message_id, [tracing(provider)])

    # THEN both producers are linked
    (span,) = ours(exporter)
    assert {(link.context.trace_id, link.context.span_id) for link in span.links} == {
        (W3C_TRACE_ID, W3C_SPAN_ID),
        (XRAY_TRACE_ID, XRAY_SPAN_ID),
    }


def test_the_same_producer_in_both_headers_is_linked_once(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a record whose W3C and X-Ray headers name the same producer span
    same = f"00-{XRAY_TRACE_ID:032x}-{XRAY_SPAN_ID:016x}-01"
    event = event_with_headers(traceparent=same, xray_header=XRAY_HEADER)

    # WHEN it is processed
    process(event, message_id, [tracing(provider)])

    # THEN there is a single link
    (span,) = ours(exporter)
    assert len(span.links) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": "not-a-traceparent"},
        {"traceparent": "00-00000000000000000000000000000000-b7ad6b7169203331-01"},
        {"traceparent": "00-" + "a" * 600},
        {"xray_header": "Root=garbage;Parent=zz"},
        {"xray_header": ""},
        {"traceparent": "", "xray_header": "Sampled=1"},
    ],
    ids=["malformed-w3c", "zero-trace-id", "oversized-w3c", "malformed-xray", "empty-xray", "empty-both"],
)
def test_bad_producer_headers_give_no_link_and_never_fail_the_record(
    provider: TracerProvider, exporter: InMemorySpanExporter, headers: dict[str, str]
) -> None:
    # GIVEN a record with unusable trace headers
    event = event_with_headers(**headers)

    # WHEN it is processed
    response = process(event, message_id, [tracing(provider)])

    # THEN it succeeds, as without tracing, and its span simply has no link
    assert response == {"batchItemFailures": []}
    (span,) = ours(exporter)
    assert span.links == ()


def test_a_header_value_of_the_wrong_type_is_ignored() -> None:
    # GIVEN headers whose traceparent is not a string (the propagator would raise)
    headers: Any = {"traceparent": 12345}

    # WHEN producer contexts are extracted
    contexts = otel_links.producer_contexts(headers)

    # THEN there are none, and nothing raised
    assert contexts == []


def test_links_respect_the_sdk_span_link_limit(exporter: InMemorySpanExporter) -> None:
    # GIVEN an SDK limited to one link per span and a record with two producers
    provider = make_provider(exporter, limits=SpanLimits(max_links=1))
    event = event_with_headers(traceparent=TRACEPARENT, xray_header=XRAY_HEADER)

    # WHEN it is processed
    process(event, message_id, [tracing(provider)])

    # THEN the first producer is linked and the cut one is counted
    (span,) = ours(exporter)
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [(W3C_TRACE_ID, W3C_SPAN_ID)]
    assert (span.attributes or {})["observed_batch.links.dropped"] == 1


def test_each_record_links_its_own_producer_beyond_the_link_cache(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN more records with distinct producers than the per-batch link cache holds
    count = otel_links.LINK_CACHE_LIMIT + 50
    event = {"Records": [sqs_record(i, traceparent=f"00-{i + 1:032x}-{i + 1:016x}-01") for i in range(count)]}

    # WHEN the batch is processed
    process(event, message_id, [tracing(provider)])

    # THEN every span links to exactly its own producer
    spans = ours(exporter)
    assert len(spans) == count
    assert all(len(s.links) == 1 for s in spans)
    assert {s.links[0].context.span_id for s in spans} == set(range(1, count + 1))


def test_records_of_one_producer_share_extracted_links(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN records sent in one SendMessageBatch (same producer context on every message)
    event = event_with_headers(count=5, traceparent=TRACEPARENT)

    # WHEN the batch is processed
    process(event, message_id, [tracing(provider)])

    # THEN every record span links to that producer
    assert [[(link.context.trace_id, link.context.span_id) for link in s.links] for s in ours(exporter)] == [
        [(W3C_TRACE_ID, W3C_SPAN_ID)]
    ] * 5


# -- outcomes -----------------------------------------------------------------------------------------
def test_failed_record_span_has_error_status_type_and_exception(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a handler that rejects the second record
    # WHEN the batch is processed
    process(sqs_event(2), fail_index(1), [tracing(provider)])

    # THEN that record's span is an error with the exception recorded, the other is not
    ok, failed = ours(exporter)
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert (failed.attributes or {})["error.type"] == "ValueError"
    (event,) = failed.events
    assert event.name == "exception"
    attributes = event.attributes or {}
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "order 1 rejected"
    assert "Traceback" in str(attributes["exception.stacktrace"])


class Outer:
    class Rejected(Exception):
        pass


def test_error_type_is_the_exception_class_qualname(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a handler raising a nested exception class
    # WHEN the record fails
    process(
        sqs_event(1),
        fail_index(0, error=Outer.Rejected),
        [tracing(provider)],
        raise_on_entire_batch_failure=False,
    )

    # THEN error.type is the class's qualified name
    (span,) = ours(exporter)
    assert (span.attributes or {})["error.type"] == "Outer.Rejected"


def test_fifo_short_circuited_records_are_marked_skipped_not_errors(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a FIFO batch whose second record fails (Powertools skips the rest)
    processor = SqsFifoPartialProcessor(middleware=[tracing(provider)])

    # WHEN it is processed
    process_partial_response(sqs_fifo_event(4), fail_index(1), processor)

    # THEN the skipped records' spans say why, without error status or exception
    _, failed, *skipped = ours(exporter)
    assert len(skipped) == 2
    assert failed.status.status_code is StatusCode.ERROR
    for span in skipped:
        assert (span.attributes or {})["observed_batch.skip_reason"] == "fifo_short_circuit"
        assert span.status.status_code is StatusCode.UNSET
        assert span.events == ()


class RejectBeforeHandler(Middleware):
    """A guard failing every record before the handler (as timeout_guard does)."""

    name = "reject"

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        raise FailRecord("test_guard")
        yield  # pragma: no cover


def test_records_failed_by_a_guard_are_marked_with_its_reason(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a guard inside the tracing middleware that fails records before the handler
    # WHEN a record is processed
    process(sqs_event(1), message_id, [tracing(provider), RejectBeforeHandler()], raise_on_entire_batch_failure=False)

    # THEN its span carries the guard's reason and no error
    (span,) = ours(exporter)
    assert (span.attributes or {})["observed_batch.skip_reason"] == "test_guard"
    assert span.status.status_code is StatusCode.UNSET


# -- capture limits -----------------------------------------------------------------------------------
def test_responses_are_not_captured_by_default(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a handler returning data
    # WHEN the record is processed with default options
    process(sqs_event(1), lambda record: {"secret": "s3cr3t"}, [tracing(provider)])

    # THEN no response attribute is attached
    (span,) = ours(exporter)
    assert not any(key.startswith("observed_batch.response") for key in span.attributes or {})


def test_captured_response_is_attached_as_json_with_its_size(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN response capture on and a handler returning a dict
    # WHEN the record is processed
    process(sqs_event(1), lambda record: {"status": "stored"}, [tracing(provider, capture_response=True)])

    # THEN the response is attached as JSON with its size in bytes
    (span,) = ours(exporter)
    attributes = span.attributes or {}
    assert attributes["observed_batch.response"] == '{"status": "stored"}'
    assert attributes["observed_batch.response.size"] == len('{"status": "stored"}')


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("plain text", "plain text"),
        (b"raw \xff bytes", "raw \ufffd bytes"),
        (CountingResponse(order_id="o-1"), '{"order_id":"o-1","serialised":0}'),
        ({"when": complex(1, 2)}, '{"when": "(1+2j)"}'),
    ],
    ids=["str", "bytes", "pydantic", "unserialisable-value"],
)
def test_responses_of_any_type_are_captured_as_text(
    provider: TracerProvider, exporter: InMemorySpanExporter, result: Any, expected: str
) -> None:
    # GIVEN response capture on and a handler returning a non-dict value
    # WHEN the record is processed
    process(sqs_event(1), lambda record: result, [tracing(provider, capture_response=True)])

    # THEN it is attached as readable text
    (span,) = ours(exporter)
    assert (span.attributes or {})["observed_batch.response"] == expected


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


def test_a_response_that_cannot_be_printed_is_named_by_its_type(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a handler returning an object whose str() and repr() raise
    # WHEN the record is processed with response capture on
    response = process(sqs_event(1), lambda record: Unprintable(), [tracing(provider, capture_response=True)])

    # THEN the record still succeeds and the capture names the type
    assert response == {"batchItemFailures": []}
    (span,) = ours(exporter)
    assert (span.attributes or {})["observed_batch.response"] == "<unprintable Unprintable>"


def test_a_handler_returning_none_captures_nothing(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN response capture on and a handler returning None
    # WHEN the record is processed
    process(sqs_event(1), lambda record: None, [tracing(provider, capture_response=True)])

    # THEN nothing is attached (and nothing counted as dropped)
    (span,) = ours(exporter)
    assert not any(key.startswith("observed_batch.") for key in span.attributes or {})


def test_long_responses_are_truncated_with_a_marker_and_original_size(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a 10 KB response and a 256-byte limit
    # WHEN the record is processed
    process(
        sqs_event(1), lambda record: "x" * 10_240, [tracing(provider, capture_response=True, max_response_bytes=256)]
    )

    # THEN the attached text is cut to the limit, says so, and the original size is kept
    (span,) = ours(exporter)
    attributes = span.attributes or {}
    text = str(attributes["observed_batch.response"])
    assert len(text.encode()) == 256
    assert text.endswith(MARKER)
    assert attributes["observed_batch.response.size"] == 10_240


def test_truncation_never_splits_a_multibyte_character(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a response of 3-byte characters that does not fit
    # WHEN it is captured with a 100-byte limit
    process(sqs_event(1), lambda record: "€" * 200, [tracing(provider, capture_response=True, max_response_bytes=100)])

    # THEN the text is valid, within the limit, and made of whole characters
    (span,) = ours(exporter)
    text = str((span.attributes or {})["observed_batch.response"])
    assert len(text.encode()) <= 100
    assert set(text.removesuffix(MARKER)) == {"€"}


def test_ten_thousand_large_responses_stay_within_the_batch_budget(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN 10,000 records whose handler returns 10 KB each, default limits (1 KiB each, 48 KiB per batch)
    event = sqs_event(10_000)
    response_text = "r" * 10_240

    # WHEN the batch is processed inside an invocation span
    with provider.get_tracer("test").start_as_current_span("invocation"):
        process(event, lambda record: response_text, [tracing(provider, capture_response=True)])

    # THEN exactly 48 truncated responses are attached, 48 KiB in all, and the rest counted as dropped
    spans = ours(exporter)
    assert len(spans) == 10_000
    captured = [
        str((s.attributes or {})["observed_batch.response"])
        for s in spans
        if "observed_batch.response" in (s.attributes or {})
    ]
    assert len(captured) == 48
    assert sum(len(text.encode()) for text in captured) <= 49_152
    assert all(text.endswith(MARKER) for text in captured)
    (invocation,) = by_name(exporter, "invocation")
    assert (invocation.attributes or {})["observed_batch.capture.dropped"] == 9_952
    assert max(int((s.attributes or {}).get("observed_batch.capture.dropped", 0)) for s in spans) == 9_952


def test_long_exception_messages_and_tracebacks_are_truncated(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a handler raising an exception with a 5 KB message
    def handler(record: Any) -> None:
        raise ValueError("m" * 5_000)

    # WHEN the record fails with a 200-byte capture limit
    process(sqs_event(1), handler, [tracing(provider, max_response_bytes=200)], raise_on_entire_batch_failure=False)

    # THEN the message keeps its head and the stack trace its tail, each within the limit
    (span,) = ours(exporter)
    attributes = span.events[0].attributes or {}
    message, stacktrace = str(attributes["exception.message"]), str(attributes["exception.stacktrace"])
    assert len(message.encode()) <= 200
    assert message.startswith("mmm")
    assert message.endswith(MARKER)
    assert len(stacktrace.encode()) <= 200
    assert stacktrace.startswith(MARKER)
    assert stacktrace.endswith("m")


def test_the_stack_trace_has_pythons_layout_without_caret_lines(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a handler whose error was caused by another one
    def handler(record: Any) -> None:
        try:
            {}["missing"]
        except KeyError as exc:
            raise ValueError("order rejected") from exc

    # WHEN the record fails
    process(sqs_event(1), handler, [tracing(provider)], raise_on_entire_batch_failure=False)

    # THEN the stack trace reads like Python's: both exceptions, the handler's frame and source line,
    # without the ^^^^ markers that cost an ast parse per frame
    (span,) = ours(exporter)
    stacktrace = str((span.events[0].attributes or {})["exception.stacktrace"])
    assert stacktrace.startswith("Traceback (most recent call last):\n")
    assert "KeyError: 'missing'" in stacktrace
    assert "The above exception was the direct cause of the following exception:" in stacktrace
    assert ", in handler\n" in stacktrace
    assert 'raise ValueError("order rejected") from exc' in stacktrace
    assert stacktrace.endswith("ValueError: order rejected")
    assert "^^^" not in stacktrace


def test_exception_details_count_against_the_batch_budget(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a batch budget of zero bytes
    # WHEN a record fails
    process(
        sqs_event(1), fail_index(0), [tracing(provider, max_batch_capture_bytes=0)], raise_on_entire_batch_failure=False
    )

    # THEN the exception event keeps its type only, the span is still an error, and the drops are counted
    (span,) = ours(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.events[0].attributes or {}) == {"exception.type": "ValueError"}
    assert (span.attributes or {})["observed_batch.capture.dropped"] == 2


def test_record_bodies_never_leave_by_default(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN records whose bodies carry a marker, failing and succeeding, with response capture on
    event = sqs_event(2, body=lambda i: {"order_id": f"order-{i}", "note": BODY_MARKER})

    # WHEN they are processed
    process(event, fail_index(1), [tracing(provider, capture_response=True)])

    # THEN the marker appears in no attribute or event of any span
    for span in exporter.get_finished_spans():
        values = [*(span.attributes or {}).values()] + [v for e in span.events for v in (e.attributes or {}).values()]
        assert not any(BODY_MARKER in str(value) for value in values)


def test_bodies_are_captured_when_opted_in_within_the_limits(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN body capture on, a 128-byte limit and a 1 KB body
    event = sqs_event(1, body="b" * 1_000)

    # WHEN the record is processed
    process(event, message_id, [tracing(provider, capture_body=True, max_response_bytes=128)])

    # THEN the truncated body and its size are attached
    (span,) = ours(exporter)
    attributes = span.attributes or {}
    assert str(attributes["observed_batch.body"]) == "b" * (128 - len(MARKER)) + MARKER
    assert attributes["messaging.message.body.size"] == 1_000


@pytest.mark.parametrize(
    ("event", "event_type", "expected"),
    [
        (kinesis_event(1, data={"clicks": 3}), EventType.KinesisDataStreams, '{"clicks": 3}'),
        (kafka_event(1, value={"paid": True}), EventType.Kafka, '{"paid": true}'),
        (dynamodb_event(1), EventType.DynamoDBStreams, '{"pk":{"S":"order-0"},"amount":{"N":"10"}}'),
    ],
    ids=["kinesis", "kafka", "dynamodb"],
)
def test_stream_bodies_are_captured_decoded(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    event: dict[str, Any],
    event_type: EventType,
    expected: str,
) -> None:
    # GIVEN body capture on for a stream source
    # WHEN a record is processed
    process(event, lambda record: None, [tracing(provider, capture_body=True)], event_type)

    # THEN its payload is attached as text, not base64
    (span,) = ours(exporter)
    assert (span.attributes or {})["observed_batch.body"] == expected


@pytest.mark.parametrize(
    ("raw", "event_type"),
    [
        ({"body": {"not": "a string"}}, EventType.SQS),
        ({"value": 42}, EventType.Kafka),
        (["not", "a", "record"], EventType.KinesisDataStreams),
    ],
    ids=["sqs-non-string", "kafka-non-string", "not-a-mapping"],
)
def test_unreadable_bodies_are_not_captured(raw: Any, event_type: EventType) -> None:
    # GIVEN a raw record whose payload cannot be read as text
    # WHEN its body is extracted for capture (the rule every middleware shares)
    body = sources.body_text(event_type, raw)

    # THEN there is none (and nothing raised)
    assert body is None


# -- batch mode ---------------------------------------------------------------------------------------
def test_batch_mode_makes_one_span_linked_to_every_producer(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN three records from three producers (two W3C, one X-Ray), one failing
    event = {
        "Records": [
            sqs_record(0, traceparent=TRACEPARENT),
            sqs_record(1, traceparent=f"00-{1:032x}-{2:016x}-01"),
            sqs_record(2, xray_header=XRAY_HEADER),
        ]
    }

    # WHEN processed in batch mode
    process(event, fail_index(2), [tracing(provider, mode="batch")])

    # THEN a single CONSUMER span covers the batch, links all producers and counts the outcomes
    (span,) = ours(exporter)
    assert (span.name, span.kind) == ("process orders", SpanKind.CONSUMER)
    attributes = span.attributes or {}
    assert attributes["messaging.batch.message_count"] == 3
    assert attributes["messaging.system"] == "aws_sqs"
    assert (attributes["observed_batch.batch.successes"], attributes["observed_batch.batch.failures"]) == (2, 1)
    assert {(link.context.trace_id, link.context.span_id) for link in span.links} == {
        (W3C_TRACE_ID, W3C_SPAN_ID),
        (1, 2),
        (XRAY_TRACE_ID, XRAY_SPAN_ID),
    }


def test_batch_mode_caps_links_at_the_sdk_limit_and_counts_the_rest(exporter: InMemorySpanExporter) -> None:
    # GIVEN 20 records from 20 producers and an SDK limit of 5 links
    provider = make_provider(exporter, limits=SpanLimits(max_links=5))
    event = {"Records": [sqs_record(i, traceparent=f"00-{i + 1:032x}-{i + 1:016x}-01") for i in range(20)]}

    # WHEN processed in batch mode
    process(event, message_id, [tracing(provider, mode="batch")])

    # THEN the first five producers are linked and fifteen counted as dropped
    (span,) = ours(exporter)
    assert [link.context.span_id for link in span.links] == [1, 2, 3, 4, 5]
    assert (span.attributes or {})["observed_batch.links.dropped"] == 15


def test_batch_mode_counts_a_record_whose_second_producer_exceeds_the_limit(exporter: InMemorySpanExporter) -> None:
    # GIVEN a limit of one link and a record with two producers, then a record repeating the first
    provider = make_provider(exporter, limits=SpanLimits(max_links=1))
    event = {
        "Records": [
            sqs_record(0, traceparent=TRACEPARENT, xray_header=XRAY_HEADER),
            sqs_record(1, traceparent=TRACEPARENT, xray_header=XRAY_HEADER),
            sqs_record(2),
        ]
    }

    # WHEN processed in batch mode
    process(event, message_id, [tracing(provider, mode="batch")])

    # THEN one producer is linked and the record with the cut one counted once
    (span,) = ours(exporter)
    assert len(span.links) == 1
    assert (span.attributes or {})["observed_batch.links.dropped"] == 1


def test_batch_mode_links_a_producer_shared_by_several_records_once(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN two records naming the same W3C producer, the second also an X-Ray one
    event = {
        "Records": [
            sqs_record(0, traceparent=TRACEPARENT),
            sqs_record(1, traceparent=TRACEPARENT, xray_header=XRAY_HEADER),
        ]
    }

    # WHEN processed in batch mode
    process(event, message_id, [tracing(provider, mode="batch")])

    # THEN each producer is linked once
    (span,) = ours(exporter)
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (W3C_TRACE_ID, W3C_SPAN_ID),
        (XRAY_TRACE_ID, XRAY_SPAN_ID),
    ]


def test_batch_mode_without_destination_is_named_process(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN SQS records whose event source ARN is missing
    event = sqs_event(2)
    for raw in event["Records"]:
        del raw["eventSourceARN"]

    # WHEN processed in batch mode
    process(event, message_id, [tracing(provider, mode="batch")])

    # THEN the batch span is named after the operation only
    (span,) = ours(exporter)
    assert span.name == "process"
    assert "messaging.destination.name" not in (span.attributes or {})


def test_batch_mode_without_a_link_limit_links_every_distinct_producer(exporter: InMemorySpanExporter) -> None:
    # GIVEN an SDK without a link limit and records from 200 producers, each sent twice
    provider = make_provider(exporter, limits=SpanLimits(max_links=SpanLimits.UNSET))
    event = {"Records": [sqs_record(i, traceparent=f"00-{i % 200 + 1:032x}-{i % 200 + 1:016x}-01") for i in range(400)]}

    # WHEN processed in batch mode
    process(event, message_id, [tracing(provider, mode="batch")])

    # THEN every producer is linked exactly once
    (span,) = ours(exporter)
    assert sorted(link.context.span_id for link in span.links) == list(range(1, 201))


def test_batch_mode_records_each_failure_with_its_message_id(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN two failing records out of three
    event = sqs_event(3)

    # WHEN processed in batch mode
    process(event, fail_index(0, 2), [tracing(provider, mode="batch")])

    # THEN the batch span is an error of that type, with one exception event per failed message
    (span,) = ours(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "ValueError"
    assert [(e.name, (e.attributes or {})["messaging.message.id"]) for e in span.events] == [
        ("exception", event["Records"][0]["messageId"]),
        ("exception", event["Records"][2]["messageId"]),
    ]


def test_batch_mode_with_different_error_types_reports_other(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN records failing with two different exception types
    def handler(record: Any) -> None:
        index = int(json.loads(record.body)["order_id"].split("-")[1])
        raise (ValueError if index == 0 else KeyError)("no")

    # WHEN processed in batch mode (every record fails: Powertools raises)
    with pytest.raises(BatchProcessingError):
        process(sqs_event(2), handler, [tracing(provider, mode="batch")])

    # THEN the batch span is still ended, as an error named after the exception that left the batch
    (span,) = ours(exporter)
    assert (span.attributes or {})["error.type"] == "BatchProcessingError"
    assert span.status.status_code is StatusCode.ERROR


def test_batch_mode_with_mixed_failure_types_uses_the_semconv_fallback(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN two records failing with different types and one succeeding
    def handler(record: Any) -> None:
        index = int(json.loads(record.body)["order_id"].split("-")[1])
        if index < 2:
            raise (ValueError if index == 0 else KeyError)("no")

    # WHEN processed in batch mode
    process(sqs_event(3), handler, [tracing(provider, mode="batch")])

    # THEN error.type is "_OTHER"
    (span,) = ours(exporter)
    assert (span.attributes or {})["error.type"] == "_OTHER"


def test_batch_mode_span_is_current_for_every_handler(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a handler that opens its own span
    handler_tracer = provider.get_tracer("handler")

    def handler(record: Any) -> None:
        with handler_tracer.start_as_current_span("handle"):
            pass

    # WHEN three records are processed in batch mode
    process(sqs_event(3), handler, [tracing(provider, mode="batch")])

    # THEN every handler span is a child of the batch span
    (batch_span,) = ours(exporter)
    children = by_name(exporter, "handle")
    assert len(children) == 3
    assert {c.parent.span_id for c in children if c.parent} == {batch_span.context.span_id}


def test_batch_mode_captures_within_the_budget_and_counts_drops_on_the_batch_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN body and response capture, 100-byte items and a 250-byte budget
    middleware = tracing(provider, mode="batch", capture_body=True, capture_response=True, max_response_bytes=100)
    middleware.max_batch_capture_bytes = 250
    event = sqs_event(3, body="b" * 500)

    # WHEN three records are processed
    process(event, lambda record: "r" * 500, [middleware])

    # THEN two captures fit (body + response of the first record), the remaining four are counted
    (span,) = ours(exporter)
    assert [sorted(k for k in (e.attributes or {}) if k.startswith("observed_batch.")) for e in span.events] == [
        ["observed_batch.body"],
        ["observed_batch.response", "observed_batch.response.size"],
    ]
    assert (span.attributes or {})["observed_batch.capture.dropped"] == 4


def test_batch_mode_of_kafka_is_named_after_the_topic(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a Kafka batch (its event source ARN is the cluster, not the topic)
    # WHEN processed in batch mode
    process(kafka_event(2, topic="payments"), lambda record: None, [tracing(provider, mode="batch")], EventType.Kafka)

    # THEN the batch span is named after the topic
    (span,) = ours(exporter)
    assert span.name == "process payments"


# -- sampling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sampler",
    [ALWAYS_OFF, TraceIdRatioBased(0.0), ParentBased(ALWAYS_OFF)],
    ids=["always_off", "ratio-0", "parentbased-always_off"],
)
def test_a_sampler_that_never_samples_costs_no_span_work(exporter: InMemorySpanExporter, sampler: Sampler) -> None:
    # GIVEN a provider whose sampler drops everything, and a handler result that counts serialisations
    provider = make_provider(exporter, sampler)
    seen: list[trace.Span] = []

    def handler(record: Any) -> CountingResponse:
        seen.append(trace.get_current_span())
        return CountingResponse(order_id=record.message_id)

    # WHEN a batch is processed with response capture on
    response = process(sqs_event(3), handler, [tracing(provider, capture_response=True)])

    # THEN outcomes are unchanged, nothing is exported or serialised, and no span was even started
    assert response == {"batchItemFailures": []}
    assert exporter.get_finished_spans() == ()
    assert CountingResponse.serialised == 0
    assert seen == [trace.INVALID_SPAN] * 3


def test_one_middleware_follows_each_invocations_parent_sampling_decision(exporter: InMemorySpanExporter) -> None:
    # GIVEN one tracing middleware whose provider samples as the parent does, and a processor kept across
    # invocations (its answers per kind of parent are kept too)
    provider = make_provider(exporter, ParentBased(ALWAYS_ON))
    processor = BatchProcessor(EventType.SQS, middleware=[tracing(provider)])

    def invocation(sampled: bool) -> None:
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        parent = trace.NonRecordingSpan(SpanContext(W3C_TRACE_ID, W3C_SPAN_ID, is_remote=True, trace_flags=flags))
        token = otel_context.attach(trace.set_span_in_context(parent))
        try:
            process_partial_response(sqs_event(2), message_id, processor)
        finally:
            otel_context.detach(token)

    # WHEN invocations run under an unsampled, a sampled, an unsampled and a sampled remote parent
    for sampled in (False, True, False, True):
        invocation(sampled)

    # THEN only the records of the sampled invocations have spans, children of that parent
    spans = ours(exporter)
    assert len(spans) == 4
    assert all(s.parent is not None and s.parent.span_id == W3C_SPAN_ID for s in spans)


def test_an_unsampled_batch_takes_tracing_out_of_the_record_chain(exporter: InMemorySpanExporter) -> None:
    # GIVEN tracing whose sampler drops everything
    middleware = counting_record_hooks(TracingMiddleware)(tracer_provider=make_provider(exporter, ALWAYS_OFF))

    # WHEN a batch is processed
    response = process(sqs_event(3), fail_index(1), [middleware])

    # THEN its record hook never ran (records cost what they cost without tracing) and outcomes are unchanged
    assert middleware.entered == 0
    assert len(response["batchItemFailures"]) == 1


class DropEverything(Sampler):
    """A sampler the middleware cannot reason about: it must ask it for every span."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return "DropEverything"


def test_unsampled_spans_skip_attribute_and_serialisation_work(exporter: InMemorySpanExporter) -> None:
    # GIVEN a custom sampler dropping every span and a handler result that counts serialisations
    provider = make_provider(exporter, DropEverything())
    seen: list[SpanContext] = []

    def handler(record: Any) -> CountingResponse:
        seen.append(trace.get_current_span().get_span_context())
        return CountingResponse(order_id=record.message_id)

    # WHEN a failing and a succeeding record are processed with every capture on
    response = process(sqs_event(2), handler, [tracing(provider, capture_response=True, capture_body=True)])

    # THEN nothing is exported or serialised, yet the unsampled context still propagates to the handler
    assert response == {"batchItemFailures": []}
    assert exporter.get_finished_spans() == ()
    assert CountingResponse.serialised == 0
    assert all(c.is_valid and not c.trace_flags.sampled for c in seen)


@pytest.mark.parametrize(
    ("remote", "sampled", "exported"),
    [(True, True, 1), (True, False, 0), (False, True, 1), (False, False, 0)],
    ids=["remote-sampled", "remote-unsampled", "local-sampled", "local-unsampled"],
)
def test_parent_based_sampling_follows_the_invocation_span(
    exporter: InMemorySpanExporter, remote: bool, sampled: bool, exported: int
) -> None:
    # GIVEN the default parent-based sampler and an invocation context (e.g. from Lambda's X-Ray header)
    provider = make_provider(exporter, ParentBased(ALWAYS_ON))
    parent = SpanContext(
        trace_id=XRAY_TRACE_ID,
        span_id=XRAY_SPAN_ID,
        is_remote=remote,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
    )
    token = otel_context.attach(trace.set_span_in_context(trace.NonRecordingSpan(parent)))
    try:
        # WHEN a record is processed
        process(sqs_event(1), message_id, [tracing(provider)])
    finally:
        otel_context.detach(token)

    # THEN its span is recorded exactly when the invocation is sampled
    assert len(ours(exporter)) == exported


def test_a_no_op_provider_leaves_outcomes_untouched() -> None:
    # GIVEN the API's no-op provider (as when OTEL_SDK_DISABLED=true)
    middleware = tracing(trace.NoOpTracerProvider())

    # WHEN a batch with a failure is processed
    response = process(sqs_event(2), fail_index(1), [middleware])

    # THEN the response is Powertools'
    expected = powertools_process_partial_response(sqs_event(2), fail_index(1), pt_processor())
    assert response == expected


def test_batch_mode_with_an_unsampled_batch_span_does_no_record_work(exporter: InMemorySpanExporter) -> None:
    # GIVEN a custom sampler dropping every span, in batch mode
    provider = make_provider(exporter, DropEverything())

    # WHEN records are processed with response capture on
    process(
        sqs_event(2),
        lambda record: CountingResponse(order_id="x"),
        [tracing(provider, mode="batch", capture_response=True)],
    )

    # THEN nothing is exported or serialised
    assert exporter.get_finished_spans() == ()
    assert CountingResponse.serialised == 0


def pt_processor() -> Any:
    from aws_lambda_powertools.utilities.batch import BatchProcessor as PowertoolsBatchProcessor

    return PowertoolsBatchProcessor(EventType.SQS)


# -- async --------------------------------------------------------------------------------------------
def test_async_records_get_their_own_span_as_parent_despite_interleaving(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN an async handler whose records finish in reverse order, each opening a span across awaits
    handler_tracer = provider.get_tracer("handler")
    event = sqs_event(5)

    async def handler(record: Any) -> str:
        index = int(json.loads(record.body)["order_id"].split("-")[1])
        with handler_tracer.start_as_current_span(f"handle {record.message_id}"):
            await asyncio.sleep(0.002 * (5 - index))
            await asyncio.sleep(0)
            if index == 3:
                raise ValueError("async failure")
        return record.message_id

    # WHEN the batch is processed by the AsyncBatchProcessor inside an invocation span
    with provider.get_tracer("test").start_as_current_span("invocation") as invocation:
        processor = AsyncBatchProcessor(EventType.SQS, middleware=[tracing(provider)])
        response = async_process_partial_response(event, handler, processor)

    # THEN each handler span's parent is its own record span, every record span's parent the invocation
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][3]["messageId"]}]}
    record_spans = {(s.attributes or {})["messaging.message.id"]: s for s in ours(exporter)}
    assert len(record_spans) == 5
    for raw in event["Records"]:
        record_span = record_spans[raw["messageId"]]
        (child,) = by_name(exporter, f"handle {raw['messageId']}")
        assert child.parent is not None
        assert child.parent.span_id == record_span.context.span_id
        assert record_span.parent is not None
        assert record_span.parent.span_id == invocation.get_span_context().span_id
    assert record_spans[event["Records"][3]["messageId"]].status.status_code is StatusCode.ERROR


def test_async_batch_mode_parents_every_handler_span_to_the_batch_span(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN an async handler opening a span across an await
    handler_tracer = provider.get_tracer("handler")

    async def handler(record: Any) -> None:
        with handler_tracer.start_as_current_span("handle"):
            await asyncio.sleep(0)

    # WHEN three records are processed in batch mode
    processor = AsyncBatchProcessor(EventType.SQS, middleware=[tracing(provider, mode="batch")])
    async_process_partial_response(sqs_event(3), handler, processor)

    # THEN all handler spans are children of the one batch span
    (batch_span,) = ours(exporter)
    assert {c.parent.span_id for c in by_name(exporter, "handle") if c.parent} == {batch_span.context.span_id}


# -- robustness ---------------------------------------------------------------------------------------
def test_spans_left_open_are_ended_at_batch_end(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    # GIVEN a record whose chain was entered but never resumed (its task died before the core returned)
    middleware = tracing(provider)
    batch, _, hook = enter_one_record(middleware)

    # WHEN the batch ends
    middleware.on_batch_end(batch, batch.summary)
    hook.close()

    # THEN the span is exported, marked incomplete
    (span,) = ours(exporter)
    assert (span.attributes or {})["observed_batch.incomplete"] is True


def test_a_failure_without_exception_info_is_typed_other(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a record reported failed without exception info
    middleware = tracing(provider)
    _, record, hook = enter_one_record(middleware)
    record.outcome = Outcome.FAILURE

    # WHEN the middleware resumes
    with pytest.raises(StopIteration):
        next(hook)

    # THEN error.type falls back to "_OTHER" and the exception event carries only that type
    (span,) = ours(exporter)
    assert (span.attributes or {})["error.type"] == "_OTHER"
    assert dict(span.events[0].attributes or {}) == {"exception.type": "_OTHER"}


class BrokenProvider(TracerProvider):
    """A user's provider that fails to hand out tracers."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace.Tracer:
        raise RuntimeError("provider broken")


def test_a_broken_provider_never_changes_outcomes(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a tracer provider that raises
    middleware = tracing(BrokenProvider(shutdown_on_exit=False))

    # WHEN a batch with a failure is processed
    response = process(sqs_event(3), fail_index(1), [middleware])

    # THEN the response is Powertools', and the error is logged once for the batch
    assert response == powertools_process_partial_response(sqs_event(3), fail_index(1), pt_processor())
    assert sum("'tracing' failed" in r.getMessage() for r in caplog.records) == 1


class FlushFailingProvider(TracerProvider):
    """A user's provider whose flush raises (e.g. a broken exporter)."""

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        raise RuntimeError("flush broken")


def test_a_failing_flush_never_changes_outcomes(exporter: InMemorySpanExporter) -> None:
    # GIVEN a provider whose force_flush raises
    provider = FlushFailingProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    # WHEN a batch with a failure is processed
    response = process(sqs_event(3), fail_index(1), [tracing(provider)])

    # THEN the response is Powertools' and the spans were still produced
    assert response == powertools_process_partial_response(sqs_event(3), fail_index(1), pt_processor())
    assert len(ours(exporter)) == 3


class SlowFlushProvider(TracerProvider):
    """A user's provider whose flush blocks until released (a collector that stopped answering)."""

    def __init__(self) -> None:
        super().__init__(shutdown_on_exit=False)
        self.release = threading.Event()
        self.flushes = 0

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        self.flushes += 1
        return self.release.wait(5.0)


def _wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_a_stuck_flush_opens_the_breaker_and_later_invocations_neither_trace_nor_wait() -> None:
    # GIVEN a provider whose flush hangs, and a 50 ms flush timeout
    provider = SlowFlushProvider()
    middleware = tracing(provider, flush_timeout_ms=50)

    # WHEN three invocations of two records run while the collector does not answer
    summaries = []
    for _ in range(3):
        recorder = RecordingMiddleware()
        assert process(sqs_event(2), message_id, [recorder, middleware]) == {"batchItemFailures": []}
        summaries.append(recorder.events[-1][2])
    provider.release.set()

    # THEN only the first invocation asked for a flush; the others made no span and counted theirs as dropped
    assert provider.flushes == 1
    assert [s.telemetry_dropped for s in summaries] == [{}, {"otel": 2}, {"otel": 2}]


def test_the_flush_thread_stops_when_idle_and_restarts_on_demand(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a provider that queues spans (batch span processor) and a flush thread that stops after 50 ms
    # without work
    monkeypatch.setattr(otel_export, "_FLUSHER_IDLE_S", 0.05)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    middleware = tracing(provider)
    process(sqs_event(1), message_id, [middleware])
    flusher = middleware._backend._flusher
    assert flusher is not None
    _wait_until(lambda: flusher._thread is None)
    assert flusher._thread is None

    # WHEN another invocation ends
    process(sqs_event(1), message_id, [middleware])

    # THEN a flush thread serves it again
    assert flusher._thread is not None
    assert len(ours(exporter)) == 2


def test_a_provider_that_exports_as_spans_end_is_not_flushed(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # GIVEN a provider whose only span processor exports each span as it ends (nothing is ever queued)
    middleware = tracing(provider)

    # WHEN a batch is processed
    process(sqs_event(2), message_id, [middleware])

    # THEN its spans are exported and no flush (no thread hand-off) was paid for at batch end
    assert len(ours(exporter)) == 2
    assert middleware._backend._flusher is None


def test_the_deadline_budget_keeps_time_only_for_a_provider_that_queues(exporter: InMemorySpanExporter) -> None:
    # GIVEN two providers: one exporting each span as it ends, one queueing them (batch span processor)
    from observed_batch.typing import BatchContext

    queueing = TracerProvider(shutdown_on_exit=False)
    queueing.add_span_processor(BatchSpanProcessor(exporter))
    budgets = []
    for provider in (make_provider(exporter), queueing):
        middleware = tracing(provider, flush_timeout_ms=1500)
        batch = BatchContext(EventType.SQS, sqs_event(1)["Records"])
        # WHEN the deadline budget asks what the end-of-batch wait would be
        middleware.on_batch_start(batch)
        budgets.append(middleware.flush_budget_ms(batch))
    # THEN nothing is kept for the first (it is never flushed), the flush timeout for the second
    assert budgets == [0, 1500]


# -- options ------------------------------------------------------------------------------------------
def test_options_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, provider: TracerProvider) -> None:
    # GIVEN tracing enabled and tuned by environment variables
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "tracing")
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_MODE", "batch")
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_CAPTURE_RESPONSE", "true")
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTES", "512")
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_MAX_BATCH_CAPTURE_BYTES", "4096")
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_FLUSH_TIMEOUT_MS", "100")

    # WHEN a processor is built (the provider given in code, as backends are code-only)
    processor = BatchProcessor(EventType.SQS, config=Config(options={"tracing": {"tracer_provider": provider}}))

    # THEN the middleware carries those options
    (middleware,) = processor.middlewares
    assert isinstance(middleware, TracingMiddleware)
    assert (middleware.mode, middleware.capture_response, middleware.max_response_bytes) == ("batch", True, 512)
    assert (middleware.max_batch_capture_bytes, middleware.flush_timeout_ms) == (4096, 100)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OBSERVED_BATCH_TRACING_MODE", "sideways"),
        ("OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTES", "lots"),
        ("OBSERVED_BATCH_TRACING_MAX_BATCH_CAPTURE_BYTES", "-1"),
        ("OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTES", "10"),
    ],
)
def test_bad_environment_values_fail_at_construction_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # GIVEN tracing enabled with a bad option value in the environment
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "tracing")
    monkeypatch.setenv(variable, value)

    # WHEN a processor is built
    # THEN construction fails, naming the option
    option = variable.removeprefix("OBSERVED_BATCH_TRACING_").lower()
    with pytest.raises(ConfigError, match=f"{variable}|{option}"):
        BatchProcessor(EventType.SQS)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"mode": "sideways"}, "mode"),
        ({"capture_response": "yes"}, "capture_response"),
        ({"capture_body": 1}, "capture_body"),
        ({"max_response_bytes": 63}, "max_response_bytes"),
        ({"max_response_bytes": True}, "max_response_bytes"),
        ({"max_batch_capture_bytes": -1}, "max_batch_capture_bytes"),
        ({"flush_timeout_ms": 1.5}, "flush_timeout_ms"),
        ({"tracer_provider": object()}, "tracer_provider"),
    ],
)
def test_bad_options_in_code_raise_config_error_naming_the_option(options: dict[str, Any], named: str) -> None:
    # GIVEN an invalid option value
    # WHEN the middleware is constructed
    # THEN ConfigError names the option
    with pytest.raises(ConfigError, match=named):
        TracingMiddleware(**options)
