"""``observed-batch doctor`` end to end against a moto server: real boto3 calls, real CLI, exit codes.

moto models functions, event source mappings (including FunctionResponseTypes and DestinationConfig),
queues, redrive policies and streams. What it cannot model (a FIFO mapping with BatchSize > 10, which
moto and AWS reject on create; paginated mapping lists; AWS credential errors) is covered with
recorded responses in test_doctor.py.
"""

from __future__ import annotations

import io
import json
import shlex
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result
from moto_server import FAKE_CREDENTIALS, FAKE_CREDENTIALS_ENV, REGION, moto_server, unique_name

from observed_batch.cli import main

pytestmark = pytest.mark.e2e


class Aws:
    """boto3 clients on the moto server, and builders for a function with an event source."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        options: dict[str, Any] = {"endpoint_url": endpoint_url, "region_name": REGION, **FAKE_CREDENTIALS}
        self.iam = boto3.client("iam", **options)
        self.lambda_ = boto3.client("lambda", **options)
        self.sqs = boto3.client("sqs", **options)
        self.kinesis = boto3.client("kinesis", **options)
        self.cloudwatch = boto3.client("cloudwatch", **options)
        self.cloudformation = boto3.client("cloudformation", **options)
        self.role_arn = self.iam.create_role(
            RoleName=unique_name("doctor-role"),
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]

    def function(self, *, timeout: int = 30, env: dict[str, str] | None = None, alarm: bool = True) -> str:
        """A function; with ``alarm`` one alarm of its pack exists (the rest is reported as info only)."""
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
        name = unique_name("consumer")
        self.lambda_.create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=self.role_arn,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
            Timeout=timeout,
            Environment={"Variables": env or {}},
        )
        if alarm:
            self.cloudwatch.put_metric_alarm(
                AlarmName=f"{name}-batch-errors",
                Namespace="AWS/Lambda",
                MetricName="Errors",
                Dimensions=[{"Name": "FunctionName", "Value": name}],
                Statistic="Sum",
                Period=300,
                EvaluationPeriods=1,
                Threshold=0,
                ComparisonOperator="GreaterThanThreshold",
            )
        return name

    def queue(self, *, visibility: int = 180, max_receive_count: int | None = 5, fifo: bool = False) -> str:
        """Create a queue (with a DLQ unless ``max_receive_count`` is None); returns its ARN."""
        suffix = ".fifo" if fifo else ""
        attributes = {"VisibilityTimeout": str(visibility)}
        if fifo:
            attributes["FifoQueue"] = "true"
        if max_receive_count is not None:
            dlq_url = self.sqs.create_queue(QueueName=unique_name("dlq") + suffix, Attributes=attributes)["QueueUrl"]
            dlq_arn = self.sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count}
            )
        url = self.sqs.create_queue(QueueName=unique_name("orders") + suffix, Attributes=attributes)["QueueUrl"]
        arn: str = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return arn

    def stream(self) -> str:
        name = unique_name("clicks")
        self.kinesis.create_stream(StreamName=name, ShardCount=1)
        arn: str = self.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        return arn

    def deploy_alarm_pack(self, function: str) -> None:
        """Run the `observed-batch alarms` command of the doctor's alarm-pack-missing fix, deploy its template."""
        import moto_alarms

        moto_alarms.install()
        report = json.loads(doctor(self, function, "--json").output)
        (fix,) = [f["fix"] for f in report["findings"] if f["check"] == "alarm-pack-missing"]
        words = shlex.split(fix.split(" -o ")[0])
        assert words[:2] == ["observed-batch", "alarms"]
        template = CliRunner().invoke(main, words[1:], catch_exceptions=False).output
        self.cloudformation.create_stack(StackName=f"{function}-alarms", TemplateBody=template)

    def mapping(self, function: str, source_arn: str, *, report_failures: bool = True, **fields: Any) -> None:
        if report_failures:
            fields["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
        fields.setdefault("MetricsConfig", {"Metrics": ["EventCount"]})
        self.lambda_.create_event_source_mapping(EventSourceArn=source_arn, FunctionName=function, **fields)


@pytest.fixture(scope="module")
def aws() -> Iterator[Aws]:
    with moto_server() as endpoint_url:
        yield Aws(endpoint_url)


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in FAKE_CREDENTIALS_ENV.items():
        monkeypatch.setenv(variable, value)


def doctor(aws: Aws, function: str, *args: str) -> Result:
    return CliRunner().invoke(
        main, ["doctor", "--function-name", function, "--endpoint-url", aws.endpoint_url, *args], catch_exceptions=False
    )


def reported(result: Result, *, info: bool = False) -> list[str]:
    """Checks of the findings printed (``info`` ones only when asked: they do not change the exit code)."""
    lines = [line.split() for line in result.output.splitlines() if line.startswith("FINDING ")]
    return [words[1] for words in lines if info or words[2] != "[info]:"]


# -- clean and misconfigured setups ----------------------------------------------------------------------
@pytest.mark.usefixtures("credentials")
def test_a_correct_sqs_setup_exits_0(aws: Aws) -> None:
    # GIVEN a 30 s function, a queue with 180 s visibility and a DLQ after 5 receives, a mapping
    # reporting batch item failures, and the alarm pack deployed with the command the doctor prints
    function = aws.function(timeout=30, env={"OBSERVED_BATCH_MIDDLEWARE": "timeout_guard"}, alarm=False)
    aws.mapping(function, aws.queue(visibility=180, max_receive_count=5), BatchSize=10)
    aws.deploy_alarm_pack(function)

    # WHEN the doctor checks it
    result = doctor(aws, function, "--p99-ms", "200")

    # THEN it is clean
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "OK: no findings"


@pytest.mark.usefixtures("credentials")
def test_a_misconfigured_sqs_setup_exits_1_with_one_finding_per_pitfall(aws: Aws) -> None:
    # GIVEN a 30 s function on a queue with 30 s visibility, no DLQ, and no ReportBatchItemFailures
    function = aws.function(timeout=30, env={"OBSERVED_BATCH_MIDDLEWARE": "metric"})
    aws.mapping(function, aws.queue(visibility=30, max_receive_count=None), report_failures=False)

    # WHEN the doctor checks it
    result = doctor(aws, function)

    # THEN each pitfall is reported with a fix line, and the exit code is 1
    assert result.exit_code == 1, result.output
    assert reported(result) == ["unknown-middleware", "report-batch-item-failures", "visibility-timeout", "no-dlq"]
    assert result.output.count("  fix: ") == len(reported(result, info=True)) == 5
    assert result.output.splitlines()[-1] == "5 findings (3 error, 1 warning, 1 info)"


@pytest.mark.usefixtures("credentials")
def test_max_receive_count_of_one_is_reported(aws: Aws) -> None:
    # GIVEN a DLQ after a single receive
    function = aws.function()
    aws.mapping(function, aws.queue(max_receive_count=1))

    # WHEN / THEN
    result = doctor(aws, function)
    assert (result.exit_code, reported(result)) == (1, ["max-receive-count"])


@pytest.mark.usefixtures("credentials")
def test_a_fifo_queue_with_batch_size_ten_is_clean(aws: Aws) -> None:
    # GIVEN a FIFO queue at its maximum batch size (larger sizes are rejected by moto and AWS on create)
    function = aws.function()
    aws.mapping(function, aws.queue(fifo=True), BatchSize=10)

    # WHEN / THEN
    assert doctor(aws, function).exit_code == 0


@pytest.mark.usefixtures("credentials")
def test_a_batch_that_cannot_finish_in_time_is_reported_with_p99(aws: Aws) -> None:
    # GIVEN 100-record batches with a 1 s window for a 30 s function
    function = aws.function(timeout=30)
    aws.mapping(function, aws.queue(visibility=180), BatchSize=100, MaximumBatchingWindowInSeconds=1)

    # WHEN records take 500 ms at p99 (50 s per full batch)
    result = doctor(aws, function, "--p99-ms", "500")

    # THEN the batch duration is reported
    assert (result.exit_code, reported(result)) == (1, ["batch-duration"])


@pytest.mark.usefixtures("credentials")
def test_a_batching_window_longer_than_visibility_allows_is_reported(aws: Aws) -> None:
    # GIVEN a 300 s window for a 30 s function on a 180 s visibility queue
    function = aws.function(timeout=30)
    aws.mapping(function, aws.queue(visibility=180), BatchSize=100, MaximumBatchingWindowInSeconds=300)

    # WHEN / THEN
    result = doctor(aws, function)
    assert (result.exit_code, reported(result)) == (1, ["batch-window"])


@pytest.mark.usefixtures("credentials")
def test_a_kinesis_mapping_without_partial_responses_or_destination_is_reported(aws: Aws) -> None:
    # GIVEN a stream mapping with neither ReportBatchItemFailures nor an on-failure destination
    function = aws.function()
    aws.mapping(function, aws.stream(), report_failures=False, StartingPosition="LATEST", BatchSize=100)

    # WHEN / THEN
    result = doctor(aws, function)
    assert (result.exit_code, reported(result)) == (
        1,
        ["report-batch-item-failures", "no-dlq", "retry-forever", "bisect-batch"],
    )


@pytest.mark.usefixtures("credentials")
def test_a_kinesis_mapping_with_partial_responses_and_a_destination_is_clean(aws: Aws) -> None:
    # GIVEN a stream mapping reporting item failures and sending exhausted records to a queue
    function = aws.function()
    destination = aws.queue()
    aws.mapping(
        function,
        aws.stream(),
        StartingPosition="LATEST",
        BatchSize=100,
        MaximumRetryAttempts=10,
        MaximumRecordAgeInSeconds=3600,
        BisectBatchOnFunctionError=True,
        DestinationConfig={"OnFailure": {"Destination": destination}},
    )

    # WHEN / THEN
    assert doctor(aws, function).exit_code == 0


@pytest.mark.usefixtures("credentials")
def test_a_mapping_whose_queue_was_deleted_is_reported(aws: Aws) -> None:
    # GIVEN a mapping whose source queue has been deleted since
    function = aws.function()
    queue_arn = aws.queue()
    aws.mapping(function, queue_arn)
    aws.sqs.delete_queue(QueueUrl=aws.sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[1])["QueueUrl"])

    # WHEN / THEN
    result = doctor(aws, function)
    assert (result.exit_code, reported(result)) == (1, ["source-missing"])


@pytest.mark.usefixtures("credentials")
def test_a_function_without_event_sources_is_checked_alone(aws: Aws) -> None:
    # GIVEN a function with no event source mapping
    function = aws.function()

    # WHEN / THEN the doctor says what it could check
    result = doctor(aws, function)
    assert result.exit_code == 0
    assert "no event source mappings" in result.output


@pytest.mark.usefixtures("credentials")
def test_json_output_lists_the_findings(aws: Aws) -> None:
    # GIVEN a mapping without ReportBatchItemFailures
    function = aws.function(timeout=10)
    queue_arn = aws.queue(visibility=60)
    aws.mapping(function, queue_arn, report_failures=False)

    # WHEN the doctor prints JSON
    result = doctor(aws, function, "--json", "--region", REGION)

    # THEN the document carries the function, its sources and each finding's fields
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert (report["function"], report["region"], report["timeout_s"], report["ok"]) == (function, REGION, 10, False)
    assert report["event_source_mappings"] == [queue_arn]
    (finding,) = [f for f in report["findings"] if f["severity"] != "info"]
    assert set(finding) == {"check", "resource", "problem", "why", "fix", "severity"}
    assert (finding["check"], finding["severity"]) == ("report-batch-item-failures", "error")
    assert report["schema_version"] == 1
    assert report["counts"] == {"error": 1, "warning": 0, "info": 1}


@pytest.mark.usefixtures("credentials")
def test_json_output_of_a_clean_setup_is_ok(aws: Aws) -> None:
    function = aws.function()
    result = doctor(aws, function, "--json")
    report = json.loads(result.output)
    assert (result.exit_code, report["ok"], report["counts"]["error"], report["counts"]["warning"]) == (0, True, 0, 0)


# -- what moto models of the newer checks -------------------------------------------------------------------
@pytest.mark.usefixtures("credentials")
def test_maximum_concurrency_above_reserved_concurrency_is_reported(aws: Aws) -> None:
    # GIVEN a function reserved at 5 and an SQS mapping allowed 20 concurrent batches
    function = aws.function()
    aws.lambda_.put_function_concurrency(FunctionName=function, ReservedConcurrentExecutions=5)
    aws.mapping(function, aws.queue(), ScalingConfig={"MaximumConcurrency": 20})

    # WHEN / THEN
    result = doctor(aws, function)
    assert (result.exit_code, reported(result)) == (1, ["maximum-concurrency"])
    assert "MaximumConcurrency=5" in result.output


@pytest.mark.usefixtures("credentials")
def test_a_parallelized_stream_mapping_without_bisect_is_reported(aws: Aws) -> None:
    # GIVEN a Kinesis mapping with a destination and bounded retries, but parallelized and not bisecting
    function = aws.function()
    aws.mapping(
        function,
        aws.stream(),
        StartingPosition="TRIM_HORIZON",
        MaximumRetryAttempts=5,
        ParallelizationFactor=4,
        DestinationConfig={"OnFailure": {"Destination": aws.queue()}},
    )

    # WHEN / THEN both warnings, and the info findings on record age and mapping metrics
    result = doctor(aws, function)
    assert (result.exit_code, reported(result)) == (1, ["bisect-batch", "parallelization-factor"])
    assert "max-record-age" in reported(result, info=True)


@pytest.mark.usefixtures("credentials")
def test_mapping_metrics_off_is_info_and_does_not_fail(aws: Aws) -> None:
    function = aws.function()
    aws.mapping(function, aws.queue(), MetricsConfig={"Metrics": []})
    result = doctor(aws, function)
    assert result.exit_code == 0
    assert "metrics-config" in reported(result, info=True)


@pytest.mark.usefixtures("credentials")
def test_a_function_without_its_alarm_pack_is_reported(aws: Aws) -> None:
    # GIVEN metrics and sentry enabled without their settings, and no alarm of the pack
    function = aws.function(env={"OBSERVED_BATCH_MIDDLEWARE": "metrics,sentry"}, alarm=False)

    # WHEN / THEN the wiring and the missing pack are reported
    result = doctor(aws, function)
    assert reported(result) == [
        "metrics-namespace-unset",
        "metrics-service-unset",
        "sentry-no-dsn",
        "alarm-pack-missing",
    ]
    assert f"observed-batch alarms --function {function} --timeout-s 30 --telemetry-backend sentry" in result.output


# -- usage and access errors: exit code 2, one line --------------------------------------------------------
@pytest.mark.usefixtures("credentials")
def test_an_unknown_function_exits_2(aws: Aws) -> None:
    result = doctor(aws, unique_name("missing"))
    assert result.exit_code == 2
    assert "not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_missing_credentials_exit_2(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # GIVEN no credentials anywhere (and no instance metadata lookup)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)

    # WHEN / THEN
    result = doctor(aws, "orders-consumer", "--region", REGION)
    assert result.exit_code == 2
    assert "no AWS credentials found" in result.output


def test_missing_region_exits_2(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # GIVEN credentials but no region anywhere
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))

    # WHEN / THEN
    result = doctor(aws, "orders-consumer")
    assert result.exit_code == 2
    assert "no AWS region" in result.output


def test_an_unknown_profile_exits_2(aws: Aws, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # GIVEN AWS_PROFILE naming a profile that no config file defines
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_PROFILE", "nonexistent")

    # WHEN / THEN
    result = doctor(aws, "orders-consumer", "--region", REGION)
    assert result.exit_code == 2
    assert "nonexistent" in result.output


@pytest.mark.usefixtures("credentials")
def test_an_unreachable_endpoint_exits_2() -> None:
    # GIVEN an endpoint nothing listens on (port 9 is discard; connection refused on loopback)
    result = CliRunner().invoke(
        main, ["doctor", "--function-name", "orders-consumer", "--endpoint-url", "http://127.0.0.1:9"]
    )

    # WHEN / THEN
    assert result.exit_code == 2
    assert "cannot reach AWS" in result.output


@pytest.mark.parametrize(
    "args",
    [[], ["--function-name", "f", "--p99-ms", "0"], ["--function-name", "f", "--p99-ms", "fast"]],
    ids=["no-function", "zero-p99", "non-numeric-p99"],
)
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(main, ["doctor", *args])
    assert result.exit_code == 2
