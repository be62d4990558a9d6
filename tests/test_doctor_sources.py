"""doctor checks added per source (SQS concurrency, streams, Kafka), the observability wiring and the alarm
pack, on recorded boto3 responses (botocore Stubber where a client is involved). Kafka mappings, access
errors and paginated alarm lists are only tested here: moto cannot create a Kafka mapping."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from click.testing import CliRunner
from test_doctor import ACCOUNT, DLQ_ARN, MSK_ARN, QUEUE_ARN, REGION, STREAM_ARN, TABLE_STREAM_ARN, checks
from test_doctor import function_config as function_config
from test_doctor import mapping as mapping
from test_doctor import queue as queue

from observed_batch.alarms import alarm_names
from observed_batch.cli import doctor as doctor_cli
from observed_batch.cli import main
from observed_batch.doctor import Finding, Setup, check_alarms, check_mapping, check_telemetry, collect, failing
from observed_batch.doctor.alarms import pack_arguments

CORRECT_ENV = {"POWERTOOLS_METRICS_NAMESPACE": "Shop", "POWERTOOLS_SERVICE_NAME": "orders"}


def one(findings: list[Finding], check: str) -> Finding:
    (finding,) = [f for f in findings if f.check == check]
    return finding


# -- SQS: concurrency ----------------------------------------------------------------------------------
def test_maximum_concurrency_above_the_reserved_concurrency_is_a_warning() -> None:
    # GIVEN a mapping allowed 50 concurrent batches on a function reserved at 10
    entry = mapping(ScalingConfig={"MaximumConcurrency": 50})
    # WHEN checked
    finding = one(check_mapping(entry, function_config(), queue(), reserved_concurrency=10), "maximum-concurrency")
    # THEN a warning says batches are throttled and sets MaximumConcurrency to the reserved concurrency
    assert finding.severity == "warning"
    assert "MaximumConcurrency=10" in finding.fix
    assert "maxReceiveCount" in finding.why


def test_a_reserved_function_without_maximum_concurrency_is_a_warning() -> None:
    findings = check_mapping(mapping(), function_config(), queue(), reserved_concurrency=5)
    assert "MaximumConcurrency=5" in one(findings, "maximum-concurrency").fix


@pytest.mark.parametrize(("maximum", "reserved"), [(10, 10), (5, 20), (50, None)])
def test_maximum_concurrency_within_the_reserved_concurrency_is_clean(maximum: int, reserved: int | None) -> None:
    entry = mapping(ScalingConfig={"MaximumConcurrency": maximum})
    assert "maximum-concurrency" not in checks(check_mapping(entry, function_config(), queue(), None, reserved))


# -- every source: the mapping's own metrics -------------------------------------------------------------
def test_a_mapping_without_metrics_config_is_info() -> None:
    finding = one(check_mapping(mapping(MetricsConfig=None), function_config(), queue()), "metrics-config")
    assert (finding.severity, finding.fix.endswith("Metrics=EventCount")) == ("info", True)


def test_a_kafka_mapping_without_metrics_config_asks_for_the_kafka_metrics() -> None:
    entry = mapping(MSK_ARN, Topics=["orders"], MetricsConfig=None)
    assert "KafkaMetrics" in one(check_mapping(entry, function_config()), "metrics-config").fix


# -- Kinesis and DynamoDB Streams -----------------------------------------------------------------------
@pytest.mark.parametrize("arn", [STREAM_ARN, TABLE_STREAM_ARN], ids=["kinesis", "dynamodb"])
@pytest.mark.parametrize(
    ("fields", "check", "severity", "fix"),
    [
        ({"MaximumRetryAttempts": -1}, "retry-forever", "warning", "--maximum-retry-attempts 10"),
        ({"MaximumRetryAttempts": None}, "retry-forever", "warning", "--maximum-retry-attempts 10"),
        ({"BisectBatchOnFunctionError": False}, "bisect-batch", "warning", "--bisect-batch-on-function-error"),
        ({"MaximumRecordAgeInSeconds": -1}, "max-record-age", "info", "--maximum-record-age-in-seconds 86400"),
        ({"ParallelizationFactor": 4}, "parallelization-factor", "warning", "--parallelization-factor 1"),
        ({"StartingPosition": "LATEST"}, "starting-position", "info", "TRIM_HORIZON"),
    ],
    ids=["retry-forever", "retry-default", "bisect", "record-age", "parallelization", "latest"],
)
def test_each_stream_pitfall_is_reported_alone(
    arn: str, fields: dict[str, Any], check: str, severity: str, fix: str
) -> None:
    # GIVEN an otherwise correct stream mapping with one pitfall
    entry = mapping(arn, DestinationConfig={"OnFailure": {"Destination": DLQ_ARN}}, **fields)
    # WHEN checked
    findings = check_mapping(entry, function_config())
    # THEN exactly that finding, with its severity, a why line and the property to set
    assert checks(findings) == [check]
    assert (findings[0].severity, fix in findings[0].fix, bool(findings[0].why)) == (severity, True, True)


# -- Kafka ---------------------------------------------------------------------------------------------
def test_a_kafka_mapping_without_on_failure_destination_is_a_warning() -> None:
    findings = check_mapping(mapping(MSK_ARN, Topics=["orders"]), function_config())
    assert (checks(findings), findings[0].severity) == (["no-dlq"], "warning")
    assert "(kafka orders)" in findings[0].resource


# -- observability wiring --------------------------------------------------------------------------------
def test_sentry_without_a_dsn_is_a_warning() -> None:
    findings = check_telemetry(function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "sentry"}))
    assert (checks(findings), findings[0].severity) == (["sentry-no-dsn"], "warning")


def test_sentry_with_a_dsn_is_clean() -> None:
    env = {"OBSERVED_BATCH_MIDDLEWARE": "sentry", "SENTRY_DSN": "https://key@o1.ingest.sentry.io/1"}
    assert check_telemetry(function_config(env=env)) == []


def test_metrics_without_namespace_and_service_are_two_warnings() -> None:
    findings = check_telemetry(function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "metrics"}))
    assert checks(findings) == ["metrics-namespace-unset", "metrics-service-unset"]
    assert "'ObservedBatch'" in findings[0].problem


def test_metrics_with_namespace_and_service_are_clean() -> None:
    assert check_telemetry(function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "metrics", **CORRECT_ENV})) == []


# -- the alarm pack --------------------------------------------------------------------------------------
def sqs_setup(alarms: list[str] | None, env: dict[str, str] | None = None) -> Setup:
    return Setup(function_config(30, env), [mapping()], {QUEUE_ARN: queue()}, alarms=alarms)


def test_no_alarm_of_the_pack_is_a_warning_with_the_command_to_deploy_it() -> None:
    # GIVEN CloudWatch readable and no alarm with the pack's prefix
    env = {"OBSERVED_BATCH_MIDDLEWARE": "metrics,tracing", **CORRECT_ENV}
    finding = one(check_alarms(sqs_setup([], env)), "alarm-pack-missing")
    # THEN the fix is the alarms command for this function's sources, namespace, service and backends
    assert finding.severity == "warning"
    command = "observed-batch alarms --function orders-consumer --namespace Shop --service orders --timeout-s 30"
    command += " --queue orders --dlq orders-dlq --telemetry-backend otel"
    assert finding.fix.startswith(command + " -o alarms.json && aws cloudformation deploy")


def test_a_partly_deployed_pack_is_info_naming_the_missing_alarms() -> None:
    expected = list(alarm_names("orders-consumer", **pack_arguments(sqs_setup([]))).values())
    finding = one(check_alarms(sqs_setup(expected[1:])), "alarm-pack-incomplete")
    assert (finding.severity, finding.problem.endswith(expected[0])) == ("info", True)


def test_the_whole_pack_deployed_is_clean() -> None:
    expected = list(alarm_names("orders-consumer", **pack_arguments(sqs_setup([]))).values())
    assert check_alarms(sqs_setup(expected)) == []


def test_alarms_not_read_are_not_judged() -> None:
    assert check_alarms(sqs_setup(None)) == []


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (mapping(TABLE_STREAM_ARN), {"table": "Orders"}),
        (mapping(STREAM_ARN, DestinationConfig={"OnFailure": {"Destination": DLQ_ARN}}), {"stream": "clicks"}),
        (mapping(MSK_ARN, Topics=["payments"]), {"kafka_topic": "payments"}),
    ],
    ids=["dynamodb", "kinesis", "kafka"],
)
def test_the_expected_pack_follows_the_sources(entry: dict[str, Any], expected: dict[str, str]) -> None:
    arguments = pack_arguments(Setup(function_config(), [entry]))
    assert {k: v for k, v in arguments.items() if k in ("table", "stream", "kafka_topic")} == expected
    assert arguments.get("dlq") == ("orders-dlq" if "stream" in expected else None)


def test_info_findings_alone_do_not_fail() -> None:
    info = Finding("x", "r", "p", "f", severity="info")
    assert (failing([info]), failing([info, Finding("y", "r", "p", "f", severity="warning")])) == (False, True)


# -- collect: concurrency and alarms, access denied ----------------------------------------------------------
def clients() -> tuple[Any, Any, Any]:
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": REGION}
    return (
        boto3.client("lambda", **credentials),
        boto3.client("sqs", **credentials),
        boto3.client("cloudwatch", **credentials),
    )


def test_collect_reads_reserved_concurrency_and_pages_of_alarms() -> None:
    # GIVEN recorded responses: reserved concurrency 10, two pages of alarms
    lambda_client, sqs_client, cloudwatch_client = clients()
    with Stubber(lambda_client) as lambdas, Stubber(cloudwatch_client) as cloudwatch:
        lambdas.add_response("get_function_configuration", function_config())
        lambdas.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": 10})
        lambdas.add_response("list_event_source_mappings", {"EventSourceMappings": []})
        prefix = {"AlarmNamePrefix": "orders-consumer-batch-"}
        cloudwatch.add_response("describe_alarms", {"MetricAlarms": [{"AlarmName": "a"}], "NextToken": "t"}, prefix)
        cloudwatch.add_response("describe_alarms", {"MetricAlarms": [{"AlarmName": "b"}]}, {**prefix, "NextToken": "t"})
        # WHEN collected
        setup = collect(lambda_client, sqs_client, "orders-consumer", cloudwatch_client)
    # THEN both are in the setup
    assert (setup.reserved_concurrency, setup.alarms) == (10, ["a", "b"])


@pytest.mark.parametrize("code", ["AccessDenied", "AccessDeniedException"])
def test_collect_skips_what_the_credentials_may_not_read(code: str) -> None:
    # GIVEN AccessDenied on the concurrency and on the alarms
    lambda_client, sqs_client, cloudwatch_client = clients()
    with Stubber(lambda_client) as lambdas, Stubber(cloudwatch_client) as cloudwatch:
        lambdas.add_response("get_function_configuration", function_config())
        lambdas.add_client_error("get_function_concurrency", service_error_code=code, http_status_code=403)
        lambdas.add_response("list_event_source_mappings", {"EventSourceMappings": []})
        cloudwatch.add_client_error("describe_alarms", service_error_code=code, http_status_code=403)
        setup = collect(lambda_client, sqs_client, "orders-consumer", cloudwatch_client)
    # THEN both are unknown (None), and the alarm check is skipped rather than failed
    assert (setup.reserved_concurrency, setup.alarms, check_alarms(setup)) == (None, None, [])


def test_collect_lets_other_cloudwatch_errors_through() -> None:
    import botocore.exceptions

    lambda_client, sqs_client, cloudwatch_client = clients()
    with Stubber(lambda_client) as lambdas, Stubber(cloudwatch_client) as cloudwatch:
        lambdas.add_response("get_function_configuration", function_config())
        lambdas.add_response("get_function_concurrency", {})
        lambdas.add_response("list_event_source_mappings", {"EventSourceMappings": []})
        cloudwatch.add_client_error("describe_alarms", service_error_code="Throttling", http_status_code=400)
        with pytest.raises(botocore.exceptions.ClientError):
            collect(lambda_client, sqs_client, "orders-consumer", cloudwatch_client)


# -- CLI output --------------------------------------------------------------------------------------------
def test_the_text_report_says_when_alarms_were_not_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a setup read without CloudWatch access and one info finding
    setup = Setup(function_config(env=CORRECT_ENV), [mapping(MetricsConfig=None)], {QUEUE_ARN: queue()})
    monkeypatch.setattr(doctor_cli, "_read", lambda *args: (setup, REGION))
    # WHEN the doctor prints it
    result = CliRunner().invoke(main, ["doctor", "--function-name", "orders-consumer"])
    # THEN exit 0 (info only), the note, and the finding with its severity and why line
    assert result.exit_code == 0
    assert "the alarm pack was not checked" in result.output
    assert "FINDING metrics-config [info]:" in result.output
    assert "  why: " in result.output
    assert result.output.splitlines()[-1] == "1 finding (1 info)"


def test_the_json_report_has_a_stable_schema() -> None:
    setup = Setup(function_config(), [mapping()], {QUEUE_ARN: queue()}, reserved_concurrency=3, alarms=[])
    document = doctor_cli.report(setup, REGION, [Finding("c", "r", "p", "f", severity="warning", why="w")])
    assert json.loads(json.dumps(document)) == {
        "schema_version": 1,
        "function": "orders-consumer",
        "region": REGION,
        "timeout_s": 30,
        "reserved_concurrency": 3,
        "event_source_mappings": [QUEUE_ARN],
        "alarms_checked": True,
        "ok": False,
        "counts": {"error": 0, "warning": 1, "info": 0},
        "findings": [{"check": "c", "resource": "r", "problem": "p", "fix": "f", "severity": "warning", "why": "w"}],
    }
    assert ACCOUNT in QUEUE_ARN
