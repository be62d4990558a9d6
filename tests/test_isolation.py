"""Nothing outlives its record or invocation, whatever is raised; exception text keeps what matters
(exception groups' sub-exceptions) and never breaks an exporter (invalid UTF-8); two instances of one
middleware class keep separate state."""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
import structlog
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver
from structlog.contextvars import get_contextvars

import observed_batch as ob
from observed_batch.middleware import LoggingMiddleware, TimeoutGuardMiddleware, TracingMiddleware
from observed_batch.testing import FakeLambdaContext, sqs_event


class Interrupts(ob.Middleware):
    """Raises a BaseException before or after the record (innermost in the chain)."""

    name = "interrupts"

    def __init__(self, when: str, error: type[BaseException] = KeyboardInterrupt) -> None:
        self.when = when
        self.error = error

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        if self.when == "before":
            raise self.error()
        yield
        raise self.error()


def observed(extra: list[Any]) -> tuple[list[Any], InMemorySpanExporter, io.StringIO]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    logs = io.StringIO()
    chain = [
        TracingMiddleware(tracer_provider=provider),
        LoggingMiddleware(logger=structlog.wrap_logger(structlog.PrintLogger(logs))),
        *extra,
    ]
    return chain, exporter, logs


def assert_clean() -> None:
    assert get_contextvars() == {}
    assert trace.get_current_span() is trace.INVALID_SPAN


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit])
def test_a_base_exception_from_a_middleware_propagates_and_leaves_nothing_bound(
    when: str, error: type[BaseException]
) -> None:
    # GIVEN logging and tracing around a middleware that raises a BaseException before or after the record
    chain, exporter, _ = observed([Interrupts(when, error)])
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=chain)

    # WHEN a batch runs THEN the exception propagates (it is not swallowed)
    with pytest.raises(error):
        ob.process_partial_response(sqs_event(2), lambda record: "ok", processor)

    # AND no log context or current span is left over, and the record's span was ended
    assert_clean()
    (span,) = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes.get("observed_batch.incomplete") is True


def test_the_next_invocation_after_an_interrupt_logs_only_its_own_record() -> None:
    # GIVEN an invocation interrupted after its first record
    chain, _, _ = observed([Interrupts("after")])
    with pytest.raises(KeyboardInterrupt):
        ob.process_partial_response(
            sqs_event(1), lambda record: "ok", ob.BatchProcessor(ob.EventType.SQS, middleware=chain)
        )

    # WHEN the next invocation logs from its handler through structlog's contextvars
    seen: list[dict[str, Any]] = []
    clean, _, _ = observed([])
    event = sqs_event(1, seed=7)
    ob.process_partial_response(
        event, lambda record: seen.append(get_contextvars()), ob.BatchProcessor(ob.EventType.SQS, middleware=clean)
    )

    # THEN its lines carry its own record's id
    assert seen[0]["message_id"] == event["Records"][0]["messageId"]


def test_a_cancelled_async_record_restores_every_context() -> None:
    # GIVEN an async handler whose record task is cancelled
    chain, exporter, _ = observed([])

    async def handler(record: Any) -> None:
        raise asyncio.CancelledError

    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=chain)

    # WHEN the batch runs THEN the cancellation propagates, and nothing is left bound
    with pytest.raises(asyncio.CancelledError):
        ob.async_process_partial_response(sqs_event(2), handler, processor)
    assert_clean()
    assert all(s.end_time is not None for s in exporter.get_finished_spans())


def test_the_sentry_scope_is_restored_when_a_base_exception_leaves_the_record() -> None:
    # GIVEN Sentry on (a DSN nobody listens to: nothing is sent in this test) and an interrupting middleware
    sentry_sdk.init(dsn="http://key@127.0.0.1:9/1", default_integrations=False, auto_enabling_integrations=False)
    try:
        before = sentry_sdk.Scope.get_isolation_scope()
        processor = ob.BatchProcessor(ob.EventType.SQS, middleware=["sentry", Interrupts("after")])

        # WHEN the interrupt leaves the record
        with pytest.raises(KeyboardInterrupt):
            ob.process_partial_response(sqs_event(1), lambda record: "ok", processor)

        # THEN the isolation scope is the one from before the batch
        assert sentry_sdk.Scope.get_isolation_scope() is before
    finally:
        sentry_sdk.get_client().close(timeout=0)
        sentry_sdk.Scope.get_global_scope().set_client(None)


# -- exception text ------------------------------------------------------------------------------------------
def _group_handler(record: Any) -> None:
    try:
        raise ValueError("card declined")
    except ValueError as declined:
        first = declined
    raise builtins.ExceptionGroup("unhandled errors in a TaskGroup", [first, KeyError("missing sku")])


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_exception_groups_keep_their_sub_exceptions_in_logs_and_spans() -> None:
    # GIVEN a handler raising an exception group (as asyncio.TaskGroup does)
    chain, exporter, logs = observed([])
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=chain, raise_on_entire_batch_failure=False)

    # WHEN it fails a record
    ob.process_partial_response(sqs_event(1), _group_handler, processor)

    # THEN the log line and the span's stack trace name each sub-exception
    (span,) = exporter.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "exception"]
    assert event.attributes is not None
    stacktrace = str(event.attributes["exception.stacktrace"])
    for text in (logs.getvalue(), stacktrace):
        assert "ValueError: card declined" in text
        assert "KeyError: 'missing sku'" in text
        assert "(2 sub-exceptions)" in text


def test_invalid_utf8_in_an_exception_message_reaches_the_collector_sanitised() -> None:
    # GIVEN a real OTLP exporter, and a handler whose exception message holds a lone surrogate
    with OtlpReceiver() as receiver:
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.endpoint)))
        processor = ob.BatchProcessor(
            ob.EventType.SQS,
            middleware=[TracingMiddleware(tracer_provider=provider)],
            raise_on_entire_batch_failure=False,
        )
        bad = b"caf\xe9".decode("utf-8", "surrogateescape")

        def handler(record: Any) -> None:
            raise ValueError(f"menu {bad}")

        # WHEN it fails a record
        ob.process_partial_response(sqs_event(1), handler, processor)
        (span,) = receiver.wait_for_spans(1)
        provider.shutdown()

    # THEN the span arrived with its exception attributes, the invalid character replaced
    (_, attributes) = next(e for e in span.events if e[0] == "exception")
    assert attributes["exception.message"] == "menu caf\ufffd"
    assert "exception.stacktrace" in attributes


# -- per-instance state -----------------------------------------------------------------------------------------
def test_two_guards_with_different_margins_work_independently() -> None:
    # GIVEN two guards in one chain, the inner one much stricter, and 3 s left
    strict = TimeoutGuardMiddleware(min_remaining_ms=10_000, estimate=False)
    lenient = TimeoutGuardMiddleware(min_remaining_ms=100, estimate=False)
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[lenient, strict], raise_on_entire_batch_failure=False)
    calls: list[str] = []
    event = sqs_event(3, body=lambda i: json.dumps({"i": i}))

    # WHEN a batch runs
    response = ob.process_partial_response(
        event, lambda record: calls.append(record.message_id), processor, FakeLambdaContext(3_000)
    )

    # THEN the strict guard failed all three records, as it would alone
    assert calls == []
    assert len(response["batchItemFailures"]) == 3
