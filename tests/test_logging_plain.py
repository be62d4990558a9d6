"""The default ``logging`` backend while the application has not imported structlog (``_json_lines``).

This test process has imported structlog long ago; ``without_structlog`` takes it out of ``sys.modules``
while a middleware is built and runs, as in a function that never imports it. That structlog is then
really not imported is proven in a fresh interpreter (``test_import_laziness``).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterator
from contextvars import copy_context
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.contextvars import bind_contextvars, clear_contextvars

from observed_batch import (
    AsyncBatchProcessor,
    BatchContext,
    BatchProcessor,
    EventType,
    RecordContext,
    async_process_partial_response,
    process_partial_response,
)
from observed_batch.middleware import LoggingMiddleware
from observed_batch.middleware._json_lines import (
    RECORD_CONTEXT,
    JsonLines,
    PlainBackend,
    merge_record_context,
    render,
    timestamp,
)
from observed_batch.middleware._log_fields import RecordFields
from observed_batch.middleware._structlog_logging import _json_processors, _timestamper
from observed_batch.testing import dynamodb_event, kafka_event, kinesis_event, sqs_event, sqs_fifo_event

METHODS = ("debug", "info", "warning", "warn", "error", "critical", "exception")


@pytest.fixture
def without_structlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the application had never imported structlog (restored afterwards)."""
    monkeypatch.delitem(sys.modules, "structlog")


@pytest.fixture(autouse=True)
def _pristine_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    clear_contextvars()
    yield
    structlog.reset_defaults()
    clear_contextvars()


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:
        return caught


class _Structlogged:
    """A value with structlog's ``__structlog__`` serialisation hook."""

    def __structlog__(self) -> str:
        return "custom"


# -- the renderer: structlog's chain, character for character -------------------------------------

_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)  # surrogates and control characters too
_NON_JSON = st.sampled_from([object, bytes, set, frozenset, complex, _Structlogged]).map(lambda kind: kind())
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | _TEXT | _NON_JSON
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)
# Keys the chain treats specially, and any other text.
_KEYS = st.sampled_from(["timestamp", "level", "event", "exception", "message_id", "index"]) | _TEXT
_EXC_INFO = st.sampled_from(
    [
        None,
        False,
        True,  # no exception being handled here: no ``exception`` field
        _raised(ValueError("déclined \ud800")),
        (KeyError, KeyError("k"), None),
        ("not", "an", "exc_info"),
    ]
)


@st.composite
def _lines(draw: st.DrawFn) -> tuple[str, str, dict[str, Any], dict[str, Any]]:
    """A method, an event, the line's fields, and a record context: some of the line's keys and at most one
    other (structlog appends several in its Context's hash order, which no renderer can reproduce)."""
    fields = draw(st.dictionaries(_KEYS, _VALUES, max_size=6))
    if draw(st.booleans()):
        fields["exc_info"] = draw(_EXC_INFO)
    shared = draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []
    context = {key: draw(_VALUES) for key in shared}
    extra = draw(st.none() | st.tuples(_KEYS.filter(lambda key: key not in fields), _VALUES))
    if extra is not None:
        context[extra[0]] = extra[1]
    return draw(st.sampled_from(METHODS)), draw(_TEXT), fields, context


_FROZEN = '{"timestamp":"T",'


def _chain_line(method: str, event: str, fields: dict[str, Any], context: dict[str, Any]) -> str:
    """structlog's chain (the one ``configure_structlog`` installs), its time stamp replaced by ``T``."""
    bind_contextvars(**context)
    try:
        line: Any = {**fields, "event": event}
        for processor in _json_processors():
            line = processor(None, method, line)
    finally:
        clear_contextvars()
    return re.sub(r'^\{"timestamp":"[^"]*",', _FROZEN, str(line))


class _GivenFields(RecordFields):
    """A record context with these fields (no record behind it)."""

    def __init__(self, given: dict[str, Any]) -> None:
        self._fields = given


def _bound_message_id() -> Any:
    context = RECORD_CONTEXT.get()
    return None if context is None else context.fields().get("message_id")


def _our_line(method: str, event: str, fields: dict[str, Any], context: dict[str, Any]) -> str:
    token = RECORD_CONTEXT.set(_GivenFields(context))
    try:
        return render(method, merge_record_context(None, method, {**fields, "event": event}), now=lambda: "T")
    finally:
        RECORD_CONTEXT.reset(token)


@pytest.mark.skipif(
    tuple(int(part) for part in structlog.__version__.split(".")[:2]) < (25, 1),
    reason="structlog before 25.1 writes exc_info=True outside an except block as exception='MISSING' (ours as 25.1+)",
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(line=_lines())
def test_our_renderer_writes_what_structlogs_chain_renders(
    line: tuple[str, str, dict[str, Any], dict[str, Any]],
) -> None:
    # GIVEN any method, event, fields (unicode, surrogates, nan/inf, nested, non-JSON values, the keys the
    # chain sets itself, exc_info) and a bound record context
    method, event, fields, context = line
    # WHEN structlog's processor chain and our renderer write the line
    try:
        expected = _chain_line(method, event, fields, context)
    except (TypeError, ValueError) as error:  # e.g. a nested dict with a key JSON cannot have
        # THEN where the chain fails, ours fails the same way
        with pytest.raises(type(error)):
            _our_line(method, event, fields, context)
        return
    # THEN the characters are the same (the time stamp aside, compared below)
    assert _our_line(method, event, fields, context) == expected


def test_our_time_stamps_are_structlogs() -> None:
    # GIVEN structlog's time stamper and ours
    theirs = _timestamper()(None, "info", {})["timestamp"]
    # WHEN ours stamps a line
    ours = timestamp()
    # THEN both are ISO 8601 UTC with a Z and the same precision
    pattern = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z"
    assert re.fullmatch(pattern, theirs)
    assert re.fullmatch(pattern, ours)
    assert datetime.datetime.fromisoformat(ours.replace("Z", "+00:00")).tzinfo == datetime.timezone.utc


@pytest.mark.parametrize("micro", [0, 1, 999_999])
def test_our_time_stamps_are_datetimes_isoformat(monkeypatch: pytest.MonkeyPatch, micro: int) -> None:
    # GIVEN a clock at a whole second, or a fraction past one, with a line stamped the second before
    from observed_batch.middleware import _json_lines

    second = 1_795_000_000
    monkeypatch.setattr(_json_lines.time, "time_ns", lambda: (second - 1) * 10**9)
    timestamp()
    monkeypatch.setattr(_json_lines.time, "time_ns", lambda: second * 10**9 + micro * 1000 + 999)
    # WHEN ours stamps a line
    ours = timestamp()
    # THEN it is what structlog's stamper writes: datetime's isoformat in UTC with a Z (no fraction on a whole second)
    at = datetime.datetime.fromtimestamp(second, tz=datetime.timezone.utc) + datetime.timedelta(microseconds=micro)
    assert ours == at.isoformat().replace("+00:00", "Z")


def test_nan_and_infinity_are_written_as_structlog_writes_them() -> None:
    # GIVEN non-finite floats in a line
    fields = {"a": math.nan, "b": math.inf, "c": -math.inf}
    # WHEN ours renders it
    line = _our_line("info", "e", fields, {})
    # THEN it is structlog's (JSON's NaN/Infinity extension, as json.dumps writes it)
    assert (
        line
        == _chain_line("info", "e", fields, {})
        == '{"timestamp":"T","level":"info","event":"e","a":NaN,"b":Infinity,"c":-Infinity}'
    )


# -- whole batches: the same lines as the structlog backend ---------------------------------------


def _failing_every_second() -> Callable[[Any], str]:
    """A handler failing every second record it gets (records are handled in order)."""
    calls = itertools.count()

    def handler(record: Any) -> str:
        if next(calls) % 2:
            raise ValueError("declined ✓")
        return "ok"

    return handler


_BATCHES = {
    "sqs": (EventType.SQS, lambda: sqs_event(4, body={"card": "4111"})),
    "sqs fifo": (EventType.SQS, lambda: sqs_fifo_event(3)),
    "kinesis": (EventType.KinesisDataStreams, lambda: kinesis_event(3)),
    "dynamodb": (EventType.DynamoDBStreams, lambda: dynamodb_event(3)),
    "kafka": (EventType.Kafka, lambda: kafka_event(3)),
}


def _batch_lines(capsys: pytest.CaptureFixture[str], source: str, options: dict[str, Any]) -> list[str]:
    event_type, event = _BATCHES[source]
    processor = BatchProcessor(
        event_type, raise_on_entire_batch_failure=False, middleware=[LoggingMiddleware(**options)]
    )
    process_partial_response(event(), _failing_every_second(), processor)
    out = capsys.readouterr().out
    # The time stamp and the durations are the only values of the machine's clock.
    out = re.sub(r'^\{"timestamp":"[^"]*",', _FROZEN, out, flags=re.MULTILINE)
    return re.sub(r'"duration_ms":[0-9.e-]+', '"duration_ms":0', out).splitlines()


@pytest.mark.parametrize("source", sorted(_BATCHES))
@pytest.mark.parametrize(
    "options", [{}, {"level": "debug", "log_success": True, "include_body": True}], ids=["default", "everything"]
)
def test_a_batch_writes_the_same_lines_as_with_structlog(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, source: str, options: dict[str, Any]
) -> None:
    # GIVEN the lines of a batch with failures, written by the structlog backend (structlog imported)
    with_structlog = _batch_lines(capsys, source, options)
    # WHEN the same batch runs where structlog was never imported
    monkeypatch.delitem(sys.modules, "structlog")
    middleware = LoggingMiddleware(**options)
    assert isinstance(middleware._backend, PlainBackend)
    without = _batch_lines(capsys, source, options)
    # THEN the lines are the same characters (clock values aside)
    assert with_structlog
    assert without == with_structlog


# -- the record context ---------------------------------------------------------------------------


@pytest.mark.usefixtures("without_structlog")
def test_async_records_keep_their_own_context(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN async handlers that sleep longer the earlier they start, each waits for the next record to
    # finish first (so the interleaving does not depend on the machine's speed), and the odd ones fail
    count = 5
    finished = [asyncio.Event() for _ in range(count)]
    seen: list[tuple[str, Any, Any]] = []

    async def handler(record: Any) -> str:
        index = int(record.attributes.sent_timestamp) % 1000
        seen.append(("started", record.message_id, _bound_message_id()))
        await asyncio.sleep((count - index) * 0.002)
        if index + 1 < count:
            await asyncio.wait_for(finished[index + 1].wait(), timeout=5)
        seen.append(("finished", record.message_id, _bound_message_id()))
        finished[index].set()
        if index % 2:
            raise ValueError("declined")
        return "ok"

    # and success lines on (so the record context is bound while each record runs)
    processor = AsyncBatchProcessor(EventType.SQS, middleware=[LoggingMiddleware(level="debug", log_success=True)])
    # WHEN the batch is processed concurrently
    response = async_process_partial_response(sqs_event(count), handler, processor)
    # THEN every record saw its own context throughout, the failure lines name their records, and nothing
    # is left set afterwards
    assert len(response["batchItemFailures"]) == 2
    assert [step for step, _, _ in seen].count("finished") == count
    assert all(own == bound for _, own, bound in seen)
    failed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"record_failed"' in line]
    assert sorted(line["index"] for line in failed) == [1, 3]
    assert {line["message_id"] for line in failed} == {i["itemIdentifier"] for i in response["batchItemFailures"]}
    assert RECORD_CONTEXT.get() is None


def _keeping_contexts(kept: dict[int, RecordFields]) -> Callable[[Any], str]:
    """A handler that keeps each record's bound context (without reading its fields) and fails odd records."""

    def handler(record: Any) -> str:
        index = int(record.attributes.sent_timestamp) % 1000
        context = RECORD_CONTEXT.get()
        assert context is not None
        kept[index] = context
        if index % 2:
            raise ValueError("declined")
        return "ok"

    return handler


def _failing_odd(bound: dict[int, Any]) -> Callable[[Any], str]:
    """A handler that notes what is bound in our ContextVar while it runs and fails odd records."""

    def handler(record: Any) -> str:
        index = int(record.attributes.sent_timestamp) % 1000
        bound[index] = RECORD_CONTEXT.get()
        if index % 2:
            raise ValueError("declined")
        return "ok"

    return handler


@pytest.mark.usefixtures("without_structlog")
def test_by_default_records_run_without_a_hook_and_failure_lines_carry_their_context(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN the default options (no success lines, structlog not imported) and every second record failing
    bound: dict[int, Any] = {}
    event = sqs_event(6)
    processor = BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware()])
    # WHEN it is processed
    process_partial_response(event, _failing_odd(bound), processor)
    # THEN no record context was bound while records ran (nothing could read it: no per-record hook at all),
    # and each failure line carries its own record's context and duration
    assert bound == dict.fromkeys(range(6))
    failed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"record_failed"' in line]
    assert [(line["index"], line["message_id"]) for line in failed] == [
        (i, event["Records"][i]["messageId"]) for i in (1, 3, 5)
    ]
    assert all(line["event_source"] == "aws:sqs" and line["receive_count"] == 1 for line in failed)
    assert all(line["duration_ms"] > 0 for line in failed)


@pytest.mark.usefixtures("without_structlog")
def test_async_failure_lines_carry_their_own_records_context(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN async handlers that interleave (the earlier a record starts, the later it ends), odd ones failing
    bound: dict[int, Any] = {}
    keep = _failing_odd(bound)

    async def handler(record: Any) -> str:
        await asyncio.sleep((5 - int(record.attributes.sent_timestamp) % 1000) * 0.002)
        return keep(record)

    event = sqs_event(5)
    processor = AsyncBatchProcessor(EventType.SQS, middleware=[LoggingMiddleware()])
    # WHEN the batch is processed concurrently
    async_process_partial_response(event, handler, processor)
    # THEN each failure line carries its own record's context
    failed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"record_failed"' in line]
    assert sorted((line["index"], line["message_id"]) for line in failed) == [
        (i, event["Records"][i]["messageId"]) for i in (1, 3)
    ]


@pytest.mark.usefixtures("without_structlog")
def test_success_lines_compute_the_fields_once_per_record(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN success lines on
    kept: dict[int, RecordFields] = {}
    processor = BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware(level="debug", log_success=True)])
    # WHEN a batch is processed
    process_partial_response(sqs_event(4), _keeping_contexts(kept), processor)
    # THEN every record's fields were computed, once (the same mapping each time asked), and its line has them
    assert all(context.computed and context.fields() is context.fields() for context in kept.values())
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"record_' in line]
    assert [(line["event"], line["index"]) for line in lines] == [
        ("record_processed", 0),
        ("record_failed", 1),
        ("record_processed", 2),
        ("record_failed", 3),
    ]
    assert all(line.items() >= kept[line["index"]].fields().items() for line in lines)


@pytest.mark.usefixtures("without_structlog")
@pytest.mark.parametrize("log_success", [False, True], ids=["no-record-hook", "context-bound"])
def test_a_span_the_handler_starts_does_not_leak_its_ids_into_the_records_lines(
    capsys: pytest.CaptureFixture[str], log_success: bool
) -> None:
    # GIVEN tracing before logging (each record has its own span), and a handler that writes a line of ours
    # inside a child span it starts (the first line of the record: it computes the fields) and then fails;
    # by default no record context is bound (that line has none), with success lines on it is
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from observed_batch.middleware import TracingMiddleware

    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(__name__)
    ours = JsonLines(logging.INFO)

    def handler(record: Any) -> str:
        with tracer.start_as_current_span("child"):
            ours.info("inside_child", child=True)
            raise ValueError("declined")

    processor = BatchProcessor(
        EventType.SQS,
        raise_on_entire_batch_failure=False,
        middleware=[TracingMiddleware(tracer_provider=provider), LoggingMiddleware(log_success=log_success)],
    )
    # WHEN two records are processed
    process_partial_response(sqs_event(2), handler, processor)
    # THEN every line of a record carries its record span's ids, the one inside the child span too, and the
    # record_failed line written after it ended carries them as well (nothing cached from the child)
    spans = exporter.get_finished_spans()
    ids = {
        span.attributes["messaging.message.id"]: (
            format(span.context.trace_id, "032x"),
            format(span.context.span_id, "016x"),
        )
        for span in spans
        if span.name != "child" and span.attributes and "messaging.message.id" in span.attributes
    }
    children = {format(span.context.span_id, "016x") for span in spans if span.name == "child"}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"message_id"' in line]
    assert [line["event"] for line in lines] == (
        ["inside_child", "record_failed"] if log_success else ["record_failed"]
    ) * 2
    assert len(ids) == 2
    assert len(children) == 2
    assert all((line["trace_id"], line["span_id"]) == ids[line["message_id"]] for line in lines)
    assert not children & {line["span_id"] for line in lines}


@pytest.mark.usefixtures("without_structlog")
def test_a_hook_closed_in_another_context_does_not_raise() -> None:
    # GIVEN a record hook entered in one context (as an async task does) and never resumed
    middleware = LoggingMiddleware()
    batch = BatchContext(EventType.SQS, sqs_event(1)["Records"])
    middleware.on_batch_start(batch)
    hook = middleware.wrap_record(RecordContext(batch, batch.records[0], 0))
    copy_context().run(next, hook)
    # WHEN it is closed from this context (as the garbage collector may)
    hook.close()
    # THEN nothing is raised and nothing is set here
    assert RECORD_CONTEXT.get() is None


def test_once_the_application_imports_structlog_its_lines_get_the_context(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a middleware built, and a first batch run, while structlog was not imported
    monkeypatch.delitem(sys.modules, "structlog")
    middleware = LoggingMiddleware()
    processor = BatchProcessor(EventType.SQS, middleware=[middleware])
    handled: list[dict[str, Any]] = []

    def handler(record: Any) -> None:
        if "structlog" in sys.modules:
            handled.append(structlog.contextvars.get_contextvars())

    process_partial_response(sqs_event(2), handler, processor)
    # WHEN the application imports structlog and the next batch runs
    monkeypatch.undo()
    process_partial_response(sqs_event(2), handler, processor)
    # THEN from that batch on the record context is bound in structlog's contextvars, and unbound after it
    assert [context["index"] for context in handled] == [0, 1]
    assert structlog.contextvars.get_contextvars() == {}


@pytest.mark.parametrize(
    "options",
    [{"stdlib_interop": True}, {"configure_structlog": True}, {"logger": "a structlog-style logger"}],
    ids=["stdlib_interop", "configure_structlog", "logger"],
)
def test_options_that_need_structlog_choose_the_structlog_backend(options: dict[str, Any]) -> None:
    # GIVEN an option that works through structlog (the import itself: test_import_laziness)
    # WHEN the middleware is built
    middleware = LoggingMiddleware(**{**options, "logger": structlog.get_logger()} if "logger" in options else options)
    # THEN it is the structlog backend
    assert not isinstance(middleware._backend, PlainBackend)
