"""The ``powertools`` backend of ``logging`` with the real Powertools ``Logger`` writing to a captured stream."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter
from structlog.testing import LogCapture

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
from observed_batch.middleware import LoggingMiddleware
from observed_batch.testing import sqs_event, sqs_fifo_event

_services = iter(range(10**6))


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logger(stream: io.StringIO) -> Iterator[Logger]:
    """The function's own Logger, of a service no other test uses (Loggers of one service share a handler)."""
    service = f"orders-{next(_services)}"
    yield Logger(service=service, logger_handler=logging.StreamHandler(stream))
    logger_of_service = logging.getLogger(service)
    logger_of_service.handlers.clear()
    for attribute in ("init", "powertools_handler"):
        if hasattr(logger_of_service, attribute):
            delattr(logger_of_service, attribute)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def powertools(logger: Logger | None = None, **options: Any) -> LoggingMiddleware:
    return LoggingMiddleware(backend="powertools", powertools_logger=logger, **options)


def process(event: dict[str, Any], handler: Any, middleware: list[Any]) -> Any:
    processor = BatchProcessor(EventType.SQS, middleware=middleware, raise_on_entire_batch_failure=False)
    return process_partial_response(event, handler, processor)


def test_the_handlers_own_lines_carry_the_record_context(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN a handler logging with the function's Powertools Logger
    event = sqs_fifo_event(2)

    def handler(record: Any) -> None:
        logger.info("charging")

    # WHEN the batch is processed
    process(event, handler, [powertools(logger)])

    # THEN each of its lines carries its record's context
    charging = [line for line in lines(stream) if line["message"] == "charging"]
    assert [(c["message_id"], c["index"]) for c in charging] == [
        (r["messageId"], i) for i, r in enumerate(event["Records"])
    ]
    assert {(c["event_source"], c["destination"], c["receive_count"]) for c in charging} == {
        ("aws:sqs", "orders.fifo", 1)
    }
    assert [c["fifo_group"] for c in charging] == [r["attributes"]["MessageGroupId"] for r in event["Records"]]


def test_the_context_is_removed_after_the_record(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN a processed batch
    process(sqs_event(1), lambda record: None, [powertools(logger)])

    # WHEN the function logs afterwards
    logger.info("done")

    # THEN that line has no record context
    (done,) = [line for line in lines(stream) if line["message"] == "done"]
    assert "message_id" not in done
    assert logger.thread_safe_get_current_keys() == {}


def test_async_records_that_interleave_each_log_their_own_keys(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN an async handler whose records interleave (the first one finishes last)
    event = sqs_event(3)
    delays = {r["messageId"]: 0.03 - 0.01 * i for i, r in enumerate(event["Records"])}

    async def handler(record: Any) -> None:
        logger.info("started", expected=record.message_id)
        await asyncio.sleep(delays[record.message_id])
        logger.info("finished", expected=record.message_id)

    # WHEN the AsyncBatchProcessor runs them
    processor = AsyncBatchProcessor(EventType.SQS, middleware=[powertools(logger)])
    async_process_partial_response(event, handler, processor)

    # THEN every line carries the keys of the record that wrote it
    written = [line for line in lines(stream) if line["message"] in ("started", "finished")]
    assert len(written) == 6
    assert all(line["message_id"] == line["expected"] for line in written)


def test_keys_the_handler_adds_thread_safely_are_kept(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN a handler adding a thread-safe key of its own
    def handler(record: Any) -> None:
        logger.thread_safe_append_keys(tenant="acme")

    # WHEN a record is processed
    process(sqs_event(1), handler, [powertools(logger)])

    # THEN the handler's key stays (as Powertools keeps it), the record's are gone
    assert logger.thread_safe_get_current_keys() == {"tenant": "acme"}
    logger.thread_safe_clear_keys()


def test_thread_safe_keys_set_before_the_batch_are_restored(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN thread-safe keys of the function, one of them named like a record key
    logger.thread_safe_append_keys(request="r-1", index="outer")

    # WHEN a batch is processed
    process(sqs_event(1), lambda record: None, [powertools(logger)])

    # THEN the function's keys are as before
    assert logger.thread_safe_get_current_keys() == {"request": "r-1", "index": "outer"}
    logger.thread_safe_clear_keys()


def test_a_failure_is_one_error_line_through_the_logger(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN a failing handler
    def handler(record: Any) -> None:
        raise ValueError("card declined")

    # WHEN a record fails
    event = sqs_event(1)
    process(event, handler, [powertools(logger)])

    # THEN the Logger wrote one record_failed error line with the exception
    (failed,) = [line for line in lines(stream) if line.get("event") == "record_failed"]
    assert (failed["level"], failed["message"], failed["message_id"]) == (
        "ERROR",
        "record_failed",
        event["Records"][0]["messageId"],
    )
    assert (failed["exc_type"], failed["exc_message"]) == ("ValueError", "card declined")
    assert failed["exception"].rstrip().endswith("ValueError: card declined")


def test_the_failure_line_goes_through_redaction(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN e-mail redaction and a failure quoting an address
    def handler(record: Any) -> None:
        raise ValueError("no account for jane@example.com")

    processor = BatchProcessor(
        EventType.SQS,
        middleware=[powertools(logger)],
        config=Config(redact_patterns=["email"]),
        raise_on_entire_batch_failure=False,
    )
    # WHEN the record fails
    process_partial_response(sqs_event(1), handler, processor)

    # THEN the address is in none of the Logger's lines
    assert "jane@" not in stream.getvalue()


def test_the_batch_summary_is_written_through_the_logger(logger: Logger, stream: io.StringIO) -> None:
    # WHEN a batch of two is processed
    process(sqs_event(2), lambda record: None, [powertools(logger)])

    # THEN one batch_summary info line counts it
    (summary,) = [line for line in lines(stream) if line.get("event") == "batch_summary"]
    assert (summary["level"], summary["successes"], summary["batch_size"]) == ("INFO", 2, 2)


def _structlog_lines(event: dict[str, Any], handler: Any) -> dict[str, set[str]]:
    capture = LogCapture()
    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    process(event, handler, [LoggingMiddleware()])
    return {entry["event"]: set(entry) - {"log_level"} for entry in capture.entries}


def test_both_backends_write_the_same_field_names(logger: Logger, stream: io.StringIO) -> None:
    # GIVEN a batch with one failure and one success, written by each backend
    def handler(record: Any) -> None:
        if record.message_id == event["Records"][0]["messageId"]:
            raise ValueError("declined")

    event = sqs_event(2)
    expected = _structlog_lines(event, handler)
    process(event, handler, [powertools(logger)])
    written = {line["event"]: set(line) for line in lines(stream) if "event" in line}

    # WHEN / THEN every field of the structlog lines is in the Powertools lines (the Logs Insights
    # queries of the dashboard read these)
    assert set(expected) == set(written) == {"record_failed", "batch_summary"}
    for event_name, fields in expected.items():
        assert fields <= written[event_name], event_name


def test_the_logger_is_found_by_service_name(
    logger: Logger, stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the function's Logger and POWERTOOLS_SERVICE_NAME, but no Logger given to us
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", logger.service)
    monkeypatch.setenv("OBSERVED_BATCH_LOGGING_BACKEND", "powertools")

    def handler(record: Any) -> None:
        logger.info("charging")

    # WHEN a processor enables logging by name and processes a batch
    process(sqs_event(1), handler, ["logging"])

    # THEN the handler's line has the record context and our summary went to the same stream
    written = lines(stream)
    assert [line["message"] for line in written] == ["charging", "batch_summary"]
    assert "message_id" in written[0]


def test_a_given_logger_without_context_local_keys_is_refused() -> None:
    # GIVEN a Logger-like object without thread-safe keys (as Powertools versions before them)
    class OldLogger:
        def info(self, *args: Any, **kwargs: Any) -> None: ...

    # WHEN / THEN it is refused at construction
    with pytest.raises(ConfigError, match="context-local keys"):
        powertools(OldLogger())  # type: ignore[arg-type]


def test_a_formatter_that_does_not_write_thread_safe_keys_is_refused(stream: io.StringIO) -> None:
    # GIVEN a Logger with a custom formatter that ignores thread-safe keys
    class Plain(BasePowertoolsFormatter):
        def format(self, record: logging.LogRecord) -> str:
            return json.dumps({"message": record.getMessage()})

        def append_keys(self, **keys: Any) -> None: ...

        def clear_state(self) -> None: ...

        def thread_safe_append_keys(self, **keys: Any) -> None:
            from aws_lambda_powertools.logging.formatter import set_context_keys

            set_context_keys(**keys)

    custom = Logger(
        service=f"plain-{next(_services)}", logger_handler=logging.StreamHandler(stream), logger_formatter=Plain()
    )

    # WHEN / THEN the backend refuses it rather than binding keys no line would show
    with pytest.raises(ConfigError, match="its formatter does not write them"):
        powertools(custom)


def test_powertools_backend_needs_no_structlog(logger: Logger, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN structlog not installed
    real = config_module._importable
    monkeypatch.setattr(config_module, "_importable", lambda package: package != "structlog" and real(package))

    # WHEN the powertools backend is chosen THEN the processor builds
    config = Config(options={"logging": {"backend": "powertools", "powertools_logger": logger}})
    BatchProcessor(EventType.SQS, middleware=["logging"], config=config)

    # AND the structlog backend still names its extra
    with pytest.raises(MissingBackendError, match=r'pip install "observed-batch\[logging\]"'):
        BatchProcessor(EventType.SQS, middleware=["logging"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": "powertools", "stdlib_interop": True}, "are for backend 'structlog'"),
        ({"powertools_logger": object()}, "powertools_logger needs backend='powertools'"),
        ({"backend": "loguru"}, "backend='loguru' is not one of: structlog, powertools"),
    ],
)
def test_options_of_the_other_backend_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LoggingMiddleware(**options)
