"""The ``sentry`` middleware against the real sentry-sdk sending to a local receiver (tests/sentry_receiver.py).

Each batch ends with a bounded flush, so once ``process_partial_response`` returns, everything the
middleware sent has reached the receiver: counts are asserted exactly, without polling.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import sentry_sdk
from aws_lambda_powertools.utilities import batch as pt
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Json, ValidationError
from record_hook import counting_record_hooks
from sentry_receiver import SentryReceiver, refused_dsn
from sentry_sdk.scrubber import EventScrubber

import observed_batch as ob
from observed_batch.middleware import SentryMiddleware
from observed_batch.testing import (
    FakeLambdaContext,
    dynamodb_record,
    kafka_event,
    kinesis_record,
    sqs_event,
    sqs_fifo_event,
    sqs_record,
)

BODY_MARKER = "BODY-MARKER-7f3a"


# -- fixtures and helpers -----------------------------------------------------------------------------
#: Every test here starts and ends without a Sentry client (conftest.clean_sentry).
pytestmark = pytest.mark.usefixtures("clean_sentry")


@pytest.fixture
def receiver(sentry_receiver: SentryReceiver) -> SentryReceiver:
    return sentry_receiver


def init_sentry(dsn: str, **options: Any) -> None:
    """The application's own ``sentry_sdk.init``, kept lean (no auto integrations) for speed."""
    sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False, **options)


def order_body(index: int) -> dict[str, Any]:
    return {"order_id": f"order-{index}", "amount": 10 + index, "note": f"{BODY_MARKER}-{index}"}


def failing_handler(failing: Callable[[int], bool]) -> Callable[[Any], str]:
    """Handler failing the records whose ``order-<i>`` index matches (message never quotes the body)."""

    def handler(record: Any) -> str:
        index = int(json.loads(record.body)["order_id"].split("-")[1])
        if failing(index):
            raise ValueError(f"order {index} rejected")
        return f"ok {index}"

    return handler


def run_sqs(
    middleware: Sequence[Any],
    count: int = 5,
    failing: Callable[[int], bool] = lambda i: i % 2 == 1,
    event: dict[str, Any] | None = None,
) -> Any:
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=list(middleware))
    return ob.process_partial_response(
        event=event or sqs_event(count, body=order_body),
        record_handler=failing_handler(failing),
        processor=processor,
        context=FakeLambdaContext(),
    )


def errors_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if event.get("level") == "error"]


def exception_of(event: dict[str, Any]) -> dict[str, Any]:
    values: list[dict[str, Any]] = event["exception"]["values"]
    return values[-1]


# -- what is captured ---------------------------------------------------------------------------------
def test_one_event_per_failed_record(receiver: SentryReceiver) -> None:
    # GIVEN the application initialized Sentry and 3 of 7 records fail
    init_sentry(receiver.dsn)
    # WHEN the batch is processed
    run_sqs([SentryMiddleware()], count=7, failing=lambda i: i in (1, 4, 6))
    # THEN exactly three error events arrived, before the call returned
    assert len(receiver.events()) == 3


def test_event_carries_the_handlers_exception_type_and_value(receiver: SentryReceiver) -> None:
    # GIVEN a handler raising ValueError for record 2
    init_sentry(receiver.dsn)
    # WHEN the batch is processed
    run_sqs([SentryMiddleware()], count=3, failing=lambda i: i == 2)
    # THEN the event's exception is the user's own, marked as not handled by user code
    (event,) = receiver.events()
    exception = exception_of(event)
    assert (exception["type"], exception["value"]) == ("ValueError", "order 2 rejected")
    assert exception["mechanism"] == {"type": "observed_batch", "handled": False}
    assert event["level"] == "error"


def test_event_is_tagged_with_the_record_identity(receiver: SentryReceiver) -> None:
    # GIVEN an SQS record delivered for the third time that fails
    init_sentry(receiver.dsn)
    event = {"Records": [sqs_record(0, body=order_body(1), message_id="msg-1", receive_count=3)]}
    # WHEN the batch is processed
    with pytest.raises(ob.BatchProcessingError):
        run_sqs([SentryMiddleware()], failing=lambda i: True, event=event)
    # THEN the tags name the source, queue, message, delivery count and processing mode
    (captured,) = receiver.events()
    assert captured["tags"] == {
        "event_source": "aws:sqs",
        "queue": "orders",
        "message_id": "msg-1",
        "receive_count": "3",
        "observed_batch.mode": "sync",
    }


def test_context_block_describes_the_record_without_its_body(receiver: SentryReceiver) -> None:
    # GIVEN one failing record out of two
    init_sentry(receiver.dsn)
    # WHEN the batch is processed
    run_sqs([SentryMiddleware()], count=2, failing=lambda i: i == 1)
    # THEN the observed_batch context has the record's metadata, and no body
    context = receiver.events()[0]["contexts"]["observed_batch"]
    assert context["index"] == 1
    assert context["destination"] == "orders"
    assert context["destination_kind"] == "queue"
    assert context["event_source_arn"] == "arn:aws:sqs:us-east-1:123456789012:orders"
    assert context["batch_size"] == 2
    assert context["aws_request_id"] == FakeLambdaContext().aws_request_id
    assert {"sent_timestamp_ms", "age_ms", "duration_ms", "message_id", "receive_count"} <= context.keys()
    assert "body" not in json.dumps(context)


def test_fifo_group_is_tagged(receiver: SentryReceiver) -> None:
    # GIVEN a FIFO batch whose first record fails
    init_sentry(receiver.dsn)
    processor = ob.SqsFifoPartialProcessor(middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    ob.process_partial_response(
        event=sqs_fifo_event(2, groups=("tenant-9",), body=order_body),
        record_handler=failing_handler(lambda i: i == 1),
        processor=processor,
    )
    # THEN the event carries the message group
    assert receiver.events()[0]["tags"]["fifo_group"] == "tenant-9"


@pytest.mark.parametrize(
    ("event_type", "event", "tag", "destination"),
    [
        (ob.EventType.KinesisDataStreams, {"Records": [kinesis_record(0)]}, "stream", "clickstream"),
        (ob.EventType.DynamoDBStreams, {"Records": [dynamodb_record(0)]}, "table", "Orders"),
        (ob.EventType.Kafka, kafka_event(1, topic="payments"), "topic", "payments"),
    ],
    ids=["kinesis", "dynamodb", "kafka"],
)
def test_destination_tag_is_named_after_the_source_kind(
    receiver: SentryReceiver, event_type: ob.EventType, event: dict[str, Any], tag: str, destination: str
) -> None:
    # GIVEN a non-SQS source whose only record fails
    init_sentry(receiver.dsn)

    def handler(record: Any) -> None:
        raise RuntimeError("poison")

    processor = ob.BatchProcessor(event_type, middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(event=event, record_handler=handler, processor=processor)
    # THEN the destination tag is stream / table / topic, not queue
    tags = receiver.events()[0]["tags"]
    assert tags[tag] == destination
    assert "queue" not in tags


def test_async_processor_events_are_tagged_async(receiver: SentryReceiver) -> None:
    # GIVEN an AsyncBatchProcessor whose handler fails 2 of 4 records concurrently
    init_sentry(receiver.dsn)

    async def handler(record: Any) -> str:
        await asyncio.sleep(0)
        index = int(json.loads(record.body)["order_id"].split("-")[1])
        if index % 2:
            raise ValueError(f"order {index} rejected")
        return "ok"

    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    ob.async_process_partial_response(event=sqs_event(4, body=order_body), record_handler=handler, processor=processor)
    # THEN each failure produced one event, each with its own record's tags
    events = receiver.events()
    assert sorted(exception_of(e)["value"] for e in events) == ["order 1 rejected", "order 3 rejected"]
    assert {e["tags"]["observed_batch.mode"] for e in events} == {"async"}
    assert len({e["tags"]["message_id"] for e in events}) == 2


def test_scope_tags_do_not_leak_between_records_or_afterwards(receiver: SentryReceiver) -> None:
    # GIVEN two failing records, only the first one carrying a message group
    init_sentry(receiver.dsn)
    event = {"Records": [sqs_record(0, body=order_body(0), group_id="g-a"), sqs_record(1, body=order_body(1))]}
    # WHEN the batch is processed and the application captures a message afterwards
    with pytest.raises(ob.BatchProcessingError):
        run_sqs([SentryMiddleware()], failing=lambda i: True, event=event)
    sentry_sdk.capture_message("after the batch")
    sentry_sdk.flush(timeout=2)
    # THEN the second record's event has no fifo_group, and the later message has none of our tags
    first, second, after = receiver.wait_for_events(3)
    assert first["tags"]["fifo_group"] == "g-a"
    assert "fifo_group" not in second["tags"]
    assert "message_id" not in after.get("tags", {})


# -- what is never captured ---------------------------------------------------------------------------
def test_fifo_short_circuited_records_are_not_captured(receiver: SentryReceiver) -> None:
    # GIVEN a FIFO batch of 5 where record 1 fails, so Powertools short-circuits records 2..4
    init_sentry(receiver.dsn)
    processor = ob.SqsFifoPartialProcessor(middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    response = ob.process_partial_response(
        event=sqs_fifo_event(5, body=order_body), record_handler=failing_handler(lambda i: i == 1), processor=processor
    )
    # THEN four records are reported failed but only the real failure reached Sentry
    assert len(response["batchItemFailures"]) == 4
    (event,) = receiver.events()
    assert exception_of(event)["value"] == "order 1 rejected"


class GuardFromIndex(ob.Middleware):
    """Fails records from ``index`` on without running the handler, as the timeout guard does."""

    name = "guard"

    def __init__(self, index: int) -> None:
        self.index = index

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        if record.index >= self.index:
            raise ob.FailRecord("timeout_guard")
        yield


def test_guard_skipped_records_are_not_captured(receiver: SentryReceiver) -> None:
    # GIVEN sentry outside a guard that fails records 2..4 before their handler runs (the built-in order)
    init_sentry(receiver.dsn)
    # WHEN a batch where only record 0 fails on its own is processed
    response = run_sqs([SentryMiddleware(), GuardFromIndex(2)], count=5, failing=lambda i: i == 0)
    # THEN 4 records are reported failed, and only record 0's exception was sent
    assert len(response["batchItemFailures"]) == 4
    (event,) = receiver.events()
    assert exception_of(event)["value"] == "order 0 rejected"


def test_no_body_and_no_local_variables_by_default(receiver: SentryReceiver) -> None:
    # GIVEN the SDK's default include_local_variables=True and bodies carrying a marker
    init_sentry(receiver.dsn)
    # WHEN failing records are captured
    run_sqs([SentryMiddleware()], count=4)
    # THEN the marker appears in no byte sent, and no frame carries local variables
    bodies = receiver.raw_bodies()
    assert bodies
    assert not any(BODY_MARKER.encode() in body for body in bodies)
    frames = [f for e in receiver.events() for f in exception_of(e)["stacktrace"]["frames"]]
    assert frames
    assert not any("vars" in frame for frame in frames)


def test_local_variables_are_sent_when_opted_in(receiver: SentryReceiver) -> None:
    # GIVEN include_local_variables on (the SDK collects them by default)
    init_sentry(receiver.dsn)
    # WHEN a failing record is captured
    run_sqs([SentryMiddleware(include_local_variables=True)], count=2)
    # THEN the handler's frame carries its local variables
    frames = exception_of(receiver.events()[0])["stacktrace"]["frames"]
    assert any("index" in frame.get("vars", {}) for frame in frames)


def test_base_exceptions_are_not_captured(receiver: SentryReceiver) -> None:
    # GIVEN a handler interrupted by KeyboardInterrupt (not a record failure: the invocation ends)
    init_sentry(receiver.dsn)

    def handler(record: Any) -> None:
        raise KeyboardInterrupt

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    with pytest.raises(KeyboardInterrupt):
        ob.process_partial_response(event=sqs_event(2), record_handler=handler, processor=processor)
    # THEN nothing was sent
    assert receiver.events() == []


def test_failure_through_a_subclass_bypassing_super_is_still_captured(receiver: SentryReceiver) -> None:
    # GIVEN a user subclass whose failure_handler calls Powertools' directly
    init_sentry(receiver.dsn)

    class Bypassing(ob.BatchProcessor):
        def failure_handler(self, record: Any, exception: Any) -> Any:
            return pt.BatchProcessor.failure_handler(self, record, exception)

    processor = Bypassing(ob.EventType.SQS, middleware=[SentryMiddleware()])
    # WHEN a record fails
    response = ob.process_partial_response(
        event=sqs_event(2, body=order_body), record_handler=failing_handler(lambda i: i == 1), processor=processor
    )
    # THEN the outcome is Powertools' and the failure was captured (the sync core reads the exception
    # Powertools recorded, whichever failure_handler recorded it)
    assert len(response["batchItemFailures"]) == 1
    assert len(receiver.events()) == 1


# -- pydantic ------------------------------------------------------------------------------------------
class Order(BaseModel):
    order_id: str
    amount: int


class OrderRecord(SqsRecordModel):
    body: Json[Order]


def test_validation_error_is_sent_as_its_error_list_without_input(receiver: SentryReceiver) -> None:
    # GIVEN a model= processor and a record whose amount is not a number
    init_sentry(receiver.dsn)
    event = {"Records": [sqs_record(0, body={"order_id": "o-1", "amount": BODY_MARKER})]}
    processor = ob.BatchProcessor(ob.EventType.SQS, model=OrderRecord, middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(event=event, record_handler=lambda record: None, processor=processor)
    # THEN the event lists the validation errors, and the input value appears nowhere
    assert not any(BODY_MARKER.encode() in body for body in receiver.raw_bodies())
    (captured,) = receiver.events()
    assert exception_of(captured)["type"] == "ValidationError"
    assert exception_of(captured)["value"] == (
        "1 validation error for OrderRecord: body.amount: "
        "Input should be a valid integer, unable to parse string as an integer [type=int_parsing]"
    )
    validation = captured["contexts"]["validation_errors"]
    assert validation["error_count"] == 1
    assert validation["errors"][0]["loc"] == ["body", "amount"]
    assert "input" not in validation["errors"][0]


def test_validation_error_inside_a_chain_is_redacted(receiver: SentryReceiver) -> None:
    # GIVEN a handler that validates by hand and re-raises its own error from a ValidationError
    init_sentry(receiver.dsn)

    def handler(record: Any) -> None:
        try:
            Order.model_validate_json(record.body)
        except ValidationError as exc:
            raise RuntimeError("order rejected") from exc

    event = {"Records": [sqs_record(0, body={"order_id": BODY_MARKER, "amount": BODY_MARKER, "x": 1})]}
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
    # WHEN the batch is processed
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(event=event, record_handler=handler, processor=processor)
    # THEN the chained ValidationError keeps its errors but loses the input
    assert not any(BODY_MARKER.encode() in body for body in receiver.raw_bodies())
    cause, outer = receiver.events()[0]["exception"]["values"]
    assert (cause["type"], outer["value"]) == ("ValidationError", "order rejected")
    assert cause["value"].startswith("1 validation error for Order: amount:")


def test_validation_errors_are_not_looked_for_without_pydantic(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an application that never loaded pydantic
    monkeypatch.delitem(sys.modules, "pydantic_core")
    init_sentry(receiver.dsn)
    # WHEN a record fails
    run_sqs([SentryMiddleware()], count=2)
    # THEN the event is sent as usual, without a validation_errors context
    (captured,) = receiver.events()
    assert "validation_errors" not in captured["contexts"]


# -- bodies (opt-in) -----------------------------------------------------------------------------------
def test_body_is_sent_as_structure_when_opted_in(receiver: SentryReceiver) -> None:
    # GIVEN include_body on and a JSON body that fits max_body_bytes
    init_sentry(receiver.dsn)
    # WHEN record 1 fails
    run_sqs([SentryMiddleware(include_body=True)], count=2)
    # THEN the body is in extra, parsed
    assert receiver.events()[0]["extra"]["record_body"] == order_body(1)


def test_long_body_is_truncated_to_max_body_bytes(receiver: SentryReceiver) -> None:
    # GIVEN include_body with a limit that falls inside a two-byte character of a 2033-byte body
    init_sentry(receiver.dsn)
    prefix = '{"order_id": "order-0", "note": "'
    text = prefix + "é" * 1000 + '"}'
    size = len(text.encode())
    # WHEN the record fails
    with pytest.raises(ob.BatchProcessingError):
        run_sqs(
            [SentryMiddleware(include_body=True, max_body_bytes=len(prefix) + 1)],
            failing=lambda i: True,
            event={"Records": [sqs_record(0, body=text)]},
        )
    # THEN only whole characters within the limit are sent, with a marker saying how much was cut
    body = receiver.events()[0]["extra"]["record_body"]
    assert body == f"{prefix}...[truncated {size - len(prefix) - 1} of {size} bytes]"


def test_body_goes_through_the_users_event_scrubber(receiver: SentryReceiver) -> None:
    # GIVEN an application scrubbing "password" keys recursively
    init_sentry(receiver.dsn, event_scrubber=EventScrubber(recursive=True))
    event = {"Records": [sqs_record(0, body={"order_id": "order-0", "password": "hunter2"})]}
    # WHEN the record fails with include_body on
    with pytest.raises(ob.BatchProcessingError):
        run_sqs([SentryMiddleware(include_body=True)], failing=lambda i: True, event=event)
    # THEN the password never left
    assert receiver.events()[0]["extra"]["record_body"] == {"order_id": "order-0", "password": "[Filtered]"}
    assert not any(b"hunter2" in body for body in receiver.raw_bodies())


def test_body_goes_through_the_users_before_send(receiver: SentryReceiver) -> None:
    # GIVEN an application whose before_send rewrites the body
    def before_send(event: Any, hint: Any) -> Any:
        event["extra"]["record_body"] = "redacted by before_send"
        return event

    init_sentry(receiver.dsn, before_send=before_send)
    # WHEN a record fails with include_body on
    run_sqs([SentryMiddleware(include_body=True)], count=2)
    # THEN what arrives is what before_send returned
    assert receiver.events()[0]["extra"]["record_body"] == "redacted by before_send"


@pytest.mark.parametrize(
    ("body", "expected"),
    [("plain text", "plain text"), ("42", "42"), ('["a", 1]', ["a", 1])],
    ids=["text", "json-scalar", "json-array"],
)
def test_non_object_bodies_are_sent_as_they_are(receiver: SentryReceiver, body: str, expected: Any) -> None:
    # GIVEN include_body on and an SQS body that is not a JSON object
    init_sentry(receiver.dsn)

    def handler(record: Any) -> None:
        raise ValueError("rejected")

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware(include_body=True)])
    # WHEN the record fails
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(
            event={"Records": [sqs_record(0, body=body)]}, record_handler=handler, processor=processor
        )
    # THEN text goes as text, a JSON array as structure
    assert receiver.events()[0]["extra"]["record_body"] == expected


def _kinesis(data: str) -> dict[str, Any]:
    record = kinesis_record(0)
    record["kinesis"]["data"] = data
    return {"Records": [record]}


def _dynamodb_without_images() -> dict[str, Any]:
    record = dynamodb_record(0)
    for key in ("Keys", "NewImage", "OldImage"):
        record["dynamodb"].pop(key, None)
    return {"Records": [record]}


def _sqs_without_body() -> dict[str, Any]:
    record = sqs_record(0)
    record["body"] = None
    return {"Records": [record]}


def _kinesis_without_payload() -> dict[str, Any]:
    record = kinesis_record(0)
    del record["kinesis"]
    return {"Records": [record]}


@pytest.mark.parametrize(
    ("event_type", "event", "expected"),
    [
        (ob.EventType.KinesisDataStreams, _kinesis(base64.b64encode(b'{"clicks": 3}').decode()), {"clicks": 3}),
        (ob.EventType.KinesisDataStreams, _kinesis("not base64!"), "not base64!"),
        (ob.EventType.Kafka, kafka_event(1, value={"paid": True}), {"paid": True}),
        (
            ob.EventType.DynamoDBStreams,
            {"Records": [dynamodb_record(0, new_image={"pk": {"S": "order-0"}, "total": {"N": "5"}})]},
            {"pk": {"S": "order-0"}, "total": {"N": "5"}},  # the NewImage: one rule for every middleware
        ),
        (ob.EventType.DynamoDBStreams, _dynamodb_without_images(), None),
        (ob.EventType.SQS, _sqs_without_body(), None),
        (ob.EventType.KinesisDataStreams, _kinesis_without_payload(), None),
    ],
    ids=[
        "kinesis",
        "kinesis-not-base64",
        "kafka",
        "dynamodb",
        "dynamodb-no-images",
        "sqs-no-body",
        "kinesis-no-payload",
    ],
)
def test_each_sources_payload_is_its_body(
    receiver: SentryReceiver, event_type: ob.EventType, event: dict[str, Any], expected: Any
) -> None:
    # GIVEN include_body on and a failing record of each source (or a record without a payload)
    init_sentry(receiver.dsn)

    def handler(record: Any) -> None:
        raise ValueError("rejected")

    processor = ob.BatchProcessor(event_type, middleware=[SentryMiddleware(include_body=True)])
    # WHEN the record fails
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(event=event, record_handler=handler, processor=processor)
    # THEN the decoded payload is the body (no payload: no body, the event is still sent)
    (captured,) = receiver.events()
    assert captured.get("extra", {}).get("record_body") == expected


# -- flood control -------------------------------------------------------------------------------------
def test_500_failures_send_the_cap_plus_one_summary(receiver: SentryReceiver) -> None:
    # GIVEN a bad deploy: every record of a 500-record batch fails
    init_sentry(receiver.dsn)
    # WHEN the batch is processed with the default cap
    with pytest.raises(ob.BatchProcessingError):
        run_sqs([SentryMiddleware()], count=500, failing=lambda i: True)
    # THEN 10 exception events and one summary event arrived, and the summary counts the other 490
    events = receiver.events()
    assert len(events) == 11
    assert len(errors_of(events)) == 10
    (summary,) = [e for e in events if e["level"] == "warning"]
    details = summary["contexts"]["observed_batch"]
    assert (details["suppressed"], details["sent"], details["failures"]) == (490, 10, 500)
    assert details["suppressed_by_exception_type"] == {"ValueError": 490}
    assert len(details["suppressed_message_ids"]) == 50
    assert summary["message"].startswith("observed_batch: 490 more failed records in queue orders")
    assert summary["tags"]["queue"] == "orders"
    assert summary["fingerprint"] == ["observed_batch.suppressed_failures", "aws_sqs", "orders"]


def test_no_summary_below_the_cap(receiver: SentryReceiver) -> None:
    # GIVEN 3 failures under a cap of 3
    init_sentry(receiver.dsn)
    # WHEN the batch is processed
    run_sqs([SentryMiddleware(max_events_per_batch=3)], count=6)
    # THEN only the three exception events arrived
    assert [e["level"] for e in receiver.events()] == ["error"] * 3


def test_cap_applies_per_invocation(receiver: SentryReceiver) -> None:
    # GIVEN one processor (as at cold start) and a cap of 2
    init_sentry(receiver.dsn)
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware(max_events_per_batch=2)])
    # WHEN two invocations each fail 4 records
    for _ in range(2):
        with pytest.raises(ob.BatchProcessingError):
            ob.process_partial_response(
                event=sqs_event(4, body=order_body), record_handler=failing_handler(lambda i: True), processor=processor
            )
    # THEN each invocation sent 2 exceptions and its own summary of 2
    events = receiver.events()
    assert [e["level"] for e in events] == ["error", "error", "warning"] * 2
    assert [e["contexts"]["observed_batch"]["suppressed"] for e in events if e["level"] == "warning"] == [2, 2]


def test_cap_of_zero_sends_only_the_summary(receiver: SentryReceiver) -> None:
    # GIVEN max_events_per_batch=0 and many distinct exception types
    init_sentry(receiver.dsn)
    kinds = [type(f"Error{i}", (Exception,), {}) for i in range(25)]

    def handler(record: Any) -> None:
        raise kinds[int(json.loads(record.body)["order_id"].split("-")[1])]("rejected")

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware(max_events_per_batch=0)])
    # WHEN 25 records fail, each with its own type
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(event=sqs_event(25, body=order_body), record_handler=handler, processor=processor)
    # THEN one summary arrives, its per-type counts bounded with an "(other)" bucket
    (summary,) = receiver.events()
    by_type = summary["contexts"]["observed_batch"]["suppressed_by_exception_type"]
    assert len(by_type) == 21
    assert by_type["(other)"] == 5
    assert sum(by_type.values()) == 25


def test_summary_of_a_batch_without_source_arn(receiver: SentryReceiver) -> None:
    # GIVEN records without eventSourceARN (hand-built events), so the queue is unknown
    init_sentry(receiver.dsn)
    records = [sqs_record(i, body=order_body(i)) for i in range(2)]
    for record in records:
        del record["eventSourceARN"]
    # WHEN both fail with a cap of 0
    with pytest.raises(ob.BatchProcessingError):
        run_sqs([SentryMiddleware(max_events_per_batch=0)], failing=lambda i: True, event={"Records": records})
    # THEN the summary says "queue" without a name and has no queue tag
    (summary,) = receiver.events()
    assert summary["message"].startswith("observed_batch: 2 more failed records in queue were not sent")
    assert "queue" not in summary["tags"]


def test_kafka_summary_names_the_topic(receiver: SentryReceiver) -> None:
    # GIVEN a Kafka batch (its event source ARN names the cluster, not the topic) and a cap of 0
    init_sentry(receiver.dsn)

    def handler(record: Any) -> None:
        raise ValueError("rejected")

    processor = ob.BatchProcessor(ob.EventType.Kafka, middleware=[SentryMiddleware(max_events_per_batch=0)])
    # WHEN its records fail
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(event=kafka_event(3, topic="payments"), record_handler=handler, processor=processor)
    # THEN the summary is about the topic
    (summary,) = receiver.events()
    assert summary["tags"]["topic"] == "payments"
    assert summary["fingerprint"] == ["observed_batch.suppressed_failures", "kafka", "payments"]


# -- trace correlation ---------------------------------------------------------------------------------
def test_trace_ids_of_the_current_opentelemetry_span(receiver: SentryReceiver) -> None:
    # GIVEN an application using OpenTelemetry, processing inside a span
    from opentelemetry.sdk.trace import TracerProvider

    init_sentry(receiver.dsn)
    tracer = TracerProvider().get_tracer("test")
    # WHEN a record fails inside that span
    with tracer.start_as_current_span("invocation") as span:
        run_sqs([SentryMiddleware()], count=2)
    # THEN the event is tagged with, and joins, the OpenTelemetry trace
    context = span.get_span_context()
    trace_id, span_id = format(context.trace_id, "032x"), format(context.span_id, "016x")
    captured = receiver.events()[0]
    assert (captured["tags"]["trace_id"], captured["tags"]["span_id"]) == (trace_id, span_id)
    assert captured["contexts"]["trace"]["trace_id"] == trace_id


def test_sentry_span_keeps_sentrys_trace(receiver: SentryReceiver) -> None:
    # GIVEN OpenTelemetry and Sentry tracing both active
    from opentelemetry.sdk.trace import TracerProvider

    init_sentry(receiver.dsn, traces_sample_rate=1.0)
    tracer = TracerProvider().get_tracer("test")
    # WHEN a record fails inside a Sentry transaction and an OTel span
    with sentry_sdk.start_transaction(name="invocation") as transaction, tracer.start_as_current_span("otel") as span:
        run_sqs([SentryMiddleware()], count=2)
    # THEN the OTel ids are tags, and the event stays in Sentry's own trace
    captured = receiver.wait_for_events(1)[0]
    assert captured["tags"]["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert captured["contexts"]["trace"]["trace_id"] == transaction.trace_id


def test_no_trace_tags_outside_a_span(receiver: SentryReceiver) -> None:
    # GIVEN OpenTelemetry imported but no current span
    import opentelemetry.trace  # noqa: F401

    init_sentry(receiver.dsn)
    # WHEN a record fails
    run_sqs([SentryMiddleware()], count=2)
    # THEN there are no trace tags
    assert "trace_id" not in receiver.events()[0]["tags"]


def test_opentelemetry_is_never_imported(receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an application that does not use OpenTelemetry
    monkeypatch.delitem(sys.modules, "opentelemetry.trace", raising=False)
    init_sentry(receiver.dsn)
    # WHEN a record fails
    run_sqs([SentryMiddleware()], count=2)
    # THEN the event is sent without trace tags, and OpenTelemetry was not imported for it
    assert "trace_id" not in receiver.events()[0]["tags"]
    assert "opentelemetry.trace" not in sys.modules


# -- which client ----------------------------------------------------------------------------------------
def test_the_applications_client_is_used_not_replaced(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the application initialized Sentry, and a SENTRY_DSN pointing elsewhere
    init_sentry(receiver.dsn)
    client = sentry_sdk.get_client()
    monkeypatch.setenv("SENTRY_DSN", refused_dsn())
    # WHEN the middleware is built from the environment and a record fails
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "sentry")
    processor = ob.BatchProcessor(ob.EventType.SQS)
    ob.process_partial_response(
        event=sqs_event(2, body=order_body), record_handler=failing_handler(lambda i: i == 1), processor=processor
    )
    # THEN the application's client is still the one in use, and it sent the event
    assert sentry_sdk.get_client() is client
    assert len(receiver.events()) == 1


def test_sentry_dsn_initializes_sentry_once(receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN no sentry_sdk.init, but SENTRY_DSN / SENTRY_ENVIRONMENT / SENTRY_RELEASE
    monkeypatch.setenv("SENTRY_DSN", receiver.dsn)
    monkeypatch.setenv("SENTRY_ENVIRONMENT", "staging")
    monkeypatch.setenv("SENTRY_RELEASE", "orders@1.2.3")
    # WHEN two middlewares are built (cold start), then each has a failed record
    first, second = SentryMiddleware(), SentryMiddleware()
    assert not sentry_sdk.get_client().is_active()  # nothing before the first failure
    run_sqs([first], count=2)
    client = sentry_sdk.get_client()
    run_sqs([second], count=2)
    # THEN Sentry was initialized once, from the environment, and lean (no auto-enabling integrations)
    assert sentry_sdk.get_client() is client
    assert client.options["auto_enabling_integrations"] is False
    captured = receiver.wait_for_events(2)
    assert [(c["environment"], c["release"]) for c in captured] == [("staging", "orders@1.2.3")] * 2


def test_sentry_initialized_after_construction_is_picked_up(receiver: SentryReceiver) -> None:
    # GIVEN a processor built before the application calls sentry_sdk.init
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
    init_sentry(receiver.dsn)
    # WHEN a record fails
    ob.process_partial_response(
        event=sqs_event(2, body=order_body), record_handler=failing_handler(lambda i: i == 1), processor=processor
    )
    # THEN the event is sent through the application's client
    assert len(receiver.events()) == 1


def test_without_dsn_it_is_a_noop_with_one_info_log(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN no sentry_sdk.init and no SENTRY_DSN
    caplog.set_level(logging.INFO, logger="observed_batch")
    # WHEN the processor is built and a batch with failures is processed
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
    response = ob.process_partial_response(
        event=sqs_event(3, body=order_body), record_handler=failing_handler(lambda i: i == 1), processor=processor
    )
    # THEN the outcome is unchanged, one info line explains why, and Sentry stays uninitialized
    assert len(response["batchItemFailures"]) == 1
    assert [(r.levelno, "SENTRY_DSN is not set" in r.getMessage()) for r in caplog.records] == [(logging.INFO, True)]
    assert not sentry_sdk.get_client().is_active()


def test_injected_client_is_used_without_touching_the_global_one(receiver: SentryReceiver) -> None:
    # GIVEN a client passed to the middleware, and no global sentry_sdk.init
    client = sentry_sdk.Client(dsn=receiver.dsn, default_integrations=False)
    try:
        # WHEN a record fails
        run_sqs([SentryMiddleware(client=client)], count=2)
    finally:
        client.close(timeout=0)
    # THEN the injected client sent the event, and the global client is still inactive
    assert len(receiver.events()) == 1
    assert not sentry_sdk.get_client().is_active()


def test_injected_client_sends_the_summary_too(receiver: SentryReceiver) -> None:
    # GIVEN an injected client and a cap of 1
    client = sentry_sdk.Client(dsn=receiver.dsn, default_integrations=False)
    try:
        # WHEN 3 records fail
        with pytest.raises(ob.BatchProcessingError):
            run_sqs([SentryMiddleware(client=client, max_events_per_batch=1)], count=3, failing=lambda i: True)
    finally:
        client.close(timeout=0)
    # THEN one exception and one summary arrived through it
    assert [e["level"] for e in receiver.events()] == ["error", "warning"]


def test_injected_client_without_dsn_is_a_noop(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an injected client that has no DSN
    caplog.set_level(logging.INFO, logger="observed_batch")
    # WHEN the middleware is built and a record fails
    middleware = SentryMiddleware(client=sentry_sdk.Client())
    response = run_sqs([middleware], count=2)
    # THEN outcomes are unchanged and one info line says nothing is sent
    assert len(response["batchItemFailures"]) == 1
    assert ["client has no DSN" in r.getMessage() for r in caplog.records] == [True]


def test_without_a_dsn_sentry_leaves_the_record_chain() -> None:
    # GIVEN the middleware with a client that has no DSN
    middleware = counting_record_hooks(SentryMiddleware)(client=sentry_sdk.Client())

    # WHEN a batch with failures runs
    response = run_sqs([middleware], count=4)

    # THEN its record hook never ran, and outcomes are unchanged
    assert middleware.entered == 0
    assert len(response["batchItemFailures"]) == 2


# -- an unreachable Sentry -------------------------------------------------------------------------------
def _outcomes(processor: Any, event: dict[str, Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        result: Any = ("response", pt.process_partial_response(event, failing_handler(lambda i: i % 3 == 0), processor))
    except ob.BatchProcessingError as exc:
        result = ("raised", type(exc).__name__)
    return result, time.perf_counter() - started


@pytest.mark.parametrize("flavour", ["never-answers", "refuses-connections"])
def test_unreachable_sentry_keeps_outcomes_and_bounds_latency(flavour: str) -> None:
    # GIVEN Sentry at a server that never answers, or at a port that refuses connections
    flush_timeout_ms = 300
    with SentryReceiver(mode="hang") as hanging:
        init_sentry(hanging.dsn if flavour == "never-answers" else refused_dsn())
        event = sqs_event(9, body=order_body)
        observed = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware(flush_timeout_ms=flush_timeout_ms)])
        # WHEN the same batch runs through Powertools and observed_batch with Sentry on
        expected, _ = _outcomes(pt.BatchProcessor(pt.EventType.SQS), event)
        actual, elapsed = _outcomes(observed, event)
        if flavour == "never-answers":
            assert hanging.wait_for_requests(1) >= 1  # the SDK really was stuck on our server
    # THEN outcomes are identical and the batch waited for Sentry at most about the flush timeout
    assert actual == expected
    assert elapsed < flush_timeout_ms / 1000 + 1.0


# -- configuration ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("include_body", "yes"),
        ("include_local_variables", 1),
        ("max_body_bytes", -1),
        ("max_events_per_batch", True),
        ("flush_timeout_ms", 1.5),
        ("client", "http://key@127.0.0.1:1/1"),
    ],
)
def test_invalid_option_is_a_config_error_naming_it(option: str, value: Any) -> None:
    # GIVEN an invalid option value
    # WHEN the middleware is built
    with pytest.raises(ob.ConfigError) as error:
        SentryMiddleware(**{option: value})
    # THEN the error names the option
    assert option in str(error.value)


def test_invalid_sentry_dsn_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a malformed SENTRY_DSN
    monkeypatch.setenv("SENTRY_DSN", "not-a-dsn")
    # WHEN the middleware is built
    with pytest.raises(ob.ConfigError) as error:
        SentryMiddleware()
    # THEN the error names the variable
    assert "SENTRY_DSN" in str(error.value)


def test_options_from_environment(receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN sentry enabled by name with its cap and body options set by environment
    init_sentry(receiver.dsn)
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "sentry")
    monkeypatch.setenv("OBSERVED_BATCH_SENTRY_MAX_EVENTS_PER_BATCH", "1")
    monkeypatch.setenv("OBSERVED_BATCH_SENTRY_INCLUDE_BODY", "true")
    processor = ob.BatchProcessor(ob.EventType.SQS)
    # WHEN 3 records fail
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(
            event=sqs_event(3, body=order_body), record_handler=failing_handler(lambda i: True), processor=processor
        )
    # THEN the cap and the body option applied
    error, summary = receiver.events()
    assert error["extra"]["record_body"] == order_body(0)
    assert summary["level"] == "warning"


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a non-integer cap in the environment
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "sentry")
    monkeypatch.setenv("OBSERVED_BATCH_SENTRY_MAX_EVENTS_PER_BATCH", "ten")
    # WHEN a processor is built
    with pytest.raises(ob.ConfigError) as error:
        ob.BatchProcessor(ob.EventType.SQS)
    # THEN the error names the variable
    assert "OBSERVED_BATCH_SENTRY_MAX_EVENTS_PER_BATCH" in str(error.value)


def test_flush_can_be_turned_off(receiver: SentryReceiver) -> None:
    # GIVEN flush_timeout_ms=0 (the application flushes on its own)
    init_sentry(receiver.dsn)
    # WHEN a record fails
    run_sqs([SentryMiddleware(flush_timeout_ms=0)], count=2)
    # THEN the event still arrives, in the background
    assert len(receiver.wait_for_events(1)) == 1


# -- differential: outcomes never change -----------------------------------------------------------------
_SHARED_RECEIVER: list[SentryReceiver] = []


def _shared_receiver() -> SentryReceiver:
    if not _SHARED_RECEIVER:
        _SHARED_RECEIVER.append(SentryReceiver().start())
    return _SHARED_RECEIVER[0]


@pytest.fixture(scope="module", autouse=True)
def _stop_shared_receiver() -> Iterator[None]:
    yield
    while _SHARED_RECEIVER:
        _SHARED_RECEIVER.pop().stop()


def _differential_event(source: str, plan: list[bool]) -> dict[str, Any]:
    def body(i: int) -> dict[str, Any]:
        return {"order_id": f"order-{i}", "fail": plan[i]}

    if source == "kinesis":
        return {"Records": [kinesis_record(i, data=body(i)) for i in range(len(plan))]}
    if source == "sqs_fifo":
        return {
            "Records": [sqs_record(i, body=body(i), queue="q.fifo", group_id=f"g{i % 2}") for i in range(len(plan))]
        }
    return {"Records": [sqs_record(i, body=body(i)) for i in range(len(plan))]}


def _differential_run(module: Any, source: str, event: dict[str, Any], **extra: Any) -> tuple[Any, list[str]]:
    calls: list[str] = []

    def payload(record: Any) -> dict[str, Any]:
        text = record.kinesis.data_as_text() if source == "kinesis" else record.body
        data: dict[str, Any] = json.loads(text)
        calls.append(data["order_id"])
        return data

    def handler(record: Any) -> str:
        data = payload(record)
        if data["fail"]:
            raise ValueError(f"poison {data['order_id']}")
        return str(data["order_id"])

    async def async_handler(record: Any) -> str:
        await asyncio.sleep(0)
        return handler(record)

    event_type = pt.EventType.KinesisDataStreams if source == "kinesis" else pt.EventType.SQS
    try:
        if source == "sqs_fifo":
            fifo = module.SqsFifoPartialProcessor(**extra)
            result: Any = ("response", module.process_partial_response(event, handler, fifo))
        elif source == "sqs_async":
            processor = module.AsyncBatchProcessor(event_type, **extra)
            result = ("response", module.async_process_partial_response(event, async_handler, processor))
        else:
            processor = module.BatchProcessor(event_type, **extra)
            result = ("response", module.process_partial_response(event, handler, processor))
    except Exception as exc:
        result = ("raised", type(exc).__name__)
    return result, calls


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    source=st.sampled_from(["sqs", "sqs_fifo", "sqs_async", "kinesis"]),
    plan=st.lists(st.booleans(), min_size=1, max_size=8),
)
def test_outcomes_equal_powertools_with_sentry_on(source: str, plan: list[bool]) -> None:
    # GIVEN Sentry capturing to a live receiver, with a small cap so summaries are sent too
    receiver = _shared_receiver()
    if not sentry_sdk.get_client().is_active():
        init_sentry(receiver.dsn)
    event = _differential_event(source, plan)
    middleware = [SentryMiddleware(max_events_per_batch=2)]
    # WHEN the same event runs through Powertools and observed_batch
    expected = _differential_run(pt, source, event)
    actual = _differential_run(ob, source, event, middleware=middleware)
    # THEN the response (or raised exception) and the handler call sequence are identical
    if source == "sqs_async":
        assert (actual[0], sorted(actual[1])) == (expected[0], sorted(expected[1]))
    else:
        assert actual == expected


def test_application_init_without_dsn_is_respected(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the application called sentry_sdk.init() without a DSN (Sentry off in this stage)
    sentry_sdk.init(default_integrations=False)
    monkeypatch.setenv("SENTRY_DSN", refused_dsn())
    caplog.set_level(logging.INFO, logger="observed_batch")
    client = sentry_sdk.get_client()
    # WHEN the middleware is built and a record fails
    response = run_sqs([SentryMiddleware()], count=2)
    # THEN Sentry is not re-initialized from SENTRY_DSN, outcomes are unchanged, one info line says why
    assert sentry_sdk.get_client() is client
    assert len(response["batchItemFailures"]) == 1
    assert ["client has no DSN" in r.getMessage() for r in caplog.records] == [True]
