"""Our own versions of the Powertools batch documentation's extension scenarios, run twice: with the
Powertools import, then with the import switched to observed_batch and middleware enabled the drop-in
way (``OBSERVED_BATCH_MIDDLEWARE=metrics,logging``). Results must be identical; telemetry must appear.

- a custom partial processor (``BasePartialBatchProcessor``) writing successes to a DynamoDB table;
- "extending the processor": ``success_handler`` / ``failure_handler`` overrides adding metrics;
- Sentry: a ``failure_handler`` override calling ``capture_exception()``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
import sentry_sdk
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import batch as pt
from moto import mock_aws
from moto_server import FAKE_CREDENTIALS_ENV, REGION, unique_name
from sentry_receiver import SentryReceiver, reset_sentry

import observed_batch as ob
from observed_batch.testing import FakeLambdaContext, sqs_event

MODULES = {"powertools": pt, "observed_batch": ob}


@pytest.fixture(autouse=True)
def _middleware_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # The migration: one import line changed, middleware enabled in the function's environment.
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "metrics,logging")


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    # sentry_sdk keeps its client and scopes in process globals: start and end clean.
    reset_sentry()
    with SentryReceiver() as running:
        yield running
    reset_sentry()


def order(index: int) -> dict[str, Any]:
    return {"order_id": f"o{index}", "reject": index % 3 == 1}


def order_handler(record: Any) -> str:
    """Handler on Powertools' SQSRecord data class."""
    payload = record.json_body
    if payload["reject"]:
        raise ValueError(f"order {payload['order_id']} rejected")
    return str(payload["order_id"])


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def emf(out: str, namespace: str) -> list[dict[str, Any]]:
    return [
        line
        for line in json_lines(out)
        if line.get("_aws", {}).get("CloudWatchMetrics", [{}])[0].get("Namespace") == namespace
    ]


def counts(document: dict[str, Any], *names: str) -> tuple[float, ...]:
    """Metric values of an EMF document: Powertools writes a metric added n times as a list of n values."""
    return tuple(sum(v) if isinstance(v := document[name], list) else v for name in names)


def log_events(out: str) -> list[str]:
    return [line["event"] for line in json_lines(out) if "event" in line]


def run_both(
    run: Callable[[Any], Any], capsys: pytest.CaptureFixture[str]
) -> tuple[tuple[str, Any], tuple[str, Any], str, str]:
    """``run(module)`` with each import; returns both outcomes and both runs' stdout."""
    results: list[tuple[str, Any]] = []
    outputs: list[str] = []
    for module in MODULES.values():
        try:
            results.append(("returned", run(module)))
        except Exception as exc:
            results.append(("raised", type(exc).__name__))
        outputs.append(capsys.readouterr().out)
    return results[0], results[1], outputs[0], outputs[1]


# -- custom partial processor writing to DynamoDB -------------------------------------------------------------
def results_table_processor(module: Any, table_name: str) -> Any:
    """A custom processor on ``module``'s BasePartialBatchProcessor: successes go to a DynamoDB table in
    one batch write when the batch closes, failures are reported for retry."""

    class ResultsToDynamoDB(module.BasePartialBatchProcessor):  # type: ignore[misc,name-defined]
        def __init__(self, table_name: str) -> None:
            self.table_name = table_name
            super().__init__(event_type=module.EventType.SQS)

        def _prepare(self) -> None:
            self.table = boto3.resource("dynamodb", region_name=REGION).Table(self.table_name)
            self.success_messages.clear()
            self.fail_messages.clear()

        def _process_record(self, record: dict[str, Any]) -> Any:
            try:
                result = self.handler(record)
                return self.success_handler(record, result)
            except Exception:
                return self.failure_handler(record, sys.exc_info())

        def success_handler(self, record: Any, result: Any) -> Any:
            self.success_messages.append({"message_id": record["messageId"], "result": result})
            return ("success", result, record)

        async def _async_process_record(self, record: dict[str, Any]) -> Any:
            raise NotImplementedError

        def _clean(self) -> None:
            with self.table.batch_writer() as writer:
                for item in self.success_messages:
                    writer.put_item(Item=item)
            self.batch_response = {
                "batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in self.fail_messages]
            }

    return ResultsToDynamoDB(table_name)


def raw_order_handler(record: dict[str, Any]) -> str:
    """The custom processor passes the raw record dict."""
    payload = json.loads(record["body"])
    if payload["reject"]:
        raise ValueError(f"order {payload['order_id']} rejected")
    return str(payload["order_id"])


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in FAKE_CREDENTIALS_ENV.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


def create_table(client: Any) -> str:
    name = unique_name("results")
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "message_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "message_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def test_custom_processor_writing_to_dynamodb_returns_and_writes_what_powertools_does(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the same custom processor on each base, each with its own table, and 6 orders of which 2 are rejected
    event = sqs_event(6, body=order)
    tables: dict[Any, str] = {module: create_table(dynamodb) for module in MODULES.values()}

    def run(module: Any) -> Any:
        processor = results_table_processor(module, tables[module])
        return module.process_partial_response(event, raw_order_handler, processor, FakeLambdaContext())

    # WHEN both process the event
    expected, actual, _, _ = run_both(run, capsys)

    # THEN the responses and the rows written are the same
    assert actual == expected
    assert len(expected[1]["batchItemFailures"]) == 2
    scans = [dynamodb.scan(TableName=tables[module])["Items"] for module in MODULES.values()]
    assert sorted(scans[1], key=str) == sorted(scans[0], key=str)
    assert len(scans[0]) == 4


def test_custom_processor_writing_to_dynamodb_produces_telemetry(
    dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the custom processor on observed_batch's base, middleware from the environment
    processor = results_table_processor(ob, create_table(dynamodb))

    # WHEN it processes 6 orders of which 2 are rejected
    ob.process_partial_response(sqs_event(6, body=order), raw_order_handler, processor, FakeLambdaContext())

    # THEN one EMF document counts them and the log has a line per failure and a summary
    out = capsys.readouterr().out
    (document,) = emf(out, "ObservedBatch")
    assert (document["BatchRecordSuccesses"], document["BatchRecordFailures"]) == (4, 2)
    assert log_events(out).count("record_failed") == 2
    assert "batch_summary" in log_events(out)


# -- extending the processor: metrics in success_handler / failure_handler -----------------------------------
def metrics_processor(module: Any, metrics: Metrics) -> Any:
    class CountingProcessor(module.BatchProcessor):  # type: ignore[misc,name-defined]
        def success_handler(self, record: Any, result: Any) -> Any:
            metrics.add_metric(name="OrdersAccepted", unit=MetricUnit.Count, value=1)
            return super().success_handler(record, result)

        def failure_handler(self, record: Any, exception: Any) -> Any:
            metrics.add_metric(name="OrdersRejected", unit=MetricUnit.Count, value=1)
            return super().failure_handler(record, exception)

    return CountingProcessor(event_type=module.EventType.SQS)


def run_metrics_example(module: Any, event: dict[str, Any]) -> Any:
    metrics = Metrics(namespace="Shop")
    processor = metrics_processor(module, metrics)

    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> Any:
        return module.process_partial_response(event, order_handler, processor, context)

    return lambda_handler(event, FakeLambdaContext())


def test_extended_processor_returns_and_emits_what_powertools_does(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a BatchProcessor subclass counting accepted and rejected orders with Powertools Metrics
    event = sqs_event(6, body=order)

    # WHEN it runs with each import
    expected, actual, pt_out, ob_out = run_both(lambda module: run_metrics_example(module, event), capsys)

    # THEN the responses and the user's own metrics are the same
    assert actual == expected
    (pt_document,) = emf(pt_out, "Shop")
    (ob_document,) = emf(ob_out, "Shop")
    assert counts(ob_document, "OrdersAccepted", "OrdersRejected") == (4, 2)
    assert counts(pt_document, "OrdersAccepted", "OrdersRejected") == (4, 2)


def test_extended_processor_produces_telemetry(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the same subclass on observed_batch
    # WHEN it processes 6 orders of which 2 are rejected
    run_metrics_example(ob, sqs_event(6, body=order))

    # THEN our EMF document and log lines sit next to the user's metrics
    out = capsys.readouterr().out
    (document,) = emf(out, "ObservedBatch")
    assert (document["BatchRecordSuccesses"], document["BatchRecordFailures"]) == (4, 2)
    assert log_events(out).count("record_failed") == 2


# -- Sentry: capture_exception() in a failure_handler override -----------------------------------------------
def sentry_processor(module: Any, **options: Any) -> Any:
    class SentryProcessor(module.BatchProcessor):  # type: ignore[misc,name-defined]
        def failure_handler(self, record: Any, exception: Any) -> Any:
            sentry_sdk.capture_exception()  # reads sys.exc_info()
            return super().failure_handler(record, exception)

    return SentryProcessor(event_type=module.EventType.SQS, **options)


def exception_values(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    values = [event["exception"]["values"][-1] for event in events]
    return sorted((value["type"], value["value"]) for value in values)


def init_sentry(dsn: str) -> None:
    sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False)


def test_sentry_override_returns_and_captures_what_powertools_does(
    receiver: SentryReceiver, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the application's sentry_sdk.init and a failure_handler override capturing the exception
    init_sentry(receiver.dsn)
    event = sqs_event(6, body=order)
    captured: list[list[tuple[str, str]]] = []

    def run(module: Any) -> Any:
        seen = len(receiver.events())
        response = module.process_partial_response(event, order_handler, sentry_processor(module), FakeLambdaContext())
        sentry_sdk.flush(timeout=5)
        captured.append(exception_values(receiver.wait_for_events(seen + 2)[seen:]))
        return response

    # WHEN it runs with each import
    expected, actual, _, ob_out = run_both(run, capsys)

    # THEN the responses and the captured exceptions are the same, and our telemetry is there too
    assert actual == expected
    assert captured[0] == captured[1] == [("ValueError", "order o1 rejected"), ("ValueError", "order o4 rejected")]
    (document,) = emf(ob_out, "ObservedBatch")
    assert document["BatchRecordFailures"] == 2
    assert log_events(ob_out).count("record_failed") == 2


def test_sentry_override_captures_records_failed_by_timeout_guard(receiver: SentryReceiver) -> None:
    # GIVEN the override, timeout_guard on, and a Lambda context with too little time left
    init_sentry(receiver.dsn)
    processor = sentry_processor(ob, raise_on_entire_batch_failure=False, middleware=["timeout_guard"])

    # WHEN a batch of 2 is processed
    response = ob.process_partial_response(sqs_event(2), order_handler, processor, FakeLambdaContext(remaining_ms=100))
    sentry_sdk.flush(timeout=5)

    # THEN both records are retried, and capture_exception() sent each guard's FailRecord
    assert len(response["batchItemFailures"]) == 2
    assert [value[0] for value in exception_values(receiver.wait_for_events(2))] == ["FailRecord", "FailRecord"]
