"""The ``tracing`` middleware end to end: real OTLP/HTTP export, dead collectors, provider resolution,
and the differential check against Powertools.

The OTLP receiver (tests/otlp_receiver.py) decodes the exporter's protobuf requests on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from otlp_receiver import OtlpReceiver, closed_endpoint

import observed_batch as ob
from observed_batch.breaker import Breaker
from observed_batch.middleware import TracingMiddleware
from observed_batch.middleware import _otel_export as otel_export
from observed_batch.testing import dynamodb_record, kafka_event, kinesis_record, sqs_record

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def otlp_provider(endpoint: str, **processor_options: Any) -> tuple[TracerProvider, OTLPSpanExporter]:
    """What a user (or the OTel Lambda layer) configures: OTLP/HTTP behind a batch span processor."""
    exporter = OTLPSpanExporter(endpoint=endpoint)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter, **processor_options))
    return provider, exporter


def shut_down(provider: TracerProvider, exporter: OTLPSpanExporter) -> None:
    exporter.shutdown()  # first: aborts an export stuck retrying a dead endpoint
    provider.shutdown()


def failing_second(record: Any) -> str:
    if json.loads(record.body)["order_id"] == "order-1":
        raise ValueError("order 1 rejected")
    return "ok"


# -- real OTLP/HTTP export ----------------------------------------------------------------------------
def test_spans_reach_an_otlp_http_collector_before_the_batch_returns(receiver: OtlpReceiver) -> None:
    # GIVEN an OTLP/HTTP exporter behind a batch span processor (which would wait 5 s on its own)
    provider, exporter = otlp_provider(receiver.endpoint)
    event = {"Records": [sqs_record(i, traceparent=TRACEPARENT) for i in range(3)]}
    middleware = TracingMiddleware(tracer_provider=provider, flush_timeout_ms=10_000)  # generous on a busy CI box
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[middleware])

    try:
        # WHEN the batch is processed
        response = ob.process_partial_response(event, failing_second, processor)

        # THEN the spans are already at the collector (flushed at batch end), decoded from protobuf
        spans = list(receiver.spans)
    finally:
        shut_down(provider, exporter)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert receiver.content_types == ["application/x-protobuf"]
    assert [(s.name, s.kind) for s in spans] == [("process orders", ProtoSpan.SPAN_KIND_CONSUMER)] * 3
    assert [s.attributes["messaging.message.id"] for s in spans] == [r["messageId"] for r in event["Records"]]
    assert [s.status_code for s in spans] == [
        ProtoStatus.STATUS_CODE_UNSET,
        ProtoStatus.STATUS_CODE_ERROR,
        ProtoStatus.STATUS_CODE_UNSET,
    ]
    assert all(s.links == [(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)] for s in spans)
    assert spans[1].events[0][1]["exception.message"] == "order 1 rejected"


def test_without_a_flush_timeout_spans_wait_for_the_span_processor(receiver: OtlpReceiver) -> None:
    # GIVEN flushing disabled and a batch span processor exporting every 30 s
    provider, exporter = otlp_provider(receiver.endpoint, schedule_delay_millis=30_000)
    processor = ob.BatchProcessor(
        ob.EventType.SQS, middleware=[TracingMiddleware(tracer_provider=provider, flush_timeout_ms=0)]
    )

    try:
        # WHEN a batch is processed
        ob.process_partial_response({"Records": [sqs_record(0)]}, lambda record: None, processor)

        # THEN nothing was sent yet: the spans leave with the processor's own flush
        assert receiver.requests == 0
        provider.force_flush()
        assert len(receiver.spans) == 1
    finally:
        shut_down(provider, exporter)


def test_a_dead_collector_changes_no_outcome_and_costs_at_most_the_flush_timeout() -> None:
    # GIVEN an exporter whose endpoint refuses connections (it retries for up to 10 s per export)
    provider, exporter = otlp_provider(closed_endpoint())
    middleware = TracingMiddleware(tracer_provider=provider, flush_timeout_ms=300)
    event = {"Records": [sqs_record(i) for i in range(5)]}
    expected = pt.process_partial_response(event, failing_second, pt.BatchProcessor(pt.EventType.SQS))
    otel_logger = logging.getLogger("opentelemetry")
    level = otel_logger.level
    otel_logger.setLevel(logging.CRITICAL)  # the exporter logs every retry

    try:
        # WHEN two invocations are processed back to back (the first flush is still retrying)
        durations, responses = [], []
        for _ in range(2):
            processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[middleware])
            started = time.monotonic()
            responses.append(ob.process_partial_response(event, failing_second, processor))
            durations.append(time.monotonic() - started)
    finally:
        shut_down(provider, exporter)
        otel_logger.setLevel(level)

    # THEN the responses are Powertools', and each invocation waited about the flush timeout, not the exporter's
    assert responses == [expected, expected]
    assert max(durations) < 3.0


# -- provider resolution ------------------------------------------------------------------------------
@pytest.fixture
def clean_otel_globals(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No global provider and no env provider yet, as in a fresh process; restored afterwards
    (the same reset as opentelemetry-test-utils' ``reset_trace_globals``)."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(otel_export, "_ENV_PROVIDER", None)
    monkeypatch.setattr(otel_export, "ENV_BREAKER", Breaker("otel"))
    yield
    created = otel_export._ENV_PROVIDER
    if created is not None:
        created.shutdown()


@pytest.mark.usefixtures("clean_otel_globals")
def test_without_any_provider_one_is_built_from_otel_environment_variables(
    monkeypatch: pytest.MonkeyPatch, receiver: OtlpReceiver
) -> None:
    # GIVEN no tracer provider anywhere, an OTLP endpoint and a Powertools service name in the environment
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders-service")
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "tracing")

    # WHEN a batch is processed with tracing enabled by the environment
    processor = ob.BatchProcessor(ob.EventType.SQS)
    ob.process_partial_response({"Records": [sqs_record(0)]}, lambda record: None, processor)

    # THEN its span reached that endpoint with the service name, and the global provider was left alone
    (span,) = receiver.spans
    assert span.resource["service.name"] == "orders-service"
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@pytest.mark.usefixtures("clean_otel_globals")
def test_the_environment_provider_is_built_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no tracer provider anywhere and two processors with tracing
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    first, second = TracingMiddleware(), TracingMiddleware()

    # WHEN each processes a batch
    for middleware in (first, second):
        processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[middleware])
        ob.process_partial_response({"Records": [sqs_record(0)]}, lambda record: None, processor)

    # THEN they share one SDK provider
    assert first._backend._provider is second._backend._provider
    assert first._backend._provider is otel_export._ENV_PROVIDER


@pytest.mark.usefixtures("clean_otel_globals")
def test_a_global_provider_set_after_the_processor_is_built_is_used() -> None:
    # GIVEN a processor built at import time, before the application configures OpenTelemetry
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[TracingMiddleware()])
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

    # WHEN the first batch is processed
    ob.process_partial_response({"Records": [sqs_record(0)]}, lambda record: None, processor)

    # THEN the application's provider got the span, and no other provider was built
    assert [s.name for s in exporter.get_finished_spans()] == ["process orders"]
    assert otel_export._ENV_PROVIDER is None


@pytest.mark.parametrize(
    ("environ", "service"),
    [
        ({"POWERTOOLS_SERVICE_NAME": "pt-svc", "AWS_LAMBDA_FUNCTION_NAME": "fn"}, "pt-svc"),
        ({"AWS_LAMBDA_FUNCTION_NAME": "fn"}, "fn"),
        ({"OTEL_SERVICE_NAME": "otel-svc", "POWERTOOLS_SERVICE_NAME": "pt-svc"}, "otel-svc"),
        ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=res-svc", "POWERTOOLS_SERVICE_NAME": "pt-svc"}, "res-svc"),
    ],
    ids=["powertools", "function-name", "otel-service-name", "otel-resource-attributes"],
)
def test_the_environment_provider_names_the_service_like_the_ecosystem(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], service: str
) -> None:
    # GIVEN service names from OpenTelemetry, Powertools and Lambda variables
    for variable, value in {**environ, "OTEL_TRACES_EXPORTER": "none"}.items():
        monkeypatch.setenv(variable, value)

    # WHEN the provider is built from the environment
    provider = otel_export.provider_from_env()

    # THEN OpenTelemetry's setting wins, then Powertools', then the function name
    assert provider.resource.attributes["service.name"] == service


def test_the_console_exporter_is_supported_and_unknown_exporters_are_reported(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN OTEL_TRACES_EXPORTER naming the console exporter and one observed_batch does not know
    provider = otel_export.provider_from_env({"OTEL_TRACES_EXPORTER": "console, zipkin"})

    # WHEN a batch is traced with that provider
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[TracingMiddleware(tracer_provider=provider)])
    ob.process_partial_response({"Records": [sqs_record(0)]}, lambda record: None, processor)
    provider.shutdown()

    # THEN the span is printed, and the unknown exporter named in a warning
    assert '"name": "process orders"' in capsys.readouterr().out
    assert any("zipkin" in r.getMessage() for r in caplog.records)


# -- differential: tracing never changes outcomes -----------------------------------------------------
def _records(source: str, plan: list[bool]) -> tuple[dict[str, Any], pt.EventType]:
    bodies = [json.dumps({"i": i, "fail": fail}) for i, fail in enumerate(plan)]
    if source == "sqs":
        records = [sqs_record(i, body=b, traceparent=TRACEPARENT if i % 2 else None) for i, b in enumerate(bodies)]
        return {"Records": records}, pt.EventType.SQS
    if source == "kinesis":
        return {"Records": [kinesis_record(i, data=b) for i, b in enumerate(bodies)]}, pt.EventType.KinesisDataStreams
    if source == "dynamodb":
        images = [{"pk": {"S": f"k{i}"}, "fail": {"BOOL": fail}} for i, fail in enumerate(plan)]
        return {
            "Records": [dynamodb_record(i, new_image=img) for i, img in enumerate(images)]
        }, pt.EventType.DynamoDBStreams
    return kafka_event(len(plan), value=lambda i: bodies[i], partitions=2), pt.EventType.Kafka


def _should_fail(record: Any) -> bool:
    if hasattr(record, "dynamodb"):
        return bool(record.dynamodb.new_image.get("fail"))
    if hasattr(record, "kinesis"):
        return bool(json.loads(record.kinesis.data_as_text())["fail"])
    if hasattr(record, "json_value"):
        return bool(record.json_value["fail"])
    return bool(json.loads(record.body)["fail"])


def _handler(calls: list[str]) -> Callable[[Any], str]:
    def handler(record: Any) -> str:
        calls.append(str(getattr(record, "message_id", None) or getattr(record, "event_id", None) or record.offset))
        if _should_fail(record):
            raise ValueError("planned failure")
        return "x" * 2_000

    return handler


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "response", run()
    except Exception as exc:
        return "raised", type(exc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.sampled_from(["sqs", "kinesis", "dynamodb", "kafka"]),
    plan=st.lists(st.booleans(), min_size=1, max_size=8),
    mode=st.sampled_from(["per_record", "batch"]),
    use_async=st.booleans(),
)
def test_tracing_never_changes_what_powertools_answers(
    source: str, plan: list[bool], mode: str, use_async: bool
) -> None:
    # GIVEN any batch, any failure pattern, tracing on with every capture, sync or async
    event, event_type = _records(source, plan)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    middleware = TracingMiddleware(
        tracer_provider=provider, mode=mode, capture_response=True, capture_body=True, max_batch_capture_bytes=4_096
    )
    expected_calls: list[str] = []
    actual_calls: list[str] = []

    # WHEN Powertools and observed_batch process it
    if use_async:

        def wrap(calls: list[str]) -> Callable[[Any], Any]:
            sync = _handler(calls)

            async def handler(record: Any) -> str:
                await asyncio.sleep(0)
                return sync(record)

            return handler

        expected = _outcome(
            lambda: pt.async_process_partial_response(event, wrap(expected_calls), pt.AsyncBatchProcessor(event_type))
        )
        actual = _outcome(
            lambda: ob.async_process_partial_response(
                event, wrap(actual_calls), ob.AsyncBatchProcessor(event_type, middleware=[middleware])
            )
        )
    else:
        expected = _outcome(
            lambda: pt.process_partial_response(event, _handler(expected_calls), pt.BatchProcessor(event_type))
        )
        actual = _outcome(
            lambda: ob.process_partial_response(
                event, _handler(actual_calls), ob.BatchProcessor(event_type, middleware=[middleware])
            )
        )

    # THEN the response (or raised exception type) and the handler calls are identical
    assert actual == expected
    assert actual_calls == expected_calls
