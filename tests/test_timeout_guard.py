"""timeout_guard: records the batch has no time left for are failed without running, and come back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor as PowertoolsFifoProcessor
from aws_lambda_powertools.utilities.batch import process_partial_response as powertools_process_partial_response
from record_hook import counting_record_hooks

from observed_batch import (
    AsyncBatchProcessor,
    BatchProcessingError,
    BatchProcessor,
    ConfigError,
    EventType,
    Middleware,
    Outcome,
    RecordContext,
    SqsFifoPartialProcessor,
    async_process_partial_response,
    process_partial_response,
)
from observed_batch.middleware import TimeoutGuardMiddleware
from observed_batch.testing import (
    FakeLambdaContext,
    RecordingMiddleware,
    dynamodb_event,
    kafka_event,
    kinesis_event,
    sqs_event,
    sqs_fifo_event,
)


class ScriptedTime:
    """One fake clock drives both the Lambda deadline and the guard's record durations."""

    def __init__(self, budget_ms: int) -> None:
        self.budget_ms = budget_ms
        self.now_ms = 0.0

    def advance(self, ms: float) -> None:
        self.now_ms += ms

    def remaining(self) -> int:
        return int(self.budget_ms - self.now_ms)

    def clock(self) -> float:
        return self.now_ms / 1000.0

    def context(self) -> FakeLambdaContext:
        return FakeLambdaContext(remaining=self.remaining)

    def guard(self, **options: Any) -> TimeoutGuardMiddleware:
        return TimeoutGuardMiddleware(clock=self.clock, **options)


def slow_handler(time: ScriptedTime, step_ms: float, calls: list[Any]) -> Callable[[Any], str]:
    def handler(record: Any) -> str:
        calls.append(getattr(record, "message_id", None))
        time.advance(step_ms)
        return "ok"

    return handler


def ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def failures(identifiers: list[Any]) -> dict[str, Any]:
    return {"batchItemFailures": [{"itemIdentifier": identifier} for identifier in identifiers]}


# -- the margin ------------------------------------------------------------------------------------
def test_records_due_below_the_margin_are_failed_without_calling_the_handler() -> None:
    # GIVEN a 10 s budget, records taking 3 s each, and the default 2 s margin (no estimate)
    time, calls = ScriptedTime(10_000), []
    event = sqs_event(5)
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 3000, calls), processor, time.context())

    # THEN records 0-2 ran (started with 10, 7 and 4 s left) and 3-4 (1 s left) come back, in order
    assert calls == ids(event)[:3]
    assert response == failures(ids(event)[3:])


def test_the_margin_is_a_fraction_of_the_initial_budget_when_that_is_larger() -> None:
    # GIVEN a 60 s budget (10% = 6 s, more than the 2 s minimum) and records taking 19 s each
    time, calls = ScriptedTime(60_000), []
    event = sqs_event(5)
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 19_000, calls), processor, time.context())

    # THEN the record due with 3 s left (above 2 s, below 6 s) is failed
    assert calls == ids(event)[:3]
    assert response == failures(ids(event)[3:])


@pytest.mark.parametrize(("estimate", "records_run"), [(False, 6), (True, 5)])
def test_the_estimate_adds_the_average_record_duration_to_the_margin(estimate: bool, records_run: int) -> None:
    # GIVEN records taking 1.5 s each, a 2 s margin and a 10 s budget
    time, calls = ScriptedTime(10_000), []
    event = sqs_event(8)
    guard = time.guard(min_remaining_ms=2000, remaining_fraction=0.0, estimate=estimate)
    processor = BatchProcessor(EventType.SQS, middleware=[guard])

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 1500, calls), processor, time.context())

    # THEN with the estimate the record due with 2.5 s left is not started (2.5 < 2 + 1.5): it could overrun
    assert len(calls) == records_run
    assert response == failures(ids(event)[records_run:])


def test_records_whose_handler_raised_count_towards_the_estimate() -> None:
    # GIVEN records that fail after 3 s each, a 2 s margin and a 10 s budget
    time, calls = ScriptedTime(10_000), []
    event = sqs_event(5)

    def failing(record: Any) -> None:
        calls.append(record.message_id)
        time.advance(3000)
        raise ValueError("downstream unavailable")

    processor = BatchProcessor(
        EventType.SQS, middleware=[time.guard(remaining_fraction=0.0)], raise_on_entire_batch_failure=False
    )

    # WHEN the batch runs
    process_partial_response(event, failing, processor, time.context())

    # THEN the record due with 4 s left is not started (4 < 2 + 3)
    assert calls == ids(event)[:2]


def test_records_short_circuited_by_fifo_do_not_feed_the_estimate() -> None:
    # GIVEN two FIFO groups with skip_group_on_error, group-a failing at its first record, records of 2.5 s,
    # a 0.5 s margin and a 10 s budget
    time, calls = ScriptedTime(10_000), []
    event = sqs_fifo_event(6, groups=("group-a", "group-b"))

    def handler(record: Any) -> None:
        calls.append(record.message_id)
        time.advance(2500)
        if record.attributes.message_group_id == "group-a":
            raise ValueError("group-a is down")

    guard = time.guard(min_remaining_ms=500, remaining_fraction=0.0)
    processor = SqsFifoPartialProcessor(skip_group_on_error=True, middleware=[guard])

    # WHEN the batch runs
    response = process_partial_response(event, handler, processor, time.context())

    # THEN the instant short-circuits of group-a did not lower the 2.5 s estimate: record 5, due with 2.5 s
    # left, needs 0.5 + 2.5 s and is not started
    assert calls == [ids(event)[0], ids(event)[1], ids(event)[3]]
    assert response == failures([ids(event)[0], ids(event)[2], ids(event)[4], ids(event)[5]])


def test_once_tripped_the_guard_fails_every_later_record() -> None:
    # GIVEN a remaining time that dips below the margin for record 1 only
    remaining = iter([30_000, 30_000, 1_000, 30_000, 30_000, 30_000])
    context = FakeLambdaContext(remaining=lambda: next(remaining, 30_000))
    calls: list[str] = []
    event = sqs_event(4)
    processor = BatchProcessor(EventType.SQS, middleware=[TimeoutGuardMiddleware()])

    # WHEN the batch runs
    response = process_partial_response(event, lambda record: calls.append(record.message_id), processor, context)

    # THEN records 2 and 3 are failed too, so the batch's tail comes back in order
    assert calls == ids(event)[:1]
    assert response == failures(ids(event)[1:])


def test_without_a_lambda_context_the_guard_does_nothing() -> None:
    # GIVEN no Lambda context (local run)
    calls: list[str] = []
    event = sqs_event(3)
    processor = BatchProcessor(EventType.SQS, middleware=["timeout_guard"])

    # WHEN the batch runs
    response = process_partial_response(event, lambda record: calls.append(record.message_id), processor)

    # THEN every record runs
    assert calls == ids(event)
    assert response == failures([])


def test_without_a_lambda_context_the_guard_leaves_the_record_chain() -> None:
    # GIVEN the guard and no Lambda context
    guard = counting_record_hooks(TimeoutGuardMiddleware)()
    processor = BatchProcessor(EventType.SQS, middleware=[guard])

    # WHEN a batch runs
    response = process_partial_response(sqs_event(3), lambda record: None, processor)

    # THEN its record hook never ran
    assert guard.entered == 0
    assert response == failures([])


def test_a_broken_lambda_context_does_not_stop_processing() -> None:
    # GIVEN a Lambda context whose remaining time cannot be read
    def broken() -> int:
        raise RuntimeError("no deadline")

    calls: list[str] = []
    event = sqs_event(3)
    processor = BatchProcessor(EventType.SQS, middleware=["timeout_guard"])

    # WHEN the batch runs
    response = process_partial_response(
        event, lambda record: calls.append(record.message_id), processor, FakeLambdaContext(remaining=broken)
    )

    # THEN the guard's error is contained and every record runs
    assert calls == ids(event)
    assert response == failures([])


# -- what other middlewares see ---------------------------------------------------------------------
def test_middlewares_outside_the_guard_see_skipped_records_with_reason_timeout_guard() -> None:
    # GIVEN a recording middleware placed before (outside) the guard
    time = ScriptedTime(10_000)
    recorder = RecordingMiddleware()
    processor = BatchProcessor(EventType.SQS, middleware=[recorder, time.guard(estimate=False)])

    # WHEN the guard trips at record 3
    process_partial_response(sqs_event(5), slow_handler(time, 3000, []), processor, time.context())

    # THEN the recorder sees three successes, then the first skip by the timeout guard; the record after it
    # enters no middleware (it is only counted in the summary)
    records = recorder.records("exit")
    assert [r.index for r in records] == [0, 1, 2, 3]
    assert [r.outcome for r in records] == [Outcome.SUCCESS] * 3 + [Outcome.SKIPPED]
    assert [r.skip_reason for r in records] == [None] * 3 + ["timeout_guard"]
    (_, _, summary) = recorder.events[-1]
    assert summary.skipped == 2


def test_a_slow_middleware_outside_the_guard_does_not_run_for_the_records_after_the_trip() -> None:
    # GIVEN a middleware before the guard that costs 500 ms per record, around a 100 ms handler
    time = ScriptedTime(5_000)

    class Slow(Middleware):
        name = "slow"

        def wrap_record(self, record: RecordContext) -> Iterator[None]:
            time.advance(500)
            yield

    processor = BatchProcessor(EventType.SQS, middleware=[Slow(), time.guard(min_remaining_ms=1000)])
    event = sqs_event(10)

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 100, []), processor, time.context())

    # THEN the guard counted the slow middleware's time: it stopped with time to spare, and the records it
    # gave up on cost nothing more
    assert time.remaining() >= 1000
    assert response == failures(ids(event)[5:])


def test_the_batch_summary_counts_guard_failures_as_skipped_not_failed() -> None:
    # GIVEN a recording middleware and a guard that trips at record 3
    time = ScriptedTime(10_000)
    recorder = RecordingMiddleware()
    processor = BatchProcessor(EventType.SQS, middleware=[recorder, time.guard(estimate=False)])

    # WHEN the batch runs
    process_partial_response(sqs_event(5), slow_handler(time, 3000, []), processor, time.context())

    # THEN on_batch_end gets 3 successes, 2 skipped, no failures (failed_ids holds handler failures only)
    (_, _, summary) = recorder.events[-1]
    assert (summary.successes, summary.failures, summary.skipped, summary.failed_ids) == (3, 0, 2, [])


def test_middlewares_inside_the_guard_never_see_the_skipped_records() -> None:
    # GIVEN a recording middleware placed after (inside) the guard
    time = ScriptedTime(10_000)
    recorder = RecordingMiddleware()
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard(estimate=False), recorder])

    # WHEN the guard trips at record 3
    process_partial_response(sqs_event(5), slow_handler(time, 3000, []), processor, time.context())

    # THEN the recorder only wrapped the records that ran
    assert [r.index for r in recorder.records("enter")] == [0, 1, 2]


def test_handler_failures_before_the_trip_stay_failures() -> None:
    # GIVEN record 1 fails in the handler, and the guard trips at record 3
    time = ScriptedTime(10_000)
    recorder = RecordingMiddleware()
    event = sqs_event(5)

    def handler(record: Any) -> None:
        time.advance(3000)
        if record.message_id == ids(event)[1]:
            raise ValueError("bad record")

    processor = BatchProcessor(EventType.SQS, middleware=[recorder, time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(event, handler, processor, time.context())

    # THEN the response lists the handler failure and the guard's skips, in batch order
    assert response == failures([ids(event)[1], ids(event)[3], ids(event)[4]])
    outcomes = [r.outcome for r in recorder.records("exit")]
    assert outcomes == [Outcome.SUCCESS, Outcome.FAILURE, Outcome.SUCCESS, Outcome.SKIPPED]


def test_a_tripped_batch_logs_one_warning_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a guard that trips at record 3 of 5
    time = ScriptedTime(10_000)
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    with caplog.at_level(logging.WARNING, logger="observed_batch.timeout_guard"):
        process_partial_response(sqs_event(5), slow_handler(time, 3000, []), processor, time.context())

    # THEN one warning says how many records come back and why
    messages = [r.getMessage() for r in caplog.records if r.name == "observed_batch.timeout_guard"]
    assert len(messages) == 1
    assert (
        "2 of 5 records were failed without running (1000 ms left at record 3, needed 2000 ms:"
        " margin 2000 ms + telemetry budget 0 ms)"
    ) in messages[0]


def test_an_untripped_batch_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN plenty of time
    time = ScriptedTime(60_000)
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard()])

    # WHEN the batch runs
    with caplog.at_level(logging.DEBUG, logger="observed_batch"):
        process_partial_response(sqs_event(3), slow_handler(time, 100, []), processor, time.context())

    # THEN the guard stays silent
    assert not [r for r in caplog.records if r.name.startswith("observed_batch")]


def test_a_batch_starting_below_the_margin_fails_every_record(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a batch that starts with 1.5 s left and the default 2 s margin
    time, calls = ScriptedTime(1_500), []
    event = sqs_event(3)
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard()], raise_on_entire_batch_failure=False)

    # WHEN the batch runs
    with caplog.at_level(logging.WARNING, logger="observed_batch.timeout_guard"):
        response = process_partial_response(event, slow_handler(time, 10, calls), processor, time.context())

    # THEN no record runs, all come back, and a warning names the setting to change
    assert calls == []
    assert response == failures(ids(event))
    assert "OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS" in caplog.records[0].getMessage()


def test_a_fully_skipped_batch_raises_like_powertools_when_every_record_fails() -> None:
    # GIVEN a batch that starts below the margin and Powertools' default raise_on_entire_batch_failure
    time = ScriptedTime(1_500)
    processor = BatchProcessor(EventType.SQS, middleware=[time.guard()])

    # WHEN / THEN the whole batch is reported failed with Powertools' BatchProcessingError
    with pytest.raises(BatchProcessingError):
        process_partial_response(sqs_event(3), slow_handler(time, 10, []), processor, time.context())


# -- event sources ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event_type", "make_event", "identifier"),
    [
        (EventType.KinesisDataStreams, kinesis_event, lambda r: r["kinesis"]["sequenceNumber"]),
        (EventType.DynamoDBStreams, dynamodb_event, lambda r: r["dynamodb"]["SequenceNumber"]),
    ],
    ids=["kinesis", "dynamodb"],
)
def test_on_streams_the_checkpoint_is_the_first_skipped_record(
    event_type: EventType, make_event: Callable[[int], dict[str, Any]], identifier: Callable[[Any], str]
) -> None:
    # GIVEN a stream batch where the guard trips at record 3 of 5
    time = ScriptedTime(10_000)
    event = make_event(5)
    expected = [identifier(r) for r in event["Records"][3:]]
    processor = BatchProcessor(event_type, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 3000, []), processor, time.context())

    # THEN every later record is reported, so Lambda checkpoints at the lowest one: the first skipped
    assert response == failures(expected)
    assert min(int(item["itemIdentifier"]) for item in response["batchItemFailures"]) == int(expected[0])


def test_kafka_records_are_reported_with_their_partition_and_offset() -> None:
    # GIVEN a Kafka batch where the guard trips at record 3 of 5
    time = ScriptedTime(10_000)
    processor = BatchProcessor(EventType.Kafka, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(kafka_event(5), slow_handler(time, 3000, []), processor, time.context())

    # THEN the skipped offsets come back
    assert response == failures([{"partition": "orders-0", "offset": 18}, {"partition": "orders-0", "offset": 19}])


def test_fifo_response_equals_powertools_short_circuit_at_the_first_skipped_record() -> None:
    # GIVEN a FIFO batch where the guard trips at record 2 of 6
    time = ScriptedTime(10_000)
    event = sqs_fifo_event(6)
    processor = SqsFifoPartialProcessor(middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 4500, []), processor, time.context())

    # THEN the response is what Powertools' FIFO processor returns when record 2 fails: 2 and everything after
    def fails_at_record_2(record: Any) -> None:
        if record.message_id == ids(event)[2]:
            raise ValueError("record 2")

    expected = powertools_process_partial_response(event, fails_at_record_2, PowertoolsFifoProcessor())
    assert response == expected == failures(ids(event)[2:])


def test_fifo_with_skip_group_on_error_still_fails_every_group_once_tripped() -> None:
    # GIVEN a FIFO batch over two message groups, skip_group_on_error, and a guard tripping at record 2
    time, calls = ScriptedTime(10_000), []
    event = sqs_fifo_event(6, groups=("group-a", "group-b"))
    processor = SqsFifoPartialProcessor(skip_group_on_error=True, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = process_partial_response(event, slow_handler(time, 4500, calls), processor, time.context())

    # THEN no group keeps going: running out of time concerns all of them, and order within each is kept
    assert calls == ids(event)[:2]
    assert response == failures(ids(event)[2:])


def test_fifo_records_after_the_trip_are_skipped_by_the_guard_not_the_short_circuit() -> None:
    # GIVEN a recording middleware outside the guard on a FIFO batch tripping at record 2
    time = ScriptedTime(10_000)
    recorder = RecordingMiddleware()
    processor = SqsFifoPartialProcessor(middleware=[recorder, time.guard(estimate=False)])

    # WHEN the batch runs
    process_partial_response(sqs_fifo_event(4), slow_handler(time, 4500, []), processor, time.context())

    # THEN the skipped record the recorder sees carries the guard's reason (Sentry and metrics treat both
    # reasons as skips), and the summary counts the one after it as skipped too
    assert [r.skip_reason for r in recorder.records("exit")] == [None, None, "timeout_guard"]
    (_, _, summary) = recorder.events[-1]
    assert (summary.successes, summary.skipped) == (2, 2)


# -- async --------------------------------------------------------------------------------------------
def test_async_records_are_checked_when_their_task_starts() -> None:
    # GIVEN an async handler doing 3 s of blocking work before its first await
    time, calls = ScriptedTime(10_000), []
    event = sqs_event(5)

    async def handler(record: Any) -> None:
        calls.append(record.message_id)
        time.advance(3000)
        await asyncio.sleep(0)

    processor = AsyncBatchProcessor(EventType.SQS, middleware=[time.guard(estimate=False)])

    # WHEN the batch runs
    response = async_process_partial_response(event, handler, processor, time.context())

    # THEN tasks started after the deadline approached are failed, as in the sync processor
    assert calls == ids(event)[:3]
    assert response == failures(ids(event)[3:])


def test_async_records_already_started_are_not_stopped() -> None:
    # GIVEN an async handler whose 3 s of work happen after its first await
    time, calls = ScriptedTime(10_000), []
    event = sqs_event(5)

    async def handler(record: Any) -> None:
        await asyncio.sleep(0)
        calls.append(record.message_id)
        time.advance(3000)

    processor = AsyncBatchProcessor(EventType.SQS, middleware=[time.guard()])

    # WHEN the batch runs
    response = async_process_partial_response(event, handler, processor, time.context())

    # THEN every record started before any finished, so the guard had nothing to stop
    assert calls == ids(event)
    assert response == failures([])


class _ContextVarProbe(Middleware):
    """Records each async record's outcome to check the guard works per task."""

    name = "probe"

    def __init__(self) -> None:
        self.outcomes: dict[int, Outcome | None] = {}

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        yield
        self.outcomes[record.index] = record.outcome


def test_async_skipped_records_reach_outer_middlewares_as_skipped() -> None:
    # GIVEN an async batch starting below the margin, with a middleware outside the guard
    time = ScriptedTime(1_000)
    probe = _ContextVarProbe()

    async def handler(record: Any) -> None:
        await asyncio.sleep(0)

    processor = AsyncBatchProcessor(
        EventType.SQS, middleware=[probe, time.guard()], raise_on_entire_batch_failure=False
    )

    # WHEN the batch runs
    response = async_process_partial_response(sqs_event(3), handler, processor, time.context())

    # THEN every record was skipped without running and reported failed; the first reached the outer
    # middleware, the others entered none
    assert probe.outcomes == {0: Outcome.SKIPPED}
    assert len(response["batchItemFailures"]) == 3


# -- configuration ------------------------------------------------------------------------------------
def test_options_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the guard enabled and configured by environment variables
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "timeout_guard")
    monkeypatch.setenv("OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS", "5000")
    monkeypatch.setenv("OBSERVED_BATCH_TIMEOUT_GUARD_REMAINING_FRACTION", "0.25")
    monkeypatch.setenv("OBSERVED_BATCH_TIMEOUT_GUARD_ESTIMATE", "false")

    # WHEN a processor is constructed
    (guard,) = BatchProcessor(EventType.SQS).middlewares

    # THEN the guard carries them
    assert isinstance(guard, TimeoutGuardMiddleware)
    assert (guard.min_remaining_ms, guard.remaining_fraction, guard.estimate) == (5000, 0.25, False)


def test_defaults_are_two_seconds_ten_percent_and_the_estimate() -> None:
    # GIVEN / WHEN a guard with default options
    guard = TimeoutGuardMiddleware()

    # THEN it keeps 2 s or 10% in reserve and uses the duration estimate
    assert (guard.min_remaining_ms, guard.remaining_fraction, guard.estimate) == (2000, 0.10, True)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"min_remaining_ms": -1}, "min_remaining_ms"),
        ({"min_remaining_ms": True}, "min_remaining_ms"),
        ({"min_remaining_ms": 2.5}, "min_remaining_ms"),
        ({"remaining_fraction": 1.0}, "remaining_fraction"),
        ({"remaining_fraction": -0.1}, "remaining_fraction"),
        ({"remaining_fraction": "0.1"}, "remaining_fraction"),
        ({"estimate": "yes"}, "estimate"),
        ({"clock": 5}, "clock"),
    ],
)
def test_invalid_options_raise_config_error_naming_the_option(options: dict[str, Any], named: str) -> None:
    # GIVEN / WHEN / THEN an invalid option fails at construction, naming the option
    with pytest.raises(ConfigError, match=named):
        TimeoutGuardMiddleware(**options)


def test_an_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a fraction outside [0, 1) in the environment
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "timeout_guard")
    monkeypatch.setenv("OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS", "two seconds")

    # WHEN / THEN the processor cannot be constructed (cold start fails loudly)
    with pytest.raises(ConfigError, match="OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS"):
        BatchProcessor(EventType.SQS)
