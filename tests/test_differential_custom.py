"""Differential test for custom partial processors: the same user class on observed_batch's base and on
Powertools' base returns the same, raises the same and calls the handler in the same order, sync and
async, with the chain empty, misbehaving, every built-in on, or every record hook skipped.

Two custom processors, written the documented way (the user's ``_prepare`` / ``_clean`` /
``_process_record`` / ``_async_process_record`` report through ``success_handler`` / ``failure_handler``):
``Reporting`` on ``BasePartialBatchProcessor`` (Powertools' bookkeeping builds the partial response) and
``Tally`` on ``BasePartialProcessor`` (raw records, its own response, no event type).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import sys
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_hook import SkipsRecordHooks
from test_differential import CHAINS, SOURCES, OrderRecord, _event, _outcome, _payload, _raise_if_marked

import observed_batch as ob
from observed_batch.testing import RecordingMiddleware

MAX_EXAMPLES = 200
CUSTOM_SOURCES = [source for source in SOURCES if source != "sqs_fifo"]
EVENT_TYPES = {
    "sqs": pt.EventType.SQS,
    "kinesis": pt.EventType.KinesisDataStreams,
    "dynamodb": pt.EventType.DynamoDBStreams,
    "kafka": pt.EventType.Kafka,
}


@functools.cache
def _processor_classes(module: Any) -> tuple[type[Any], type[Any]]:
    """The same two user classes, written once, on ``module``'s bases."""

    class Reporting(module.BasePartialBatchProcessor):  # type: ignore[misc,name-defined]
        def _prepare(self) -> None:
            super()._prepare()

        def _clean(self) -> None:
            super()._clean()

        def _convert(self, record: dict[str, Any]) -> Any:
            try:
                return self._to_batch_type(record, self.event_type, self.model)
            except Exception:
                return self._to_batch_type(record, self.event_type)

        def _process_record(self, record: dict[str, Any]) -> Any:
            data = self._convert(record)
            try:
                if type(data) is not self.model and self.model is not None:
                    raise ValueError("record does not match the model")
                return self.success_handler(data, self.handler(data))
            except Exception:
                return self.failure_handler(data, sys.exc_info())

        async def _async_process_record(self, record: dict[str, Any]) -> Any:
            data = self._convert(record)
            try:
                if type(data) is not self.model and self.model is not None:
                    raise ValueError("record does not match the model")
                return self.success_handler(data, await self.handler(data))
            except Exception:
                return self.failure_handler(data, sys.exc_info())

    class Tally(module.BasePartialProcessor):  # type: ignore[misc,name-defined]
        def __init__(self, raise_on_entire: bool, **options: Any) -> None:
            self.raise_on_entire = raise_on_entire
            super().__init__(**options)

        def _prepare(self) -> None:
            self.success_messages.clear()
            self.fail_messages.clear()
            self.exceptions.clear()

        def _clean(self) -> None:
            if self.raise_on_entire and self.records and len(self.fail_messages) == len(self.records):
                raise RuntimeError(f"all {len(self.records)} records failed")

        def _process_record(self, record: dict[str, Any]) -> Any:
            try:
                return self.success_handler(record, self.handler(record))
            except Exception:
                return self.failure_handler(record, sys.exc_info())

        async def _async_process_record(self, record: dict[str, Any]) -> Any:
            try:
                return self.success_handler(record, await self.handler(record))
            except Exception:
                return self.failure_handler(record, sys.exc_info())

        def response(self) -> dict[str, Any]:
            failed = {id(record) for record in self.fail_messages}
            return {"failed": [i for i, record in enumerate(self.records) if id(record) in failed]}

    return Reporting, Tally


def _raw_payload(raw: dict[str, Any]) -> dict[str, Any]:
    """The order a raw record carries, for ``Tally``'s handler (no data class on that base)."""
    if "body" in raw:
        return json.loads(raw["body"])
    if "kinesis" in raw:
        return json.loads(base64.b64decode(raw["kinesis"]["data"]))
    if "dynamodb" in raw:
        return json.loads(raw["dynamodb"]["NewImage"]["body"]["S"])
    return json.loads(base64.b64decode(raw["value"]))


def _records(source: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    if source == "kafka":
        return [record for records in event["records"].values() for record in records]
    return list(event["Records"])


def _run(module: Any, source: str, event: dict[str, Any], options: dict[str, Any], extra: dict[str, Any]) -> Any:
    calls: list[str] = []
    reporting_class, tally_class = _processor_classes(module)
    read = _raw_payload if options["kind"] == "tally" else _payload

    def handler(record: Any) -> str:
        payload = read(record)
        calls.append(payload["order_id"])
        return _raise_if_marked(payload)

    async def async_handler(record: Any) -> str:
        payload = read(record)
        calls.append(payload["order_id"])
        await asyncio.sleep(0)
        return _raise_if_marked(payload)

    asynchronous = options["asynchronous"]
    if options["kind"] == "reporting":
        processor = reporting_class(
            EVENT_TYPES[source],
            model=OrderRecord if options["model"] else None,
            raise_on_entire_batch_failure=options["raise_on_entire"],
            **extra,
        )
        if asynchronous:
            result = _outcome(lambda: module.async_process_partial_response(event, async_handler, processor))
        else:
            result = _outcome(lambda: module.process_partial_response(event, handler, processor))
    else:
        processor = tally_class(options["raise_on_entire"], **extra)

        def run() -> Any:
            with processor(_records(source, event), async_handler if asynchronous else handler):
                processor.async_process() if asynchronous else processor.process()
            return processor.response()

        result = _outcome(run)
    return result, calls, (len(processor.success_messages), len(processor.fail_messages), len(processor.exceptions))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any]]:
    source = draw(st.sampled_from(CUSTOM_SOURCES))
    size = draw(st.integers(min_value=0, max_value=60))
    kind = draw(st.sampled_from(["reporting", "tally"]))
    model = kind == "reporting" and source == "sqs" and draw(st.booleans())
    kinds = ["ok", "fail", "invalid"] if model else ["ok", "fail"]
    if draw(st.booleans()):
        plan = [draw(st.sampled_from(kinds[1:])) for _ in range(size)]
    else:
        plan = draw(st.lists(st.sampled_from(kinds), min_size=size, max_size=size))
    options = {
        "kind": kind,
        "model": model,
        "raise_on_entire": draw(st.booleans()),
        "asynchronous": draw(st.booleans()),
    }
    return source, _event(source, plan, groups=1), options


@pytest.mark.parametrize("chain", sorted(CHAINS))
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_custom_processor_on_our_base_returns_exactly_what_it_returns_on_powertools_base(
    chain: str, scenario: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    # GIVEN a random event, handler failures, a custom processor and its options
    source, event, options = scenario
    middlewares = CHAINS[chain]()

    # WHEN the same class runs on Powertools' base and on ours, side by side
    expected = _run(pt, source, event, options, {})
    actual = _run(ob, source, event, options, {"middleware": middlewares})

    # THEN the response / raised exception, the handler call order and the bookkeeping are identical
    assert actual == expected
    # AND every record reached the recording middlewares once, failed exactly as the processor reported
    failed = expected[2][1]
    size = len(_records(source, event))
    for middleware in middlewares:
        if isinstance(middleware, RecordingMiddleware):
            outcomes = [record.outcome for record in middleware.records("exit")]
            assert len(outcomes) == size
            assert sum(1 for outcome in outcomes if outcome is not ob.Outcome.SUCCESS) == failed
        if isinstance(middleware, SkipsRecordHooks) and size:
            (summary,) = middleware.summaries
            assert (summary.total, summary.failures) == (size, failed)
