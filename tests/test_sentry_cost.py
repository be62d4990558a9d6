"""What ``sentry`` does not pay for: no per-record hook before Sentry exists, no source context for library
frames. What it still sends is checked against the real SDK and a local receiver (tests/sentry_receiver.py)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
import sentry_sdk
from aws_lambda_powertools import Logger
from record_hook import counting_record_hooks
from sentry_receiver import SentryReceiver

import observed_batch as ob
from observed_batch.middleware import LoggingMiddleware, SentryMiddleware
from observed_batch.testing import FakeLambdaContext, sqs_event

#: Every test here starts and ends without a Sentry client (conftest.clean_sentry).
pytestmark = pytest.mark.usefixtures("clean_sentry")


@pytest.fixture
def receiver(sentry_receiver: SentryReceiver) -> SentryReceiver:
    return sentry_receiver


def handler(record: Any) -> str:
    logging.getLogger("orders").warning("handling %s", record.body)
    if record.body.startswith("fail"):
        raise ValueError(f"rejected {record.body}")  # the application's frame: source context expected
    return str(record.body)


def run(middleware: SentryMiddleware, bodies: list[str]) -> Any:
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[middleware])
    event = sqs_event(len(bodies), body=lambda i: bodies[i])
    return ob.process_partial_response(event, handler, processor, FakeLambdaContext())


def test_before_sentry_exists_successful_records_run_no_hook(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SENTRY_DSN and no sentry_sdk.init (Sentry is initialised at the first failure)
    monkeypatch.setenv("SENTRY_DSN", receiver.dsn)
    middleware = counting_record_hooks(SentryMiddleware)()

    # WHEN a batch with one failure in four runs
    response = run(middleware, ["a", "fail-b", "c", "d"])

    # THEN no record was wrapped, and the failure was still captured
    assert middleware.entered == 0
    assert len(response["batchItemFailures"]) == 1
    (event,) = receiver.wait_for_events(1)
    assert event["exception"]["values"][-1]["value"] == "rejected fail-b"


def test_the_batch_that_initialises_sentry_sends_no_other_records_breadcrumbs(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SENTRY_DSN only; every record logs a warning (a breadcrumb once Sentry's logging integration is on)
    monkeypatch.setenv("SENTRY_DSN", receiver.dsn)

    # WHEN the first and the third record fail (Sentry is initialised by the first)
    run(SentryMiddleware(), ["fail-a", "b", "fail-c"])

    # THEN neither event carries a breadcrumb of record b (nor any other record's)
    events = receiver.wait_for_events(2)
    crumbs = [c.get("message") for event in events for c in event.get("breadcrumbs", {}).get("values", [])]
    assert not [c for c in crumbs if c and "handling b" in c]


def handler_logging_an_error(record: Any) -> str:
    if record.body.startswith("fail"):
        logging.getLogger("orders").error("giving up on %s", record.body)
        raise ValueError(f"rejected {record.body}")
    return str(record.body)


def test_sentry_from_the_dsn_sends_one_event_per_failed_record_not_one_per_error_line(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN SENTRY_DSN only, the logging middleware writing through a Powertools Logger (stdlib logging), and a
    # handler that logs an error before it raises
    monkeypatch.setenv("SENTRY_DSN", receiver.dsn)
    processor = ob.BatchProcessor(
        ob.EventType.SQS, middleware=[SentryMiddleware(), LoggingMiddleware(backend="powertools")]
    )
    event = sqs_event(3, body=lambda i: ["fail-a", "b", "fail-c"][i])

    # WHEN two invocations run with two failed records each (the first one initialises Sentry)
    for _ in range(2):
        ob.process_partial_response(event, handler_logging_an_error, processor, FakeLambdaContext())
    sentry_sdk.flush(timeout=5.0)

    # THEN the four events are the middleware's own: neither the handler's error line nor the logging
    # middleware's record_failed line became an event of its own (outside max_events_per_batch)
    events = receiver.wait_for_events(4)
    assert len(receiver.events()) == 4
    assert {e["exception"]["values"][-1]["mechanism"]["type"] for e in events} == {"observed_batch"}
    # AND in the second invocation the error lines are breadcrumbs of their own record's event
    crumbs = [c.get("message") for c in events[-1].get("breadcrumbs", {}).get("values", [])]
    assert "giving up on fail-c" in crumbs
    assert "giving up on fail-a" not in crumbs
    capsys.readouterr()


def test_source_context_only_for_the_applications_frames(receiver: SentryReceiver) -> None:
    # GIVEN the application's Sentry with the SDK's default include_source_context=True
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False)

    # WHEN a record fails in this file's handler (called from Powertools, in site-packages)
    run(SentryMiddleware(), ["fail-a", "b"])

    # THEN the handler's frame has its source lines, Powertools' frame has none
    (event,) = receiver.wait_for_events(1)
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    ours = [f for f in frames if f.get("function") == "handler"]
    library = [f for f in frames if "aws_lambda_powertools" in f.get("abs_path", "")]
    assert ours
    assert library
    assert 'raise ValueError(f"rejected {record.body}")' in ours[0]["context_line"]
    assert len(ours[0]["pre_context"]) == 5
    assert all("context_line" not in f for f in library)


def test_every_failure_of_a_batch_gets_the_source_context_of_its_frames(receiver: SentryReceiver) -> None:
    # GIVEN the application's Sentry, and an event processor that changes the first event's source lines
    def change_first(event: Any, hint: Any) -> Any:
        if "fail-a" in event["exception"]["values"][-1]["value"]:
            for frame in event["exception"]["values"][-1]["stacktrace"]["frames"]:
                if frame.get("pre_context"):
                    frame["pre_context"].append("changed by an event processor")
        return event

    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False)
    sentry_sdk.Scope.get_isolation_scope().add_event_processor(change_first)

    # WHEN two records of one batch fail at the same line of this file's handler
    run(SentryMiddleware(), ["fail-a", "b", "fail-c"])

    # THEN both events carry that line's source context, each its own (the first one's change is not the second's)
    events = receiver.wait_for_events(2)
    handler_frames = {
        event["exception"]["values"][-1]["value"]: next(
            f for f in event["exception"]["values"][-1]["stacktrace"]["frames"] if f.get("function") == "handler"
        )
        for event in events
    }
    first, second = handler_frames["rejected fail-a"], handler_frames["rejected fail-c"]
    assert 'raise ValueError(f"rejected {record.body}")' in second["context_line"]
    assert first["context_line"] == second["context_line"]
    assert first["pre_context"][-1] == "changed by an event processor"
    assert len(second["pre_context"]) == 5
    assert "changed by an event processor" not in second["pre_context"]


def test_no_source_context_when_the_sdk_is_told_so(receiver: SentryReceiver) -> None:
    # GIVEN the application turned source context off
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, include_source_context=False)

    # WHEN a record fails THEN no frame has source lines
    run(SentryMiddleware(), ["fail-a", "b"])
    (event,) = receiver.wait_for_events(1)
    assert all("context_line" not in f for f in event["exception"]["values"][-1]["stacktrace"]["frames"])


@pytest.mark.parametrize(
    ("path", "module", "expected"),
    [
        ("/var/task/app.py", "app", True),
        ("/var/task/aws_lambda_powertools/batch/base.py", "aws_lambda_powertools.batch.base", False),
        ("/opt/python/lib/python3.12/site-packages/orders/models.py", "orders.models", False),
        ("<frozen runpy>", None, False),
    ],
)
def test_which_frames_are_the_applications(path: str, module: Any, expected: bool) -> None:
    from observed_batch.middleware._sentry_event import is_application_frame

    # GIVEN a frame's path and module WHEN classified THEN bundled libraries and site-packages are not the app's
    assert is_application_frame(path, module) is expected


@pytest.mark.parametrize("is_async", [False, True])
def test_with_the_users_own_init_the_record_failed_line_is_not_a_second_event(
    receiver: SentryReceiver, is_async: bool
) -> None:
    # GIVEN the application's own sentry_sdk.init (default integrations: error log lines become events) and
    # the logging middleware writing its record_failed line through a Powertools Logger (stdlib logging)
    sentry_sdk.init(dsn=receiver.dsn)
    stream = io.StringIO()
    service = f"orders-{is_async}"
    powertools_logger = Logger(service=service, logger_handler=logging.StreamHandler(stream))
    middleware = [SentryMiddleware(), LoggingMiddleware(backend="powertools", powertools_logger=powertools_logger)]
    event = sqs_event(3, body=lambda i: ["fail-a", "b", "fail-c"][i])

    # WHEN a batch with two failing records runs (sync and async processors)
    if is_async:

        async def async_handler(record: Any) -> str:
            return handler(record)

        processor: Any = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=middleware)
        ob.async_process_partial_response(event, async_handler, processor, FakeLambdaContext())
    else:
        processor = ob.BatchProcessor(ob.EventType.SQS, middleware=middleware)
        ob.process_partial_response(event, handler, processor, FakeLambdaContext())
    sentry_sdk.flush(timeout=5.0)

    # THEN Sentry has one event per failed record, the middleware's own (max_events_per_batch holds)
    events = receiver.wait_for_events(2)
    assert len(receiver.events()) == 2
    assert {e["exception"]["values"][-1]["mechanism"]["type"] for e in events} == {"observed_batch"}
    # AND the record_failed lines are still in the function's log
    failed = [line for line in stream.getvalue().splitlines() if json.loads(line)["message"] == "record_failed"]
    assert len(failed) == 2
    logging.getLogger(service).handlers.clear()
