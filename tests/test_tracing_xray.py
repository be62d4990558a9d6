"""The ``xray`` backend of ``tracing`` with the real aws-xray-sdk, sending to a UDP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core.lambda_launcher import LambdaContext
from aws_xray_sdk.core.recorder import AWSXRayRecorder
from opentelemetry.sdk.trace import TracerProvider
from xray_receiver import Document, XrayReceiver

from observed_batch import (
    AsyncBatchProcessor,
    BatchProcessor,
    Config,
    ConfigError,
    EventType,
    MissingBackendError,
    async_process_partial_response,
    process_partial_response,
)
from observed_batch import config as config_module
from observed_batch.middleware import TracingMiddleware
from observed_batch.testing import sqs_event

X_RAY_LIMIT = 64 * 1024
TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"
PRODUCER_HEADER = "Root=1-6759e988-bd862e3fe1be46a994272794;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture
def receiver() -> Iterator[XrayReceiver]:
    # A Powertools Tracer built outside Lambda (docs examples) disables the SDK process-wide.
    enabled = global_sdk_config.sdk_enabled()
    global_sdk_config.set_sdk_enabled(True)
    with XrayReceiver() as running:
        yield running
    global_sdk_config.set_sdk_enabled(enabled)


@pytest.fixture
def recorder(receiver: XrayReceiver) -> Iterator[AWSXRayRecorder]:
    """A recorder of its own (not the global one), sampling everything, sending to the receiver."""
    made = AWSXRayRecorder()
    made.configure(daemon_address=receiver.address, sampling=False, context_missing="LOG_ERROR")
    made.begin_segment("consumer", traceid=TRACE_ID)
    yield made
    made.clear_trace_entities()


def xray(recorder: Any, **options: Any) -> TracingMiddleware:
    return TracingMiddleware(backend="xray", xray_recorder=recorder, **options)


def process(event: dict[str, Any], handler: Any, middleware: list[Any], config: Config | None = None) -> Any:
    processor = BatchProcessor(EventType.SQS, middleware=middleware, config=config, raise_on_entire_batch_failure=False)
    return process_partial_response(event, handler, processor)


def records(documents: list[Document]) -> list[dict[str, Any]]:
    return [d.body for d in documents if d.is_subsegment and d.body["name"].startswith("## process")]


def test_each_record_gets_a_subsegment_under_the_current_segment(
    recorder: AWSXRayRecorder, receiver: XrayReceiver
) -> None:
    # GIVEN an open segment and the xray backend
    segment = recorder.current_segment()
    event = sqs_event(3)

    # WHEN three records are processed
    process(event, lambda record: None, [xray(recorder)])

    # THEN three subsegments named after the queue were sent, children of the segment
    sent = records(receiver.wait_for(3))
    assert [s["name"] for s in sent] == ["## process orders"] * 3
    assert {s["parent_id"] for s in sent} == {segment.id}
    assert {s["trace_id"] for s in sent} == {TRACE_ID}


def test_subsegments_carry_searchable_annotations(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN a batch of two records
    event = sqs_event(2)

    # WHEN it is processed
    process(event, lambda record: None, [xray(recorder)])

    # THEN each subsegment is annotated with its message id, event source and queue
    sent = records(receiver.wait_for(2))
    assert [s["annotations"] for s in sent] == [
        {"message_id": r["messageId"], "event_source": "aws:sqs", "destination": "orders"} for r in event["Records"]
    ]


def test_no_document_exceeds_64_kb_with_2000_large_responses(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN response capture and 2,000 records whose handler returns 10 KB each
    event = sqs_event(2000)

    # WHEN the batch is processed and the segment ends
    process(event, lambda record: "x" * 10_240, [xray(recorder, capture_response=True)])
    recorder.end_segment()

    # THEN every record's subsegment arrived, each document far below X-Ray's limit
    documents = receiver.wait_for(2001)
    sent = records(documents)
    assert len(sent) == 2000
    assert max(d.size for d in documents) < X_RAY_LIMIT
    # AND responses were captured within the budget: 48 KiB / 1 KiB each, the rest counted
    captured = [s for s in sent if "response" in s.get("metadata", {}).get("observed_batch", {})]
    assert len(captured) == 48
    assert all(len(s["metadata"]["observed_batch"]["response"].encode()) <= 1024 for s in captured)
    assert sent[-1]["metadata"]["observed_batch"]["capture_dropped"] == 1952


def test_a_failure_records_a_fault_with_the_redacted_message(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN a handler failing with an e-mail address in its message, and e-mail redaction
    def handler(record: Any) -> None:
        raise ValueError("cannot charge jane@example.com")

    # WHEN a record fails
    process(sqs_event(1), handler, [xray(recorder)], Config(redact_patterns=["email"]))

    # THEN its subsegment is a fault whose cause has the type and the redacted message
    (sent,) = records(receiver.wait_for(1))
    assert sent["fault"] is True
    (exception,) = sent["cause"]["exceptions"]
    assert (exception["type"], exception["message"]) == ("ValueError", "cannot charge [REDACTED]")
    assert exception["stack"][-1]["label"] == "handler"
    assert "jane@" not in sent["metadata"]["observed_batch"]["exception"]


def test_the_users_exception_object_is_not_marked(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN a handler whose exceptions are kept
    raised: list[BaseException] = []

    def handler(record: Any) -> None:
        error = ValueError("boom")
        raised.append(error)
        raise error

    # WHEN it fails
    process(sqs_event(1), handler, [xray(recorder)])

    # THEN the exception carries no attribute of the SDK's (its Throwable sets _recorded / _cause_id)
    assert not hasattr(raised[0], "_recorded")


def test_pydantic_input_values_are_left_out_of_the_cause(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN a handler raising a pydantic ValidationError quoting a secret input
    from pydantic import BaseModel

    class Order(BaseModel):
        amount: int

    def handler(record: Any) -> None:
        Order.model_validate_json(record.body)

    # WHEN it fails
    process(sqs_event(1, body='{"amount": "secret-4111"}'), handler, [xray(recorder)])

    # THEN neither the cause nor the stack trace quotes the input
    (sent,) = records(receiver.wait_for(1))
    assert "secret-4111" not in str(sent)


def test_the_producer_trace_is_annotated(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN a record sent with an AWSTraceHeader
    event = sqs_event(1)
    event["Records"][0]["attributes"]["AWSTraceHeader"] = PRODUCER_HEADER

    # WHEN it is processed
    process(event, lambda record: None, [xray(recorder)])

    # THEN the producer's trace id is a searchable annotation and its header metadata
    (sent,) = records(receiver.wait_for(1))
    assert sent["annotations"]["producer_trace_id"] == "1-6759e988-bd862e3fe1be46a994272794"
    assert sent["metadata"]["observed_batch"]["producers"] == {"x-amzn-trace-id": PRODUCER_HEADER}


def test_the_handlers_own_subsegments_nest_under_the_record(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN a handler that opens a subsegment of its own, as @tracer.capture_method does
    def handler(record: Any) -> None:
        with recorder.in_subsegment("## charge"):
            pass

    # WHEN a record is processed
    process(sqs_event(1), handler, [xray(recorder)])

    # THEN the handler's subsegment is inside the record's document
    (sent,) = records(receiver.wait_for(1))
    assert [child["name"] for child in sent["subsegments"]] == ["## charge"]


def test_async_records_each_get_their_own_subsegment(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN an async handler whose records interleave (the first one finishes last)
    event = sqs_event(3)
    delays = {r["messageId"]: 0.03 - 0.01 * i for i, r in enumerate(event["Records"])}

    async def handler(record: Any) -> None:
        await asyncio.sleep(delays[record.message_id])

    # WHEN the batch is processed by the AsyncBatchProcessor
    processor = AsyncBatchProcessor(EventType.SQS, middleware=[xray(recorder)])
    async_process_partial_response(event, handler, processor)

    # THEN every record has one subsegment of its own, a child of the segment, none nested in another
    sent = records(receiver.wait_for(3))
    assert sorted(s["annotations"]["message_id"] for s in sent) == sorted(delays)
    assert {s["parent_id"] for s in sent} == {recorder.current_segment().id}
    assert not any(s.get("subsegments") for s in sent)


def test_records_under_a_lambda_facade_segment(receiver: XrayReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a recorder with the Lambda context, and the trace header the Lambda runtime sets
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1")
    lambda_recorder = AWSXRayRecorder()
    lambda_recorder.configure(daemon_address=receiver.address, context=LambdaContext(), streaming_threshold=0)

    # WHEN a batch is processed
    process(sqs_event(2), lambda record: None, [xray(lambda_recorder)])

    # THEN each record's subsegment is a child of the facade (the function's invocation)
    sent = records(receiver.wait_for(2))
    assert [(s["trace_id"], s["parent_id"]) for s in sent] == [(TRACE_ID, "53995c3f42cd8ad8")] * 2


def test_an_unsampled_invocation_sends_nothing(receiver: XrayReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a Lambda invocation that is not sampled
    monkeypatch.setenv("_X_AMZN_TRACE_ID", f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=0")
    lambda_recorder = AWSXRayRecorder()
    lambda_recorder.configure(daemon_address=receiver.address, context=LambdaContext())

    # WHEN a batch is processed
    process(sqs_event(2), lambda record: None, [xray(lambda_recorder)])

    # THEN no document is sent
    assert receiver.wait_for(1, timeout_s=0.3) == []


def test_a_disabled_sdk_sends_nothing(recorder: AWSXRayRecorder, receiver: XrayReceiver) -> None:
    # GIVEN the SDK disabled, as Powertools' Tracer disables it outside Lambda
    global_sdk_config.set_sdk_enabled(False)
    try:
        # WHEN a batch is processed
        process(sqs_event(2), lambda record: None, [xray(recorder)])
    finally:
        global_sdk_config.set_sdk_enabled(True)

    # THEN no record subsegment is sent
    assert records(receiver.wait_for(1, timeout_s=0.3)) == []


def test_without_a_segment_records_are_processed_untraced(receiver: XrayReceiver) -> None:
    # GIVEN a recorder with no segment open, raising when context is missing
    bare = AWSXRayRecorder()
    bare.configure(daemon_address=receiver.address, context_missing="RUNTIME_ERROR")

    # WHEN a batch is processed
    response = process(sqs_event(2), lambda record: None, [xray(bare)])

    # THEN the outcome is Powertools' and nothing is sent
    assert response == {"batchItemFailures": []}
    assert receiver.wait_for(1, timeout_s=0.3) == []


def test_a_powertools_tracer_is_accepted_as_the_recorder(receiver: XrayReceiver) -> None:
    # GIVEN a Powertools Tracer (its provider is the SDK's global recorder)
    from aws_lambda_powertools import Tracer

    Tracer._reset_config()  # Tracers share class-level configuration (an earlier Tracer() disabled it)
    tracer = Tracer(service="orders", disabled=False, auto_patch=False)
    global_sdk_config.set_sdk_enabled(True)
    provider = tracer.provider
    previous = provider.emitter._ip, provider.emitter._port
    provider.configure(daemon_address=receiver.address, sampling=False)
    provider.begin_segment("consumer")
    try:
        # WHEN a batch is processed with the Tracer passed in
        process(sqs_event(1), lambda record: None, [xray(tracer)])
        sent = records(receiver.wait_for(1))
    finally:
        provider.clear_trace_entities()
        provider.emitter._ip, provider.emitter._port = previous
        Tracer._reset_config()

    # THEN the record's subsegment was recorded through it
    assert len(sent) == 1


def test_nothing_is_waited_for_at_the_end_of_a_batch(recorder: AWSXRayRecorder) -> None:
    # GIVEN the xray backend after a batch started
    from observed_batch.typing import BatchContext

    middleware = xray(recorder)
    batch = BatchContext(EventType.SQS, sqs_event(1)["Records"])
    middleware.on_batch_start(batch)

    # WHEN the deadline budget asks what its end-of-batch wait would be
    # THEN it is nothing: documents went out per record over UDP
    assert middleware.flush_budget_ms(batch) == 0


def test_the_backend_is_chosen_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN OBSERVED_BATCH_TRACING_BACKEND=xray
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_BACKEND", "xray")

    # WHEN a processor enables tracing by name
    processor = BatchProcessor(EventType.SQS, middleware=["tracing"])

    # THEN its tracing middleware records with X-Ray
    (middleware,) = processor.middlewares
    assert middleware.backend == "xray"


def test_an_unknown_backend_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVED_BATCH_TRACING_BACKEND", "zipkin")
    with pytest.raises(ConfigError, match="OBSERVED_BATCH_TRACING_BACKEND='zipkin' is not one of: otel, xray"):
        BatchProcessor(EventType.SQS, middleware=["tracing"])


def test_a_missing_sdk_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN aws-xray-sdk not installed
    real = config_module._importable
    monkeypatch.setattr(config_module, "_importable", lambda package: package != "aws_xray_sdk" and real(package))

    # WHEN / THEN choosing the xray backend says which extra installs it
    with pytest.raises(MissingBackendError, match=r'pip install "observed-batch\[xray\]"'):
        BatchProcessor(EventType.SQS, middleware=["tracing"], config=Config(options={"tracing": {"backend": "xray"}}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "xray", "mode": "batch"}, "mode='batch' is for backend 'otel'"),
        ({"backend": "xray", "tracer_provider": TracerProvider()}, "tracer_provider is for backend 'otel'"),
        ({"xray_recorder": object()}, "xray_recorder needs backend='xray'"),
    ],
)
def test_options_of_the_other_backend_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TracingMiddleware(**options)
