"""Differential test: for any event and handler, observed_batch returns exactly what Powertools returns.

Both run side by side on the same event: same response, same raised exception (type, message and
child exceptions), same handler call order, with the chain empty, with misbehaving middlewares, and
with every built-in middleware that is available enabled.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Json
from record_hook import SkipsRecordHooks

import observed_batch as ob
from observed_batch.testing import RecordingMiddleware, dynamodb_record, kafka_event, kinesis_record, sqs_record

MAX_EXAMPLES = 300


class Order(BaseModel):
    order_id: str
    amount: int


class OrderRecord(SqsRecordModel):
    body: Json[Order]  # type: ignore[assignment]


class RaisesEverywhere(ob.Middleware):
    """Raises in every hook, before and after the record."""

    name = "raises_everywhere"

    def on_batch_start(self, batch: ob.BatchContext) -> None:
        raise RuntimeError("start")

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        if record.index % 2:
            raise RuntimeError("before")
        yield
        raise RuntimeError("after")

    def on_batch_end(self, batch: ob.BatchContext, summary: ob.BatchSummary) -> None:
        raise RuntimeError("end")


class HooksRaiseEverywhere(ob.Middleware):
    """The plain-hook style (before_record / after_record), raising on both sides of the record."""

    name = "hooks_raise_everywhere"

    def before_record(self, record: ob.RecordContext) -> None:
        if record.index % 3 == 1:
            raise RuntimeError("before")

    def after_record(self, record: ob.RecordContext) -> None:
        raise RuntimeError("after")


class RaisesAfter(ob.Middleware):
    """Only after_record (the sync processor's inlined path), raising for every record."""

    name = "raises_after"

    def after_record(self, record: ob.RecordContext) -> None:
        raise RuntimeError("after")


class YieldsTwice(ob.Middleware):
    name = "yields_twice"

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        yield
        yield


def _builtin_chain() -> list[Any]:
    """Every available built-in with a quiet backend (in-memory / no network), except timeout_guard,
    which changes outcomes by design (fails records near the deadline), and the policies (likewise;
    tests/test_policies_differential.py covers them)."""
    from observed_batch.config import available_builtins, builtin_class

    chain: list[Any] = []
    for name in available_builtins(policies=False):
        if name == "timeout_guard":
            continue
        cls = builtin_class(name)
        chain.append(cls(**_QUIET_OPTIONS.get(name, {})))
    # The non-default backends too (a second instance of the class, with its own state).
    for name, options in _QUIET_OTHER_BACKENDS:
        chain.append(builtin_class(name, options["backend"])(**options))
    return chain


def _quiet_options() -> dict[str, dict[str, Any]]:
    options: dict[str, dict[str, Any]] = {"metrics": {"sink": lambda document: None}}
    try:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        options["tracing"] = {"tracer_provider": provider, "capture_response": True}
    except ImportError:  # pragma: no cover - the tracing extra is installed in CI
        pass
    try:
        import structlog

        options["logging"] = {"logger": structlog.wrap_logger(structlog.PrintLogger(io.StringIO()))}
    except ImportError:  # pragma: no cover
        pass
    return options


_QUIET_OPTIONS = _quiet_options()


class _DiscardingEmitter:
    """Serialises what the X-Ray SDK would send, sends nothing."""

    def send_entity(self, entity: Any) -> None:
        entity.serialize()


def _quiet_other_backends() -> list[tuple[str, dict[str, Any]]]:
    import logging

    from aws_lambda_powertools import Logger

    backends: list[tuple[str, dict[str, Any]]] = [
        (
            "logging",
            {
                "backend": "powertools",
                "powertools_logger": Logger(
                    service="differential", logger_handler=logging.StreamHandler(io.StringIO())
                ),
            },
        )
    ]
    try:
        from aws_xray_sdk.core.recorder import AWSXRayRecorder

        recorder = AWSXRayRecorder()
        recorder.configure(emitter=_DiscardingEmitter(), sampling=False)
        recorder.begin_segment("differential")  # this thread's segment, open for the whole session
        backends.append(("tracing", {"backend": "xray", "xray_recorder": recorder, "capture_response": True}))
    except ImportError:  # pragma: no cover - the xray extra is installed in CI
        pass
    return backends


_QUIET_OTHER_BACKENDS = _quiet_other_backends()


# -- events ---------------------------------------------------------------------------------------
SOURCES = ["sqs", "sqs_fifo", "kinesis", "dynamodb", "kafka"]


def _event(source: str, plan: list[str], groups: int) -> dict[str, Any]:
    """plan[i] is 'ok', 'fail' (handler raises) or 'invalid' (body fails the pydantic model)."""

    def body(i: int) -> str:
        if plan[i] == "invalid":
            return json.dumps({"order_id": f"o{i}"})  # amount missing
        return json.dumps({"order_id": f"o{i}", "amount": i, "fail": plan[i] == "fail"})

    if source in ("sqs", "sqs_fifo"):
        fifo = source == "sqs_fifo"
        return {
            "Records": [
                sqs_record(
                    i,
                    body=body(i),
                    queue="q.fifo" if fifo else "q",
                    group_id=f"g{i % groups}" if fifo else None,
                )
                for i in range(len(plan))
            ]
        }
    if source == "kinesis":
        return {"Records": [kinesis_record(i, data=body(i)) for i in range(len(plan))]}
    if source == "dynamodb":
        return {
            "Records": [
                dynamodb_record(i, new_image={"body": {"S": body(i)}, "pk": {"S": str(i)}}) for i in range(len(plan))
            ]
        }
    return kafka_event(len(plan), value=lambda i: body(i), partitions=2)


def _payload(record: Any) -> dict[str, Any]:
    if isinstance(record, OrderRecord):
        return {"order_id": record.body.order_id, "fail": False}
    if hasattr(record, "kinesis"):
        return json.loads(record.kinesis.data_as_text())
    if hasattr(record, "dynamodb"):
        return json.loads(record.dynamodb.new_image["body"])
    if hasattr(record, "decoded_value"):
        return json.loads(record.decoded_value)
    return json.loads(record.body)


def _raise_if_marked(payload: dict[str, Any]) -> str:
    if payload.get("fail"):
        raise ValueError(f"poison {payload['order_id']}")
    return payload["order_id"]


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        return ("response", run())
    except Exception as exc:
        children = [(type(c[1]).__name__, str(c[1])) for c in getattr(exc, "child_exceptions", [])]
        return ("raised", (type(exc).__name__, getattr(exc, "msg", str(exc)), children))


def _run(module: Any, source: str, event: dict[str, Any], options: dict[str, Any], extra: dict[str, Any]) -> Any:
    calls: list[str] = []
    event_type = {
        "sqs": pt.EventType.SQS,
        "sqs_fifo": pt.EventType.SQS,
        "kinesis": pt.EventType.KinesisDataStreams,
        "dynamodb": pt.EventType.DynamoDBStreams,
        "kafka": pt.EventType.Kafka,
    }[source]
    model = OrderRecord if options["model"] else None

    def handler(record: Any) -> str:
        payload = _payload(record)
        calls.append(payload["order_id"])
        return _raise_if_marked(payload)

    async def async_handler(record: Any) -> str:
        payload = _payload(record)
        calls.append(payload["order_id"])
        await asyncio.sleep(0)
        return _raise_if_marked(payload)

    if source == "sqs_fifo":
        processor = module.SqsFifoPartialProcessor(
            model=model, skip_group_on_error=options["skip_group_on_error"], **extra
        )
        result = _outcome(lambda: module.process_partial_response(event, handler, processor))
    elif options["asynchronous"]:
        processor = module.AsyncBatchProcessor(
            event_type, model=model, raise_on_entire_batch_failure=options["raise_on_entire"], **extra
        )
        result = _outcome(lambda: module.async_process_partial_response(event, async_handler, processor))
    else:
        processor = module.BatchProcessor(
            event_type, model=model, raise_on_entire_batch_failure=options["raise_on_entire"], **extra
        )
        result = _outcome(lambda: module.process_partial_response(event, handler, processor))
    return result, calls, (len(processor.success_messages), len(processor.fail_messages), len(processor.exceptions))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[str, dict[str, Any], dict[str, Any]]:
    source = draw(st.sampled_from(SOURCES))
    size = draw(st.integers(min_value=0, max_value=200))
    model = source in ("sqs", "sqs_fifo") and draw(st.booleans())
    kinds = ["ok", "fail", "invalid"] if model else ["ok", "fail"]
    weights = draw(st.sampled_from(["mostly_ok", "mixed", "all_fail"]))
    if weights == "all_fail":
        plan = [draw(st.sampled_from(kinds[1:])) for _ in range(size)]
    elif weights == "mostly_ok":
        plan = [draw(st.sampled_from(["ok"] * 8 + kinds[1:])) for _ in range(size)]
    else:
        plan = draw(st.lists(st.sampled_from(kinds), min_size=size, max_size=size))
    options = {
        "model": model,
        "skip_group_on_error": draw(st.booleans()),
        "raise_on_entire": draw(st.booleans()),
        "asynchronous": source not in ("sqs_fifo",) and draw(st.booleans()),
    }
    event = _event(source, plan, groups=draw(st.integers(min_value=1, max_value=4)))
    return source, event, options


CHAINS = {
    "no_middleware": lambda: [],
    "misbehaving": lambda: [
        RecordingMiddleware(),
        RaisesEverywhere(),
        HooksRaiseEverywhere(),
        YieldsTwice(),
        RecordingMiddleware("inner"),
    ],
    "builtins": _builtin_chain,
    "after_record_only": lambda: [RaisesAfter()],
    "every_hook_skipped": lambda: [SkipsRecordHooks(), SkipsRecordHooks()],
}


@pytest.mark.parametrize("chain", sorted(CHAINS))
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenario=scenarios())
def test_observed_batch_returns_exactly_what_powertools_returns(
    chain: str, scenario: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    # GIVEN a random event, handler failures and processor options
    source, event, options = scenario
    middlewares = CHAINS[chain]()

    # WHEN Powertools and observed_batch process it side by side
    expected = _run(pt, source, event, options, {})
    actual = _run(ob, source, event, options, {"middleware": middlewares})

    # THEN the response / raised exception, the handler call order and the bookkeeping are identical
    assert actual == expected
    # AND every record reached the middlewares exactly once, with outcomes matching the response
    size = sum(len(r) for r in event["records"].values()) if source == "kafka" else len(event["Records"])
    for middleware in middlewares:
        if isinstance(middleware, RecordingMiddleware) and expected[0][0] == "response":
            outcomes = [r.outcome for r in middleware.records("exit")]
            assert len(outcomes) == size
            failed = sum(1 for o in outcomes if o is not ob.Outcome.SUCCESS)
            assert failed == len(expected[0][1]["batchItemFailures"])
        # AND a middleware that skipped the records still got a summary that reconciles with the response
        if isinstance(middleware, SkipsRecordHooks):
            assert middleware.wrapped == 0
            if size == 0:  # Powertools rejects an empty batch before processing it: no batch, no hooks
                assert middleware.summaries == []
                continue
            (summary,) = middleware.summaries
            kind, detail = expected[0]
            if kind == "response":
                assert summary.total == size
                assert summary.failures + summary.skipped == len(detail["batchItemFailures"])
            elif detail[0] == "BatchProcessingError":  # every record failed
                assert (summary.total, summary.successes) == (size, 0)
            else:  # the core raised mid-batch (e.g. a FIFO short-circuit parsing an invalid record)
                assert summary.total <= size
