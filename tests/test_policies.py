"""Policy middlewares: the chain's resolve contract, retry_policy and stop_on_failure (fast, in memory)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from fake_sqs import FakeSqs

import observed_batch as ob
from observed_batch.middleware import RetryPolicyMiddleware, StopOnFailureMiddleware
from observed_batch.testing import (
    FakeLambdaContext,
    RecordingMiddleware,
    kafka_event,
    kinesis_event,
    sqs_event,
    sqs_fifo_event,
)


class Poison(Exception):
    """Non-retryable in these tests."""


def _ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def _failing(poison: set[int], transient: set[int] = frozenset()) -> Any:  # type: ignore[assignment]
    def record_handler(record: Any) -> Any:
        index = json.loads(record.body)["amount"] - 10
        if index in poison:
            raise Poison(f"invalid order {index}")
        if index in transient:
            raise TimeoutError("try again")
        return index

    return record_handler


def _retry(sqs: FakeSqs, **options: Any) -> RetryPolicyMiddleware:
    return RetryPolicyMiddleware(non_retryable=[Poison], sqs_client=sqs, **options)


# -- the chain's contract -----------------------------------------------------------------------------
class _Telemetry(ob.Middleware):
    name = "sneaky"

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        yield
        record.resolve(self, "dropped")


def test_a_middleware_that_is_no_policy_cannot_resolve(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a telemetry middleware that tries to resolve every failure
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_Telemetry()], raise_on_entire_batch_failure=False)
    event = sqs_event(3)

    # WHEN every record fails
    with caplog.at_level(logging.WARNING, logger="observed_batch"):
        response = ob.process_partial_response(event, _failing({0, 1, 2}), processor)

    # THEN the response is Powertools' and the refusal is logged once
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == _ids(event)
    assert sum("'sneaky' failed in resolve" in r.getMessage() for r in caplog.records) == 1


class _Policy(ob.Middleware):
    name = "policy"
    policy = True

    def __init__(self) -> None:
        self.answers: list[bool] = []

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        yield
        self.answers.append(record.resolve(self, "dropped"))
        if record.resolution is not None:
            self.answers.append(record.resolve(self, "dropped"))


def test_resolve_accepts_only_failures_once() -> None:
    # GIVEN a policy resolving every record WHEN one of two records fails
    policy = _Policy()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[policy])
    response = ob.process_partial_response(sqs_event(2), _failing({1}), processor)

    # THEN the success is refused, the failure resolved once, and nothing is reported
    assert policy.answers == [False, True, False]
    assert response == {"batchItemFailures": []}
    assert processor.exceptions == []
    assert processor.fail_messages == []


def test_resolve_rejects_unknown_resolutions() -> None:
    class Wrong(_Policy):
        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            yield
            record.resolve(self, "forgotten")

    # GIVEN / WHEN a policy resolves with an unknown word THEN the chain contains the error: outcome unchanged
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Wrong()], raise_on_entire_batch_failure=False)
    assert len(ob.process_partial_response(sqs_event(1), _failing({0}), processor)["batchItemFailures"]) == 1


def test_every_resolved_failure_means_no_entire_batch_failure() -> None:
    # GIVEN every record failing non-retryably WHEN all are dead-lettered
    sqs = FakeSqs()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs)])

    # THEN Powertools does not raise (nothing is reported failed)
    assert ob.process_partial_response(sqs_event(3), _failing({0, 1, 2}), processor) == {"batchItemFailures": []}
    assert len(sqs.sent) == 3


def test_some_resolved_in_an_all_failed_batch_is_a_partial_failure() -> None:
    # GIVEN a batch whose records all fail, one of them non-retryably
    sqs = FakeSqs()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs)])
    event = sqs_event(3)

    # WHEN processed THEN the dead-lettered one is not delivered again: a partial response, no raise
    response = ob.process_partial_response(event, _failing({0}, {1, 2}), processor)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == _ids(event)[1:]
    assert [type(e[1]) for e in processor.exceptions] == [TimeoutError, TimeoutError]


def test_an_all_failed_batch_with_nothing_resolved_still_raises() -> None:
    # GIVEN the DLQ send failing WHEN every record fails THEN Powertools raises as usual
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(FakeSqs(fail_sends=True))])
    with pytest.raises(BatchProcessingError):
        ob.process_partial_response(sqs_event(2), _failing({0, 1}), processor)


# -- retry_policy: dead_letter ----------------------------------------------------------------------------
def test_poison_copy_goes_to_the_redrive_target_with_error_attributes() -> None:
    # GIVEN a record with a message attribute that fails non-retryably
    sqs = FakeSqs()
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder, _retry(sqs)])
    event = sqs_event(2, receive_count=2)
    event["Records"][0]["messageAttributes"] = {
        "tenant": {"stringValue": "acme", "dataType": "String"},
        "blob": {"binaryValue": "AAE=", "dataType": "Binary"},
    }

    # WHEN processed
    response = ob.process_partial_response(event, _failing({0}), processor)

    # THEN the copy keeps body and attributes, adds ours, and the record is resolved for every middleware
    assert response == {"batchItemFailures": []}
    (copy,) = sqs.sent
    assert copy["QueueUrl"].endswith("/123456789012/orders-dlq")
    assert copy["MessageBody"] == event["Records"][0]["body"]
    attributes = copy["MessageAttributes"]
    assert attributes["tenant"] == {"DataType": "String", "StringValue": "acme"}
    assert attributes["blob"] == {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    assert attributes["observed_batch.error_type"]["StringValue"] == f"{__name__}.Poison"
    assert attributes["observed_batch.error_message"]["StringValue"] == "invalid order 0"
    assert attributes["observed_batch.source_queue"]["StringValue"] == "orders"
    assert attributes["observed_batch.original_message_id"]["StringValue"] == _ids(event)[0]
    assert attributes["observed_batch.receive_count"] == {"DataType": "Number", "StringValue": "2"}
    assert "MessageGroupId" not in copy
    first = recorder.records()[0]
    assert first.outcome is ob.Outcome.FAILURE
    assert first.resolution == "dead_lettered"
    summary = recorder.events[-1][2]
    assert (summary.failures, summary.dead_lettered, summary.dropped, summary.reported) == (1, 1, 0, 0)


def test_the_dead_letter_queue_is_looked_up_once() -> None:
    # GIVEN one middleware instance WHEN two batches dead-letter records
    sqs = FakeSqs()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs)])
    for _ in range(2):
        ob.process_partial_response(sqs_event(2), _failing({0}), processor)

    # THEN the redrive policy was read once
    assert sqs.calls.count("get_queue_attributes") == 1
    assert sqs.calls.count("send_message") == 2


def test_our_attributes_fill_only_the_free_slots() -> None:
    # GIVEN a record already carrying 8 message attributes
    sqs = FakeSqs()
    event = sqs_event(1)
    event["Records"][0]["messageAttributes"] = {f"a{i}": {"stringValue": "x", "dataType": "String"} for i in range(8)}
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs)])

    # WHEN dead-lettered THEN SQS's limit of 10 holds, the error type and original id first
    ob.process_partial_response(event, _failing({0}), processor)
    names = list(sqs.sent[0]["MessageAttributes"])
    assert len(names) == 10
    assert names[-2:] == ["observed_batch.error_type", "observed_batch.original_message_id"]


@pytest.mark.parametrize("sqs", [FakeSqs(fail_sends=True), FakeSqs(redrive=False)], ids=["send fails", "no DLQ"])
def test_a_record_whose_copy_was_not_accepted_stays_a_failure(sqs: FakeSqs) -> None:
    # GIVEN a send that fails, or a queue with no DLQ WHEN a poison record fails
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs)])
    event = sqs_event(2)
    response = ob.process_partial_response(event, _failing({0}), processor)

    # THEN it is reported failed, as without the policy
    assert response == {"batchItemFailures": [{"itemIdentifier": _ids(event)[0]}]}


def test_a_response_without_message_id_is_not_an_acceptance() -> None:
    class Silent(FakeSqs):
        def send_message(self, **message: Any) -> dict[str, Any]:
            return {}

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(Silent())])
    assert len(ob.process_partial_response(sqs_event(2), _failing({0}), processor)["batchItemFailures"]) == 1


def test_no_send_without_time_for_it() -> None:
    # GIVEN less time left than the deadline reserve plus one SQS call
    sqs = FakeSqs()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs, timeout_ms=1000)])

    # WHEN a poison record fails THEN nothing is sent and it stays a failure
    response = ob.process_partial_response(sqs_event(2), _failing({0}), processor, FakeLambdaContext(1200))
    assert len(response["batchItemFailures"]) == 1
    assert sqs.sent == []


def test_explicit_dead_letter_queue_url_wins() -> None:
    sqs = FakeSqs()
    url = "https://sqs.eu-west-1.amazonaws.com/123456789012/elsewhere"
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs, dead_letter_queue_url=url)])
    ob.process_partial_response(sqs_event(1), _failing({0}), processor)
    assert sqs.sent[0]["QueueUrl"] == url
    assert "get_queue_attributes" not in sqs.calls


def test_fifo_copy_keeps_the_group_and_a_deduplication_id_and_short_circuited_records_stay_reported() -> None:
    # GIVEN a FIFO queue whose DLQ is FIFO, and its first record poison
    sqs = FakeSqs(dlq_arn="arn:aws:sqs:eu-west-1:123456789012:orders-dlq.fifo")
    processor = ob.SqsFifoPartialProcessor(middleware=[_retry(sqs)])
    event = sqs_fifo_event(3)

    # WHEN processed
    response = ob.process_partial_response(event, _failing({0}), processor)

    # THEN the copy carries the group and a dedup id; the short-circuited records come back in order
    (copy,) = sqs.sent
    assert copy["MessageGroupId"] == "group-a"
    assert len(copy["MessageDeduplicationId"]) == 64
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == _ids(event)[1:]


def test_pydantic_errors_leave_the_input_values_out() -> None:
    from pydantic import BaseModel, ValidationError

    from observed_batch.middleware._sqs_policy import error_text

    class Order(BaseModel):
        amount: int

    # GIVEN a validation error about a secret value WHEN turned into the copy's message
    with pytest.raises(ValidationError) as raised:
        Order.model_validate({"amount": "card 4111-1111"})
    text = error_text(raised.value)

    # THEN it names the field and the problem, not the value
    assert "amount" in text
    assert "4111" not in text
    assert error_text(ValueError("x" * 400)).endswith("…")
    assert len(error_text(ValueError("x" * 400))) == 256


def test_async_processor_dead_letters_too() -> None:
    sqs = FakeSqs()
    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[_retry(sqs)])

    async def record_handler(record: Any) -> Any:
        await asyncio.sleep(0)
        return _failing({1})(record)

    event = sqs_event(3)
    assert ob.async_process_partial_response(event, record_handler, processor) == {"batchItemFailures": []}
    assert [c["MessageAttributes"]["observed_batch.original_message_id"]["StringValue"] for c in sqs.sent] == [
        _ids(event)[1]
    ]


# -- retry_policy: drop, backoff, configuration ------------------------------------------------------------
def test_drop_resolves_without_sending_and_works_on_streams(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN drop on a Kinesis processor
    recorder = RecordingMiddleware()
    middleware = RetryPolicyMiddleware(non_retryable="json.JSONDecodeError", on_non_retryable="drop")
    processor = ob.BatchProcessor(ob.EventType.KinesisDataStreams, middleware=[recorder, middleware])

    def record_handler(record: Any) -> Any:
        return json.loads("not json")

    # WHEN every record fails THEN none is reported, each counted and logged
    with caplog.at_level(logging.WARNING, logger="observed_batch.retry_policy"):
        assert ob.process_partial_response(kinesis_event(2), record_handler, processor) == {"batchItemFailures": []}
    assert recorder.events[-1][2].dropped == 2
    assert sum("dropped record" in r.getMessage() for r in caplog.records) == 2


def test_backoff_sets_visibility_by_receive_count_in_batches_of_ten() -> None:
    # GIVEN backoff with the jitter pinned to its cap, and 12 transient failures on their 3rd receive
    sqs = FakeSqs()
    policy = _retry(sqs, backoff_base_s=2, backoff_max_s=7, jitter=lambda cap: cap)
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[policy], raise_on_entire_batch_failure=False)
    event = sqs_event(13, receive_count=3)

    # WHEN processed (record 0 poison: dead-lettered, no backoff)
    ob.process_partial_response(event, _failing({0}, set(range(1, 13))), processor)

    # THEN two calls: min(7, 2 * 2**2) = 7 s for each retried record, none for the resolved one
    assert [len(call["Entries"]) for call in sqs.visibility] == [10, 2]
    entries = [entry for call in sqs.visibility for entry in call["Entries"]]
    assert {entry["VisibilityTimeout"] for entry in entries} == {7}
    handles = {r["receiptHandle"] for r in event["Records"][1:]}
    assert {entry["ReceiptHandle"] for entry in entries} == handles
    assert sqs.visibility[0]["QueueUrl"].endswith("/orders")


def test_backoff_failures_change_nothing(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeSqs):
        def change_message_visibility_batch(self, **request: Any) -> dict[str, Any]:
            raise ConnectionError("down")

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[_retry(Broken(), backoff_base_s=1)])
    event = sqs_event(2)
    with caplog.at_level(logging.WARNING, logger="observed_batch.retry_policy"):
        response = ob.process_partial_response(event, _failing(set(), {0}), processor)
    assert response == {"batchItemFailures": [{"itemIdentifier": _ids(event)[0]}]}
    assert any("ChangeMessageVisibilityBatch failed" in r.getMessage() for r in caplog.records)


def test_full_jitter_stays_within_the_cap() -> None:
    policy = RetryPolicyMiddleware(backoff_base_s=1, backoff_max_s=60)
    assert all(0 <= policy.delay_s(receive_count) <= 60 for receive_count in (1, 3, 10, 500))


def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the policy configured by environment only
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "retry_policy")
    monkeypatch.setenv("OBSERVED_BATCH_RETRY_POLICY_NON_RETRYABLE", "json.JSONDecodeError, pydantic.ValidationError")
    monkeypatch.setenv("OBSERVED_BATCH_RETRY_POLICY_ON_NON_RETRYABLE", "drop")

    # WHEN a processor is built THEN the names resolved to the classes
    (policy,) = ob.BatchProcessor(ob.EventType.SQS).middlewares
    import pydantic

    assert policy.non_retryable == (json.JSONDecodeError, pydantic.ValidationError)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("NON_RETRYABLE", "orders.errors.Nope", "cannot import 'orders.errors.Nope'"),
        ("NON_RETRYABLE", "json.dumps", "is not an exception class"),
        ("NON_RETRYABLE", "json.NoSuchThing", "cannot import 'json.NoSuchThing'"),
        ("ON_NON_RETRYABLE", "ignore", "is not one of: dead_letter, drop"),
        ("BACKOFF_BASE_S", "-1", "must not be negative"),
        ("BACKOFF_MAXX_S", "1", "did you mean OBSERVED_BATCH_RETRY_POLICY_BACKOFF_MAX_S"),
    ],
)
def test_bad_options_fail_at_cold_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "retry_policy")
    monkeypatch.setenv(f"OBSERVED_BATCH_RETRY_POLICY_{variable}", value)
    with pytest.raises(ob.ConfigError, match=message):
        ob.BatchProcessor(ob.EventType.SQS)


@pytest.mark.parametrize(
    "options",
    [
        {"on_non_retryable": "keep"},
        {"backoff_base_s": 10, "backoff_max_s": 5},
        {"backoff_max_s": 50_000},
        {"timeout_ms": 0},
    ],
)
def test_bad_options_in_code_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ob.ConfigError):
        RetryPolicyMiddleware(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [({"non_retryable": [Poison]}, "needs an SQS source"), ({"backoff_base_s": 1}, "is for SQS")],
)
def test_sqs_only_features_are_refused_for_streams(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ob.ConfigError, match=message):
        ob.BatchProcessor(ob.EventType.DynamoDBStreams, middleware=[RetryPolicyMiddleware(**options)])


def test_nothing_configured_costs_nothing_per_record() -> None:
    # GIVEN retry_policy with neither non_retryable nor backoff WHEN a batch runs THEN its hook is skipped
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=["retry_policy"])
    seen: list[int] = []

    def record_handler(record: Any) -> Any:
        seen.append(len(processor._ob_batch._steps))  # type: ignore[union-attr]

    ob.process_partial_response(sqs_event(2), record_handler, processor)
    assert seen == [0, 0]


def test_retry_policy_needs_boto3_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from observed_batch import config

    monkeypatch.setattr(config, "_importable", lambda package: package != "boto3")
    with pytest.raises(ob.ConfigError, match=r"observed-batch\[policies\]"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["retry_policy"])


def test_default_client_is_built_lazily_for_the_queue_region(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    built: list[dict[str, Any]] = []

    def client(service: str, **kwargs: Any) -> FakeSqs:
        built.append({"service": service, **kwargs})
        return FakeSqs()

    monkeypatch.setattr(boto3, "client", client)
    policy = RetryPolicyMiddleware(non_retryable=[Poison])
    assert built == []
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[policy])
    ob.process_partial_response(sqs_event(1), _failing({0}), processor)
    assert [(b["service"], b["region_name"]) for b in built] == [("sqs", "us-east-1")]


# -- stop_on_failure --------------------------------------------------------------------------------------
def _sequence_numbers(event: dict[str, Any]) -> list[str]:
    return [record["kinesis"]["sequenceNumber"] for record in event["Records"]]


def test_stop_on_failure_hands_back_the_rest_unrun() -> None:
    # GIVEN a Kinesis batch whose second record fails
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.KinesisDataStreams, middleware=[recorder, "stop_on_failure"])
    event = kinesis_event(5)
    handled: list[str] = []

    def record_handler(record: Any) -> Any:
        handled.append(record.kinesis.sequence_number)
        if len(handled) == 2:
            raise RuntimeError("downstream")

    # WHEN processed
    response = ob.process_partial_response(event, record_handler, processor)

    # THEN the records after it were not run, are reported, and seen as skipped with the reason
    sequences = _sequence_numbers(event)
    assert handled == sequences[:2]
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == sequences[1:]
    skipped = recorder.records()[2]
    assert (skipped.outcome, skipped.skip_reason) == (ob.Outcome.SKIPPED, "stop_on_failure")
    summary = recorder.events[-1][2]
    assert (summary.failures, summary.skipped) == (1, 3)


def test_stop_on_failure_is_refused_for_sqs_at_construction() -> None:
    with pytest.raises(ob.ConfigError, match="SQS retries each message on its own"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["stop_on_failure"])
    with pytest.raises(ob.ConfigError, match="scope"):
        StopOnFailureMiddleware(scope="shard")  # type: ignore[arg-type]


def test_a_dropped_failure_does_not_stop_the_batch() -> None:
    # GIVEN stop_on_failure before retry_policy(drop) WHEN the first record fails non-retryably
    middleware = [StopOnFailureMiddleware(), RetryPolicyMiddleware(non_retryable=[Poison], on_non_retryable="drop")]
    processor = ob.BatchProcessor(ob.EventType.DynamoDBStreams, middleware=middleware)
    handled: list[int] = []

    def record_handler(record: Any) -> Any:
        handled.append(1)
        if len(handled) == 1:
            raise Poison("never valid")

    # THEN the rest runs and nothing is reported
    from observed_batch.testing import dynamodb_event

    assert ob.process_partial_response(dynamodb_event(3), record_handler, processor) == {"batchItemFailures": []}
    assert len(handled) == 3


def test_kafka_partition_scope_stops_only_the_failed_partition() -> None:
    # GIVEN two partitions interleaved, the first record (partition 0) failing
    event = kafka_event(6, partitions=2)
    processor = ob.BatchProcessor(ob.EventType.Kafka, middleware=["stop_on_failure"])
    handled: list[tuple[int, int]] = []

    def record_handler(record: Any) -> Any:
        handled.append((record.partition, record.offset))
        if len(handled) == 1:
            raise RuntimeError("broker")

    response = ob.process_partial_response(event, record_handler, processor)

    # THEN every record of the other partition ran; the failed partition's later ones did not
    first_partition = handled[0][0]
    reported = {
        (f["itemIdentifier"]["partition"], f["itemIdentifier"]["offset"]) for f in response["batchItemFailures"]
    }
    assert all(partition != first_partition for partition, _ in handled[1:])
    assert all(partition.endswith(f"-{first_partition}") for partition, _ in reported)
    assert len(handled) + len(reported) - 1 == 6


def test_batch_scope_stops_every_partition() -> None:
    # GIVEN scope=batch on a two-partition Kafka batch WHEN its first record fails
    processor = ob.BatchProcessor(
        ob.EventType.Kafka, middleware=[StopOnFailureMiddleware(scope="batch")], raise_on_entire_batch_failure=False
    )
    handled: list[int] = []

    def first_fails(record: Any) -> Any:
        handled.append(1)
        if len(handled) == 1:
            raise RuntimeError("broker")

    stopped = ob.process_partial_response(kafka_event(4, partitions=2), first_fails, processor)

    # THEN nothing else ran
    assert len(handled) == 1
    assert len(stopped["batchItemFailures"]) == 4


def test_stop_on_failure_with_the_timeout_guard() -> None:
    # GIVEN both policies that hand back the rest of a batch WHEN a record fails early
    processor = ob.BatchProcessor(ob.EventType.KinesisDataStreams, middleware=["timeout_guard", "stop_on_failure"])
    handled: list[int] = []

    def record_handler(record: Any) -> Any:
        handled.append(1)
        raise RuntimeError("first")

    # THEN the first failure stops the batch; the guard (plenty of time) never trips
    with pytest.raises(BatchProcessingError):
        ob.process_partial_response(kinesis_event(3), record_handler, processor, FakeLambdaContext(60_000))
    assert handled == [1]


def test_custom_processor_learns_its_source_and_refuses_sqs_at_batch_start() -> None:
    class Mine(ob.BasePartialProcessor):
        def _prepare(self) -> None: ...
        def _clean(self) -> None: ...
        def _process_record(self, record: dict[str, Any]) -> Any:
            return self.success_handler(record, self.handler(record))

        async def _async_process_record(self, record: dict[str, Any]) -> Any: ...

    processor = Mine(middleware=["stop_on_failure"])
    with pytest.raises(ob.ConfigError, match="stop_on_failure"), processor(sqs_event(1)["Records"], lambda r: r):
        pass
    with processor(kinesis_event(1)["Records"], lambda r: r):
        assert processor.process()


def test_custom_batch_processor_resolutions_reach_its_bookkeeping() -> None:
    # GIVEN a custom processor written the documented Powertools way, with retry_policy
    class Mine(ob.BasePartialBatchProcessor):
        def _process_record(self, record: dict[str, Any]) -> Any:
            try:
                return self.success_handler(record, self.handler(record))
            except Exception:
                return self.failure_handler(record, sys.exc_info())

        async def _async_process_record(self, record: dict[str, Any]) -> Any:
            raise NotImplementedError

    sqs = FakeSqs()
    processor = Mine(ob.EventType.SQS, middleware=[_retry(sqs)])
    event = sqs_event(2)

    # WHEN one record fails non-retryably THEN its own response leaves it out
    with processor(event["Records"], lambda record: _failing({0})(_Body(record))):
        processor.process()
    assert processor.response() == {"batchItemFailures": []}
    assert len(sqs.sent) == 1


class _Body:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.body = raw["body"]


def test_an_override_that_hides_the_failure_keeps_it_reported(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a failure_handler override that breaks Powertools' bookkeeping (two entries per failure)
    class Hiding(ob.BatchProcessor):
        def failure_handler(self, record: Any, exception: Any) -> Any:
            entry = super().failure_handler(record, exception)
            self.fail_messages.append(record)
            return entry

    processor = Hiding(ob.EventType.SQS, middleware=[_retry(FakeSqs())], raise_on_entire_batch_failure=False)
    with caplog.at_level(logging.ERROR, logger="observed_batch"):
        response = ob.process_partial_response(sqs_event(1), _failing({0}), processor)
    # WHEN the policy resolves the record THEN it stays reported, and the mismatch is logged
    assert len(response["batchItemFailures"]) == 2
    assert any("stays in batchItemFailures" in r.getMessage() for r in caplog.records)
