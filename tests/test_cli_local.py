"""``observed-batch invoke`` and ``sample-event``, and the examples they run (handlers and templates).

The CLI runs in-process through click's ``CliRunner`` (real handlers, real middlewares, real OTel
SDK); one test runs the README's quick-start command in a fresh process. Assertions about one
middleware's output are skipped, with the reason, only when that middleware is missing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_runner import cli_runner
from click.testing import CliRunner, Result

from observed_batch.cli import main
from observed_batch.cli._common import Progress, Ticker, UsageProblem, capture_stdout, emf_metrics, split_telemetry
from observed_batch.cli.invoke import render
from observed_batch.cli.sample_event import build_event
from observed_batch.config import BUILTINS, available_builtins
from observed_batch.testing import kafka_event, sqs_record

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
#: example -> (sample-event source, handler spec)
EXAMPLE_SOURCES = {
    "sqs_orders": "sqs",
    "sqs_fifo": "sqs-fifo",
    "kinesis_clickstream": "kinesis",
    "dynamodb_stream": "dynamodb",
}
SAMPLE_TIME_MS = 1_767_225_600_000  # the examples' events/sample.json were generated at this --time


AVAILABLE = available_builtins(policies=False)


def needs(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"middleware {name!r} is not available in this build")


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _process_globals() -> Iterator[None]:
    """invoke installs a global OTel TracerProvider; Sentry and structlog keep global state too.
    Every test here starts from, and leaves, a process without them."""
    saved_trace = None
    try:
        from opentelemetry import trace

        saved_trace = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done)
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = None, False
    except ImportError:  # pragma: no cover - the tracing extra is installed in the dev environment
        pass
    _reset_sentry()
    _reset_structlog()
    yield
    _reset_sentry()
    _reset_structlog()
    if saved_trace is not None:
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = saved_trace


def _reset_sentry() -> None:
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover
        return
    sentry_sdk.get_client().close(timeout=0)
    sentry_sdk.Scope.get_global_scope().set_client(None)


def _reset_structlog() -> None:
    try:
        import structlog
    except ImportError:  # pragma: no cover
        return
    structlog.reset_defaults()


@pytest.fixture
def runner() -> CliRunner:
    return cli_runner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory: invoke puts it on sys.path, so handler modules written here import."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_module(directory: Path, name: str, code: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(code))


def write_json(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data))
    return str(path)


def invoke(runner: CliRunner, *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(main, ["invoke", *args], input=stdin, catch_exceptions=False)


def sample(runner: CliRunner, *args: str) -> Result:
    return runner.invoke(main, ["sample-event", *args], catch_exceptions=False)


def error_line(result: Result) -> str:
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def example_run(runner: CliRunner, example: str, *extra: str) -> Result:
    """Run an example from the repository root, as the quick start does."""
    os.chdir(REPO)
    return invoke(
        runner,
        f"examples.{example}.app:handler",
        "--event",
        str(EXAMPLES / example / "events" / "sample.json"),
        "--env-vars",
        str(EXAMPLES / example / "env.json"),
        "--env",
        f"OBSERVED_BATCH_MIDDLEWARE={','.join(AVAILABLE)}",
        *extra,
    )


@pytest.fixture
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(REPO)
    return REPO


# -- sample-event ---------------------------------------------------------------------------------------
def test_sqs_sample_event_has_the_record_shape_lambda_delivers(runner: CliRunner) -> None:
    # GIVEN / WHEN 5 SQS records are generated
    result = sample(runner, "sqs", "--count", "5")
    # THEN each looks like Lambda's SQS record, with a JSON order as body and a matching md5
    assert result.exit_code == 0
    records = json.loads(result.stdout)["Records"]
    assert len(records) == 5
    for record in records:
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"].endswith(":orders")
        assert {"messageId", "receiptHandle", "attributes", "messageAttributes", "awsRegion"} <= set(record)
        assert json.loads(record["body"])["order_id"].startswith("order-")
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()


def _records(source: str, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The records in the order Lambda (and Powertools) hand them over: Kafka's partition by partition."""
    if source == "kafka":
        return [record for batch in event["records"].values() for record in batch]
    return list(event["Records"])


def _payload(source: str, record: dict[str, Any]) -> dict[str, Any]:
    if source == "kafka":
        return dict(json.loads(base64.b64decode(record["value"])))
    if source in ("sqs", "sqs-fifo"):
        return dict(json.loads(record["body"]))
    if source == "kinesis":
        return dict(json.loads(base64.b64decode(record["kinesis"]["data"])))
    image = record["dynamodb"]["NewImage"]
    return {key: next(iter(value.values())) for key, value in image.items()}


@pytest.mark.parametrize("source", ["sqs", "sqs-fifo", "kinesis", "dynamodb", "kafka"])
def test_fail_every_marks_every_kth_record_as_poison(runner: CliRunner, source: str) -> None:
    # GIVEN / WHEN 10 records with --fail-every 3
    result = sample(runner, source, "--count", "10", "--fail-every", "3")
    # THEN records 3, 6 and 9 carry "fail": true, the others no marker
    records = _records(source, json.loads(result.stdout))
    poison = [index for index, record in enumerate(records) if _payload(source, record).get("fail") is True]
    assert poison == [2, 5, 8]


def test_same_seed_and_time_give_the_same_event(runner: CliRunner) -> None:
    # GIVEN two runs with the same seed and time, one with another seed
    first = sample(runner, "sqs", "--count", "3", "--seed", "4", "--time", "1700000000000").stdout
    second = sample(runner, "sqs", "--count", "3", "--seed", "4", "--time", "1700000000000").stdout
    other = sample(runner, "sqs", "--count", "3", "--seed", "5", "--time", "1700000000000").stdout
    # THEN the same seed reproduces the event byte for byte; another seed changes the ids
    assert first == second
    assert json.loads(first)["Records"][0]["messageId"] != json.loads(other)["Records"][0]["messageId"]


def test_sqs_fifo_records_are_spread_over_message_groups(runner: CliRunner) -> None:
    # GIVEN / WHEN 4 FIFO records over 2 groups
    records = json.loads(sample(runner, "sqs-fifo", "--count", "4", "--groups", "2").stdout)["Records"]
    # THEN groups alternate, on a .fifo queue, and each order belongs to its group's customer
    groups = [record["attributes"]["MessageGroupId"] for record in records]
    assert groups == ["customer-001", "customer-002", "customer-001", "customer-002"]
    assert all(record["eventSourceARN"].endswith(":orders.fifo") for record in records)
    assert [json.loads(record["body"])["customer_id"] for record in records] == groups


@pytest.mark.parametrize(
    ("source", "timestamp"),
    [
        ("sqs", lambda r: int(r["attributes"]["SentTimestamp"])),
        ("kinesis", lambda r: round(r["kinesis"]["approximateArrivalTimestamp"] * 1000)),
    ],
)
def test_record_timestamps_end_at_time(runner: CliRunner, source: str, timestamp: Any) -> None:
    # GIVEN / WHEN 3 records whose newest is at --time
    records = json.loads(sample(runner, source, "--count", "3", "--time", "1700000000000").stdout)["Records"]
    # THEN they are 10 ms apart, the last one at --time
    assert [timestamp(record) for record in records] == [1_699_999_999_980, 1_699_999_999_990, 1_700_000_000_000]


def test_dynamodb_records_carry_the_order_as_new_image(runner: CliRunner) -> None:
    # GIVEN / WHEN 2 DynamoDB records
    records = json.loads(sample(runner, "dynamodb", "--count", "2", "--source-name", "Orders").stdout)["Records"]
    # THEN keys match the image and the table is in the ARN
    for record in records:
        assert record["dynamodb"]["Keys"] == {"pk": record["dynamodb"]["NewImage"]["pk"]}
        assert ":table/Orders/stream/" in record["eventSourceARN"]


def test_output_file_is_written_and_summarised_on_stderr(runner: CliRunner, tmp_path: Path) -> None:
    # GIVEN / WHEN the event goes to a file
    target = tmp_path / "event.json"
    result = sample(runner, "kinesis", "--count", "4", "--fail-every", "2", "--output", str(target))
    # THEN the file holds it and stderr says what was written
    assert result.exit_code == 0
    assert len(json.loads(target.read_text())["Records"]) == 4
    assert result.stdout == ""
    assert f"wrote 4 kinesis records (2 poison) to {target}" in result.stderr


def test_fifo_queue_name_without_suffix_is_a_usage_error(runner: CliRunner) -> None:
    # GIVEN / WHEN a FIFO event for a queue not named *.fifo
    result = sample(runner, "sqs-fifo", "--source-name", "orders")
    # THEN one clear line, exit code 2
    assert result.exit_code == 2
    assert error_line(result) == "Error: FIFO queue names end in .fifo, got --source-name 'orders'"


def test_unwritable_output_is_a_usage_error(runner: CliRunner, tmp_path: Path) -> None:
    # GIVEN / WHEN the output directory does not exist
    result = sample(runner, "sqs", "--output", str(tmp_path / "missing" / "event.json"))
    # THEN exit code 2 with the reason
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: cannot write ")


@pytest.mark.parametrize("arguments", [["sqs", "--count", "0"], ["sns"], ["sqs", "--fail-every", "0"]])
def test_bad_arguments_are_usage_errors(runner: CliRunner, arguments: list[str]) -> None:
    # GIVEN / WHEN an out-of-range count, an unknown source or a zero --fail-every
    result = sample(runner, *arguments)
    # THEN click's usage error, exit code 2
    assert result.exit_code == 2


def test_build_event_reports_progress_every_thousand_records() -> None:
    # GIVEN a progress callback WHEN 2,500 records are built THEN it heard of each full thousand
    heard: list[int] = []
    event = build_event("dynamodb", 2500, progress=heard.append, time_ms=0)
    assert heard == [1000, 2000]
    assert len(event["Records"]) == 2500


def test_build_event_rejects_unknown_sources() -> None:
    # GIVEN / WHEN an unknown source THEN a usage error naming the valid ones
    with pytest.raises(UsageProblem, match="unknown source 'sns'; valid: sqs, sqs-fifo, kinesis, dynamodb, kafka"):
        build_event("sns", 1)
    with pytest.raises(UsageProblem, match="unknown Kafka source 'confluent'; valid: msk, self-managed"):
        build_event("kafka", 1, kafka_source="confluent")


@pytest.mark.parametrize(("kafka_source", "event_source"), [("msk", "aws:kafka"), ("self-managed", "SelfManagedKafka")])
def test_kafka_sample_event_has_the_shape_lambda_delivers(
    runner: CliRunner, kafka_source: str, event_source: str
) -> None:
    # GIVEN / WHEN 12 Kafka records over 4 partitions of topic "payments"
    arguments = ["--count", "12", "--partitions", "4", "--source-name", "payments", "--kafka-source", kafka_source]
    event = json.loads(sample(runner, "kafka", *arguments, "--time", "1700000000000").stdout)
    # THEN the event names its source: MSK with the cluster's ARN, self-managed with its brokers only
    assert event["eventSource"] == event_source
    assert event["bootstrapServers"]
    assert event.get("eventSourceArn", "").startswith("arn:aws:kafka:") == (kafka_source == "msk")
    # AND records are grouped under "topic-partition", offsets consecutive, keys on one partition each
    records = _records("kafka", event)
    assert len(records) == 12
    for key, batch in event["records"].items():
        assert {f"{record['topic']}-{record['partition']}" for record in batch} == {key}
        assert [record["offset"] for record in batch] == list(range(1000, 1000 + len(batch)))
    partitions_of_key: dict[str, set[int]] = {}
    for record in records:
        assert {"timestamp", "timestampType", "key", "value", "headers"} <= set(record)
        assert record["timestamp"] <= 1_700_000_000_000
        partitions_of_key.setdefault(record["key"], set()).add(record["partition"])
        assert _payload("kafka", record)["order_id"].startswith("order-")
    assert all(len(partitions) == 1 for partitions in partitions_of_key.values())


KAFKA_APP = """
    import json

    from observed_batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(EventType.Kafka)

    def record_handler(record):
        order = json.loads(record.decoded_value)
        if order.get("fail"):
            raise ValueError(f"poison order {order['order_id']}")

    def handler(event, context):
        return process_partial_response(event, record_handler, processor, context)
"""


@pytest.mark.parametrize("kafka_source", ["msk", "self-managed"])
def test_kafka_sample_event_is_processed_by_powertools_kafka_processor(
    runner: CliRunner, workdir: Path, kafka_source: str
) -> None:
    # GIVEN a Kafka event with every 3rd record poison, and a handler with BatchProcessor(EventType.Kafka)
    write_module(workdir, "kafka_orders_app", KAFKA_APP)
    event_file = workdir / "kafka.json"
    sample(runner, "kafka", "--count", "9", "--fail-every", "3", "--kafka-source", kafka_source, "-o", str(event_file))
    records = _records("kafka", json.loads(event_file.read_text()))
    poison = [record for record in records if _payload("kafka", record).get("fail")]
    # WHEN invoked with the metrics middleware
    result = invoke(
        runner,
        "kafka_orders_app.handler",
        "--event",
        str(event_file),
        "--env",
        "OBSERVED_BATCH_MIDDLEWARE=metrics",
        "--json",
    )
    # THEN exactly the poison records are reported, by Kafka's partition/offset identifier
    report = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert report["records"] == 9
    assert report["response"]["batchItemFailures"] == [
        {"itemIdentifier": {"partition": f"{r['topic']}-{r['partition']}", "offset": r["offset"]}} for r in poison
    ]
    totals = split_telemetry(json.dumps(document) for document in report["metrics"]).metric_totals()
    assert (totals["BatchRecordFailures"], totals["BatchRecordSuccesses"]) == (3, 6)


def test_progress_is_silent_at_first_then_throttled() -> None:
    # GIVEN a progress reporter on a scripted clock (1 s delay, 1 s interval)
    now = [0.0]
    stream = io.StringIO()
    progress = Progress("generated records", 100, clock=lambda: now[0], stream=stream)
    # WHEN updates arrive at 0.5 s, 1.0 s, 1.5 s and 2.1 s
    for at, done in ((0.5, 10), (1.0, 20), (1.5, 30), (2.1, 40)):
        now[0] = at
        progress.update(done)
    # THEN only 1.0 s and 2.1 s printed
    assert stream.getvalue().splitlines() == [
        "observed-batch: generated records 20/100 (20%)",
        "observed-batch: generated records 40/100 (40%)",
    ]


def test_ticker_reports_a_long_call_on_stderr() -> None:
    # GIVEN a ticker every 20 ms WHEN the call takes 150 ms THEN it printed progress lines, then stopped
    stream = io.StringIO()
    with Ticker("still running handler", interval_s=0.02, stream=stream) as ticker:
        time.sleep(0.15)
    printed = ticker.lines
    time.sleep(0.05)
    assert printed >= 2
    assert ticker.lines == printed
    assert stream.getvalue().startswith("observed-batch: still running handler (")


# -- invoke: the examples ---------------------------------------------------------------------------
def test_quick_start_prints_the_response_and_the_telemetry(runner: CliRunner, at_repo_root: Path) -> None:
    # GIVEN the sqs_orders example with its sample event (2 poison orders of 10)
    # WHEN it is invoked locally with its env.json
    result = example_run(runner, "sqs_orders")
    # THEN exit code 0 (partial failure is a normal outcome) and a readable report
    assert result.exit_code == 0, result.output
    assert "Response: 2 of 10 records failed" in result.stdout
    assert '"batchItemFailures"' in result.stdout
    if "metrics" in AVAILABLE:
        assert "BatchRecordFailures" in result.stdout
    if "logging" in AVAILABLE:
        assert "record_failed" in result.stdout
        assert "batch_summary" in result.stdout
    if "tracing" in AVAILABLE:
        assert "Spans (10; collected in memory, not exported)" in result.stdout
        assert "error.type=OrderRejected" in result.stdout


@pytest.mark.parametrize("example", list(EXAMPLE_SOURCES))
def test_each_example_fails_exactly_its_poison_records(
    runner: CliRunner, at_repo_root: Path, tmp_path: Path, example: str
) -> None:
    # GIVEN 9 records of the example's source, every 3rd poison
    event = build_event(EXAMPLE_SOURCES[example], 9, fail_every=3, seed=2)
    records = event["Records"]
    poison = [
        record.get("messageId") or (record.get("kinesis") or record.get("dynamodb") or {}).get("sequenceNumber")
        for index, record in enumerate(records)
        if index % 3 == 2
    ]
    if example == "dynamodb_stream":
        poison = [records[index]["dynamodb"]["SequenceNumber"] for index in (2, 5, 8)]
    # WHEN the example's handler runs it
    result = invoke(
        runner, f"examples.{example}.app:handler", "--event", write_json(tmp_path / "event.json", event), "--json"
    )
    # THEN the poison records are reported failed (FIFO: with the rest of their group after them)
    report = json.loads(result.stdout)
    failed = [item["itemIdentifier"] for item in report["response"]["batchItemFailures"]]
    if example == "sqs_fifo":
        groups = {records[index]["attributes"]["MessageGroupId"] for index in (2, 5, 8)}
        first_failure = {
            group: min(i for i in (2, 5, 8) if records[i]["attributes"]["MessageGroupId"] == group) for group in groups
        }
        poison = [
            record["messageId"]
            for index, record in enumerate(records)
            if record["attributes"]["MessageGroupId"] in groups
            and index >= first_failure[record["attributes"]["MessageGroupId"]]
        ]
    assert failed == poison


def test_json_report_reconciles_metrics_with_the_response(runner: CliRunner, at_repo_root: Path) -> None:
    needs("metrics")
    # GIVEN / WHEN the quick-start example runs with --json
    report = json.loads(example_run(runner, "sqs_orders", "--json").stdout)
    # THEN the EMF document counts what the response reports
    assert report["records"] == 10
    assert report["error"] is None
    (document,) = report["metrics"]
    counts = {stat.name: stat.total for stat in emf_metrics(document)}
    assert counts["BatchRecordFailures"] == report["failed_records"] == 2
    assert counts["BatchRecordSuccesses"] == 8


def test_json_report_lists_spans_with_their_attributes(runner: CliRunner, at_repo_root: Path) -> None:
    needs("tracing")
    # GIVEN / WHEN the quick-start example runs with --json
    report = json.loads(example_run(runner, "sqs_orders", "--json").stdout)
    # THEN one consumer span per record, the failed ones with status ERROR
    spans = report["spans"]
    assert len(spans) == 10
    assert {span["kind"] for span in spans} == {"CONSUMER"}
    assert sum(span["status"] == "ERROR" for span in spans) == 2
    assert all(len(span["trace_id"]) == 32 and len(span["span_id"]) == 16 for span in spans)


def test_config_error_at_cold_start_is_a_usage_error(runner: CliRunner, at_repo_root: Path) -> None:
    # GIVEN an unknown middleware name in the environment
    result = invoke(
        runner,
        "examples.sqs_orders.app:handler",
        "--event",
        str(EXAMPLES / "sqs_orders" / "events" / "sample.json"),
        "--env",
        "OBSERVED_BATCH_MIDDLEWARE=metric",
    )
    # THEN the processor's ConfigError, in one line, exit code 2
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: configuration error while importing examples.sqs_orders.app:")
    assert "unknown middleware 'metric'" in error_line(result)


def test_env_changes_are_undone_after_the_invoke(runner: CliRunner, at_repo_root: Path) -> None:
    # GIVEN no OBSERVED_BATCH_MIDDLEWARE in the environment
    assert "OBSERVED_BATCH_MIDDLEWARE" not in os.environ
    # WHEN an example runs with its env.json THEN the variables are gone again afterwards
    example_run(runner, "sqs_orders")
    assert "OBSERVED_BATCH_MIDDLEWARE" not in os.environ
    assert "POWERTOOLS_SERVICE_NAME" not in os.environ


def test_examples_sample_events_are_what_sample_event_generates() -> None:
    # GIVEN each example's events/sample.json WHEN regenerated with the documented command
    for example, source in EXAMPLE_SOURCES.items():
        expected = build_event(source, 10, fail_every=4, seed=7, time_ms=SAMPLE_TIME_MS)
        # THEN it is identical (the file is reproducible, not hand-edited)
        assert json.loads((EXAMPLES / example / "events" / "sample.json").read_text()) == expected, example


def test_quick_start_command_runs_in_a_fresh_process() -> None:
    # GIVEN a new Python process (nothing imported yet), at the repository root
    command = [
        sys.executable,
        "-c",
        "from observed_batch.cli import main; main()",
        "invoke",
        "examples.sqs_orders.app:handler",
        "--event",
        "examples/sqs_orders/events/sample.json",
        "--env-vars",
        "examples/sqs_orders/env.json",
        "--env",
        f"OBSERVED_BATCH_MIDDLEWARE={','.join(AVAILABLE)}",
    ]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("OBSERVED_BATCH_")}
    # WHEN the quick-start command runs
    completed = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)
    # THEN it exits 0 with the report on stdout
    assert completed.returncode == 0, completed.stderr
    assert "Response: 2 of 10 records failed" in completed.stdout


# -- invoke: exit codes and errors ------------------------------------------------------------------
RAISING_HANDLER = """
    def handler(event, context):
        print("about to fail")
        raise ValueError("database is down\\nsecond line")
"""


def test_handler_exception_exits_one_with_one_line_and_the_report(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler that prints, then raises
    write_module(workdir, "raising_app", RAISING_HANDLER)
    event = write_json(workdir / "event.json", {"Records": []})
    # WHEN it is invoked
    result = invoke(runner, "raising_app:handler", "--event", event)
    # THEN exit code 1, one error line on stderr, and the report with the traceback on stdout
    assert result.exit_code == 1
    assert error_line(result) == "Error: handler raised ValueError: database is down"
    assert "Response: none, the handler raised ValueError: database is down" in result.stdout
    assert "Traceback" in result.stdout
    assert "about to fail" in result.stdout


DEEP_FAILING_APP = """
    from observed_batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(EventType.SQS)

    def check(order, depth):
        if depth:
            return check(order, depth - 1)
        raise LookupError(f"no stock for {order}\\ncontact the warehouse")

    def record_handler(record):
        check(record.message_id, 4)

    def handler(event, context):
        return process_partial_response(event, record_handler, processor, context)
"""


def test_all_records_failing_shows_each_records_exception_innermost_frames_first(
    runner: CliRunner, workdir: Path
) -> None:
    # GIVEN a handler whose records all fail six frames deep
    write_module(workdir, "deep_app", DEEP_FAILING_APP)
    event = write_json(workdir / "e.json", build_event("sqs", 3))
    # WHEN invoked
    result = invoke(runner, "deep_app:handler", "--event", event)
    out = result.stdout
    # THEN it says plainly that all records failed and where their exceptions are
    assert result.exit_code == 1
    assert "Response: none. All 3 records failed, so Powertools raised BatchProcessingError" in out
    assert "each record's exception is listed below" in out
    assert error_line(result) == (
        "Error: handler raised BatchProcessingError: all 3 records failed (each record's exception is in the report)"
    )
    # AND each record's exception: type and message; the innermost frames once, the outer ones counted
    assert "Record exceptions (3, in the order the records failed)" in out
    records = build_event("sqs", 3)["Records"]
    for number, record in enumerate(records, 1):
        assert f"  {number}. LookupError: no stock for {record['messageId']}" in out
    assert out.count("Traceback (most recent call last):") == 1
    assert "         … 8 lines cut (4 outer frames; --json has the full traceback)" in out
    assert 'File "deep_app.py", line 9, in check' in out
    assert "(raised where #1 was)" in out
    # AND no tail of Powertools' message pointing at errors "logged separately below"
    assert "logged separately below" not in out


def test_json_report_has_each_records_exception(runner: CliRunner, workdir: Path) -> None:
    # GIVEN the same handler WHEN invoked with --json
    write_module(workdir, "deep_app2", DEEP_FAILING_APP)
    result = invoke(
        runner, "deep_app2:handler", "--event", write_json(workdir / "e.json", build_event("sqs", 2)), "--json"
    )
    # THEN each record's exception has its type, message, every frame and the full traceback
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "BatchProcessingError"
    assert [item["type"] for item in error["record_exceptions"]] == ["LookupError", "LookupError"]
    first = error["record_exceptions"][0]
    assert first["message"].endswith("\ncontact the warehouse")
    assert [frame["function"] for frame in first["frames"]][-6:] == ["record_handler", *["check"] * 5]
    assert first["traceback"].startswith("Traceback (most recent call last):")


def test_a_deep_handler_exception_shows_its_innermost_frames_and_a_cut_marker(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler raising eight frames deep, with a cause
    write_module(
        workdir,
        "deep_raise_app",
        """
        def dive(depth):
            if depth:
                return dive(depth - 1)
            try:
                {}["config"]
            except KeyError as exc:
                raise RuntimeError("cannot start") from exc

        def handler(event, context):
            dive(6)
        """,
    )
    # WHEN invoked
    result = invoke(runner, "deep_raise_app:handler", "--event", write_json(workdir / "e.json", {"Records": [{}]}))
    # THEN the 3 innermost frames, a marker counting the cut lines, the exception line and its cause
    lines = result.stdout.splitlines()
    start = lines.index("  Traceback (most recent call last):")
    assert lines[start + 1] == "    … 10 lines cut (5 outer frames; --json has the full traceback)"
    assert lines[start + 2 : start + 8 : 2] == [f'    File "deep_raise_app.py", line {n}, in dive' for n in (4, 4, 8)]
    assert lines[start + 8 : start + 10] == ["  RuntimeError: cannot start", "  (caused by KeyError: 'config')"]


@pytest.mark.parametrize(
    "arguments",
    [
        ["invoke", "app:", "--event", "e.json"],
        ["sample-event", "sqs-fifo", "--source-name", "orders"],
        ["dashboard", "--function", "orders consumer"],
    ],
    ids=["invoke", "sample-event", "dashboard"],
)
def test_every_command_reports_a_usage_problem_as_one_line_with_exit_two(
    runner: CliRunner, workdir: Path, arguments: list[str]
) -> None:
    # GIVEN / WHEN a command asked something it cannot do
    result = runner.invoke(main, arguments)
    # THEN click's format: exactly one "Error: ..." line on stderr, no usage block, exit code 2
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("Error: ")


def test_doctor_errors_are_usage_problems() -> None:
    # GIVEN doctor's credential/connection error WHEN compared with the shared class THEN it is one
    from observed_batch.cli.doctor import DoctorError

    assert issubclass(DoctorError, UsageProblem)
    assert DoctorError("x").exit_code == 2
    assert UsageProblem("first line\nsecond line").message == "first line"


def test_handler_exception_is_in_the_json_report(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a raising handler WHEN invoked with --json
    write_module(workdir, "raising_app2", RAISING_HANDLER)
    event = write_json(workdir / "event.json", {"Records": []})
    result = invoke(runner, "raising_app2:handler", "--event", event, "--json")
    # THEN stdout stays valid JSON with the error; the exit code is still 1
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "database is down\nsecond line"
    assert "Traceback" in error["traceback"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("raise RuntimeError('no config')", "Error: importing broken_app raised RuntimeError: no config"),
        ("import package_that_does_not_exist", "Error: importing broken_app raised ModuleNotFoundError:"),
    ],
)
def test_module_failing_at_import_exits_one(runner: CliRunner, workdir: Path, code: str, expected: str) -> None:
    # GIVEN a handler module that raises at import (its own error, or a missing dependency)
    write_module(workdir, "broken_app", code + "\ndef handler(event, context):\n    return {}\n")
    event = write_json(workdir / "event.json", {"Records": []})
    # WHEN invoked THEN exit code 1: the function's init failed, as Lambda would report
    result = invoke(runner, "broken_app:handler", "--event", event)
    assert result.exit_code == 1
    assert error_line(result).startswith(expected)


@pytest.mark.parametrize(
    "spec", ["app", "app.", ".handler", "app:", ":handler", "my-app:handler", "app:handler.", "1app:h", "a.1h"]
)
def test_malformed_handler_spec_exits_two(runner: CliRunner, workdir: Path, spec: str) -> None:
    # GIVEN / WHEN a handler spec that is neither MODULE:HANDLER nor MODULE.HANDLER
    result = invoke(runner, spec, "--event", write_json(workdir / "event.json", {"Records": []}))
    # THEN one line saying what is expected, exit code 2
    assert result.exit_code == 2
    assert error_line(result) == (
        "Error: expected MODULE:HANDLER or MODULE.HANDLER such as examples.sqs_orders.app:handler or"
        f" examples.sqs_orders.app.handler, got {spec!r}"
    )


@pytest.mark.parametrize("spec", ["dotted_app.handler", "pkg.dotted_mod.handler", "dotted_app:handler"])
def test_handler_spec_in_lambda_dotted_form_is_accepted(runner: CliRunner, workdir: Path, spec: str) -> None:
    # GIVEN a module and a package module with a handler, named as a SAM template's Handler: names them
    handler = "def handler(event, context):\n    return {'batchItemFailures': []}\n"
    write_module(workdir, "dotted_app", handler)
    (workdir / "pkg").mkdir()
    (workdir / "pkg" / "__init__.py").write_text("")
    write_module(workdir / "pkg", "dotted_mod", handler)
    # WHEN invoked as module.function (the last dot splits) or module:function
    result = invoke(runner, spec, "--event", write_json(workdir / "event.json", {"Records": [{}]}))
    # THEN the handler ran
    assert result.exit_code == 0, result.output
    assert "Response: all 1 records succeeded" in result.stdout


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nowhere.handler", "Error: cannot import 'nowhere': no module named 'nowhere'"),
        ("plain_app.missing", "Error: module 'plain_app' has no attribute 'missing'"),
    ],
)
def test_dotted_spec_naming_a_missing_module_or_function_exits_two(
    runner: CliRunner, workdir: Path, spec: str, expected: str
) -> None:
    # GIVEN a module without the named function (and a module that does not exist)
    write_module(workdir, "plain_app", "VALUE = 42\n")
    # WHEN invoked in the dotted form THEN one clear line naming what is missing, exit code 2
    result = invoke(runner, spec, "--event", write_json(workdir / "event.json", {"Records": []}))
    assert result.exit_code == 2
    assert error_line(result).startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nowhere.app:handler", "Error: cannot import 'nowhere.app': no module named 'nowhere'"),
        ("plain_app:missing", "Error: module 'plain_app' has no attribute 'missing'"),
        ("plain_app:VALUE", "Error: plain_app:VALUE is not callable"),
    ],
)
def test_unresolvable_handler_exits_two(runner: CliRunner, workdir: Path, spec: str, expected: str) -> None:
    # GIVEN a module with a non-callable attribute (and modules that do not exist)
    write_module(workdir, "plain_app", "VALUE = 42\n")
    # WHEN the spec names something that is not a handler THEN a usage error
    result = invoke(runner, spec, "--event", write_json(workdir / "event.json", {"Records": []}))
    assert result.exit_code == 2
    assert error_line(result).startswith(expected)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "Error: cannot read event file "),
        (b"{not json", "Error: event file EVENT is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"[1, 2]", "Error: the event must be a JSON object (a Lambda event), got list"),
        (b"\xff\xfe", "Error: event file EVENT is not UTF-8 text"),
    ],
)
def test_unusable_event_file_exits_two(runner: CliRunner, workdir: Path, content: bytes | None, expected: str) -> None:
    # GIVEN a missing, malformed, non-object or non-UTF-8 event file
    write_module(workdir, "plain_app", "def handler(event, context):\n    return {}\n")
    path = workdir / "event.json"
    if content is not None:
        path.write_bytes(content)
    # WHEN invoked THEN one clear line, exit code 2
    result = invoke(runner, "plain_app:handler", "--event", str(path))
    assert result.exit_code == 2
    assert error_line(result).startswith(expected.replace("EVENT", str(path)))


ECHO_ENV_HANDLER = """
    import os

    def handler(event, context):
        names = ("OB_PARAM", "OB_FUNCTION", "OB_FLAT", "OB_FLAG", "OB_NUMBER", "OB_PAIR", "OB_GONE")
        return {"batchItemFailures": [], "env": {name: os.environ.get(name) for name in names}}
"""


def test_env_vars_file_in_sam_shape_is_applied(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a SAM env file (Parameters + one function section), a flat value, and --env pairs
    monkeypatch.setenv("OB_GONE", "set before")
    write_module(workdir, "env_app", ECHO_ENV_HANDLER)
    env_file = write_json(
        workdir / "env.json",
        {
            "Parameters": {"OB_PARAM": "from parameters", "OB_FUNCTION": "overridden", "OB_FLAG": True},
            "OrdersFunction": {"OB_FUNCTION": "from function", "OB_NUMBER": 3, "OB_GONE": None},
            "OB_FLAT": "flat",
        },
    )
    event = write_json(workdir / "event.json", {"Records": []})
    # WHEN invoked
    result = invoke(
        runner, "env_app:handler", "--event", event, "--env-vars", env_file, "--env", "OB_PAIR=a=b", "--json"
    )
    # THEN the handler saw every variable (null unsets), and the environment is restored afterwards
    assert json.loads(result.stdout)["response"]["env"] == {
        "OB_PARAM": "from parameters",
        "OB_FUNCTION": "from function",
        "OB_FLAT": "flat",
        "OB_FLAG": "true",
        "OB_NUMBER": "3",
        "OB_PAIR": "a=b",
        "OB_GONE": None,
    }
    assert os.environ["OB_GONE"] == "set before"
    assert "OB_PARAM" not in os.environ


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"A": {"X": "1"}, "B": {"Y": "2"}}, "has sections for several functions (A, B); keep one"),
        ({"Parameters": {"X": [1]}}, "value of X must be a string, number or boolean, got list"),
        ([1], "must hold a JSON object"),
    ],
)
def test_unusable_env_vars_file_exits_two(runner: CliRunner, workdir: Path, content: Any, expected: str) -> None:
    # GIVEN an env file with two functions, a list value, or not an object
    env_file = write_json(workdir / "env.json", content)
    event = write_json(workdir / "event.json", {"Records": []})
    # WHEN invoked THEN exit code 2 with the reason
    result = invoke(runner, "any_app:handler", "--event", event, "--env-vars", env_file)
    assert result.exit_code == 2
    assert expected in error_line(result)


def test_env_pair_without_equals_sign_exits_two(runner: CliRunner, workdir: Path) -> None:
    # GIVEN / WHEN --env without "=" THEN exit code 2 naming the pair
    result = invoke(runner, "any_app:handler", "--event", "event.json", "--env", "NOVALUE")
    assert result.exit_code == 2
    assert error_line(result) == "Error: --env expects KEY=VALUE, got 'NOVALUE'"


def test_config_error_during_the_call_exits_two(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler that builds its processor inside the call, with a bad middleware name
    write_module(
        workdir,
        "lazy_app",
        """
        from observed_batch import BatchProcessor, EventType

        def handler(event, context):
            BatchProcessor(EventType.SQS, middleware=["tracng"])
        """,
    )
    # WHEN invoked THEN the ConfigError is a usage error
    result = invoke(runner, "lazy_app:handler", "--event", write_json(workdir / "event.json", {"Records": []}))
    assert result.exit_code == 2
    assert error_line(result).startswith("Error: configuration error: unknown middleware 'tracng'")


def test_event_can_come_from_stdin(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler counting records WHEN the event is piped in with --event -
    write_module(workdir, "count_app", "def handler(event, context):\n    return {'batchItemFailures': []}\n")
    result = invoke(runner, "count_app:handler", "--event", "-", stdin=json.dumps(build_event("sqs", 3)))
    # THEN it ran on the 3 records
    assert result.exit_code == 0
    assert "count_app:handler: 3 records" in result.stdout
    assert "Response: all 3 records succeeded" in result.stdout


def test_async_handler_is_awaited(runner: CliRunner, workdir: Path) -> None:
    # GIVEN an async def handler
    write_module(
        workdir,
        "async_app",
        """
        import asyncio

        async def handler(event, context):
            await asyncio.sleep(0)
            return {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
        """,
    )
    # WHEN invoked THEN its awaited result is the response
    result = invoke(runner, "async_app:handler", "--event", write_json(workdir / "e.json", {"Records": [{}, {}]}))
    assert "Response: 1 of 2 records failed" in result.stdout


def test_every_invoke_is_a_cold_start(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a module counting its imports in a file
    write_module(
        workdir,
        "cold_app",
        """
        from pathlib import Path

        marker = Path("imports.txt")
        marker.write_text(marker.read_text() + "x" if marker.exists() else "x")

        def handler(event, context):
            return {}
        """,
    )
    event = write_json(workdir / "event.json", {"Records": []})
    # WHEN invoked twice in one process THEN the module code ran twice
    invoke(runner, "cold_app:handler", "--event", event)
    invoke(runner, "cold_app:handler", "--event", event)
    assert (workdir / "imports.txt").read_text() == "xx"


def test_plain_output_is_shown_as_handler_output(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler that returns a non-batch response and prints
    write_module(workdir, "plain_app", "def handler(event, context):\n    print('hello')\n    return {'ok': True}\n")
    # WHEN invoked
    result = invoke(runner, "plain_app:handler", "--event", write_json(workdir / "e.json", {"Records": [{}]}))
    # THEN the response is shown as such, the print under "Handler output", and why nothing was captured
    assert "Response (no batchItemFailures: not a partial batch response)" in result.stdout
    assert "Handler output (1 lines)\n  hello" in result.stdout
    assert "No telemetry captured: the handler built no observed_batch processor." in result.stdout


PROCESSOR_APP = """
    from observed_batch import BatchProcessor, EventType, process_partial_response

    processor = BatchProcessor(EventType.SQS)

    def handler(event, context):
        return process_partial_response(event, lambda record: None, processor, context)
"""


@pytest.mark.parametrize(
    ("event", "env", "hint"),
    [
        ({"Records": [{}]}, [], "No telemetry captured: no middleware enabled (set OBSERVED_BATCH_MIDDLEWARE)."),
        ({"Records": []}, ["OBSERVED_BATCH_MIDDLEWARE=metrics"], "No telemetry captured: the event has no records."),
        (
            {"Records": [{}]},
            ["OBSERVED_BATCH_MIDDLEWARE=metrics", "OBSERVED_BATCH_DISABLED=true"],
            "No telemetry captured: OBSERVED_BATCH_DISABLED is set.",
        ),
        (
            kafka_event(2),
            ["OBSERVED_BATCH_MIDDLEWARE=metrics"],
            "No telemetry captured: unexpected event type (Unexpected batch event type.",
        ),
        ({"Records": [{}]}, ["OBSERVED_BATCH_MIDDLEWARE=timeout_guard"], "No telemetry captured (middleware enabled: "),
    ],
    ids=["no-middleware", "no-records", "disabled", "wrong-event-type", "silent-middleware"],
)
def test_no_telemetry_hint_states_only_what_holds(
    runner: CliRunner, workdir: Path, event: dict[str, Any], env: list[str], hint: str
) -> None:
    # GIVEN an SQS processor configured by the environment
    write_module(workdir, "processor_app", PROCESSOR_APP)
    # WHEN invoked with an event and environment under which nothing is emitted
    pairs = [argument for pair in env for argument in ("--env", pair)]
    result = invoke(runner, "processor_app:handler", "--event", write_json(workdir / "e.json", event), *pairs)
    # THEN the one hint that holds is shown, and no other
    assert hint in result.stdout
    hints = [line for line in result.stdout.splitlines() if line.startswith("No telemetry captured")]
    assert len(hints) == 1
    if any(pair.startswith("OBSERVED_BATCH_MIDDLEWARE=") for pair in env):
        assert "set OBSERVED_BATCH_MIDDLEWARE" not in result.stdout


def test_report_lists_the_middleware_of_each_processor_built(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a processor built at import with metrics enabled
    write_module(workdir, "processor_app2", PROCESSOR_APP)
    event = write_json(workdir / "e.json", build_event("sqs", 2))
    # WHEN invoked with --json
    result = invoke(
        runner, "processor_app2:handler", "--event", event, "--env", "OBSERVED_BATCH_MIDDLEWARE=metrics", "--json"
    )
    # THEN the report names the chain, and no hint is needed: there is telemetry
    report = json.loads(result.stdout)
    assert (report["middleware"], report["disabled"]) == ([["metrics"]], False)
    assert "No telemetry captured" not in render(report)


def test_kafka_events_count_their_records(runner: CliRunner, workdir: Path) -> None:
    # GIVEN an MSK event with 5 records over 2 partitions
    write_module(workdir, "kafka_app", "def handler(event, context):\n    return {'batchItemFailures': []}\n")
    event = write_json(workdir / "e.json", kafka_event(5, partitions=2))
    # WHEN invoked THEN the header counts 5 records
    assert "kafka_app:handler: 5 records" in invoke(runner, "kafka_app:handler", "--event", event).stdout


def test_max_lines_caps_each_section(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler printing 30 lines WHEN shown with --max-lines 5
    write_module(workdir, "noisy_app", "def handler(event, context):\n    for i in range(30):\n        print(i)\n")
    result = invoke(runner, "noisy_app:handler", "--event", write_json(workdir / "e.json", {}), "--max-lines", "5")
    # THEN 5 lines are shown and the rest counted
    assert "  ... 25 more (--json shows all)" in result.stdout


def test_remaining_time_reaches_the_handler(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler returning its context's remaining time and name
    write_module(
        workdir,
        "context_app",
        """
        def handler(event, context):
            return {"remaining": context.get_remaining_time_in_millis(), "name": context.function_name}
        """,
    )
    event = write_json(workdir / "e.json", {})
    # WHEN invoked with --remaining-ms 1500 --function-name orders
    result = invoke(runner, "context_app:handler", "--event", event, "--remaining-ms", "1500", "--function-name", "o")
    # THEN the fake context has that budget and name
    response = json.loads(
        result.stdout.split("Response (no batchItemFailures: not a partial batch response)\n")[1].split("\n")[0]
    )
    assert 1000 < response["remaining"] <= 1500
    assert response["name"] == "o"


# -- telemetry parsing ----------------------------------------------------------------------------------
def test_stdout_lines_are_sorted_into_emf_logs_and_other() -> None:
    # GIVEN EMF, structlog, Powertools Logger, a JSON list and plain text lines
    lines = [
        json.dumps({"_aws": {"CloudWatchMetrics": []}, "A": 1}),
        json.dumps({"event": "batch_summary", "level": "info"}),
        json.dumps({"level": "INFO", "message": "hello", "service": "orders"}),
        "[1, 2]",
        "plain text",
    ]
    # WHEN split THEN each lands in its bucket
    telemetry = split_telemetry(lines)
    assert len(telemetry.emf) == 1
    assert [log.get("event", log.get("message")) for log in telemetry.logs] == ["batch_summary", "hello"]
    assert telemetry.other == ["[1, 2]", "plain text"]


def test_emf_metrics_read_every_value_form() -> None:
    # GIVEN a document with a count, an array, an aggregated distribution and malformed entries
    document = {
        "_aws": {
            "CloudWatchMetrics": [
                {
                    "Namespace": "N",
                    "Dimensions": [["service"]],
                    "Metrics": [
                        {"Name": "Count", "Unit": "Count"},
                        {"Name": "Array", "Unit": "Milliseconds"},
                        {"Name": "Aggregated", "Unit": "Milliseconds"},
                        {"Name": "NoCounts"},
                        {"Name": "Missing"},
                        {"NoName": True},
                        "garbage",
                        {"Name": "Count", "Unit": "Count"},
                    ],
                },
                "garbage",
            ]
        },
        "Count": 7,
        "Array": [3, 1, 2, True],
        "Aggregated": {"Values": [10, 20], "Counts": [3, 1], "Min": 9, "Max": 21, "Count": 4, "Sum": 50},
        "NoCounts": {"Values": [5, 6], "Counts": [1]},
        "Missing": "n/a",
    }
    # WHEN read
    stats = {stat.name: stat for stat in emf_metrics(document)}
    # THEN counts, samples and the aggregated form's exact figures come out; malformed ones are skipped
    assert list(stats) == ["Count", "Array", "Aggregated", "NoCounts"]
    assert stats["Count"].is_count
    assert stats["Count"].total == 7
    assert (stats["Array"].samples, stats["Array"].median, stats["Array"].total) == (3, 2, 6)
    aggregated = stats["Aggregated"]
    assert (aggregated.samples, aggregated.total, aggregated.minimum, aggregated.maximum) == (4, 50, 9, 21)
    assert aggregated.median == 10
    assert stats["NoCounts"].unit == "None"
    assert stats["NoCounts"].samples == 2


# -- templates ----------------------------------------------------------------------------------------
def _load_template(example: str) -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")

    class CloudFormationLoader(yaml.SafeLoader):
        pass

    def tag(loader: Any, suffix: str, node: Any) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {"Ref" if suffix == "Ref" else f"Fn::{suffix}": value}

    CloudFormationLoader.add_multi_constructor("!", tag)
    template: dict[str, Any] = yaml.load((EXAMPLES / example / "template.yaml").read_text(), CloudFormationLoader)
    return template


def _function(template: dict[str, Any]) -> dict[str, Any]:
    (function,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::Serverless::Function"]
    properties: dict[str, Any] = function["Properties"]
    return properties


def _event_source(template: dict[str, Any]) -> dict[str, Any]:
    (source,) = _function(template)["Events"].values()
    return dict(source)


@pytest.mark.parametrize("example", list(EXAMPLE_SOURCES))
def test_template_reports_batch_item_failures(example: str) -> None:
    # GIVEN / WHEN the example's SAM template THEN its event source reports batch item failures
    assert _event_source(_load_template(example))["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


@pytest.mark.parametrize("example", ["sqs_orders", "sqs_fifo"])
def test_sqs_template_has_a_dlq_and_a_visibility_timeout_of_six_function_timeouts(example: str) -> None:
    # GIVEN the SQS example's template
    template = _load_template(example)
    queue_name = _event_source(template)["Properties"]["Queue"]["Fn::GetAtt"].split(".")[0]
    queue = template["Resources"][queue_name]["Properties"]
    timeout = template["Globals"]["Function"]["Timeout"]
    # THEN the source queue redrives to a DLQ after a few receives, with visibility >= 6x the timeout
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert 1 < queue["RedrivePolicy"]["maxReceiveCount"] <= 10
    dlq_name = queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"].split(".")[0]
    assert template["Resources"][dlq_name]["Type"] == "AWS::SQS::Queue"


@pytest.mark.parametrize("example", ["kinesis_clickstream", "dynamodb_stream"])
def test_stream_template_bounds_retries_and_has_an_on_failure_queue(example: str) -> None:
    # GIVEN the stream example's template
    template = _load_template(example)
    properties = _event_source(template)["Properties"]
    # THEN retries are bounded and exhausted batches go to an SQS destination (the streams' DLQ)
    assert 0 < properties["MaximumRetryAttempts"] <= 10
    destination = properties["DestinationConfig"]["OnFailure"]
    assert destination["Type"] == "SQS"
    dlq = template["Resources"][destination["Destination"]["Fn::GetAtt"].split(".")[0]]
    assert dlq["Type"] == "AWS::SQS::Queue"
    assert dlq["Properties"]["VisibilityTimeout"] >= 6 * template["Globals"]["Function"]["Timeout"]


@pytest.mark.parametrize("example", list(EXAMPLE_SOURCES))
def test_template_and_env_json_enable_the_same_middleware(example: str) -> None:
    # GIVEN the template's function environment and the example's env.json (for invoke / sam local)
    variables = _function(_load_template(example))["Environment"]["Variables"]
    local = json.loads((EXAMPLES / example / "env.json").read_text())["Parameters"]
    # THEN both enable every telemetry built-in by name (no policy: they change outcomes), with the same service
    assert variables["OBSERVED_BATCH_MIDDLEWARE"].split(",") == [n for n, b in BUILTINS.items() if not b.policy]
    for name in ("OBSERVED_BATCH_MIDDLEWARE", "POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE"):
        assert local[name] == variables[name]


def test_template_dashboards_are_rendered_from_the_shipped_body() -> None:
    # GIVEN the templates' generated dashboard blocks WHEN checked against the shipped body
    sys.path.insert(0, str(EXAMPLES))
    try:
        import render_dashboards
    finally:
        sys.path.remove(str(EXAMPLES))
    # THEN none is out of date
    assert render_dashboards.main(["--check"]) == 0


@pytest.mark.parametrize("example", list(EXAMPLE_SOURCES))
def test_template_dashboard_body_is_valid_json_once_substituted(example: str) -> None:
    # GIVEN the dashboard's !Sub string
    body = _load_template(example)["Resources"]["BatchDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    # WHEN CloudFormation substitutes the references (here: with placeholder names)
    import re

    substituted = re.sub(r"\$\{(?!!)[^}]+\}", "name", body).replace("${!", "${")
    dashboard = json.loads(substituted)
    # THEN it is a dashboard body naming the function's log group
    assert dashboard["widgets"]
    assert "/aws/lambda/name" in json.dumps(dashboard)


def test_templates_pass_cfn_lint() -> None:
    pytest.importorskip("samtranslator", reason="cfn-lint needs aws-sam-translator for SAM templates")
    from cfnlint.api import lint_all

    # GIVEN / WHEN every example template is linted THEN cfn-lint finds nothing
    for example in EXAMPLE_SOURCES:
        matches = lint_all((EXAMPLES / example / "template.yaml").read_text())
        # Errors and warnings only; informational rules (I...) are style suggestions.
        assert [str(match) for match in matches if match.rule.id[0] in "EW"] == [], example


@pytest.mark.parametrize("example", list(EXAMPLE_SOURCES))
def test_template_deploys_the_alarm_pack_next_to_the_function(example: str) -> None:
    # GIVEN the example's template and the pack `observed-batch alarms` writes for its sources
    from observed_batch.alarms import alarm_names

    template = _load_template(example)
    sys.path.insert(0, str(EXAMPLES))
    try:
        import render_dashboards
    finally:
        sys.path.remove(str(EXAMPLES))
    sources = {k: v for k, v in render_dashboards.EXAMPLES[example].items() if k not in ("service", "function")}
    expected = alarm_names("f", timeout_s=render_dashboards.TIMEOUT_S, **sources)
    # THEN every alarm of the pack is a resource of the template, notifying the optional topic
    alarms = {k: r for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == set(expected)
    assert "AlarmTopicArn" in template["Parameters"]
    assert all(r["Properties"]["AlarmActions"]["Fn::If"][0] == "HasAlarmTopic" for r in alarms.values())


def test_capture_stands_in_for_a_text_stdout() -> None:
    # GIVEN / WHEN code inspects and writes to the captured stdout
    with capture_stdout() as captured:
        assert sys.stdout.encoding == "utf-8"
        assert sys.stdout.writable()
        print("first")
        sys.stdout.write("\nsecond\n")
    # THEN it reads as text and keeps the non-empty lines
    assert captured() == ["first", "second"]


def test_metric_totals_add_counts_and_distribution_sums_over_documents() -> None:
    # GIVEN two EMF documents WHEN totalled THEN counts and distribution sums add up
    def document(failures: int, durations: list[float]) -> str:
        metrics = [{"Name": "BatchRecordFailures", "Unit": "Count"}, {"Name": "T", "Unit": "Milliseconds"}]
        aws = {"CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [[]], "Metrics": metrics}]}
        return json.dumps({"_aws": aws, "BatchRecordFailures": failures, "T": durations})

    totals = split_telemetry([document(2, [1.0, 2.0]), document(3, [4.0])]).metric_totals()
    assert totals == {"BatchRecordFailures": 5.0, "T": 7.0}


# -- invoke: spans ------------------------------------------------------------------------------------
def test_without_the_otel_sdk_no_spans_are_collected(
    runner: CliRunner, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN an environment where the OpenTelemetry SDK cannot be imported
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    write_module(workdir, "plain_app", "def handler(event, context):\n    return {'batchItemFailures': []}\n")
    # WHEN a handler is invoked THEN it runs and the report has no span section
    result = invoke(runner, "plain_app:handler", "--event", write_json(workdir / "e.json", {}), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["spans"] is None


SPANNING_HANDLER = """
    from opentelemetry import trace

    with trace.get_tracer("cold-start").start_as_current_span("init"):
        pass

    def handler(event, context):
        with trace.get_tracer("app").start_as_current_span("work") as span:
            span.set_attribute("messaging.message.id", "m-1")
            span.set_attribute("other", 1)
        return {"batchItemFailures": []}
"""


def test_spans_ended_during_the_call_are_collected(runner: CliRunner, workdir: Path) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    # GIVEN a module that makes a span at import and another one per call
    write_module(workdir, "spanning_app", SPANNING_HANDLER)
    event = write_json(workdir / "e.json", {})
    # WHEN invoked twice in one process (the provider and its collector are reused)
    invoke(runner, "spanning_app:handler", "--event", event)
    result = invoke(runner, "spanning_app:handler", "--event", event)
    # THEN only the call's span is reported, once, with its message id, and the report says it was not exported
    assert "Spans (1; collected in memory, not exported)\n" in result.stdout
    assert "  deployed, tracing sends them to http://localhost:4318/v1/traces" in result.stdout
    assert "\n  work  INTERNAL  UNSET" in result.stdout
    assert "messaging.message.id=m-1" in result.stdout
    assert "other=" not in result.stdout


@pytest.mark.parametrize(
    ("variable", "value", "shown"),
    [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/", "http://collector:4318/v1/traces"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://collector:4318/v1/traces", "http://collector:4318/v1/traces"),
        ("OTEL_TRACES_EXPORTER", "console", "OTEL_TRACES_EXPORTER=console"),
    ],
)
def test_the_report_says_where_the_deployed_function_would_send_spans(
    runner: CliRunner, workdir: Path, variable: str, value: str, shown: str
) -> None:
    pytest.importorskip("opentelemetry.sdk.trace")
    # GIVEN a handler making a span, and the function's OTel configuration in --env
    write_module(workdir, "spanning_app", SPANNING_HANDLER)
    event = write_json(workdir / "e.json", {})
    # WHEN invoked
    result = invoke(runner, "spanning_app:handler", "--event", event, "--env", f"{variable}={value}", "--json")
    # THEN the report names that destination
    assert json.loads(result.stdout)["spans_deployed_to"] == shown


def test_producer_links_are_summarised(runner: CliRunner, at_repo_root: Path, tmp_path: Path) -> None:
    needs("tracing")
    # GIVEN an SQS record carrying the producer's W3C trace context
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = {"Records": [sqs_record(0, body=build_event("sqs", 1)["Records"][0]["body"], traceparent=traceparent)]}
    # WHEN the example runs it
    result = invoke(
        runner,
        "examples.sqs_orders.app:handler",
        "--event",
        write_json(tmp_path / "e.json", event),
        "--env",
        "OBSERVED_BATCH_MIDDLEWARE=tracing",
        "--json",
    )
    # THEN the record's span links to the producer, and the human report says so
    (span,) = json.loads(result.stdout)["spans"]
    assert [link["trace_id"] for link in span["links"]] == ["0af7651916cd43dd8448eb211c80319c"]
    assert render(json.loads(result.stdout)).count("links=1") == 1


def test_keyboard_interrupt_aborts(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a handler interrupted by the user WHEN invoked THEN click aborts (exit 1), no report
    write_module(workdir, "interrupted_app", "def handler(event, context):\n    raise KeyboardInterrupt\n")
    result = runner.invoke(main, ["invoke", "interrupted_app:handler", "--event", write_json(workdir / "e.json", {})])
    assert result.exit_code == 1
    assert "Aborted!" in result.stderr
    assert "Response" not in result.stdout


def test_report_shows_each_duration_metric_in_one_readable_unit() -> None:
    # GIVEN a report whose EMF document has record ages from 0.5 ms to 2 days, processing times in ms
    metrics = [
        {"Name": "RecordAge", "Unit": "Milliseconds"},
        {"Name": "RecordProcessingTime", "Unit": "Milliseconds"},
        {"Name": "BatchSize", "Unit": "Count"},
    ]
    document = {
        "_aws": {"CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["service"]], "Metrics": metrics}]},
        "service": "orders",
        "RecordAge": {"Values": [0.5, 90_000, 172_800_000], "Counts": [1, 1, 1]},
        "RecordProcessingTime": [0.25, 1.5, 1250],
        "BatchSize": 12_345,
    }
    report = {
        "handler": "app:handler",
        "records": 3,
        "duration_ms": 1.0,
        "response": {"batchItemFailures": []},
        "failed_records": 0,
        "error": None,
        "metrics": [document],
        "logs": [],
        "spans": [],
        "stdout": [],
    }
    # WHEN rendered
    text = render(report)
    # THEN each line has one unit, named once: the largest its median reaches; big counts get separators
    assert "min 0.00000833  p50 1.5  max 2,880  (minutes)" in text
    assert "min 0.25  p50 1.5  max 1,250  (ms)" in text
    assert "12,345  Count" in text
    assert "namespace N  dimensions service=orders" in text


def test_exception_report_renders_without_frames_source_or_with_long_messages() -> None:
    # GIVEN an error raised from code without source lines, with a six-line message, and one without frames
    frames = [{"file": "<string>", "line": n, "function": "f", "code": ""} for n in (1, 2, 3, 4)]
    error = {"type": "E", "message": "\n".join(f"line {n}" for n in range(6)), "summary": "E: line 0", "frames": frames}
    report = {
        "handler": "app:handler",
        "records": 1,
        "duration_ms": 1.0,
        "response": None,
        "failed_records": None,
        "error": error,
        "metrics": [],
        "logs": [],
        "spans": [],
        "stdout": [],
    }
    # WHEN rendered
    text = render(report)
    # THEN a frame without source is one line (so one cut line), and the message's tail is counted
    assert "    … 1 lines cut (1 outer frame; --json has the full traceback)" in text
    assert '    File "<string>", line 4, in f\n  E: line 0' in text
    assert "  … 2 lines cut (message)" in text
    # AND an exception without a traceback is just its line
    error.update(frames=[], message="")
    assert "Response: none, the handler raised E: line 0\n  E\n" in render(report)


def test_a_bad_kill_switch_value_is_a_configuration_error(runner: CliRunner, workdir: Path) -> None:
    # GIVEN a processor built at import, and OBSERVED_BATCH_DISABLED set to something not boolean
    write_module(workdir, "processor_app3", PROCESSOR_APP)
    event = write_json(workdir / "e.json", {"Records": [{}]})
    # WHEN invoked THEN a usage error naming the variable
    result = invoke(runner, "processor_app3:handler", "--event", event, "--env", "OBSERVED_BATCH_DISABLED=maybe")
    assert result.exit_code == 2
    assert "OBSERVED_BATCH_DISABLED='maybe' is not a boolean" in error_line(result)
