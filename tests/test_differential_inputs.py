"""Differential test for odd inputs: whatever Powertools does with records that are a generator, ``None``,
a dict, non-dict items or a malformed event (an answer, or an exception of some type and message),
observed_batch does the same, through every entry point, with middleware on or off."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import observed_batch as ob
from observed_batch.testing import RecordingMiddleware, sqs_record


def _chain(kind: str) -> list[Any]:
    if kind == "none":
        return []
    import structlog

    from observed_batch.middleware import LoggingMiddleware, MetricsMiddleware

    return [
        RecordingMiddleware(),
        MetricsMiddleware(sink=lambda line: None),
        LoggingMiddleware(logger=structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))),
    ]


def _records(kind: str, size: int, failing: set[int]) -> Any:
    """Fresh records of one odd kind (a new generator per call: each side consumes its own)."""
    good = [sqs_record(i, body=json.dumps({"i": i, "fail": i in failing})) for i in range(size)]
    if kind == "generator":
        return (record for record in good)
    if kind == "tuple":
        return tuple(good)
    if kind == "none":
        return None
    if kind == "dict":
        return {"Records": good}
    if kind == "non_dict_items":
        return [1, "two", None, *good][: max(size, 1)]
    return good


def _handler(calls: list[Any]) -> Callable[[Any], Any]:
    def handler(record: Any) -> Any:
        calls.append(getattr(record, "message_id", repr(record)))
        if json.loads(record.body)["fail"]:
            raise ValueError("planned")
        return "ok"

    return handler


def _async_handler(calls: list[Any]) -> Callable[[Any], Any]:
    sync = _handler(calls)

    async def handler(record: Any) -> Any:
        return sync(record)

    return handler


def _outcome(run: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "response", run()
    except Exception as exc:
        children = [(type(c[1]).__name__, str(c[1])) for c in getattr(exc, "child_exceptions", []) or []]
        return "raised", (type(exc).__name__, str(exc), children)


def _via(module: Any, entry: str, records: Any, calls: list[Any], middleware: list[Any]) -> tuple[str, Any]:
    extra = {"middleware": middleware} if module is ob else {}
    if entry == "context_manager":
        processor = module.BatchProcessor(module.EventType.SQS, **extra)

        def run() -> Any:
            with processor(records, _handler(calls)) as batch:
                batch.process()
            return processor.response()

        return _outcome(run)
    if entry == "async_context_manager":
        processor = module.AsyncBatchProcessor(module.EventType.SQS, **extra)

        def run_async() -> Any:
            with processor(records, _async_handler(calls)) as batch:
                batch.async_process()
            return processor.response()

        return _outcome(run_async)
    if entry == "fifo_context_manager":
        processor = module.SqsFifoPartialProcessor(**extra)

        def run_fifo() -> Any:
            with processor(records, _handler(calls)) as batch:
                batch.process()
            return processor.response()

        return _outcome(run_fifo)
    if entry == "legacy_decorator":
        processor = module.BatchProcessor(module.EventType.SQS, **extra)

        @module.batch_processor(record_handler=_handler(calls), processor=processor)
        def lambda_handler(event: Any, context: Any) -> Any:
            return processor.response()

        return _outcome(lambda: lambda_handler({"Records": records}, None))
    processor = module.BatchProcessor(module.EventType.SQS, **extra)
    return _outcome(lambda: module.process_partial_response({"Records": records}, _handler(calls), processor))


ENTRIES = [
    "context_manager",
    "async_context_manager",
    "fifo_context_manager",
    "legacy_decorator",
    "process_partial_response",
]


@pytest.mark.parametrize("chain", ["none", "builtins"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["generator", "tuple", "none", "dict", "non_dict_items", "list"]),
    entry=st.sampled_from(ENTRIES),
    size=st.integers(min_value=0, max_value=6),
    failing=st.sets(st.integers(min_value=0, max_value=5)),
)
def test_odd_inputs_behave_exactly_as_in_powertools(
    chain: str, kind: str, entry: str, size: int, failing: set[int]
) -> None:
    # GIVEN odd records (a fresh copy for each side) and the same handler
    expected_calls: list[Any] = []
    actual_calls: list[Any] = []

    # WHEN Powertools and observed_batch get them through the same entry point
    expected = _via(pt, entry, _records(kind, size, failing), expected_calls, [])
    actual = _via(ob, entry, _records(kind, size, failing), actual_calls, _chain(chain))

    # THEN the answer or the exception (type, message, children) and the handler calls are identical
    assert actual == expected
    assert actual_calls == expected_calls


def test_a_generator_is_processed_without_being_consumed_early() -> None:
    # GIVEN records as a generator that counts what is taken from it
    taken: list[int] = []

    def records() -> Iterator[dict[str, Any]]:
        for i in range(3):
            taken.append(i)
            yield sqs_record(i)

    recorder = RecordingMiddleware()
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[recorder])

    # WHEN it goes through the context manager
    with processor(records(), lambda record: "ok") as batch:
        batch.process()

    # THEN each record was taken once, when processed, and the middlewares saw the batch fill as it ran
    assert taken == [0, 1, 2]
    assert processor.response() == {"batchItemFailures": []}
    (_, batch_context, summary) = recorder.events[-1]
    assert (batch_context.size, summary.successes, batch_context.destination) == (3, 3, "orders")
