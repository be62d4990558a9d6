"""Source facts read from raw records: never raise, None when absent or malformed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import EventType
from hypothesis import given
from hypothesis import strategies as st

import observed_batch as ob
from observed_batch import sources
from observed_batch.testing import RecordingMiddleware, sqs_event, sqs_record
from observed_batch.typing import BatchContext, RecordContext

SQS, KINESIS, DDB, KAFKA = (
    ob.EventType.SQS,
    ob.EventType.KinesisDataStreams,
    ob.EventType.DynamoDBStreams,
    ob.EventType.Kafka,
)


@pytest.mark.parametrize(
    ("event_type", "raw"),
    [
        (SQS, {"attributes": {"SentTimestamp": "soon"}}),
        (KINESIS, {"kinesis": {"approximateArrivalTimestamp": "x"}}),
        (DDB, {"dynamodb": {"ApproximateCreationDateTime": [1]}}),
        (KAFKA, {"timestamp": {"ms": 1}}),
        (SQS, "not a dict"),
        (KINESIS, {}),
        (DDB, {}),
        (KAFKA, {}),
        (SQS, {}),
    ],
)
def test_malformed_or_missing_timestamps_are_none(event_type: ob.EventType, raw: Any) -> None:
    assert sources.sent_timestamp_ms(event_type, raw) is None


def test_kafka_timestamp_is_epoch_ms() -> None:
    assert sources.sent_timestamp_ms(KAFKA, {"timestamp": 1_700_000_000_123}) == 1_700_000_000_123.0


@pytest.mark.parametrize("value", [None, "many", [3]])
def test_malformed_receive_count_is_none(value: Any) -> None:
    assert sources.receive_count({"attributes": {"ApproximateReceiveCount": value}}) is None


def test_producer_trace_headers_from_message_and_system_attributes() -> None:
    # GIVEN a record carrying W3C context as message attributes and X-Ray context as a system attribute
    raw = sqs_record(
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        xray_header="Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    )
    raw["messageAttributes"]["tracestate"] = {"stringValue": "vendor=1", "dataType": "String"}
    raw["messageAttributes"]["other"] = {"binaryValue": "AA=="}

    # THEN both are returned under the header names their propagators read
    assert sources.producer_trace_headers(raw) == {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "tracestate": "vendor=1",
        "x-amzn-trace-id": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    }


def test_malformed_trace_headers_are_ignored() -> None:
    raw = {"messageAttributes": {"traceparent": {"stringValue": 7}}, "attributes": {"AWSTraceHeader": None}}
    assert sources.producer_trace_headers(raw) == {}
    assert sources.producer_trace_headers({"messageAttributes": "nope"}) == {}


@pytest.mark.parametrize(
    ("event_type", "arn", "expected"),
    [
        (SQS, "arn:aws:sqs:us-east-1:1:orders.fifo", "orders.fifo"),
        (KINESIS, "arn:aws:kinesis:us-east-1:1:stream/clicks", "clicks"),
        (DDB, "arn:aws:dynamodb:us-east-1:1:table/Orders/stream/2024-01-01T00:00:00.000", "Orders"),
        (KINESIS, "arn:aws:kinesis:us-east-1:1:stream", None),
        (SQS, None, None),
        (SQS, "", None),
    ],
)
def test_destination_from_arn(event_type: ob.EventType, arn: str | None, expected: str | None) -> None:
    assert sources.destination_from_arn(event_type, arn) == expected


def test_record_context_without_a_processor_returns_the_raw_record() -> None:
    batch = BatchContext(SQS, [{"messageId": "1"}])
    record = RecordContext(batch, batch.records[0], 0)
    assert record.record is batch.records[0]
    assert (record.event_type, record.message_id, batch.is_fifo) == (SQS, "1", False)
    assert batch.next_index() == 0
    assert batch.next_index() == 1


def test_record_context_of_a_non_dict_kafka_record_has_no_destination() -> None:
    batch = BatchContext(KAFKA, ["garbage"])
    assert RecordContext(batch, "garbage", 0).destination is None


def test_batch_summary_repr_and_total() -> None:
    summary = ob.BatchSummary()
    summary.successes, summary.failures, summary.skipped = 3, 2, 1
    assert summary.total == 6
    assert repr(summary).startswith("BatchSummary(successes=3, failures=2, skipped=1, duration_ms=0.000")


def test_base_middleware_hooks_are_no_ops() -> None:
    # GIVEN the base class used directly (all hooks inherited)
    base = ob.Middleware()
    batch = BatchContext(SQS, [{}])
    hook = base.wrap_record(RecordContext(batch, {}, 0))

    # THEN its hooks do nothing and wrap_record yields once
    assert base.on_batch_start(batch) is None
    assert next(hook) is None
    with pytest.raises(StopIteration):
        next(hook)
    assert base.on_batch_end(batch, ob.BatchSummary()) is None


def test_async_fail_record_is_reported_without_calling_the_handler() -> None:
    # GIVEN an async processor and a guard failing the second record
    class Guard(ob.Middleware):
        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            if record.index == 1:
                raise ob.FailRecord("guard", "too late")
            yield

    calls: list[str] = []

    async def handler(record: Any) -> None:
        calls.append(record.message_id)

    recorder = RecordingMiddleware()
    processor = ob.AsyncBatchProcessor(SQS, middleware=[recorder, Guard()])
    event = sqs_event(3)

    # WHEN processed
    response = ob.async_process_partial_response(event, handler, processor)

    # THEN the guarded record is reported and was never handled
    ids = [r["messageId"] for r in event["Records"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert sorted(calls) == sorted([ids[0], ids[2]])
    skipped = recorder.records()[1]
    assert (skipped.outcome, skipped.skip_reason, str(skipped.exc_info[1])) == (  # type: ignore[index]
        ob.Outcome.SKIPPED,
        "guard",
        "too late",
    )


# -- body_text: one rule per source, for every middleware that exports a body ---------------------------
def test_body_text_is_the_sqs_body() -> None:
    assert sources.body_text(EventType.SQS, {"body": "hello"}) == "hello"
    assert sources.body_text(EventType.SQS, {"body": None}) is None


def test_body_text_decodes_kinesis_and_kafka_payloads_and_keeps_non_base64_text() -> None:
    encoded = base64.b64encode(b'{"clicks": 3}').decode()
    assert sources.body_text(EventType.KinesisDataStreams, {"kinesis": {"data": encoded}}) == '{"clicks": 3}'
    assert sources.body_text(EventType.KinesisDataStreams, {"kinesis": {"data": "not base64!"}}) == "not base64!"
    assert sources.body_text(EventType.Kafka, {"value": encoded}) == '{"clicks": 3}'
    assert sources.body_text(EventType.Kafka, {}) is None


def test_body_text_of_a_dynamodb_change_is_the_new_image_or_the_keys_of_a_removal() -> None:
    change = {"Keys": {"pk": {"S": "o1"}}, "NewImage": {"pk": {"S": "o1"}, "n": {"N": "2"}}}
    assert sources.body_text(EventType.DynamoDBStreams, {"dynamodb": change}) == '{"pk":{"S":"o1"},"n":{"N":"2"}}'
    removal = {"Keys": {"pk": {"S": "o1"}}, "OldImage": {"pk": {"S": "o1"}}}
    assert sources.body_text(EventType.DynamoDBStreams, {"dynamodb": removal}) == '{"pk":{"S":"o1"}}'
    assert sources.body_text(EventType.DynamoDBStreams, {"dynamodb": {}}) is None


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "messageId": st.one_of(st.none(), st.text(max_size=5), st.integers()),
            "attributes": st.one_of(
                st.none(),
                st.text(max_size=3),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "ApproximateReceiveCount": st.one_of(
                            st.none(),
                            st.integers(-3, 9).map(str),
                            st.text(max_size=3),
                            st.integers(),
                            st.floats(allow_infinity=False),
                        ),
                        "MessageGroupId": st.one_of(st.none(), st.text(max_size=3), st.integers()),
                    },
                ),
            ),
        },
    )
)
def test_the_sqs_hot_path_reads_the_same_facts_as_the_accessors(raw: dict[str, Any]) -> None:
    # GIVEN any SQS record dict, odd attribute values included
    # WHEN its facts are read in one pass (the logging middleware's per-record path)
    message_id, receive_count, fifo_group = sources.sqs_facts(raw)
    # THEN they are the generic accessors' values
    identifier = sources.record_identifier(EventType.SQS, raw)
    assert message_id == (identifier if isinstance(identifier, str) else None)
    assert receive_count == sources.receive_count(raw)
    assert fifo_group == sources.fifo_group(raw)


_HEADER_VALUE = st.one_of(st.none(), st.text(max_size=3), st.integers())
_MESSAGE_ATTRIBUTE = st.one_of(
    _HEADER_VALUE, st.fixed_dictionaries({}, optional={"stringValue": _HEADER_VALUE, "dataType": st.just("String")})
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "messageAttributes": st.one_of(
                _HEADER_VALUE,
                st.lists(st.sampled_from(["traceparent", "tracestate"]), max_size=2),
                st.dictionaries(st.sampled_from(["traceparent", "tracestate", "other"]), _MESSAGE_ATTRIBUTE),
            ),
            "attributes": st.one_of(
                _HEADER_VALUE,
                st.dictionaries(st.sampled_from(["AWSTraceHeader", "ApproximateReceiveCount"]), _HEADER_VALUE),
            ),
        },
    )
)
def test_the_producer_headers_of_a_plain_dict_are_those_the_generic_reads_find(raw: dict[str, Any]) -> None:
    # GIVEN any SQS record dict, odd attribute values included
    # WHEN its producer trace headers are read (the plain-dict shortcut for records that carry none)
    headers = sources.producer_trace_headers(raw)
    # THEN they are what the generic reads find in the same record as a read-only mapping (no shortcut)
    assert headers == sources.producer_trace_headers(MappingProxyType(raw))
