"""Behaviour of the drop-in processors and the middleware chain."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import random
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt
from aws_lambda_powertools.utilities.batch.exceptions import UnexpectedBatchTypeError
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, Json
from record_hook import SkipsRecordHooks

import observed_batch as ob
from observed_batch.testing import (
    FakeLambdaContext,
    RecordingMiddleware,
    dynamodb_event,
    kafka_event,
    kinesis_event,
    sqs_event,
    sqs_fifo_event,
)


def fail_on(*indexes: int) -> Any:
    return lambda i: {"order_id": f"o{i}", "fail": i in indexes}


def handler(record: Any) -> str:
    payload = record.json_body
    if payload.get("fail"):
        raise ValueError(f"poison {payload['order_id']}")
    return payload["order_id"]


class Tagger(ob.Middleware):
    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        self.log.append(f"{self.label}>{record.index}")
        yield
        self.log.append(f"{self.label}<{record.index}")


class Guard(ob.Middleware):
    name = "guard"

    def __init__(self, fail_from: int, only: bool = False) -> None:
        self.fail_from = fail_from
        self.only = only

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        if record.index == self.fail_from or (record.index > self.fail_from and not self.only):
            raise ob.FailRecord("guard")
        yield


# -- drop-in ------------------------------------------------------------------------------------
def test_processors_are_powertools_processors() -> None:
    # GIVEN observed_batch processors
    processors = [ob.BatchProcessor(ob.EventType.SQS), ob.AsyncBatchProcessor(ob.EventType.SQS)]
    fifo = ob.SqsFifoPartialProcessor()

    # THEN code written against Powertools' classes keeps working
    for processor in [*processors, fifo]:
        assert isinstance(processor, pt.BasePartialProcessor)
    assert isinstance(fifo, pt.SqsFifoPartialProcessor)
    assert isinstance(fifo, pt.BatchProcessor)
    assert isinstance(fifo, ob.BatchProcessor)


def test_one_import_line_migration_returns_powertools_response() -> None:
    # GIVEN an event with one poison message
    event = sqs_event(4, body=fail_on(2))

    # WHEN processed with the same code against both imports
    expected = pt.process_partial_response(event, handler, pt.BatchProcessor(pt.EventType.SQS))
    actual = ob.process_partial_response(event, handler, ob.BatchProcessor(ob.EventType.SQS))

    # THEN the partial response is the same
    assert actual == expected == {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["messageId"]}]}


# -- chain ----------------------------------------------------------------------------------------
def test_chain_first_middleware_is_outermost() -> None:
    # GIVEN a chain of two middlewares
    log: list[str] = []
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Tagger("a", log), Tagger("b", log)])

    # WHEN two records are processed
    ob.process_partial_response(sqs_event(2), handler, processor)

    # THEN the first wraps the second around each record
    assert log == ["a>0", "b>0", "b<0", "a<0", "a>1", "b>1", "b<1", "a<1"]


def test_batch_hooks_run_exactly_once_per_invocation() -> None:
    # GIVEN a recording middleware
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])

    # WHEN two invocations run on the same processor
    ob.process_partial_response(sqs_event(3), handler, processor)
    ob.process_partial_response(sqs_event(2), handler, processor)

    # THEN each had one start, one end, and its own records
    phases = [event[0] for event in recorder.events]
    assert phases == ["start", *["enter", "exit"] * 3, "end", "start", *["enter", "exit"] * 2, "end"]
    first_end, second_end = (e for e in recorder.events if e[0] == "end")
    assert (first_end[2].successes, second_end[2].successes) == (3, 2)


def test_batch_end_runs_when_the_entire_batch_fails() -> None:
    # GIVEN every record failing
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])

    # WHEN processed
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(sqs_event(3, body=fail_on(0, 1, 2)), handler, processor)

    # THEN on_batch_end saw the counts and the error
    (_, _, summary) = recorder.events[-1]
    assert (summary.successes, summary.failures, summary.skipped) == (0, 3, 0)
    assert isinstance(summary.error, ob.BatchProcessingError)


def test_batch_end_runs_when_user_code_raises_inside_the_context_manager() -> None:
    # GIVEN user code that crashes after processing (outside the per-record handler)
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])

    # WHEN it raises inside the with block
    def crash_after_processing() -> None:
        with processor(sqs_event(2)["Records"], handler):
            processor.process()
            raise KeyError("boom")

    with pytest.raises(KeyError):
        crash_after_processing()

    # THEN the batch still ended once and knows why
    assert [e[0] for e in recorder.events].count("end") == 1
    assert isinstance(recorder.events[-1][2].error, KeyError)


def test_failure_outcome_carries_the_users_exception() -> None:
    # GIVEN a failing record
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])

    # WHEN processed
    ob.process_partial_response(sqs_event(2, body=fail_on(1)), handler, processor)

    # THEN the middleware sees success with the result, and failure with the original exception
    ok, bad = recorder.records()
    assert (ok.outcome, ok.result, ok.exc_info) == (ob.Outcome.SUCCESS, "o0", None)
    assert bad.outcome is ob.Outcome.FAILURE
    assert bad.exc_info is not None
    assert isinstance(bad.exc_info[1], ValueError)
    assert str(bad.exc_info[1]) == "poison o1"
    assert recorder.events[-1][2].failed_ids == [bad.identifier]
    assert ok.duration_ns > 0


def test_middleware_errors_are_contained_and_logged_once_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a middleware that raises before and after every record, and a recorder inside it
    class Broken(ob.Middleware):
        name = "broken"

        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            raise RuntimeError("telemetry down")
            yield  # pragma: no cover

    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Broken(), recorder])
    event = sqs_event(5, body=fail_on(3))

    # WHEN processed
    with caplog.at_level(logging.WARNING, logger="observed_batch"):
        response = ob.process_partial_response(event, handler, processor)

    # THEN outcomes are the core's, the recorder still ran, and the error is logged once with a count
    assert response == pt.process_partial_response(event, handler, pt.BatchProcessor(pt.EventType.SQS))
    assert len(recorder.records()) == 5
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "observed_batch middleware 'broken' failed in wrap_record; record outcomes are unaffected",
        "observed_batch middleware 'broken' failed 5 times in this batch",
    ]
    assert recorder.events[-1][2].middleware_errors == {"broken": 5}


def test_middleware_that_does_not_yield_is_reported() -> None:
    # GIVEN a middleware whose wrap_record returns without yielding
    class NoYield(ob.Middleware):
        name = "no_yield"

        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            return
            yield  # pragma: no cover

    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[NoYield(), recorder])

    # WHEN processed THEN the record is still processed and the error counted
    assert ob.process_partial_response(sqs_event(1), handler, processor) == {"batchItemFailures": []}
    assert recorder.events[-1][2].middleware_errors == {"no_yield": 1}


def test_middleware_that_yields_twice_is_closed_and_reported() -> None:
    # GIVEN a middleware yielding twice whose cleanup raises
    class Twice(ob.Middleware):
        name = "twice"

        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            try:
                yield
                yield
            finally:
                raise RuntimeError("cleanup failed")

    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder, Twice()])

    # WHEN processed THEN the record succeeds and both problems are counted
    assert ob.process_partial_response(sqs_event(1), handler, processor) == {"batchItemFailures": []}
    assert recorder.events[-1][2].middleware_errors == {"twice": 2}


def test_fail_record_skips_the_handler_and_reports_the_record() -> None:
    # GIVEN a guard failing records from index 2, inside a recorder
    recorder = RecordingMiddleware()
    calls: list[str] = []

    def counting_handler(record: Any) -> str:
        calls.append(record.message_id)
        return handler(record)

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder, Guard(fail_from=2)])
    event = sqs_event(4)

    # WHEN processed
    response = ob.process_partial_response(event, counting_handler, processor)

    # THEN skipped records are reported for retry, never reach the handler, and are marked skipped
    ids = [r["messageId"] for r in event["Records"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[2]}, {"itemIdentifier": ids[3]}]}
    assert calls == ids[:2]
    skipped = [r for r in recorder.records() if r.outcome is ob.Outcome.SKIPPED]
    assert [(r.index, r.skip_reason) for r in skipped] == [(2, "guard"), (3, "guard")]
    summary = recorder.events[-1][2]
    assert (summary.successes, summary.failures, summary.skipped, summary.failed_ids) == (2, 0, 2, [])


def test_fail_record_with_a_model_reports_records_that_do_not_validate() -> None:
    # GIVEN a pydantic model and a guard failing every record, one of which does not validate
    processor = ob.BatchProcessor(ob.EventType.SQS, model=OrderRecord, middleware=[Guard(fail_from=0)])
    event = sqs_event(2, body=lambda i: {"order_id": "o"} if i else {"order_id": "o", "amount": 1})

    # WHEN processed (entire batch failed)
    with pytest.raises(ob.BatchProcessingError) as raised:
        ob.process_partial_response(event, handler, processor)

    # THEN both were reported as FailRecord failures
    assert [type(c[1]) for c in raised.value.child_exceptions] == [ob.FailRecord, ob.FailRecord]


def test_fail_record_in_fifo_blocks_the_guarded_records_group_only() -> None:
    # GIVEN a FIFO processor skipping failed groups, groups a,b,a,b, and a guard failing only index 1 (b)
    recorder = RecordingMiddleware()
    processor = ob.SqsFifoPartialProcessor(skip_group_on_error=True, middleware=[recorder, Guard(1, only=True)])
    event = sqs_fifo_event(4, groups=["a", "b"])

    # WHEN processed
    response = ob.process_partial_response(event, handler, processor)

    # THEN group b is blocked from the guarded record on, group a carries on
    ids = [r["messageId"] for r in event["Records"]]
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[3]}]}
    assert [(r.outcome, r.skip_reason) for r in recorder.records()] == [
        (ob.Outcome.SUCCESS, None),
        (ob.Outcome.SKIPPED, "guard"),
        (ob.Outcome.SUCCESS, None),
        (ob.Outcome.SKIPPED, "fifo_short_circuit"),
    ]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_fail_record_reaches_a_failure_handler_override_as_the_exception_being_handled(asynchronous: bool) -> None:
    # GIVEN a subclass whose failure_handler reads sys.exc_info(), as Sentry's capture_exception() does
    seen: list[tuple[Any, Any]] = []

    class Reporting(ob.AsyncBatchProcessor if asynchronous else ob.BatchProcessor):  # type: ignore[misc]
        def failure_handler(self, record: Any, exception: Any) -> Any:
            seen.append((exception[1], sys.exc_info()[1]))
            return super().failure_handler(record, exception)

    processor = Reporting(ob.EventType.SQS, middleware=[Guard(fail_from=1)])

    async def async_handler(record: Any) -> str:
        return handler(record)

    # WHEN the guard fails the second record
    event = sqs_event(2)
    if asynchronous:
        ob.async_process_partial_response(event, async_handler, processor)
    else:
        ob.process_partial_response(event, handler, processor)

    # THEN the override got the FailRecord as its argument and as the exception being handled
    ((argument, handled),) = seen
    assert isinstance(argument, ob.FailRecord)
    assert handled is argument


def test_fifo_short_circuited_records_are_skipped_not_failed() -> None:
    # GIVEN a FIFO batch whose second record fails
    recorder = RecordingMiddleware()
    processor = ob.SqsFifoPartialProcessor(middleware=[recorder])
    event = sqs_fifo_event(4, body=fail_on(1))

    # WHEN processed
    ob.process_partial_response(event, handler, processor)

    # THEN the records after it are skipped with the FIFO reason
    outcomes = [(r.outcome, r.skip_reason) for r in recorder.records()]
    assert outcomes == [
        (ob.Outcome.SUCCESS, None),
        (ob.Outcome.FAILURE, None),
        (ob.Outcome.SKIPPED, "fifo_short_circuit"),
        (ob.Outcome.SKIPPED, "fifo_short_circuit"),
    ]
    summary = recorder.events[-1][2]
    assert (summary.successes, summary.failures, summary.skipped) == (1, 1, 2)


def test_base_exception_from_the_handler_propagates_after_middlewares_resume() -> None:
    # GIVEN a handler raising a BaseException that Powertools does not catch
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])

    def interrupting(record: Any) -> None:
        raise KeyboardInterrupt

    # WHEN processed THEN it propagates unchanged and the middleware saw a failure
    with pytest.raises(KeyboardInterrupt):
        ob.process_partial_response(sqs_event(1), interrupting, processor)
    assert recorder.records()[0].outcome is ob.Outcome.FAILURE
    assert [e[0] for e in recorder.events].count("end") == 1


def test_base_exception_from_an_async_handler_propagates_after_middlewares_resume() -> None:
    # GIVEN an async handler raising a BaseException
    recorder = RecordingMiddleware()
    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[recorder])

    async def interrupting(record: Any) -> None:
        raise SystemExit(3)

    # WHEN processed THEN it propagates and the record is marked failed
    with pytest.raises(SystemExit):
        ob.async_process_partial_response(sqs_event(1), interrupting, processor)
    assert recorder.records()[0].outcome is ob.Outcome.FAILURE


# -- context --------------------------------------------------------------------------------------
def test_lambda_context_is_injected_and_visible_to_middlewares() -> None:
    # GIVEN a handler asking for lambda_context
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])
    context = FakeLambdaContext(remaining_ms=5_000)
    seen: list[Any] = []

    def with_context(record: Any, lambda_context: Any) -> None:
        seen.append(lambda_context)

    # WHEN processed with a context
    ob.process_partial_response(sqs_event(1), with_context, processor, context)

    # THEN the handler got it, and the batch exposes it with the remaining time
    batch = recorder.events[0][1]
    assert seen == [context]
    assert batch.lambda_context is context
    assert 0 < (batch.remaining_time_ms() or 0) <= 5_000


def test_batch_without_lambda_context_has_no_remaining_time() -> None:
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])
    ob.process_partial_response(sqs_event(1), handler, processor)
    assert recorder.events[0][1].remaining_time_ms() is None


def test_processed_messages_are_available_as_in_powertools() -> None:
    # GIVEN the context-manager pattern from the Powertools docs
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[RecordingMiddleware()])
    records = sqs_event(3, body=fail_on(1))["Records"]

    # WHEN processing
    with processor(records=records, handler=handler) as entered:
        processed = entered.process()

    # THEN results and bookkeeping look exactly like Powertools'
    assert [status for status, *_ in processed] == ["success", "fail", "success"]
    assert processed[1][1] == "<class 'ValueError'>:poison o1"
    assert len(processor.success_messages) == 2
    assert len(processor.fail_messages) == len(processor.exceptions) == 1


def test_process_outside_a_context_manager_bypasses_the_chain() -> None:
    # GIVEN a processor used without `with` (no batch started)
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])
    processor(sqs_event(2)["Records"], handler)

    # WHEN processing THEN Powertools does the work and no half-batch is observed
    assert [status for status, *_ in processor.process()] == ["success", "success"]
    assert recorder.events == []


def test_record_context_exposes_source_facts() -> None:
    # GIVEN records from each source
    seen: dict[str, ob.RecordContext] = {}

    class Capture(ob.Middleware):
        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            yield
            seen[record.batch.messaging_system] = record

    def noop(record: Any) -> None:
        return None

    for event_type, event in [
        (ob.EventType.SQS, sqs_fifo_event(1, groups=["g1"])),
        (ob.EventType.KinesisDataStreams, kinesis_event(1)),
        (ob.EventType.DynamoDBStreams, dynamodb_event(1)),
    ]:
        ob.process_partial_response(event, noop, ob.BatchProcessor(event_type, middleware=[Capture()]))
    ob.process_partial_response(kafka_event(1), noop, ob.BatchProcessor(ob.EventType.Kafka, middleware=[Capture()]))

    # THEN identifiers, destinations and timestamps come from the right fields
    sqs, kinesis, ddb, kafka = seen["aws_sqs"], seen["aws_kinesis"], seen["aws_dynamodb"], seen["kafka"]
    assert (sqs.destination, sqs.batch.destination_kind, sqs.batch.is_fifo) == ("orders.fifo", "queue", True)
    assert (sqs.fifo_group, sqs.receive_count, sqs.sent_timestamp_ms) == ("g1", 1, 1_700_000_000_000.0)
    assert sqs.message_id == sqs.raw["messageId"]
    assert (kinesis.destination, kinesis.batch.destination_kind) == ("clickstream", "stream")
    assert kinesis.identifier == kinesis.raw["kinesis"]["sequenceNumber"]
    assert kinesis.sent_timestamp_ms == 1_700_000_000_000.0
    assert (ddb.destination, ddb.batch.destination_kind, ddb.batch.is_fifo) == ("Orders", "table", False)
    assert ddb.sent_timestamp_ms == 1_700_000_000_000.0
    assert (kafka.destination, kafka.batch.destination_kind) == ("orders", "topic")
    assert kafka.identifier == {"partition": "orders-0", "offset": 15}
    assert kafka.message_id == "orders-0@15"
    assert (kafka.receive_count, kafka.fifo_group, kafka.trace_headers) == (None, None, {})


def test_record_context_scratch_is_per_record() -> None:
    # GIVEN a middleware counting in scratch
    class Count(ob.Middleware):
        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            record.scratch["n"] = record.scratch.get("n", 0) + 1
            yield

    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder, Count()])

    # WHEN processed THEN no record sees another's state
    ob.process_partial_response(sqs_event(3), handler, processor)
    assert [r.scratch["n"] for r in recorder.records()] == [1, 1, 1]


class Order(BaseModel):
    order_id: str
    amount: int


class OrderRecord(SqsRecordModel):
    body: Json[Order]  # type: ignore[assignment]


def test_pydantic_model_records_and_validation_failures() -> None:
    # GIVEN a model, one valid and one invalid record
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, model=OrderRecord, middleware=[recorder])
    event = sqs_event(2, body=lambda i: {"order_id": "o", "amount": 1} if i == 0 else {"order_id": "o"})

    def model_handler(record: OrderRecord) -> int:
        return record.body.amount

    # WHEN processed
    response = ob.process_partial_response(event, model_handler, processor)

    # THEN the invalid one failed with the validation error, and record.record is the parsed model
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    ok, bad = recorder.records()
    assert isinstance(ok.record, OrderRecord)
    assert ok.result == 1
    assert bad.outcome is ob.Outcome.FAILURE
    assert type(bad.exc_info[1]).__name__ == "ValidationError"  # type: ignore[index]
    assert type(bad.record).__name__ == "SQSRecord"


def test_user_subclass_overriding_handlers_keeps_working() -> None:
    # GIVEN a subclass overriding success/failure handlers as the Powertools docs show
    seen: list[str] = []

    class MyProcessor(ob.BatchProcessor):
        def success_handler(self, record: Any, result: Any) -> Any:
            seen.append("success")
            return super().success_handler(record, result)

        def failure_handler(self, record: Any, exception: Any) -> Any:
            seen.append("failure")
            return super().failure_handler(record, exception)

    recorder = RecordingMiddleware()
    processor = MyProcessor(ob.EventType.SQS, middleware=[recorder])

    # WHEN processed
    ob.process_partial_response(sqs_event(2, body=fail_on(1)), handler, processor)

    # THEN both the overrides and the middleware saw each outcome
    assert seen == ["success", "failure"]
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.SUCCESS, ob.Outcome.FAILURE]


def test_legacy_decorators_still_work() -> None:
    # GIVEN the deprecated decorator API
    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])
    async_processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[recorder])

    async def async_handler(record: Any) -> str:
        return handler(record)

    @ob.batch_processor(record_handler=handler, processor=processor)
    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        return processor.response()

    @ob.async_batch_processor(record_handler=async_handler, processor=async_processor)
    def async_lambda_handler(event: dict[str, Any], context: Any) -> Any:
        return async_processor.response()

    # WHEN invoked
    event = sqs_event(2, body=fail_on(0))
    expected = {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}

    # THEN both return the partial response and ran the chain
    assert lambda_handler(event, FakeLambdaContext()) == expected
    assert async_lambda_handler(event, FakeLambdaContext()) == expected
    assert [e[0] for e in recorder.events].count("end") == 2


@pytest.mark.skipif(
    "logger" not in inspect.signature(pt.BatchProcessor.__init__).parameters,
    reason="this Powertools has no logger= argument (added after 3.26)",
)
def test_logger_argument_is_passed_to_powertools(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a processor with a logger (Powertools >= 3.x logs failed records with tracebacks)
    processor = ob.BatchProcessor(ob.EventType.SQS, logger=logging.getLogger("orders"))

    # WHEN a record fails
    with caplog.at_level(logging.WARNING, logger="orders"):
        ob.process_partial_response(sqs_event(2, body=fail_on(0)), handler, processor)

    # THEN Powertools used it
    assert [r.name for r in caplog.records] == ["orders"]


# -- async isolation ------------------------------------------------------------------------------
CURRENT_MESSAGE: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_message", default=None)


class BindsMessage(ob.Middleware):
    """Sets a contextvar around each record, like log binding or span activation."""

    name = "binds"

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        token = CURRENT_MESSAGE.set(record.message_id)
        record.scratch["bound"] = record.message_id
        yield
        record.scratch["seen_after"] = CURRENT_MESSAGE.get()
        CURRENT_MESSAGE.reset(token)


def test_async_records_overlap_without_sharing_context() -> None:
    # GIVEN records whose async handlers interleave (random sleeps) and read the bound contextvar
    rng = random.Random(7)
    delays = [rng.random() / 200 for _ in range(30)]
    recorder = RecordingMiddleware()
    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[recorder, BindsMessage()])
    mismatches: list[tuple[str, str | None]] = []
    active = 0
    max_active = 0

    async def slow(record: Any) -> None:
        nonlocal active, max_active
        active += 1
        max_active = max(max_active, active)
        for _ in range(3):
            await asyncio.sleep(delays[int(json.loads(record.body)["order_id"].split("-")[1])])
            if CURRENT_MESSAGE.get() != record.message_id:
                mismatches.append((record.message_id, CURRENT_MESSAGE.get()))
        active -= 1

    # WHEN processed concurrently
    ob.async_process_partial_response(sqs_event(30), slow, processor)

    # THEN records really overlapped, yet each saw only its own context, before and after its await
    assert max_active > 1
    assert mismatches == []
    assert all(r.scratch["seen_after"] == r.message_id for r in recorder.records())
    assert [r.index for r in recorder.records("enter")] == list(range(30))
    assert CURRENT_MESSAGE.get() is None


# -- bad input ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "event",
    [
        pytest.param({}, id="no Records"),
        pytest.param({"Records": {"messageId": "1"}}, id="Records not a list"),
        pytest.param({"Records": []}, id="empty Records"),
    ],
)
def test_malformed_events_raise_what_powertools_raises(event: dict[str, Any]) -> None:
    # GIVEN a malformed event WHEN processed by both
    with pytest.raises(UnexpectedBatchTypeError) as expected:
        pt.process_partial_response(event, handler, pt.BatchProcessor(pt.EventType.SQS))
    recorder = RecordingMiddleware()
    with pytest.raises(UnexpectedBatchTypeError) as actual:
        ob.process_partial_response(event, handler, ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder]))

    # THEN the same exception and message, and no batch was started
    assert str(actual.value) == str(expected.value)
    assert "Unexpected batch event type" in str(actual.value)
    assert recorder.events == []


def test_event_that_is_not_a_dict_raises_what_powertools_raises() -> None:
    with pytest.raises(ValueError) as expected:
        pt.process_partial_response("nope", handler, pt.BatchProcessor(pt.EventType.SQS))  # type: ignore[arg-type]
    with pytest.raises(ValueError) as actual:
        ob.process_partial_response("nope", handler, ob.BatchProcessor(ob.EventType.SQS))  # type: ignore[arg-type]
    assert str(actual.value) == str(expected.value)
    assert "Invalid event format" in str(actual.value)


@pytest.mark.parametrize(
    ("event_type", "event"),
    [
        pytest.param(ob.EventType.SQS, {"Records": [{"body": "x"}]}, id="sqs record without messageId"),
        pytest.param(ob.EventType.KinesisDataStreams, {"Records": [{"kinesis": {}}]}, id="kinesis without seq"),
        pytest.param(ob.EventType.KinesisDataStreams, sqs_event(2), id="sqs event to kinesis processor"),
        pytest.param(ob.EventType.DynamoDBStreams, kinesis_event(2), id="kinesis event to dynamodb processor"),
    ],
)
def test_records_without_identifiers_behave_as_powertools(event_type: ob.EventType, event: dict[str, Any]) -> None:
    # GIVEN records lacking the identifier field for the processor's source
    def crash(record: Any) -> None:
        raise ValueError("cannot handle")

    # WHEN both process them
    def outcome(module: Any, **extra: Any) -> tuple[str, str]:
        try:
            processor = module.BatchProcessor(event_type, **extra)
            return ("ok", repr(module.process_partial_response(event, crash, processor)))
        except Exception as exc:
            return (type(exc).__name__, getattr(exc, "msg", str(exc)))

    # THEN the same exception type and message (or the same response)
    assert outcome(ob, middleware=[RecordingMiddleware()]) == outcome(pt)


def test_without_middleware_records_run_exactly_powertools_code() -> None:
    # GIVEN processors with no middleware
    sync = ob.BatchProcessor(ob.EventType.SQS)
    fifo = ob.SqsFifoPartialProcessor()
    asynchronous = ob.AsyncBatchProcessor(ob.EventType.SQS)

    # THEN their per-record and per-batch methods are Powertools' own
    assert sync._process_record.__func__ is pt.BatchProcessor._process_record  # type: ignore[attr-defined]
    assert fifo._process_record.__func__ is pt.SqsFifoPartialProcessor._process_record  # type: ignore[attr-defined]
    assert fifo._clean.__func__ is pt.SqsFifoPartialProcessor._clean  # type: ignore[attr-defined]
    assert asynchronous._async_process_record.__func__ is pt.AsyncBatchProcessor._async_process_record  # type: ignore[attr-defined]
    assert asynchronous.failure_handler.__func__ is pt.AsyncBatchProcessor.failure_handler  # type: ignore[attr-defined]


def test_without_middleware_user_overrides_are_kept() -> None:
    # GIVEN a user subclass overriding the per-record method
    seen: list[str] = []

    class Custom(ob.BatchProcessor):
        def _process_record(self, record: dict[str, Any]) -> Any:
            seen.append(record["messageId"])
            return super()._process_record(record)

    # WHEN processed without middleware THEN the override still runs
    event = sqs_event(2)
    ob.process_partial_response(event, handler, Custom(ob.EventType.SQS))
    assert seen == [r["messageId"] for r in event["Records"]]


# -- opting out of a batch's records --------------------------------------------------------------
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_middleware_that_skips_record_hooks_still_gets_an_exact_summary(asynchronous: bool) -> None:
    # GIVEN a middleware that opts out of the records of every batch, and a batch with 2 of 5 failing
    opted_out = SkipsRecordHooks()
    event = sqs_event(5, body=fail_on(1, 3))
    ids = [record["messageId"] for record in event["Records"]]

    # WHEN processed
    if asynchronous:

        async def async_handler(record: Any) -> str:
            return handler(record)

        processor: Any = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[opted_out])
        response = ob.async_process_partial_response(event, async_handler, processor)
    else:
        processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[opted_out])
        response = ob.process_partial_response(event, handler, processor)

    # THEN its wrap_record never ran, the response is Powertools', and the summary counts every record
    assert opted_out.wrapped == 0
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[3]}]}
    (summary,) = opted_out.summaries
    assert (summary.successes, summary.failures, summary.skipped) == (3, 2, 0)
    assert summary.failed_ids == [ids[1], ids[3]]


def test_skipping_record_hooks_keeps_fifo_short_circuits_as_skipped() -> None:
    # GIVEN a FIFO batch whose second record fails, and a middleware that skips the records
    opted_out = SkipsRecordHooks()
    processor = ob.SqsFifoPartialProcessor(middleware=[opted_out])

    # WHEN processed
    ob.process_partial_response(sqs_fifo_event(4, body=fail_on(1)), handler, processor)

    # THEN the short-circuited records count as skipped, not as failures
    (summary,) = opted_out.summaries
    assert (summary.successes, summary.failures, summary.skipped) == (1, 1, 2)


def test_only_the_middleware_that_skips_is_left_out() -> None:
    # GIVEN one middleware skipping the records and one wrapping them
    opted_out, recorder = SkipsRecordHooks(), RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[opted_out, recorder])

    # WHEN a batch is processed
    ob.process_partial_response(sqs_event(3, body=fail_on(0)), handler, processor)

    # THEN the other middleware still saw every record, with outcomes
    assert opted_out.wrapped == 0
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.FAILURE, ob.Outcome.SUCCESS, ob.Outcome.SUCCESS]
    assert opted_out.summaries[0].failures == 1


def test_skip_record_hooks_is_refused_once_records_started(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a middleware that tries to leave the chain from inside a record
    class LateLeaver(ob.Middleware):
        name = "late_leaver"

        def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
            record.batch.skip_record_hooks(self)
            yield

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[LateLeaver()])

    # WHEN a batch is processed
    with caplog.at_level(logging.WARNING, logger="observed_batch"):
        response = ob.process_partial_response(sqs_event(2, body=fail_on(1)), handler, processor)

    # THEN the error is contained and logged once, and outcomes are Powertools'
    assert len(response["batchItemFailures"]) == 1
    first, repeated = (r for r in caplog.records if "late_leaver" in r.getMessage())
    assert first.getMessage().endswith("failed in wrap_record; record outcomes are unaffected")
    assert first.exc_info is not None
    assert "before the first record starts" in str(first.exc_info[1])
    assert repeated.getMessage() == "observed_batch middleware 'late_leaver' failed 2 times in this batch"


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_base_exception_with_every_hook_skipped_propagates_and_is_counted(asynchronous: bool) -> None:
    # GIVEN only a middleware that skips the records, and a handler raising past Powertools
    opted_out = SkipsRecordHooks()

    def interrupting(record: Any) -> None:
        raise KeyboardInterrupt

    async def async_interrupting(record: Any) -> None:
        raise KeyboardInterrupt

    if asynchronous:
        processor: Any = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[opted_out])
        run = lambda: ob.async_process_partial_response(sqs_event(1), async_interrupting, processor)  # noqa: E731
    else:
        processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[opted_out])
        run = lambda: ob.process_partial_response(sqs_event(1), interrupting, processor)  # noqa: E731

    # WHEN processed THEN the interrupt propagates unchanged, and the batch end counted the record failed
    with pytest.raises(KeyboardInterrupt):
        run()
    (summary,) = opted_out.summaries
    assert summary.failures == 1
