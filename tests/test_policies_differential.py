"""Differential test of the policies: with ``retry_policy`` on, the response is Powertools' response minus
exactly the records the policy resolved, and every resolved record has an accepted DLQ copy or a drop count.

Also: the telemetry middlewares see the resolution (metrics counts, logging summary, tracing attribute).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt
from fake_sqs import FakeSqs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import observed_batch as ob
from observed_batch.middleware import RetryPolicyMiddleware
from observed_batch.testing import RecordingMiddleware, sqs_record

KINDS = ("ok", "poison", "transient")


class Poison(Exception):
    """Non-retryable."""


class Refusing(FakeSqs):
    """Accepts copies except those of the messages in ``refused``."""

    def __init__(self, refused: set[str], **options: Any) -> None:
        super().__init__(**options)
        self.refused = refused

    def send_message(self, **message: Any) -> dict[str, Any]:
        original = message["MessageAttributes"]["observed_batch.original_message_id"]["StringValue"]
        if original in self.refused:
            raise ConnectionError("throttled")
        return super().send_message(**message)


def _handler(record: Any) -> str:
    kind = json.loads(record.body)["kind"]
    if kind == "poison":
        raise Poison("never valid")
    if kind == "transient":
        raise TimeoutError("try again")
    return kind


async def _async_handler(record: Any) -> str:
    await asyncio.sleep(0)
    return _handler(record)


def _run(
    module: Any, fifo: bool, asynchronous: bool, raise_on_entire: bool, event: dict[str, Any], **extra: Any
) -> Any:
    if fifo:
        processor = module.SqsFifoPartialProcessor(**extra)
    elif asynchronous:
        processor = module.AsyncBatchProcessor(pt.EventType.SQS, raise_on_entire_batch_failure=raise_on_entire, **extra)
    else:
        processor = module.BatchProcessor(pt.EventType.SQS, raise_on_entire_batch_failure=raise_on_entire, **extra)
    try:
        if asynchronous and not fifo:
            return module.async_process_partial_response(event, _async_handler, processor)
        return module.process_partial_response(event, _handler, processor)
    except pt.exceptions.BatchProcessingError as exc:
        return exc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    plan=st.lists(st.sampled_from(KINDS), min_size=1, max_size=25),
    fifo=st.booleans(),
    asynchronous=st.booleans(),
    raise_on_entire=st.booleans(),
    drop=st.booleans(),
    refused=st.sets(st.integers(min_value=0, max_value=24), max_size=5),
)
def test_response_is_powertools_minus_the_resolved_records(
    plan: list[str], fifo: bool, asynchronous: bool, raise_on_entire: bool, drop: bool, refused: set[int]
) -> None:
    # GIVEN an SQS event of ok / poison / transient records, and a DLQ refusing some copies
    queue = "orders.fifo" if fifo else "orders"
    records = [
        sqs_record(i, body={"kind": kind}, queue=queue, group_id="g" if fifo else None) for i, kind in enumerate(plan)
    ]
    event = {"Records": records}
    ids = [record["messageId"] for record in records]
    sqs = Refusing({ids[i] for i in refused if i < len(ids)})
    recorder = RecordingMiddleware()
    policy = RetryPolicyMiddleware(
        non_retryable=[Poison], on_non_retryable="drop" if drop else "dead_letter", sqs_client=sqs
    )

    # WHEN Powertools and observed_batch with retry_policy process it
    expected = _run(pt, fifo, asynchronous, raise_on_entire, event)
    actual = _run(ob, fifo, asynchronous, raise_on_entire, event, middleware=[recorder, policy])

    # THEN the response is Powertools' minus exactly the resolved records
    resolved = {r.message_id: r.resolution for r in recorder.records() if r.resolution is not None}
    reported = ids if isinstance(expected, Exception) else [f["itemIdentifier"] for f in expected["batchItemFailures"]]
    remaining = [i for i in reported if i not in resolved]
    if isinstance(expected, Exception) and not resolved:
        assert type(actual) is type(expected)
    else:
        assert actual == {"batchItemFailures": [{"itemIdentifier": i} for i in remaining]}
    # AND only poison records are resolved, each with an accepted copy or a drop count
    assert all(plan[ids.index(i)] == "poison" for i in resolved)
    summary = recorder.events[-1][2]
    if drop:
        assert set(resolved.values()) <= {"dropped"}
        assert summary.dropped == len(resolved)
        assert sqs.sent == []
    else:
        assert set(resolved.values()) <= {"dead_lettered"}
        copies = [m["MessageAttributes"]["observed_batch.original_message_id"]["StringValue"] for m in sqs.sent]
        assert sorted(copies) == sorted(resolved)
        assert summary.dead_lettered == len(resolved)
        assert not set(resolved) & sqs.refused


def test_telemetry_sees_the_resolution(capsys: pytest.CaptureFixture[str]) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from observed_batch.middleware import LoggingMiddleware, MetricsMiddleware, TracingMiddleware

    # GIVEN metrics, tracing and logging around retry_policy
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    documents: list[str] = []
    chain = [
        MetricsMiddleware(sink=documents.append),
        TracingMiddleware(tracer_provider=provider),
        LoggingMiddleware(),
        RetryPolicyMiddleware(non_retryable=[Poison], sqs_client=FakeSqs()),
    ]
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=chain)
    event = {"Records": [sqs_record(i, body={"kind": kind}) for i, kind in enumerate(["ok", "poison", "transient"])]}

    # WHEN the batch runs
    ob.process_partial_response(event, _handler, processor)

    # THEN the EMF document, the summary line and the span all say it
    document = json.loads(documents[0])
    assert (document["BatchRecordFailures"], document["BatchRecordsDeadLettered"], document["BatchRecordsDropped"]) == (
        2,
        1,
        0,
    )
    lines = capsys.readouterr().out.splitlines()
    summary = next(json.loads(line) for line in lines if '"batch_summary"' in line)
    assert summary["dead_lettered"] == 1
    assert "dropped" not in summary
    resolutions = [span.attributes.get("observed_batch.resolution") for span in exporter.get_finished_spans()]
    assert sorted(str(r) for r in resolutions) == ["None", "None", "dead_lettered"]
