"""The chain's cheap paths: ``on_record_failed`` (failures only), ``skip_record_hooks(failures=True)`` and
``needs_durations`` (``batch.durations_ns``). Outcomes never change; only what runs per record does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt

import observed_batch as ob
from observed_batch import BatchContext, BatchSummary, Middleware, Outcome, RecordContext
from observed_batch.testing import FakeLambdaContext, sqs_event, sqs_fifo_event


class FailureLog(Middleware):
    """Only a failure hook: sees each failed record once, builds nothing for successes."""

    name = "failure_log"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def on_record_failed(self, record: RecordContext) -> None:
        assert record.exc_info is not None
        self.log.append(f"{self.name}:{record.index}:{type(record.exc_info[1]).__name__}:{record.outcome}")


class Wrapper(Middleware):
    name = "wrapper"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        self.log.append(f"enter:{record.index}")
        yield
        self.log.append(f"exit:{record.index}")


class Durations(Middleware):
    name = "durations"
    needs_durations = True

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        assert batch.durations_ns is not None
        self.seen.append(list(batch.durations_ns))


def handler(record: Any) -> str:
    if record.body.endswith("fail"):
        raise ValueError(record.body)
    return record.body


def event(*bodies: str) -> dict[str, Any]:
    return sqs_event(len(bodies), body=lambda i: bodies[i])


def test_failure_hook_runs_only_for_failed_records() -> None:
    # GIVEN a middleware with only on_record_failed
    log: list[str] = []
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[FailureLog(log)])

    # WHEN a batch with one failure among three runs
    response = ob.process_partial_response(event("a", "b-fail", "c"), handler, processor)

    # THEN the hook saw the failed record (index, exception, outcome) and nothing else; the response is Powertools'
    assert log == ["failure_log:1:ValueError:failure"]
    bare = pt.process_partial_response(event("a", "b-fail", "c"), handler, pt.BatchProcessor(pt.EventType.SQS))
    assert response == bare


def test_failure_hook_keeps_its_place_in_the_unwinding() -> None:
    # GIVEN a failure-only middleware outside a wrapping one
    log: list[str] = []
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[FailureLog(log), Wrapper(log)])

    # WHEN a record fails
    ob.process_partial_response(event("a-fail", "b"), handler, processor)

    # THEN the failure hook runs where the outer middleware's wrap_record would resume: after the inner one
    assert log == ["enter:0", "exit:0", "failure_log:0:ValueError:failure", "enter:1", "exit:1"]


def test_failure_hook_never_sees_fifo_short_circuited_records() -> None:
    # GIVEN a FIFO batch whose second record fails (the rest is short-circuited)
    log: list[str] = []
    processor = ob.SqsFifoPartialProcessor(middleware=[FailureLog(log)])

    # WHEN it runs
    fifo = sqs_fifo_event(4, body=lambda i: "x-fail" if i == 1 else "ok")
    response = ob.process_partial_response(fifo, handler, processor)

    # THEN only the record that failed reached the hook; the skipped ones are reported, not "failed"
    assert log == ["failure_log:1:ValueError:failure"]
    assert len(response["batchItemFailures"]) == 3


def test_a_failing_failure_hook_is_contained() -> None:
    # GIVEN a failure hook that raises
    class Broken(Middleware):
        name = "broken"

        def on_record_failed(self, record: RecordContext) -> None:
            raise RuntimeError("boom")

    summaries: list[BatchSummary] = []

    class Summary(Middleware):
        def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
            summaries.append(summary)

    # WHEN two records fail
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Summary(), Broken()])
    response = ob.process_partial_response(event("a-fail", "b-fail", "c"), handler, processor)

    # THEN outcomes are the core's and the error is counted per record
    assert len(response["batchItemFailures"]) == 2
    assert summaries[0].middleware_errors == {"broken": 2}


def test_skip_record_hooks_can_keep_the_failure_hook() -> None:
    # GIVEN a middleware that wraps records but opts out of wrapping for this batch, keeping failures
    log: list[str] = []

    class Both(Wrapper):
        name = "both"

        def on_batch_start(self, batch: BatchContext) -> None:
            batch.skip_record_hooks(self, failures=True)

        def on_record_failed(self, record: RecordContext) -> None:
            self.log.append(f"failed:{record.index}")

    # WHEN a batch with a failure runs
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Both(log)])
    ob.process_partial_response(event("a", "b-fail"), handler, processor)

    # THEN wrap_record never ran, on_record_failed did
    assert log == ["failed:1"]


def test_skip_record_hooks_without_failures_drops_the_failure_hook_too() -> None:
    # GIVEN a failure-only middleware that leaves this batch entirely
    log: list[str] = []

    class Leaves(FailureLog):
        def on_batch_start(self, batch: BatchContext) -> None:
            batch.skip_record_hooks(self)

    # WHEN a record fails THEN the hook does not run
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Leaves(log)])
    ob.process_partial_response(event("a-fail", "b"), handler, processor)
    assert log == []


def test_async_processor_runs_failure_hooks_with_the_exception() -> None:
    # GIVEN the async processor and a failure-only middleware
    log: list[str] = []
    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[FailureLog(log)])

    async def async_handler(record: Any) -> str:
        await asyncio.sleep(0)
        return handler(record)

    # WHEN a record fails
    response = ob.async_process_partial_response(event("a", "b-fail"), async_handler, processor)

    # THEN the hook got the record's own exception
    assert log == ["failure_log:1:ValueError:failure"]
    assert len(response["batchItemFailures"]) == 1


def test_durations_are_kept_for_records_that_ran() -> None:
    # GIVEN a middleware that needs durations and nothing per record
    durations = Durations()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[durations])

    # WHEN a batch of three (one failing) runs
    ob.process_partial_response(event("a", "b-fail", "c"), handler, processor)

    # THEN there is one positive duration per record, failures included
    (seen,) = durations.seen
    assert len(seen) == 3
    assert all(value > 0 for value in seen)


def test_durations_leave_out_fifo_short_circuited_records() -> None:
    # GIVEN a FIFO batch where record 1 fails, with a wrapping middleware too
    durations = Durations()
    processor = ob.SqsFifoPartialProcessor(middleware=[durations, Wrapper([])])

    # WHEN it runs
    ob.process_partial_response(sqs_fifo_event(4, body=lambda i: "x-fail" if i == 1 else "ok"), handler, processor)

    # THEN the two records that ran have durations, the two short-circuited ones none
    assert len(durations.seen[0]) == 2


def test_no_durations_unless_a_middleware_asks() -> None:
    # GIVEN a chain whose middlewares do not set needs_durations
    seen: list[Any] = []

    class Look(Middleware):
        def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
            seen.append(batch.durations_ns)

    # WHEN a batch runs THEN the chain kept none
    ob.process_partial_response(event("a"), handler, ob.BatchProcessor(ob.EventType.SQS, middleware=[Look()]))
    assert seen == [None]


def test_a_crash_reaches_the_failure_hook_before_it_propagates() -> None:
    # GIVEN a failure-only middleware and a handler raising KeyboardInterrupt
    log: list[str] = []
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[FailureLog(log)])

    def interrupted(record: Any) -> None:
        raise KeyboardInterrupt

    # WHEN the batch runs THEN the interrupt propagates after the hook saw the record
    with pytest.raises(KeyboardInterrupt):
        ob.process_partial_response(event("a"), interrupted, processor, FakeLambdaContext())
    assert log == [f"failure_log:0:KeyboardInterrupt:{Outcome.FAILURE}"]
