"""The ``metrics`` middleware: one valid EMF document per invocation with exact counts."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor as PowertoolsBatchProcessor
from aws_lambda_powertools.utilities.batch import async_process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from observed_batch import (
    AsyncBatchProcessor,
    BatchProcessor,
    ConfigError,
    EventType,
    FailRecord,
    Middleware,
    RecordContext,
    SqsFifoPartialProcessor,
    process_partial_response,
)
from observed_batch.emf import MAX_DOCUMENT_BYTES
from observed_batch.metric_schema import METRICS
from observed_batch.middleware import MetricsMiddleware, RetryPolicyMiddleware
from observed_batch.testing import (
    FakeLambdaContext,
    dynamodb_event,
    kafka_event,
    kinesis_event,
    sqs_event,
    sqs_fifo_event,
    sqs_record,
)

SCHEMA = json.loads((Path(__file__).parent / "emf_schema.json").read_text())
DOCUMENT = jsonschema.Draft202012Validator(SCHEMA)
METRIC_TARGET = jsonschema.Draft202012Validator({**SCHEMA["$defs"]["MetricTarget"], "$defs": SCHEMA["$defs"]})
DIMENSION_TARGET = jsonschema.Draft202012Validator(SCHEMA["$defs"]["DimensionTarget"])
COUNTS = ("BatchRecordSuccesses", "BatchRecordFailures", "BatchRecordsSkipped", "BatchSize")


def assert_valid_emf(line: str) -> dict[str, Any]:
    """Schema plus what JSON Schema cannot say: references resolve to members of the right type."""
    assert len(line.encode()) < MAX_DOCUMENT_BYTES
    document: dict[str, Any] = json.loads(line)
    DOCUMENT.validate(document)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension in {d for dimension_set in directive["Dimensions"] for d in dimension_set}:
            DIMENSION_TARGET.validate(document[dimension])
        for definition in directive["Metrics"]:
            target = document[definition["Name"]]
            METRIC_TARGET.validate(target)
            if isinstance(target, dict):
                assert len(target["Values"]) == len(target["Counts"])
                assert sum(target["Counts"]) == target["Count"]
                assert target["Min"] <= min(target["Values"]) <= max(target["Values"]) <= target["Max"]
    return document


class Sink:
    """Collects documents, validating each one as it arrives."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        assert "\n" not in line
        assert_valid_emf(line)
        self.lines.append(line)

    @property
    def documents(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    @property
    def only(self) -> dict[str, Any]:
        assert len(self.lines) == 1, self.lines
        return self.documents[0]


@pytest.fixture
def sink() -> Sink:
    return Sink()


def counts(document: dict[str, Any]) -> dict[str, int]:
    return {name: document[name] for name in COUNTS}


def batch_counts(*, successes: int, failures: int, skipped: int, size: int) -> dict[str, int]:
    """What ``counts(document)`` must equal exactly: the four counts by metric name."""
    return {
        "BatchRecordSuccesses": successes,
        "BatchRecordFailures": failures,
        "BatchRecordsSkipped": skipped,
        "BatchSize": size,
    }


def fail_indexes(*indexes: int) -> Callable[[Any], str]:
    """A record handler raising for the records whose body says ``order-<index>``."""
    failing = {f"order-{i}" for i in indexes}

    def handler(record: Any) -> str:
        body = record.body if hasattr(record, "body") else record.kinesis.data_as_text()
        if json.loads(body)["order_id"] in failing:
            raise ValueError("cannot process order")
        return "ok"

    return handler


def run_sqs(
    middleware: MetricsMiddleware, event: dict[str, Any], handler: Callable[[Any], Any], **kwargs: Any
) -> dict[str, Any]:
    processor = BatchProcessor(EventType.SQS, middleware=[middleware], **kwargs)
    return process_partial_response(event, handler, processor, FakeLambdaContext())


class Guard(Middleware):
    """Fails records from ``first`` on without running the handler, as timeout_guard does."""

    name = "guard"

    def __init__(self, first: int) -> None:
        self.first = first

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        if record.index >= self.first:
            raise FailRecord("timeout_guard")
        yield


# -- counts -----------------------------------------------------------------------------------------


def test_counts_are_exact_for_a_standard_sqs_batch(sink: Sink) -> None:
    # GIVEN 10 SQS records of which 4 fail
    event = sqs_event(10)
    # WHEN processed with the metrics middleware
    run_sqs(MetricsMiddleware(sink=sink), event, fail_indexes(0, 3, 6, 9))
    # THEN one document counts 6 successes, 4 failures, nothing skipped, a batch of 10
    document = sink.only
    assert counts(document) == batch_counts(successes=6, failures=4, skipped=0, size=10)
    assert document["RecordProcessingTime"]["Count"] == 10
    assert document["RecordAge"]["Count"] == 10


def test_fifo_short_circuit_counts_as_skipped_and_has_no_processing_time(sink: Sink) -> None:
    # GIVEN a FIFO batch of 6 whose third record fails
    event = sqs_fifo_event(6)
    processor = SqsFifoPartialProcessor(middleware=[MetricsMiddleware(sink=sink)])
    # WHEN processed
    process_partial_response(event, fail_indexes(2), processor)
    # THEN the 3 short-circuited records are skipped, and only the 3 handled ones were timed
    document = sink.only
    assert counts(document) == batch_counts(successes=2, failures=1, skipped=3, size=6)
    assert document["RecordProcessingTime"]["Count"] == 3
    assert document["RecordAge"]["Count"] == 6


def test_records_a_guard_fails_count_as_skipped(sink: Sink) -> None:
    # GIVEN a guard failing every record from the 4th on (metrics outermost, as configured by default)
    event = sqs_event(5)
    processor = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=sink), Guard(first=3)])
    # WHEN processed
    process_partial_response(event, fail_indexes(), processor)
    # THEN 3 successes and 2 skipped records, none of them timed
    document = sink.only
    assert counts(document) == batch_counts(successes=3, failures=0, skipped=2, size=5)
    assert document["RecordProcessingTime"]["Count"] == 3


def test_every_record_skipped_leaves_processing_time_out(sink: Sink) -> None:
    # GIVEN a guard failing every record
    processor = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=sink), Guard(first=0)])
    # WHEN the batch is processed (every record failed: Powertools raises)
    with pytest.raises(BatchProcessingError):
        process_partial_response(sqs_event(3), fail_indexes(), processor)
    # THEN the document has no processing-time distribution, not an empty one
    document = sink.only
    assert "RecordProcessingTime" not in document
    assert "RecordProcessingTime" not in {m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert document["BatchRecordsSkipped"] == 3


def test_kinesis_counts_and_record_age_from_arrival_timestamp(sink: Sink) -> None:
    # GIVEN 5 Kinesis records, the second failing
    event = kinesis_event(5)
    processor = BatchProcessor(EventType.KinesisDataStreams, middleware=[MetricsMiddleware(sink=sink)])
    # WHEN processed
    process_partial_response(event, fail_indexes(1), processor)
    # THEN counts are exact and ages are measured from approximateArrivalTimestamp to the batch start
    document = sink.only
    assert counts(document)["BatchRecordFailures"] == 1
    assert counts(document)["BatchRecordSuccesses"] == 4
    arrivals = [r["kinesis"]["approximateArrivalTimestamp"] * 1000 for r in event["Records"]]
    started = document["_aws"]["Timestamp"]
    assert document["RecordAge"]["Max"] == pytest.approx(started - min(arrivals), abs=1)
    assert document["RecordAge"]["Min"] == pytest.approx(started - max(arrivals), abs=1)


def test_dynamodb_counts_and_record_age_from_creation_time(sink: Sink) -> None:
    # GIVEN 4 DynamoDB stream records, all succeeding
    event = dynamodb_event(4)
    processor = BatchProcessor(EventType.DynamoDBStreams, middleware=[MetricsMiddleware(sink=sink)])
    # WHEN processed
    process_partial_response(event, lambda record: "ok", processor)
    # THEN 4 successes, ages from ApproximateCreationDateTime (seconds)
    document = sink.only
    assert counts(document)["BatchRecordSuccesses"] == 4
    created = [r["dynamodb"]["ApproximateCreationDateTime"] * 1000 for r in event["Records"]]
    assert document["RecordAge"]["Max"] == pytest.approx(document["_aws"]["Timestamp"] - min(created), abs=1)


def test_kafka_counts_and_topic_dimension(sink: Sink) -> None:
    # GIVEN a Kafka batch of one topic and the destination dimension
    processor = BatchProcessor(EventType.Kafka, middleware=[MetricsMiddleware(sink=sink, dimensions="destination")])
    # WHEN processed
    process_partial_response(kafka_event(3, topic="payments", partitions=2), lambda record: "ok", processor)
    # THEN the document counts 3 successes and adds topic=payments in a second dimension set
    document = sink.only
    assert document["BatchRecordSuccesses"] == 3
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"], ["service", "topic"]]
    assert document["topic"] == "payments"


class DocumentAlongside(MetricsMiddleware):
    """Writes its line as usual and keeps ``document()`` of the same batch, encoded as json.dumps would."""

    def __init__(self, expected: list[str], **options: Any) -> None:
        super().__init__(**options)
        self.expected = expected

    def on_batch_end(self, batch: Any, summary: Any) -> None:
        super().on_batch_end(batch, summary)
        document = self.document(batch, summary, batch.durations_ns or ())
        self.expected.append(json.dumps(document, separators=(",", ":"), allow_nan=False))


def test_the_line_written_is_the_document_encoded_character_for_character() -> None:
    # GIVEN metrics writing raw lines, with a destination dimension present in some batches only
    lines: list[str] = []
    expected: list[str] = []
    middleware = DocumentAlongside(expected, sink=lines.append, dimensions="destination,team=payments")
    kafka = BatchProcessor(EventType.Kafka, middleware=[middleware])
    several_topics = kafka_event(2, topic="payments")
    several_topics["records"].update(kafka_event(2, topic="refunds")["records"])
    # WHEN SQS batches (one with a failure), one-topic and several-topic Kafka batches are processed, twice
    for _ in range(2):
        run_sqs(middleware, sqs_event(5), fail_indexes(2))
        run_sqs(middleware, sqs_event(3), lambda record: "ok")
        process_partial_response(kafka_event(3, topic="payments"), lambda record: "ok", kafka)
        process_partial_response(several_topics, lambda record: "ok", kafka)
    # THEN every line is exactly json.dumps of the document (the reused metric directive changes nothing)
    assert len(lines) == 8
    assert lines == expected


def test_kafka_batch_of_several_topics_has_no_topic_dimension(sink: Sink) -> None:
    # GIVEN a Kafka batch spanning two topics
    event = kafka_event(2, topic="payments")
    event["records"].update(kafka_event(2, topic="refunds")["records"])
    processor = BatchProcessor(EventType.Kafka, middleware=[MetricsMiddleware(sink=sink, dimensions="topic")])
    # WHEN processed
    process_partial_response(event, lambda record: "ok", processor)
    # THEN no topic dimension misattributes the records: only the service set is emitted
    document = sink.only
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert "topic" not in document
    assert document["BatchSize"] == 4


def test_async_processor_counts_concurrent_records(sink: Sink) -> None:
    # GIVEN an async handler failing 2 of 8 records
    failing = {"order-1", "order-5"}

    async def handler(record: Any) -> str:
        await asyncio.sleep(0)
        if json.loads(record.body)["order_id"] in failing:
            raise ValueError("cannot process order")
        return "ok"

    processor = AsyncBatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=sink)])
    # WHEN processed concurrently
    async_process_partial_response(sqs_event(8), handler, processor)
    # THEN the counts and the timings cover every record exactly once
    document = sink.only
    assert counts(document)["BatchRecordSuccesses"] == 6
    assert counts(document)["BatchRecordFailures"] == 2
    assert document["RecordProcessingTime"]["Count"] == 8


def test_each_invocation_gets_its_own_document(sink: Sink) -> None:
    # GIVEN one processor (cold start) reused for two invocations
    processor = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=sink)])
    # WHEN it processes a batch of 3 with one failure, then a batch of 2
    process_partial_response(sqs_event(3), fail_indexes(0), processor)
    process_partial_response(sqs_event(2), fail_indexes(), processor)
    # THEN two documents, the second not carrying anything over from the first
    first, second = sink.documents
    assert counts(first) == batch_counts(successes=2, failures=1, skipped=0, size=3)
    assert counts(second) == batch_counts(successes=2, failures=0, skipped=0, size=2)
    assert second["RecordProcessingTime"]["Count"] == 2


# -- flushing -------------------------------------------------------------------------------------


def test_flushes_when_the_whole_batch_fails_and_powertools_raises(sink: Sink) -> None:
    # GIVEN a batch whose every record fails
    # WHEN processed (Powertools raises BatchProcessingError)
    with pytest.raises(BatchProcessingError):
        run_sqs(MetricsMiddleware(sink=sink), sqs_event(3), fail_indexes(0, 1, 2))
    # THEN the document was still written, counting 3 failures
    assert counts(sink.only)["BatchRecordFailures"] == 3


class Crash(BaseException):
    """Escapes Powertools' ``except Exception``, as KeyboardInterrupt would."""


def test_flushes_when_the_handler_raises_something_unexpected(sink: Sink) -> None:
    # GIVEN a handler that crashes on the third record with a BaseException
    def handler(record: Any) -> str:
        if json.loads(record.body)["order_id"] == "order-2":
            raise Crash()
        return "ok"

    # WHEN the batch is processed
    with pytest.raises(Crash):
        run_sqs(MetricsMiddleware(sink=sink), sqs_event(5), handler)
    # THEN one document counts what happened before the crash; BatchSize says 5 were delivered
    assert counts(sink.only) == batch_counts(successes=2, failures=1, skipped=0, size=5)


def test_flushes_when_user_code_raises_inside_the_context_manager(sink: Sink) -> None:
    # GIVEN a processor used as a context manager
    processor = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=sink)])

    def user_code() -> None:
        with processor(sqs_event(2)["Records"], fail_indexes()):
            processor.process()
            raise RuntimeError("user bug")

    # WHEN the user's code raises after processing
    with pytest.raises(RuntimeError):
        user_code()
    # THEN the document was written once, with the 2 successes
    assert counts(sink.only)["BatchRecordSuccesses"] == 2


def test_default_sink_writes_one_json_line_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the metrics middleware without a sink
    # WHEN a batch is processed
    run_sqs(MetricsMiddleware(), sqs_event(2), fail_indexes())
    # THEN stdout holds exactly one line, a valid EMF document
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert assert_valid_emf(lines[0])["BatchRecordSuccesses"] == 2


def test_powertools_metrics_disabled_suppresses_the_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN POWERTOOLS_METRICS_DISABLED=true, as Powertools users set it in local runs
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    # WHEN a batch is processed
    response = run_sqs(MetricsMiddleware(), sqs_event(2), fail_indexes(1))
    # THEN nothing is written and the response is unchanged
    assert capsys.readouterr().out == ""
    assert len(response["batchItemFailures"]) == 1


def test_a_failing_sink_never_changes_the_response(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a sink that raises
    def broken_sink(line: str) -> None:
        raise OSError("log pipe closed")

    event = sqs_event(4)
    expected = process_partial_response(
        event, fail_indexes(1), PowertoolsBatchProcessor(EventType.SQS), FakeLambdaContext()
    )
    # WHEN a batch is processed
    with caplog.at_level(logging.WARNING, logger="observed_batch"):
        response = run_sqs(MetricsMiddleware(sink=broken_sink), event, fail_indexes(1))
    # THEN the response is Powertools' and the error was logged once
    assert response == expected
    assert [r.getMessage() for r in caplog.records if "'metrics'" in r.getMessage()]


def test_powertools_metrics_in_the_same_function_are_not_double_counted(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a handler publishing its own metric through Powertools Metrics, same namespace and service
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ObservedBatch")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "orders")
    metrics = Metrics()

    def handler(record: Any) -> str:
        metrics.add_metric(name="OrdersHandled", unit=MetricUnit.Count, value=1)
        return fail_indexes(0)(record)

    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        processor = BatchProcessor(EventType.SQS, middleware=["metrics"])
        return process_partial_response(event, handler, processor, context)

    # WHEN the function runs
    try:
        lambda_handler(sqs_event(5), FakeLambdaContext())
    finally:
        metrics.clear_metrics()
    # THEN exactly one document carries our metrics with exact counts, Powertools' carry only theirs
    documents = [assert_valid_emf(line) for line in capsys.readouterr().out.splitlines()]
    ours = [d for d in documents if "BatchSize" in d]
    theirs = [d for d in documents if "OrdersHandled" in d]
    assert len(ours) == 1
    assert counts(ours[0])["BatchRecordSuccesses"] == 4
    assert ours[0]["service"] == "orders"
    assert not any(name in d for d in theirs for name in COUNTS)
    assert "OrdersHandled" not in ours[0]


# -- document contents ----------------------------------------------------------------------------


def test_emits_every_defined_metric_with_its_unit(sink: Sink) -> None:
    # GIVEN an SQS batch processed with a policy middleware in the chain
    policy = RetryPolicyMiddleware(non_retryable=[LookupError], on_non_retryable="drop")
    processor = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=sink), policy])
    process_partial_response(sqs_event(3), fail_indexes(1), processor, FakeLambdaContext())
    # THEN the directive defines exactly METRICS, in order, with their units; nothing was resolved
    directive = sink.only["_aws"]["CloudWatchMetrics"][0]
    assert directive["Metrics"] == [{"Name": m.name, "Unit": m.unit} for m in METRICS]
    assert (sink.only["BatchRecordsDeadLettered"], sink.only["BatchRecordsDropped"]) == (0, 0)


def test_without_a_policy_middleware_the_resolution_counts_are_left_out(sink: Sink) -> None:
    # GIVEN a batch with a failure and no policy middleware (nothing can dead-letter or drop a record)
    run_sqs(MetricsMiddleware(sink=sink), sqs_event(3), fail_indexes(1))
    # THEN the two always-zero counts are not in the document; every other metric is
    names = [m["Name"] for m in sink.only["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    left_out = {"BatchRecordsDeadLettered", "BatchRecordsDropped"}
    assert names == [m.name for m in METRICS if m.name not in left_out]
    assert not left_out & set(sink.only)


def test_a_10000_record_document_without_policy_fits_in_1_kb(sink: Sink) -> None:
    # GIVEN 10,000 SQS records, 10 % failing, metrics only (the benchmark's EMF row)
    run_sqs(MetricsMiddleware(sink=sink), sqs_event(10_000), fail_indexes(*range(0, 10_000, 10)))
    # THEN the one document is at most 1 KB
    (line,) = sink.lines
    assert len(line.encode()) <= 1024


def test_namespace_and_service_default_to_powertools_variables(monkeypatch: pytest.MonkeyPatch, sink: Sink) -> None:
    # GIVEN the Powertools environment variables
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shop")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "checkout")
    # WHEN a batch is processed
    run_sqs(MetricsMiddleware(sink=sink), sqs_event(1), fail_indexes())
    # THEN they name the namespace and the service dimension
    document = sink.only
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"
    assert document["service"] == "checkout"


def test_without_environment_namespace_and_service_have_defaults(sink: Sink) -> None:
    # GIVEN no Powertools variables
    # WHEN a batch is processed
    run_sqs(MetricsMiddleware(sink=sink), sqs_event(1), fail_indexes())
    # THEN Powertools' default service and our default namespace are used
    document = sink.only
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "ObservedBatch"
    assert document["service"] == "service_undefined"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_options_win_over_powertools_variables(monkeypatch: pytest.MonkeyPatch, sink: Sink) -> None:
    # GIVEN Powertools variables and explicit options
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Shop")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "checkout")
    # WHEN a batch is processed
    run_sqs(MetricsMiddleware(sink=sink, namespace="Batch", service="billing"), sqs_event(1), fail_indexes())
    # THEN the options are used
    document = sink.only
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Batch"
    assert document["service"] == "billing"


def test_options_come_from_observed_batch_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN the middleware and its options configured by environment only
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "metrics")
    monkeypatch.setenv("OBSERVED_BATCH_METRICS_NAMESPACE", "FromEnv")
    monkeypatch.setenv("OBSERVED_BATCH_METRICS_DIMENSIONS", "queue, environment=prod")
    # WHEN a batch is processed
    process_partial_response(sqs_event(1, queue="orders"), fail_indexes(), BatchProcessor(EventType.SQS))
    # THEN the document uses them
    document = assert_valid_emf(capsys.readouterr().out.strip())
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "FromEnv"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"], ["service", "queue", "environment"]]
    assert (document["queue"], document["environment"]) == ("orders", "prod")


def test_extra_dimensions_add_a_second_dimension_set(sink: Sink) -> None:
    # GIVEN destination, function name and a static dimension
    middleware = MetricsMiddleware(sink=sink, dimensions="destination,function_name,stage=live")
    # WHEN a batch from queue "orders" is processed by function "orders-consumer"
    run_sqs(middleware, sqs_event(2, queue="orders"), fail_indexes())
    # THEN the service set stays and a second set carries the extras
    document = sink.only
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["service"],
        ["service", "queue", "function_name", "stage"],
    ]
    assert (document["queue"], document["function_name"], document["stage"]) == ("orders", "orders-consumer", "live")


def test_dynamic_dimensions_without_a_value_are_left_out(sink: Sink) -> None:
    # GIVEN function_name and destination dimensions, but no Lambda context and no event source ARN
    records = sqs_event(2)["Records"]
    for record in records:
        del record["eventSourceARN"]
    processor = BatchProcessor(
        EventType.SQS, middleware=[MetricsMiddleware(sink=sink, dimensions="function_name,destination")]
    )
    # WHEN processed without a context
    process_partial_response({"Records": records}, fail_indexes(), processor)
    # THEN only the service dimension set is emitted
    document = sink.only
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]


def test_records_without_timestamps_leave_record_age_out(sink: Sink) -> None:
    # GIVEN records without SentTimestamp, one with a non-numeric and one with a non-finite one
    records = sqs_event(3)["Records"]
    del records[0]["attributes"]["SentTimestamp"]
    records[1]["attributes"]["SentTimestamp"] = "soon"
    records[2]["attributes"]["SentTimestamp"] = "nan"
    # WHEN processed
    run_sqs(MetricsMiddleware(sink=sink), {"Records": records}, fail_indexes())
    # THEN no RecordAge, the rest as usual
    document = sink.only
    assert "RecordAge" not in document
    assert document["BatchRecordSuccesses"] == 3


def test_stream_records_without_arrival_time_are_left_out_of_record_age(sink: Sink) -> None:
    # GIVEN 3 Kinesis records, one without approximateArrivalTimestamp
    event = kinesis_event(3)
    del event["Records"][1]["kinesis"]["approximateArrivalTimestamp"]
    processor = BatchProcessor(EventType.KinesisDataStreams, middleware=[MetricsMiddleware(sink=sink)])
    # WHEN processed
    process_partial_response(event, fail_indexes(), processor)
    # THEN the ages cover the 2 records that have one
    assert sink.only["RecordAge"]["Count"] == 2


def test_producer_clock_ahead_gives_zero_age(sink: Sink) -> None:
    # GIVEN a record sent "in the future"
    event = {"Records": [sqs_record(0, sent_timestamp_ms=4_102_444_800_000)]}
    # WHEN processed
    run_sqs(MetricsMiddleware(sink=sink), event, fail_indexes())
    # THEN its age is 0, not negative
    assert sink.only["RecordAge"]["Values"] == [0]


def test_ten_thousand_records_stay_within_the_emf_value_limit(sink: Sink) -> None:
    # GIVEN 10,000 records, 10 % failing
    event = sqs_event(10_000, sent_timestamp_ms=1_700_000_000_000)
    # WHEN processed
    run_sqs(MetricsMiddleware(sink=sink), event, fail_indexes(*range(0, 10_000, 10)))
    # THEN one valid document (checked by the sink) with exact counts and at most 100 values per metric
    document = sink.only
    assert counts(document) == batch_counts(successes=9_000, failures=1_000, skipped=0, size=10_000)
    assert len(document["RecordProcessingTime"]["Values"]) <= 100
    assert document["RecordProcessingTime"]["Count"] == 10_000
    assert document["RecordAge"]["Count"] == 10_000


# -- configuration errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"namespace": ""}, "namespace"),
        ({"namespace": "AWS/Lambda"}, "namespace"),
        ({"namespace": "x" * 256}, "namespace"),
        ({"service": "caf\u00e9"}, "service"),
        ({"service": "   "}, "service"),
        ({"dimensions": "message_id"}, "unknown dimension 'message_id'"),
        ({"dimensions": "queue,stream"}, "twice"),
        ({"dimensions": "stage=a,stage=b"}, "twice"),
        ({"dimensions": "service=x"}, "'service' cannot be a dimension name"),
        ({"dimensions": "BatchSize=x"}, "'BatchSize' cannot be a dimension name"),
        ({"dimensions": ":stage=x"}, "cannot be a dimension name"),
        ({"dimensions": "stage="}, "stage"),
        ({"dimensions": ",".join(f"d{i}=v" for i in range(30))}, "30 per dimension set"),
    ],
)
def test_invalid_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    # GIVEN an invalid option
    # WHEN the middleware is constructed (cold start)
    # THEN ConfigError names the problem
    with pytest.raises(ConfigError, match=message):
        MetricsMiddleware(**options)


def test_invalid_powertools_namespace_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an invalid namespace from Powertools' variable
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "AWS/SQS")
    # WHEN the middleware is built from configuration
    # THEN the error names the variable
    with pytest.raises(ConfigError, match="POWERTOOLS_METRICS_NAMESPACE"):
        BatchProcessor(EventType.SQS, middleware=["metrics"])


def test_invalid_powertools_service_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a service name CloudWatch would reject
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "bad\tname")
    # WHEN the middleware is constructed
    # THEN the error names the variable
    with pytest.raises(ConfigError, match="POWERTOOLS_SERVICE_NAME"):
        MetricsMiddleware()


def test_static_dimension_up_to_the_limit_is_accepted(sink: Sink) -> None:
    # GIVEN 29 static dimensions, which with service make the EMF maximum of 30
    middleware = MetricsMiddleware(sink=sink, dimensions=",".join(f"d{i}=v{i}" for i in range(29)))
    # WHEN a batch is processed
    run_sqs(middleware, sqs_event(1), fail_indexes())
    # THEN the document is valid (the sink validated it) with a 30-key set
    assert len(sink.only["_aws"]["CloudWatchMetrics"][0]["Dimensions"][1]) == 30
