"""The ``logging`` middleware with real structlog: what it writes, what it binds, and what it leaves alone."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextvars import copy_context
from typing import Any

import pytest
import structlog
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from record_hook import enter_one_record
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars, merge_contextvars
from structlog.testing import CapturingLogger, LogCapture

from observed_batch import (
    AsyncBatchProcessor,
    BatchContext,
    BatchProcessor,
    ConfigError,
    EventType,
    FailRecord,
    Middleware,
    Outcome,
    RecordContext,
    SqsFifoPartialProcessor,
    async_process_partial_response,
    process_partial_response,
)
from observed_batch.middleware import LoggingMiddleware
from observed_batch.testing import dynamodb_event, kafka_event, kinesis_event, sqs_event, sqs_fifo_event, sqs_record

SECRET = "card-4111111111111111"
CONTEXT_FIELDS = {"message_id", "event_source", "destination", "index", "receive_count"}
FAILURE_FIELDS = {"timestamp", "level", "event", *CONTEXT_FIELDS, "duration_ms", "exc_type", "exc_message", "exception"}
SUMMARY_FIELDS = {
    "timestamp",
    "level",
    "event",
    "event_source",
    "destination",
    "batch_size",
    "successes",
    "failures",
    "skipped",
    "duration_ms",
    "failed_message_ids",
}


class PaymentDeclined(Exception):
    pass


@pytest.fixture(autouse=True)
def _pristine_logging() -> Iterator[None]:
    """structlog's global configuration, its contextvars and the root logger's handlers are process-wide."""
    structlog.reset_defaults()
    clear_contextvars()
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    structlog.reset_defaults()
    clear_contextvars()
    root.handlers[:] = handlers


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def events(out: str, event: str) -> list[dict[str, Any]]:
    return [line for line in lines(out) if line["event"] == event]


def position(record: Any) -> int:
    """The record's index in a factory-made SQS event (its SentTimestamp is a round number + index)."""
    return int(record.attributes.sent_timestamp) % 1000


def fail_every_third(record: Any) -> str:
    if position(record) % 3 == 0:
        raise PaymentDeclined(f"declined: {record.message_id}")
    return "ok"


def run_sqs(
    count: int = 6, handler: Any = fail_every_third, event: dict[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """Batches where every record fails return a response instead of raising, to keep tests short."""
    processor = BatchProcessor(
        EventType.SQS, raise_on_entire_batch_failure=False, middleware=[LoggingMiddleware(**options)]
    )
    return dict(process_partial_response(event or sqs_event(count, body={"card": SECRET}), handler, processor))


def capture_user_structlog() -> LogCapture:
    """A user's own structlog configuration that merges contextvars, as structlog's docs recommend."""
    capture = LogCapture()
    structlog.configure(processors=[merge_contextvars, capture])
    return capture


# -- failure lines --------------------------------------------------------------------------------


def test_failure_line_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an SQS batch where some records fail
    # WHEN it is processed with the logging middleware
    run_sqs()
    # THEN each failure line has exactly the fields the dashboard's Logs Insights query reads
    failed = events(capsys.readouterr().out, "record_failed")
    assert failed
    assert set(failed[0]) == FAILURE_FIELDS
    assert failed[0]["level"] == "error"
    assert failed[0]["event_source"] == "aws:sqs"
    assert failed[0]["destination"] == "orders"
    assert failed[0]["receive_count"] == 1
    assert failed[0]["timestamp"].endswith("Z")


def test_one_failure_line_per_failed_record(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN 9 records of which every third fails
    # WHEN processed
    response = run_sqs(9)
    # THEN there is one error line per failed record, naming it
    failed_ids = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    failed = events(capsys.readouterr().out, "record_failed")
    assert [line["message_id"] for line in failed] == failed_ids
    assert [line["index"] for line in failed] == [0, 3, 6]


def test_failure_line_describes_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a handler raising a custom exception
    # WHEN a record fails
    run_sqs(1)
    # THEN the line carries its qualified type, message and traceback ending in the raise
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert line["exc_type"] == f"{__name__}.PaymentDeclined"
    assert line["exc_message"].startswith("declined: ")
    assert 'raise PaymentDeclined(f"declined: {record.message_id}")' in line["exception"]
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert line["exception"].endswith(f"{__name__}.PaymentDeclined: {line['exc_message']}")


def test_chained_exceptions_appear_in_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a handler that wraps a lower-level error
    def handler(record: Any) -> None:
        customers: dict[str, str] = {}
        try:
            customers["customer"]
        except KeyError as exc:
            raise PaymentDeclined("no customer") from exc

    # WHEN the record fails
    run_sqs(1, handler)
    # THEN both exceptions are in the traceback, in Python's order and wording
    exception = events(capsys.readouterr().out, "record_failed")[0]["exception"]
    assert exception.index("KeyError: 'customer'") < exception.index("direct cause") < exception.index("no customer")


def test_implicit_exception_context_appears_in_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a handler whose error handling itself fails
    def handler(record: Any) -> None:
        try:
            raise KeyError("customer")
        except KeyError:
            raise PaymentDeclined("again")  # noqa: B904

    # WHEN the record fails
    run_sqs(1, handler)
    # THEN the implicit context is reported as Python does
    exception = events(capsys.readouterr().out, "record_failed")[0]["exception"]
    assert "During handling of the above exception, another exception occurred" in exception
    assert exception.endswith("PaymentDeclined: again")


def test_exception_notes_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an exception carrying a note (PEP 678)
    def handler(record: Any) -> None:
        error = ValueError("bad amount")
        error.add_note("amount must be positive")
        raise error

    # WHEN the record fails
    run_sqs(1, handler)
    # THEN the note follows the exception line
    assert events(capsys.readouterr().out, "record_failed")[0]["exception"].endswith(
        "ValueError: bad amount\namount must be positive"
    )


def test_exception_without_message_is_named_alone(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a handler raising an exception without a message
    def handler(record: Any) -> None:
        raise RuntimeError

    # WHEN the record fails
    run_sqs(1, handler)
    # THEN the type is reported with an empty message
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert (line["exc_type"], line["exc_message"]) == ("RuntimeError", "")
    assert line["exception"].endswith("\nRuntimeError")


def test_deep_tracebacks_keep_the_innermost_frames(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a failure 200 calls deep
    def recurse(depth: int) -> None:
        if depth == 0:
            raise ValueError("bottom")
        recurse(depth - 1)

    # WHEN the record fails
    run_sqs(1, lambda record: recurse(200), max_traceback_chars=1_000_000)
    # THEN the outer frames are elided and the innermost kept
    exception = events(capsys.readouterr().out, "record_failed")[0]["exception"]
    assert "earlier frames omitted]" in exception
    assert exception.count("in recurse\n") == 64
    assert exception.endswith("ValueError: bottom")


def test_traceback_is_truncated_from_the_top(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a traceback limit of 120 characters
    # WHEN a record fails
    run_sqs(1, max_traceback_chars=120)
    # THEN the traceback keeps its last 120 characters, which end with the exception line
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert line["exception"].startswith("...[truncated]")
    assert len(line["exception"]) == len("...[truncated]") + 120
    assert line["exception"].endswith(f"PaymentDeclined: {line['exc_message']}")


def test_traceback_can_be_left_out(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN max_traceback_chars=0
    # WHEN a record fails
    run_sqs(1, max_traceback_chars=0)
    # THEN the failure line has type and message but no traceback
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert "exception" not in line
    assert line["exc_type"].endswith("PaymentDeclined")


def test_exception_message_is_truncated(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a huge exception message
    def handler(record: Any) -> None:
        raise ValueError("x" * 10_000)

    # WHEN the record fails
    run_sqs(1, handler, max_message_chars=100)
    # THEN exc_message is cut to the limit with a marker
    assert events(capsys.readouterr().out, "record_failed")[0]["exc_message"] == "x" * 100 + "...[truncated]"


def test_unprintable_exception_cause_is_still_described(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an exception caused by one whose __str__ raises
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    def handler(record: Any) -> None:
        raise PaymentDeclined("declined") from Unprintable()

    # WHEN the record fails
    run_sqs(1, handler)
    # THEN the line is written with a placeholder for the cause's message
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert "Unprintable: <exception str() failed: Unprintable>" in line["exception"]


# -- batch summary --------------------------------------------------------------------------------


def test_summary_counts_match_the_response(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN 10 records of which 4 fail
    # WHEN processed
    response = run_sqs(10)
    # THEN one info summary line reports exactly what the response says
    [summary] = events(capsys.readouterr().out, "batch_summary")
    failed_ids = [item["itemIdentifier"] for item in response["batchItemFailures"]]
    assert set(summary) == SUMMARY_FIELDS
    assert summary["level"] == "info"
    assert (summary["batch_size"], summary["successes"], summary["failures"], summary["skipped"]) == (10, 6, 4, 0)
    assert summary["failed_message_ids"] == failed_ids
    assert (summary["event_source"], summary["destination"]) == ("aws:sqs", "orders")
    assert summary["duration_ms"] >= 0


def test_summary_is_written_when_every_record_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a batch where every record fails, so Powertools raises BatchProcessingError
    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware()])
    # WHEN processed
    with pytest.raises(BatchProcessingError):
        process_partial_response(sqs_event(3), handler, processor)
    # THEN the summary line is still written with the failures
    [summary] = events(capsys.readouterr().out, "batch_summary")
    assert (summary["successes"], summary["failures"]) == (0, 3)


def test_failed_ids_are_capped(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN max_failed_ids=2 and 4 failures
    # WHEN processed
    response = run_sqs(12, max_failed_ids=2)
    # THEN the summary lists the first 2 ids and still counts all 4
    [summary] = events(capsys.readouterr().out, "batch_summary")
    assert summary["failed_message_ids"] == [item["itemIdentifier"] for item in response["batchItemFailures"][:2]]
    assert summary["failures"] == 4


def test_skipped_records_are_counted_not_logged_as_errors(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a FIFO batch whose second record fails, so Powertools short-circuits the last 2
    def handler(record: Any) -> None:
        if position(record) == 1:
            raise PaymentDeclined("second one fails")

    processor = SqsFifoPartialProcessor(middleware=[LoggingMiddleware()])
    # WHEN processed
    response = process_partial_response(sqs_fifo_event(4), handler, processor)
    # THEN one error line for the real failure, and the skips only in the summary
    out = capsys.readouterr().out
    assert len(response["batchItemFailures"]) == 3
    assert len(events(out, "record_failed")) == 1
    [summary] = events(out, "batch_summary")
    assert (summary["successes"], summary["failures"], summary["skipped"]) == (1, 1, 2)
    assert len(summary["failed_message_ids"]) == 1


def test_records_failed_by_a_guard_are_not_logged_as_errors(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a guard middleware, inside logging, that fails every record before the handler runs
    class Guard(Middleware):
        name = "guard"

        def wrap_record(self, record: RecordContext) -> Iterator[None]:
            raise FailRecord("timeout_guard")
            yield  # pragma: no cover

    processor = BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware(), Guard()])
    # WHEN processed
    with pytest.raises(BatchProcessingError):
        process_partial_response(sqs_event(2), fail_every_third, processor)
    # THEN no error lines, and the summary counts them as skipped
    out = capsys.readouterr().out
    assert events(out, "record_failed") == []
    assert events(out, "batch_summary")[0]["skipped"] == 2


# -- success lines --------------------------------------------------------------------------------


def test_success_lines_are_off_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN debug level but log_success left at its default
    # WHEN a batch succeeds
    run_sqs(3, lambda record: "ok", level="debug")
    # THEN only the summary is written
    assert [line["event"] for line in lines(capsys.readouterr().out)] == ["batch_summary"]


def test_success_lines_are_written_at_debug(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN log_success at debug level
    # WHEN 3 records succeed
    run_sqs(3, lambda record: "ok", level="debug", log_success=True)
    # THEN each gets a debug line with its context and duration
    processed = events(capsys.readouterr().out, "record_processed")
    assert [line["index"] for line in processed] == [0, 1, 2]
    assert set(processed[0]) == {"timestamp", "level", "event", *CONTEXT_FIELDS, "duration_ms"}
    assert processed[0]["level"] == "debug"


def test_success_lines_follow_the_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN log_success at the default INFO level
    # WHEN records succeed
    run_sqs(3, lambda record: "ok", log_success=True)
    # THEN the debug lines are filtered out
    assert events(capsys.readouterr().out, "record_processed") == []


def test_success_sample_rate_zero_writes_none(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a sample rate of 0
    # WHEN records succeed
    run_sqs(5, lambda record: "ok", level="debug", log_success=True, success_sample_rate=0.0)
    # THEN no success line is written
    assert events(capsys.readouterr().out, "record_processed") == []


def test_success_sample_rate_samples(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a sample rate of 0.5
    # WHEN 1000 records succeed
    run_sqs(1000, lambda record: "ok", level="debug", log_success=True, success_sample_rate=0.5)
    # THEN about half get a line (bounds are > 8 standard deviations wide)
    assert 370 < len(events(capsys.readouterr().out, "record_processed")) < 630


# -- context binding ------------------------------------------------------------------------------


def test_handler_lines_carry_the_record_context() -> None:
    # GIVEN the user's structlog configuration and a handler that logs with structlog.get_logger()
    capture = capture_user_structlog()

    def handler(record: Any) -> None:
        structlog.get_logger().info("charging", expected=record.message_id)

    # WHEN a batch is processed
    run_sqs(3, handler)
    # THEN each handler line carries its own record's context
    charging = [entry for entry in capture.entries if entry["event"] == "charging"]
    assert [entry["index"] for entry in charging] == [0, 1, 2]
    assert all(entry["message_id"] == entry["expected"] for entry in charging)
    assert {key: charging[0][key] for key in ("event_source", "destination", "receive_count")} == {
        "event_source": "aws:sqs",
        "destination": "orders",
        "receive_count": 1,
    }


def test_failure_lines_name_the_context_the_handler_saw(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a FIFO record whose handler logs, then fails
    seen: list[dict[str, Any]] = []

    def handler(record: Any) -> None:
        seen.append(get_contextvars())
        raise PaymentDeclined("no")

    processor = SqsFifoPartialProcessor(middleware=[LoggingMiddleware()])
    # WHEN processed
    with pytest.raises(BatchProcessingError):
        process_partial_response(sqs_fifo_event(1), handler, processor)
    # THEN the failure line has exactly the context that was bound during the handler
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert seen == [{key: line[key] for key in seen[0]}]
    assert set(seen[0]) == {*CONTEXT_FIELDS, "fifo_group"}


def test_context_is_unbound_after_the_batch() -> None:
    # GIVEN a value the caller bound before the batch
    bind_contextvars(request_id="req-1", index="outer")
    # WHEN a batch is processed
    run_sqs(3)
    # THEN the caller's context is exactly as before
    assert get_contextvars() == {"request_id": "req-1", "index": "outer"}


def test_context_does_not_leak_to_the_next_record() -> None:
    # GIVEN a FIFO-grouped record followed by one without a group
    capture = capture_user_structlog()
    event = {"Records": [sqs_record(0, group_id="group-a"), sqs_record(1)]}

    def handler(record: Any) -> None:
        structlog.get_logger().info("handled")

    # WHEN processed
    process_partial_response(event, handler, BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware()]))
    # THEN the second record's lines do not inherit the first one's group
    first, second = (entry for entry in capture.entries if entry["event"] == "handled")
    assert first["fifo_group"] == "group-a"
    assert "fifo_group" not in second


def test_async_records_keep_their_own_context() -> None:
    # GIVEN async handlers that sleep longer the earlier they start, and each waits for the next record
    # to finish first (so the interleaving does not depend on the machine's speed)
    capture = capture_user_structlog()
    count = 5
    finished = [asyncio.Event() for _ in range(count)]

    async def handler(record: Any) -> str:
        index = position(record)
        structlog.get_logger().info("started", expected=record.message_id)
        await asyncio.sleep((count - index) * 0.002)
        if index + 1 < count:
            await asyncio.wait_for(finished[index + 1].wait(), timeout=5)
        structlog.get_logger().info("finished", expected=record.message_id)
        finished[index].set()
        return "ok"

    processor = AsyncBatchProcessor(EventType.SQS, middleware=[LoggingMiddleware()])
    # WHEN the batch is processed concurrently
    response = async_process_partial_response(sqs_event(count), handler, processor)
    # THEN records finished in reverse order, yet every line names the record that wrote it
    assert response == {"batchItemFailures": []}
    done = [entry["index"] for entry in capture.entries if entry["event"] == "finished"]
    assert done == list(reversed(range(count)))
    assert all(entry["message_id"] == entry["expected"] for entry in capture.entries if "expected" in entry)
    assert get_contextvars() == {}


def test_failure_line_carries_what_the_handler_bound(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a handler that binds its own context before failing
    def handler(record: Any) -> None:
        bind_contextvars(order_id="order-7")
        raise PaymentDeclined("no")

    # WHEN the record fails
    run_sqs(1, handler)
    # THEN the failure line includes it (the private logger merges contextvars)
    assert events(capsys.readouterr().out, "record_failed")[0]["order_id"] == "order-7"


@pytest.mark.parametrize(
    "bound",
    [{}, {"order_id": "order-7", "amount": 3}, {"level": "custom", "order_id": "x"}, {"timestamp": "t"}],
    ids=["nothing", "user keys", "a level key", "a timestamp key"],
)
@pytest.mark.parametrize("level", [logging.DEBUG, logging.ERROR])
def test_private_lines_are_what_structlogs_processor_chain_renders(
    capsys: pytest.CaptureFixture[str], bound: dict[str, Any], level: int
) -> None:
    # GIVEN the private logger's direct rendering, structlog's chain with the same processors, and a context
    from observed_batch.middleware._json_lines import JsonLines, StdoutLogger
    from observed_batch.middleware._structlog_logging import _json_processors

    direct = JsonLines(level, merge_contextvars)
    chain = structlog.wrap_logger(
        StdoutLogger(),
        processors=_json_processors(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        context_class=dict,
    )
    bind_contextvars(**bound)
    # WHEN both write the same lines
    lines = []
    for logger in (direct, chain):
        logger.debug("record_processed", message_id="m-1", index=0)
        logger.info("batch_summary", successes=1, failed_message_ids=["a"])
        logger.error("record_failed", message_id="m-1", exception='Traceback\n  "quoted"', duration_ms=0.25)
        lines.append([_without_timestamp(line) for line in capsys.readouterr().out.splitlines()])
    # THEN they are the same characters, but for the time stamp, and the same lines are left out below the level
    assert lines[0] == lines[1]
    assert len(lines[0]) == (3 if level == logging.DEBUG else 1)


def _without_timestamp(line: str) -> str:
    document = json.loads(line)
    return line.replace(json.dumps(document["timestamp"]), '"T"', 1)


def test_binding_falls_back_to_structlogs_public_functions() -> None:
    # GIVEN a structlog whose contextvars could not be located directly
    capture = capture_user_structlog()
    middleware = LoggingMiddleware()
    middleware._backend.variables = None

    def handler(record: Any) -> None:
        structlog.get_logger().info("handled")

    # WHEN a batch is processed
    process_partial_response(sqs_event(2), handler, BatchProcessor(EventType.SQS, middleware=[middleware]))
    # THEN records still carry their context, and it is unbound afterwards
    assert [entry["index"] for entry in capture.entries if entry["event"] == "handled"] == [0, 1]
    assert get_contextvars() == {}


@pytest.mark.parametrize("portable", [False, True])
def test_a_hook_closed_in_another_context_does_not_raise(portable: bool) -> None:
    # GIVEN a record hook entered in one context (as an async task does) and never resumed
    middleware = LoggingMiddleware(logger=structlog.wrap_logger(CapturingLogger(), processors=[]))
    if portable:
        middleware._backend.variables = None
    batch = BatchContext(EventType.SQS, sqs_event(1)["Records"])
    middleware.on_batch_start(batch)
    hook = middleware.wrap_record(RecordContext(batch, batch.records[0], 0))
    copy_context().run(next, hook)
    # WHEN it is closed from this context (as the garbage collector may)
    hook.close()
    # THEN nothing is raised and nothing is bound here
    assert get_contextvars() == {}


# -- event sources --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "event", "event_source", "destination", "first_id"),
    [
        (
            EventType.KinesisDataStreams,
            kinesis_event(2),
            "aws:kinesis",
            "clickstream",
            "49590338271490256608559692538361571095921575989136588898",
        ),
        (EventType.DynamoDBStreams, dynamodb_event(2), "aws:dynamodb", "Orders", "4421584500000000017450439091"),
        (EventType.Kafka, kafka_event(2), "aws:kafka", "orders", "orders-0@15"),
    ],
)
def test_every_event_source_is_described(
    capsys: pytest.CaptureFixture[str],
    event_type: EventType,
    event: Any,
    event_source: str,
    destination: str,
    first_id: str,
) -> None:
    # GIVEN a stream or Kafka batch whose records all fail
    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(event_type, middleware=[LoggingMiddleware()])
    # WHEN processed
    with pytest.raises(BatchProcessingError):
        process_partial_response(event, handler, processor)
    # THEN lines name the source, its destination and the record identifiers
    out = capsys.readouterr().out
    failed = events(out, "record_failed")
    assert set(failed[0]) == FAILURE_FIELDS - {"receive_count"}
    assert (failed[0]["event_source"], failed[0]["destination"], failed[0]["message_id"]) == (
        event_source,
        destination,
        first_id,
    )
    [summary] = events(out, "batch_summary")
    assert (summary["event_source"], summary["destination"], summary["failed_message_ids"][0]) == (
        event_source,
        destination,
        first_id,
    )


def test_fifo_group_is_bound(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a FIFO record that fails
    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    # WHEN processed
    with pytest.raises(BatchProcessingError):
        process_partial_response(
            sqs_fifo_event(1, groups=["customer-9"]), handler, SqsFifoPartialProcessor(middleware=[LoggingMiddleware()])
        )
    # THEN its line names the message group and the .fifo queue
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert (line["fifo_group"], line["destination"]) == ("customer-9", "orders.fifo")


@pytest.mark.parametrize("attributes", [None, {"ApproximateReceiveCount": "n/a"}])
def test_sqs_records_with_odd_attributes_are_still_logged(
    capsys: pytest.CaptureFixture[str], attributes: dict[str, str] | None
) -> None:
    # GIVEN an SQS record without attributes, or with a receive count that is not a number
    event = sqs_event(1)
    event["Records"][0]["attributes"] = attributes
    # WHEN it fails
    run_sqs(handler=lambda record: 1 / 0, event=event)
    # THEN its line has the rest of the context and no receive_count
    line = events(capsys.readouterr().out, "record_failed")[0]
    assert "receive_count" not in line
    assert line["index"] == 0


# -- bodies ---------------------------------------------------------------------------------------


def test_bodies_are_never_logged_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN records whose body holds a card number, some failing, success lines on
    # WHEN processed at debug level
    run_sqs(6, level="debug", log_success=True)
    # THEN the card number appears nowhere in the output
    out = capsys.readouterr().out
    assert events(out, "record_processed")
    assert SECRET not in out
    assert all("body" not in line for line in lines(out))


def test_bodies_are_logged_truncated_when_opted_in(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN include_body with a 10-byte limit
    # WHEN a record fails
    run_sqs(1, include_body=True, max_body_bytes=10)
    # THEN its failure line has the first 10 bytes of the body and a marker
    assert events(capsys.readouterr().out, "record_failed")[0]["body"] == '{"card": "...[truncated]'


def test_body_truncation_does_not_split_characters(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a body of 3-byte characters and a limit that falls inside one
    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware(include_body=True, max_body_bytes=4)])
    # WHEN the record fails
    with pytest.raises(BatchProcessingError):
        process_partial_response(sqs_event(1, body="€€€"), handler, processor)
    # THEN only whole characters are kept
    assert events(capsys.readouterr().out, "record_failed")[0]["body"] == "€...[truncated]"


@pytest.mark.parametrize(
    ("event_type", "event", "body"),
    [
        (EventType.KinesisDataStreams, kinesis_event(1, data={"click": 1}), '{"click": 1}'),
        (EventType.Kafka, kafka_event(1, value={"order": 2}), '{"order": 2}'),
        (
            EventType.DynamoDBStreams,
            dynamodb_event(1, new_image={"pk": {"S": "order-0"}}),
            '{"pk":{"S":"order-0"}}',
        ),
    ],
)
def test_stream_bodies_are_decoded_when_opted_in(
    capsys: pytest.CaptureFixture[str], event_type: EventType, event: Any, body: str
) -> None:
    # GIVEN include_body on a stream or Kafka record
    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(event_type, middleware=[LoggingMiddleware(include_body=True)])
    # WHEN the record fails
    with pytest.raises(BatchProcessingError):
        process_partial_response(event, handler, processor)
    # THEN the body is the readable payload, not base64
    assert events(capsys.readouterr().out, "record_failed")[0]["body"] == body


def test_undecodable_stream_data_is_logged_as_received(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a Kinesis record whose data is not valid base64
    event = kinesis_event(1)
    event["Records"][0]["kinesis"]["data"] = "not base64!"

    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(EventType.KinesisDataStreams, middleware=[LoggingMiddleware(include_body=True)])
    # WHEN the record fails
    with pytest.raises(BatchProcessingError):
        process_partial_response(event, handler, processor)
    # THEN the raw data is logged instead
    assert events(capsys.readouterr().out, "record_failed")[0]["body"] == "not base64!"


def test_a_removal_logs_its_keys_and_a_record_without_either_has_no_body_field(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a DynamoDB REMOVE record (no NewImage), one without keys either, and include_body
    event = dynamodb_event(2)
    del event["Records"][0]["dynamodb"]["NewImage"]
    keys = event["Records"][0]["dynamodb"]["Keys"]
    for field in ("NewImage", "Keys"):
        event["Records"][1]["dynamodb"].pop(field, None)

    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(EventType.DynamoDBStreams, middleware=[LoggingMiddleware(include_body=True)])
    # WHEN the records fail
    with pytest.raises(BatchProcessingError):
        process_partial_response(event, handler, processor)
    # THEN the removal's body is its keys (sources.body_text's rule), the other line simply has none
    first, second = events(capsys.readouterr().out, "record_failed")
    assert json.loads(first["body"]) == keys
    assert "body" not in second


def test_kafka_tombstones_have_no_body_field(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a Kafka tombstone (null value) and include_body
    event = kafka_event(1)
    event["records"]["orders-0"][0]["value"] = None

    def handler(record: Any) -> None:
        raise PaymentDeclined("no")

    processor = BatchProcessor(EventType.Kafka, middleware=[LoggingMiddleware(include_body=True)])
    # WHEN the record fails
    with pytest.raises(BatchProcessingError):
        process_partial_response(event, handler, processor)
    # THEN the line simply has no body
    assert "body" not in events(capsys.readouterr().out, "record_failed")[0]


# -- tracing --------------------------------------------------------------------------------------


def test_trace_ids_come_from_the_current_span(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an OpenTelemetry span current while the batch runs (as the tracing middleware makes it)
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer(__name__)
    # WHEN a record fails inside it
    with tracer.start_as_current_span("invocation") as span:
        run_sqs(1)
    # THEN the failure line carries the span's W3C ids
    line = events(capsys.readouterr().out, "record_failed")[0]
    context = span.get_span_context()
    assert (line["trace_id"], line["span_id"]) == (format(context.trace_id, "032x"), format(context.span_id, "016x"))


def test_no_trace_ids_without_a_span(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN OpenTelemetry loaded but no span current
    import opentelemetry.trace  # noqa: F401

    # WHEN a record fails
    run_sqs(1)
    # THEN no trace fields are written
    assert "trace_id" not in events(capsys.readouterr().out, "record_failed")[0]


def test_logging_never_imports_opentelemetry() -> None:
    # GIVEN a fresh interpreter
    script = (
        "import sys\n"
        "from observed_batch import BatchProcessor, EventType, process_partial_response\n"
        "from observed_batch.testing import sqs_event\n"
        "p = BatchProcessor(EventType.SQS, middleware=['logging'])\n"
        "process_partial_response(sqs_event(2), lambda record: None, p)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    # WHEN a batch is processed with the logging middleware
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    # THEN opentelemetry was not imported
    assert result.stdout.strip().splitlines()[-1] == "[]"


# -- which logger writes --------------------------------------------------------------------------


def test_users_structlog_configuration_is_used() -> None:
    # GIVEN the user configured structlog
    capture = capture_user_structlog()
    # WHEN a batch is processed
    run_sqs(3)
    # THEN our lines go through their processors
    assert [entry["event"] for entry in capture.entries] == ["record_failed", "batch_summary"]
    assert [entry["log_level"] for entry in capture.entries] == ["error", "info"]


def test_structlog_is_not_configured_globally_by_default() -> None:
    # GIVEN structlog not configured by the user
    # WHEN the middleware is built and a batch processed
    run_sqs(3)
    # THEN structlog is still unconfigured
    assert not structlog.is_configured()


def test_configure_structlog_makes_handler_lines_json(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN configure_structlog and an unconfigured structlog
    def handler(record: Any) -> None:
        structlog.get_logger().warning("slow customer", customer="c-1")

    # WHEN a batch is processed
    run_sqs(1, handler, configure_structlog=True)
    # THEN the handler's own lines are the same JSON, with the record context
    [line] = events(capsys.readouterr().out, "slow customer")
    assert (line["level"], line["customer"], line["index"], line["event_source"]) == ("warning", "c-1", 0, "aws:sqs")


def test_configure_structlog_keeps_an_existing_configuration() -> None:
    # GIVEN a user configuration
    capture = capture_user_structlog()
    # WHEN configure_structlog is requested anyway
    LoggingMiddleware(configure_structlog=True)
    structlog.get_logger().info("mine")
    # THEN the user's configuration is untouched
    assert capture.entries == [{"event": "mine", "log_level": "info"}]


def test_an_injected_logger_is_used(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN an injected structlog logger
    capturing = CapturingLogger()
    logger = structlog.wrap_logger(capturing, processors=[])
    # WHEN a batch is processed
    run_sqs(3, logger=logger)
    # THEN it receives our lines and nothing is printed
    assert [(call.method_name, call.args) for call in capturing.calls] == [
        ("error", ()),
        ("info", ()),
    ]
    assert capturing.calls[0].kwargs["event"] == "record_failed"
    assert capsys.readouterr().out == ""


def test_an_injected_logger_without_bind_is_used() -> None:
    # GIVEN an injected object that only has the logging methods
    class Sink:
        def __init__(self) -> None:
            self.lines: list[tuple[str, str]] = []

        def error(self, event: str, **fields: Any) -> None:
            self.lines.append(("error", event))

        def info(self, event: str, **fields: Any) -> None:
            self.lines.append(("info", event))

    sink = Sink()
    # WHEN a batch is processed
    run_sqs(3, logger=sink)
    # THEN it gets the lines
    assert sink.lines == [("error", "record_failed"), ("info", "batch_summary")]


def test_a_failing_logger_never_changes_outcomes_or_leaks_context() -> None:
    # GIVEN an injected logger that raises on every call
    class Broken:
        def error(self, event: str, **fields: Any) -> None:
            raise OSError("disk full")

        info = error

    # WHEN a batch with failures is processed
    response = run_sqs(6, logger=Broken())
    # THEN the response is Powertools' and no context is left bound
    assert len(response["batchItemFailures"]) == 2
    assert get_contextvars() == {}


def test_a_broken_user_configuration_disables_lines_not_records() -> None:
    # GIVEN a user structlog configuration whose logger factory raises
    def broken_factory(*args: Any) -> Any:
        raise RuntimeError("misconfigured")

    structlog.configure(logger_factory=broken_factory)
    # WHEN a batch with failures is processed
    response = run_sqs(6)
    # THEN records are processed as Powertools decides and nothing stays bound
    assert len(response["batchItemFailures"]) == 2
    assert get_contextvars() == {}


def test_a_failure_without_exception_info_still_gets_a_line() -> None:
    # GIVEN the middleware driven directly, with a failure that carries no exception (a custom core)
    capturing = CapturingLogger()
    middleware = LoggingMiddleware(logger=structlog.wrap_logger(capturing, processors=[]))
    _, record, hook = enter_one_record(middleware)
    record.outcome = Outcome.FAILURE
    # WHEN the record finishes
    with pytest.raises(StopIteration):
        next(hook)
    # THEN a failure line without exception fields is written
    [call] = capturing.calls
    assert call.kwargs["event"] == "record_failed"
    assert "exc_type" not in call.kwargs


# -- levels and options ---------------------------------------------------------------------------


def test_powertools_log_level_wins_over_log_level(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN POWERTOOLS_LOG_LEVEL=DEBUG and LOG_LEVEL=ERROR
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    # WHEN successes are logged
    run_sqs(2, lambda record: "ok", log_success=True)
    # THEN debug lines are written
    assert len(events(capsys.readouterr().out, "record_processed")) == 2


def test_log_level_error_silences_the_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN LOG_LEVEL=error
    monkeypatch.setenv("LOG_LEVEL", "error")
    # WHEN a batch with failures is processed
    run_sqs(3)
    # THEN only error lines are written
    assert {line["event"] for line in lines(capsys.readouterr().out)} == {"record_failed"}


def test_level_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN POWERTOOLS_LOG_LEVEL=error
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "error")
    # WHEN the level option is given
    middleware = LoggingMiddleware(level="WARNING")
    # THEN it decides
    assert middleware.level == logging.WARNING


def test_bad_log_level_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN LOG_LEVEL set to something that is not a level
    monkeypatch.setenv("LOG_LEVEL", "verbose")
    # WHEN the middleware is built
    # THEN a ConfigError names the variable
    with pytest.raises(ConfigError, match="LOG_LEVEL='verbose'"):
        LoggingMiddleware()


def test_blank_level_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an empty POWERTOOLS_LOG_LEVEL
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", " ")
    # WHEN the middleware is built
    # THEN the default INFO applies
    assert LoggingMiddleware().level == logging.INFO


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"level": "loud"}, "logging option level='loud'"),
        ({"level": 10}, "level=10"),
        ({"success_sample_rate": 1.5}, "success_sample_rate=1.5"),
        ({"success_sample_rate": True}, "success_sample_rate=True"),
        ({"max_failed_ids": -1}, "max_failed_ids=-1"),
        ({"max_traceback_chars": 1.5}, "max_traceback_chars=1.5"),
        ({"max_message_chars": None}, "max_message_chars=None"),
        ({"max_body_bytes": False}, "max_body_bytes=False"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], named: str) -> None:
    # GIVEN an invalid option value
    # WHEN the middleware is built
    # THEN a ConfigError names the option and value
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        LoggingMiddleware(**options)


def test_options_come_from_the_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the middleware and an option enabled purely by environment
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "logging")
    monkeypatch.setenv("OBSERVED_BATCH_LOGGING_MAX_FAILED_IDS", "1")
    # WHEN a batch with 2 failures is processed
    process_partial_response(sqs_event(6), fail_every_third, BatchProcessor(EventType.SQS))
    # THEN the option applies
    assert len(events(capsys.readouterr().out, "batch_summary")[0]["failed_message_ids"]) == 1


# -- stdlib interop -------------------------------------------------------------------------------


def test_stdlib_records_become_json_lines_with_context(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN stdlib interop and a library logging through stdlib logging inside the handler
    def handler(record: Any) -> None:
        logging.getLogger("payments.client").warning("retrying %s", "charge")

    # WHEN a batch is processed
    run_sqs(1, handler, stdlib_interop=True, max_traceback_chars=0)
    # THEN the library's record is a JSON line with the record context
    [line] = events(capsys.readouterr().out, "retrying charge")
    assert (line["level"], line["logger"], line["index"], line["event_source"]) == (
        "warning",
        "payments.client",
        0,
        "aws:sqs",
    )
    assert line["timestamp"].endswith("Z")


def test_stdlib_exceptions_are_rendered(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN stdlib interop
    LoggingMiddleware(stdlib_interop=True)
    # WHEN a library logs an exception
    try:
        raise ValueError("broken")
    except ValueError:
        logging.getLogger("lib").exception("failed")
    # THEN the traceback is in the exception field
    [line] = events(capsys.readouterr().out, "failed")
    assert line["exception"].endswith("ValueError: broken")


def test_stdlib_interop_installs_one_handler() -> None:
    # GIVEN two processors built with stdlib interop (a warm container re-importing a module)
    before = len(logging.getLogger().handlers)
    LoggingMiddleware(stdlib_interop=True)
    LoggingMiddleware(stdlib_interop=True)
    # THEN the root logger has one handler more, not two
    assert len(logging.getLogger().handlers) == before + 1


def test_stdlib_interop_replaces_lambdas_plain_text_handler() -> None:
    # GIVEN the root handler Lambda's Python runtime installs (identified by its class name)
    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise AssertionError("would print every record twice")

    runtime = LambdaLoggerHandler()
    logging.getLogger().addHandler(runtime)
    # WHEN stdlib interop is enabled
    LoggingMiddleware(stdlib_interop=True)
    # THEN the runtime's handler is gone
    assert runtime not in logging.getLogger().handlers


def test_stdlib_handler_failures_are_reported_by_logging(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN stdlib interop and a stdout that cannot be written
    LoggingMiddleware(stdlib_interop=True)

    class ClosedStdout:
        def write(self, text: str) -> int:
            raise ValueError("I/O operation on closed file")

    monkeypatch.setattr(sys, "stdout", ClosedStdout())
    # WHEN a library logs
    logging.getLogger("lib").warning("lost")
    # THEN logging's own error reporting runs instead of an exception reaching the library
    assert "--- Logging error ---" in capsys.readouterr().err
