"""doctor checks on recorded boto3 responses: what moto cannot model, and each check's edges.

Responses are shaped as boto3 returns them (field names and types from real AWS responses), fed
through the real boto3 clients with botocore's Stubber where the client is involved.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

import boto3
import pytest
from botocore.stub import Stubber

from observed_batch import Middleware, config, doctor
from observed_batch.cli.doctor import DoctorError, aws_errors
from observed_batch.doctor import Finding, Setup, check_environment, check_mapping, collect, diagnose
from observed_batch.middleware.timeout_guard import DEFAULT_MIN_REMAINING_MS

REGION = "eu-west-1"
ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/orders"
DLQ_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders-dlq"
STREAM_ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/clicks"
TABLE_STREAM_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/Orders/stream/2024-01-01T00:00:00.000"
MSK_ARN = f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/demo/abcd1234-ab12-cd34-ef56-abcdef123456-1"
ON_FAILURE = {"OnFailure": {"Destination": f"arn:aws:sqs:{REGION}:{ACCOUNT}:orders-dlq"}}
UUID = "6d9bce8e-836b-442c-8070-74e77903c815"
SECOND_UUID = "0f4e2a8c-1b7d-4e3a-9c5f-2d8b6a1e7f90"


def function_config(timeout: int = 30, env: dict[str, str] | None = None) -> dict[str, Any]:
    """A get_function_configuration response as boto3 returns it (ResponseMetadata stripped)."""
    config_: dict[str, Any] = {
        "FunctionName": "orders-consumer",
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders-consumer",
        "Runtime": "python3.12",
        "Role": f"arn:aws:iam::{ACCOUNT}:role/orders-consumer",
        "Handler": "app.handler",
        "CodeSize": 4096,
        "Timeout": timeout,
        "MemorySize": 512,
        "LastModified": "2024-05-01T10:00:00.000+0000",
        "Version": "$LATEST",
        "State": "Active",
        "PackageType": "Zip",
        "Architectures": ["arm64"],
    }
    if env is not None:
        config_["Environment"] = {"Variables": env}
    return config_


def mapping(arn: str = QUEUE_ARN, **fields: Any) -> dict[str, Any]:
    """A list_event_source_mappings entry; defaults are a correct SQS mapping."""
    entry: dict[str, Any] = {
        "UUID": UUID,
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 0,
        "EventSourceArn": arn,
        "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:orders-consumer",
        "State": "Enabled",
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MetricsConfig": {"Metrics": ["EventCount"]},
    }
    if ":kinesis:" in str(arn) or ":dynamodb:" in str(arn):
        # A correct stream mapping: bounded retries and age, bisect, reading from the start.
        entry.update(
            StartingPosition="TRIM_HORIZON",
            MaximumRetryAttempts=10,
            MaximumRecordAgeInSeconds=3600,
            BisectBatchOnFunctionError=True,
            ParallelizationFactor=1,
        )
    entry.update(fields)
    return {k: v for k, v in entry.items() if v is not None}


def queue(visibility: int = 180, redrive: Any = "default", **attributes: str) -> dict[str, Any]:
    """What collect() stores per queue: the URL and a get_queue_attributes(All) response."""
    values = {
        "QueueArn": QUEUE_ARN,
        "VisibilityTimeout": str(visibility),
        "MaximumMessageSize": "262144",
        "MessageRetentionPeriod": "345600",
        "DelaySeconds": "0",
        "ReceiveMessageWaitTimeSeconds": "0",
        "SqsManagedSseEnabled": "true",
        **attributes,
    }
    if redrive == "default":
        redrive = json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 5})
    if redrive is not None:
        values["RedrivePolicy"] = redrive
    return {"QueueUrl": QUEUE_URL, "Attributes": values}


def checks(findings: list[Finding]) -> list[str]:
    return [finding.check for finding in findings]


# -- a correct setup -------------------------------------------------------------------------------
def test_a_correct_setup_has_no_findings() -> None:
    # GIVEN a 30 s function, an SQS mapping reporting item failures, 180 s visibility and a DLQ
    setup = Setup(
        function_config(30, {"OBSERVED_BATCH_MIDDLEWARE": "timeout_guard"}), [mapping()], {QUEUE_ARN: queue()}
    )

    # WHEN diagnosed with a realistic p99
    findings = diagnose(setup, p99_ms=200)

    # THEN nothing is reported
    assert findings == []


# -- event source mapping ---------------------------------------------------------------------------
@pytest.mark.parametrize("response_types", [None, []])
def test_a_mapping_without_report_batch_item_failures_is_reported(response_types: list[str] | None) -> None:
    # GIVEN an SQS mapping without ReportBatchItemFailures
    entry = mapping(FunctionResponseTypes=response_types)

    # WHEN checked
    findings = check_mapping(entry, function_config(), queue())

    # THEN the finding's fix is the exact update command
    assert checks(findings) == ["report-batch-item-failures"]
    assert (
        findings[0].fix
        == f"aws lambda update-event-source-mapping --uuid {UUID} --function-response-types ReportBatchItemFailures"
    )


@pytest.mark.parametrize(
    "entry",
    [
        mapping(MSK_ARN, FunctionResponseTypes=None, BatchSize=100, Topics=["orders"], DestinationConfig=ON_FAILURE),
        mapping(
            None,
            FunctionResponseTypes=None,
            DestinationConfig=ON_FAILURE,
            BatchSize=100,
            Topics=["orders"],
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["broker-1:9092"]}},
        ),
    ],
    ids=["msk", "self-managed"],
)
def test_a_kafka_mapping_without_report_batch_item_failures_is_reported(entry: dict[str, Any]) -> None:
    # GIVEN a Kafka mapping (MSK or self-managed) without partial batch responses
    findings = check_mapping(entry, function_config())

    # THEN it is reported, naming the topic, with the provisioned-mode requirement in the fix
    assert checks(findings) == ["report-batch-item-failures"]
    assert "(kafka orders)" in findings[0].resource
    assert "provisioned" in findings[0].fix


@pytest.mark.parametrize("arn", [STREAM_ARN, TABLE_STREAM_ARN], ids=["kinesis", "dynamodb"])
def test_a_stream_mapping_without_on_failure_destination_is_reported(arn: str) -> None:
    # GIVEN a stream mapping with bounded retries but no on-failure destination
    entry = mapping(arn, BatchSize=100)

    # WHEN checked
    findings = check_mapping(entry, function_config())

    # THEN the missing DLQ equivalent is reported, with the retry setting in the problem
    assert checks(findings) == ["no-dlq"]
    assert "MaximumRetryAttempts=10" in findings[0].problem
    assert "--destination-config" in findings[0].fix


def test_a_stream_mapping_with_an_on_failure_destination_is_clean() -> None:
    # GIVEN a Kinesis mapping sending exhausted records to an SQS destination
    entry = mapping(
        STREAM_ARN, BatchSize=100, MaximumRetryAttempts=10, DestinationConfig={"OnFailure": {"Destination": DLQ_ARN}}
    )

    # WHEN checked / THEN no finding
    assert check_mapping(entry, function_config()) == []


def test_a_batch_that_cannot_finish_within_the_timeout_is_reported_given_p99() -> None:
    # GIVEN 100 records at p99 500 ms (50 s) for a 30 s function
    entry = mapping(STREAM_ARN, BatchSize=100, DestinationConfig={"OnFailure": {"Destination": DLQ_ARN}})

    # WHEN checked with --p99-ms 500
    findings = check_mapping(entry, function_config(30), p99_ms=500)

    # THEN the fix proposes the batch size that fits in 90% of the timeout
    assert checks(findings) == ["batch-duration"]
    assert "needs 50.0 s" in findings[0].problem
    assert "--batch-size 54" in findings[0].fix


def test_batch_duration_is_not_checked_without_p99() -> None:
    # GIVEN a large batch but no --p99-ms
    entry = mapping(STREAM_ARN, BatchSize=10_000, DestinationConfig={"OnFailure": {"Destination": DLQ_ARN}})

    # WHEN checked / THEN nothing can be said about its duration
    assert check_mapping(entry, function_config(30)) == []


def test_a_batching_window_longer_than_the_visibility_allows_is_reported() -> None:
    # GIVEN a 300 s batching window, a 30 s function and a 180 s visibility timeout
    entry = mapping(BatchSize=100, MaximumBatchingWindowInSeconds=300)

    # WHEN checked
    findings = check_mapping(entry, function_config(30), queue(180))

    # THEN messages received early in the window would be redelivered before their batch completes
    assert checks(findings) == ["batch-window"]
    assert "up to 330 s" in findings[0].problem
    assert "--maximum-batching-window-in-seconds 150" in findings[0].fix
    assert "VisibilityTimeout=330" in findings[0].fix


def test_the_batching_window_check_uses_p99_when_given() -> None:
    # GIVEN the same window, but records at p99 100 ms: a batch of 100 takes 10 s, not the 30 s timeout
    entry = mapping(BatchSize=100, MaximumBatchingWindowInSeconds=165)

    # WHEN checked with and without --p99-ms
    with_p99 = check_mapping(entry, function_config(30), queue(180), p99_ms=100)
    without = check_mapping(entry, function_config(30), queue(180))

    # THEN only the worst case (window + timeout = 195 s > 180 s; with p99: 175 s) is a finding
    assert (checks(with_p99), checks(without)) == ([], ["batch-window"])


def test_fifo_batch_size_above_ten_is_reported() -> None:
    # GIVEN a FIFO mapping with BatchSize 50 (AWS and moto reject it on create; legacy mappings may carry it)
    fifo_arn = f"{QUEUE_ARN}.fifo"
    entry = mapping(fifo_arn, BatchSize=50, MaximumBatchingWindowInSeconds=0)
    attributes = queue(180, FifoQueue="true", QueueArn=fifo_arn)

    # WHEN checked
    findings = check_mapping(entry, function_config(30), attributes)

    # THEN the batch size is reported with the fix
    assert checks(findings) == ["fifo-batch-size"]
    assert findings[0].fix.endswith("--batch-size 10")


# -- queue ------------------------------------------------------------------------------------------
def test_a_visibility_timeout_under_six_times_the_function_timeout_is_reported() -> None:
    # GIVEN a 30 s function on a queue with a 120 s visibility timeout
    findings = check_mapping(mapping(), function_config(30), queue(120))

    # THEN the fix sets it to 6 x 30 s
    assert checks(findings) == ["visibility-timeout"]
    assert findings[0].fix == f"aws sqs set-queue-attributes --queue-url {QUEUE_URL} --attributes VisibilityTimeout=180"


@pytest.mark.parametrize("redrive", [None, "not json", json.dumps(["x"]), json.dumps({"maxReceiveCount": 3})])
def test_a_queue_without_a_usable_redrive_policy_is_reported(redrive: str | None) -> None:
    # GIVEN no redrive policy, or one without a dead-letter target
    findings = check_mapping(mapping(), function_config(30), queue(180, redrive=redrive))

    # THEN the missing DLQ is reported
    assert checks(findings) == ["no-dlq"]


def test_a_redrive_policy_given_as_a_mapping_is_understood() -> None:
    # GIVEN a redrive policy already decoded (as CloudFormation-style tooling passes it)
    attributes = queue(180, redrive={"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": "5"})

    # WHEN checked / THEN it counts as a DLQ
    assert check_mapping(mapping(), function_config(30), attributes) == []


def test_max_receive_count_of_one_is_reported() -> None:
    # GIVEN a DLQ after the first receive
    redrive = json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": 1})

    # WHEN checked
    findings = check_mapping(mapping(), function_config(30), queue(180, redrive=redrive))

    # THEN it is reported (a throttle or a timeout-guard skip would dead-letter the message)
    assert checks(findings) == ["max-receive-count"]


def test_an_unreadable_max_receive_count_is_not_guessed_at() -> None:
    # GIVEN a redrive policy whose maxReceiveCount is not a number
    redrive = json.dumps({"deadLetterTargetArn": DLQ_ARN, "maxReceiveCount": "many"})

    # WHEN checked / THEN no finding about it
    assert check_mapping(mapping(), function_config(30), queue(180, redrive=redrive)) == []


def test_a_missing_source_queue_is_reported() -> None:
    # GIVEN a mapping whose queue was deleted
    findings = check_mapping(mapping(), function_config(30), None)

    # THEN it is reported instead of the queue checks
    assert checks(findings) == ["source-missing"]
    assert UUID in findings[0].fix


def test_missing_fields_fall_back_to_aws_defaults() -> None:
    # GIVEN a function without Timeout (3 s default) and a queue without VisibilityTimeout (30 s default)
    function = {k: v for k, v in function_config().items() if k != "Timeout"}
    attributes = queue()
    del attributes["Attributes"]["VisibilityTimeout"]
    setup = Setup(function, [mapping()], {QUEUE_ARN: attributes})

    # WHEN diagnosed / THEN 30 s >= 6 x 3 s is fine
    assert (setup.timeout_s, diagnose(setup)) == (3, [])


# -- function environment -------------------------------------------------------------------------------
def test_unknown_middleware_names_are_reported_with_the_valid_ones() -> None:
    # GIVEN a typo in OBSERVED_BATCH_MIDDLEWARE
    findings = check_environment(function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "metric, timeout_guard"}))

    # THEN the bad name and the valid names are in the finding
    assert checks(findings) == ["unknown-middleware"]
    assert "'metric'" in findings[0].problem
    assert "metrics, tracing, sentry, logging, timeout_guard, stop_on_failure, retry_policy" in findings[0].fix


def test_a_middleware_listed_twice_is_reported() -> None:
    findings = check_environment(function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "timeout_guard,timeout_guard"}))
    assert checks(findings) == ["unknown-middleware"]
    assert "more than once" in findings[0].problem


def test_a_variable_of_no_middleware_is_reported() -> None:
    # GIVEN a misspelt middleware prefix
    findings = check_environment(function_config(env={"OBSERVED_BATCH_TIMEOUTGUARD_MIN_REMAINING_MS": "3000"}))

    # THEN the variable is named
    assert checks(findings) == ["unknown-middleware"]
    assert "OBSERVED_BATCH_TIMEOUTGUARD_MIN_REMAINING_MS" in findings[0].problem


def test_an_unknown_option_is_reported_with_the_valid_variables() -> None:
    findings = check_environment(function_config(env={"OBSERVED_BATCH_TIMEOUT_GUARD_MARGIN_MS": "3000"}))
    assert checks(findings) == ["invalid-option"]
    assert "OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS" in findings[0].fix


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS", "2s"),
        ("OBSERVED_BATCH_TIMEOUT_GUARD_ESTIMATE", "maybe"),
        ("OBSERVED_BATCH_DISABLED", "perhaps"),
    ],
)
def test_an_invalid_option_value_is_reported_naming_the_variable(variable: str, value: str) -> None:
    # GIVEN a value observed_batch's config would reject at cold start
    findings = check_environment(function_config(env={variable: value}))

    # THEN the same message is reported
    assert checks(findings) == ["invalid-option"]
    assert variable in findings[0].problem


def test_options_of_a_middleware_this_version_cannot_load_are_not_judged(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a built-in this installation cannot import (the function may run a newer observed_batch)
    monkeypatch.setitem(
        config.BUILTINS, "future", config._Builtin("observed_batch.middleware.future", "Future", None, None)
    )

    # WHEN its variables are checked / THEN they are not reported
    assert check_environment(function_config(env={"OBSERVED_BATCH_FUTURE_LEVEL": "3"})) == []


class _ChoiceMiddleware(Middleware):
    """A built-in stand-in with a Literal option."""

    name = "choice"

    def __init__(self, *, mode: Literal["fast", "safe"] = "safe") -> None:
        self.mode = mode


def test_an_invalid_choice_is_reported_with_the_allowed_values(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a built-in with a Literal option, and a value outside it
    monkeypatch.setitem(config.BUILTINS, "choice", config._Builtin(__name__, "_ChoiceMiddleware", None, None))

    # WHEN checked
    findings = check_environment(function_config(env={"OBSERVED_BATCH_CHOICE_MODE": "turbo"}))

    # THEN the fix lists the allowed values
    assert checks(findings) == ["invalid-option"]
    assert findings[0].fix == "set OBSERVED_BATCH_CHOICE_MODE to one of: fast, safe"


def test_valid_options_are_accepted() -> None:
    env = {
        "OBSERVED_BATCH_MIDDLEWARE": "timeout_guard",
        "OBSERVED_BATCH_TIMEOUT_GUARD_ESTIMATE": "false",
        "OBSERVED_BATCH_TIMEOUT_GUARD_REMAINING_FRACTION": "0.2",
        "OBSERVED_BATCH_DISABLED": "false",
    }
    assert check_environment(function_config(env=env)) == []


def test_other_environment_variables_are_ignored() -> None:
    env = {"POWERTOOLS_SERVICE_NAME": "orders", "OBSERVED_BATCH_PYPROJECT": "/var/task/pyproject.toml"}
    assert check_environment(function_config(env=env)) == []


@pytest.mark.parametrize(
    ("timeout", "env", "reported"),
    [
        (2, {}, True),
        (3, {}, False),
        (5, {"OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS": "5000"}, True),
        (5, {"OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS": "1000"}, False),
    ],
)
def test_a_timeout_guard_margin_not_below_the_function_timeout_is_reported(
    timeout: int, env: dict[str, str], reported: bool
) -> None:
    # GIVEN the timeout guard enabled on a short function
    environment = {"OBSERVED_BATCH_MIDDLEWARE": "timeout_guard", **env}

    # WHEN checked
    findings = check_environment(function_config(timeout, environment))

    # THEN a margin that swallows the whole timeout is reported (every record would be failed)
    assert checks(findings) == (["timeout-guard-margin"] if reported else [])


def test_the_doctor_assumes_the_guards_real_default_margin() -> None:
    # GIVEN / WHEN a function with the guard and no margin override: the doctor's default applies
    findings = check_environment(
        function_config(DEFAULT_MIN_REMAINING_MS // 1000, {"OBSERVED_BATCH_MIDDLEWARE": "timeout_guard"})
    )

    # THEN it is the middleware's default
    assert checks(findings) == ["timeout-guard-margin"]
    assert f"keeps {DEFAULT_MIN_REMAINING_MS} ms" in findings[0].problem


# -- collect() through real boto3 clients with recorded responses ----------------------------------------
@pytest.fixture
def clients() -> tuple[Any, Any]:
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    return (
        boto3.client("lambda", region_name=REGION, **credentials),
        boto3.client("sqs", region_name=REGION, **credentials),
    )


def test_collect_follows_mapping_pages_and_reads_each_queue_once(clients: tuple[Any, Any]) -> None:
    # GIVEN recorded responses: two pages of mappings, both on the same queue
    lambda_client, sqs_client = clients
    with Stubber(lambda_client) as lambdas, Stubber(sqs_client) as sqs:
        lambdas.add_response("get_function_configuration", function_config(), {"FunctionName": "orders-consumer"})
        lambdas.add_response("get_function_concurrency", {}, {"FunctionName": "orders-consumer"})
        lambdas.add_response(
            "list_event_source_mappings",
            {"EventSourceMappings": [mapping()], "NextMarker": "page-2"},
            {"FunctionName": "orders-consumer"},
        )
        lambdas.add_response(
            "list_event_source_mappings",
            {"EventSourceMappings": [mapping(UUID=SECOND_UUID, BatchSize=5)]},
            {"FunctionName": "orders-consumer", "Marker": "page-2"},
        )
        sqs.add_response(
            "get_queue_url", {"QueueUrl": QUEUE_URL}, {"QueueName": "orders", "QueueOwnerAWSAccountId": ACCOUNT}
        )
        sqs.add_response(
            "get_queue_attributes",
            {"Attributes": queue()["Attributes"]},
            {"QueueUrl": QUEUE_URL, "AttributeNames": ["All"]},
        )

        # WHEN the setup is collected
        setup = collect(lambda_client, sqs_client, "orders-consumer")

        # THEN both mappings and the queue are there, and every recorded call was made
        lambdas.assert_no_pending_responses()
        sqs.assert_no_pending_responses()
    assert [m["UUID"] for m in setup.mappings] == [UUID, SECOND_UUID]
    assert setup.queues == {QUEUE_ARN: queue()}


@pytest.mark.parametrize("code", ["QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"])
def test_collect_records_a_deleted_queue_as_missing_for_both_error_codes(clients: tuple[Any, Any], code: str) -> None:
    # GIVEN the mapping's queue no longer exists (JSON protocol code, or the legacy query code)
    lambda_client, sqs_client = clients
    with Stubber(lambda_client) as lambdas, Stubber(sqs_client) as sqs:
        lambdas.add_response("get_function_configuration", function_config())
        lambdas.add_response("get_function_concurrency", {})
        lambdas.add_response("list_event_source_mappings", {"EventSourceMappings": [mapping()]})
        sqs.add_client_error("get_queue_url", service_error_code=code, http_status_code=400)

        # WHEN collected
        setup = collect(lambda_client, sqs_client, "orders-consumer")

    # THEN the queue is None, which diagnose reports as source-missing
    assert setup.queues == {QUEUE_ARN: None}
    assert checks(diagnose(setup)) == ["source-missing"]


def test_collect_stops_following_markers_after_the_page_limit(
    clients: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a mapping listing that never ends (each page points to another) and a limit of 2 pages
    monkeypatch.setattr(doctor, "_MAX_PAGES", 2)
    lambda_client, sqs_client = clients
    with Stubber(lambda_client) as lambdas:
        lambdas.add_response("get_function_configuration", function_config())
        lambdas.add_response("get_function_concurrency", {})
        for page in range(2):
            stream = mapping(STREAM_ARN, UUID=[UUID, SECOND_UUID][page], BatchSize=100)
            lambdas.add_response(
                "list_event_source_mappings", {"EventSourceMappings": [stream], "NextMarker": f"page-{page + 2}"}
            )

        # WHEN collected
        setup = collect(lambda_client, sqs_client, "orders-consumer")

    # THEN it stopped after two pages (a third call would have no recorded response)
    assert len(setup.mappings) == 2


def test_collect_lets_other_queue_errors_through(clients: tuple[Any, Any]) -> None:
    # GIVEN SQS denying access to the queue
    lambda_client, sqs_client = clients
    with Stubber(lambda_client) as lambdas, Stubber(sqs_client) as sqs:
        lambdas.add_response("get_function_configuration", function_config())
        lambdas.add_response("get_function_concurrency", {})
        lambdas.add_response("list_event_source_mappings", {"EventSourceMappings": [mapping()]})
        sqs.add_client_error("get_queue_url", service_error_code="AccessDenied", http_status_code=403)

        # WHEN collected under aws_errors / THEN it is a credential problem (exit 2), not a finding
        with pytest.raises(DoctorError, match="AWS refused the credentials"), aws_errors("orders-consumer", REGION):
            collect(lambda_client, sqs_client, "orders-consumer")


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("UnrecognizedClientException", 403, "AWS refused the credentials (UnrecognizedClientException)"),
        ("ResourceNotFoundException", 404, "function 'orders-consumer' not found in eu-west-1"),
        ("TooManyRequestsException", 429, "AWS error TooManyRequestsException during GetFunctionConfiguration"),
    ],
)
def test_aws_errors_become_one_line_with_exit_code_2(
    clients: tuple[Any, Any], code: str, status: int, message: str
) -> None:
    # GIVEN AWS answering the first call with an error
    lambda_client, sqs_client = clients
    with Stubber(lambda_client) as lambdas:
        lambdas.add_client_error("get_function_configuration", service_error_code=code, http_status_code=status)

        # WHEN collected under aws_errors / THEN a DoctorError with exit code 2 says what happened
        with pytest.raises(DoctorError) as raised, aws_errors("orders-consumer", REGION):
            collect(lambda_client, sqs_client, "orders-consumer")
    assert raised.value.exit_code == 2
    assert message in raised.value.message
    assert "\n" not in raised.value.message


def test_doctor_without_boto3_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN boto3 cannot be imported
    from click.testing import CliRunner

    from observed_batch.cli import main

    monkeypatch.setitem(sys.modules, "boto3", None)

    # WHEN doctor runs THEN one clear line and exit code 2
    result = CliRunner().invoke(main, ["doctor", "--function-name", "f"])
    assert result.exit_code == 2
    assert 'pip install "observed-batch[doctor]"' in result.output


# -- where telemetry goes -----------------------------------------------------------------------------
ADOT_LAYER = f"arn:aws:lambda:{REGION}:901920570463:layer:aws-otel-python-arm64-ver-1-25-0:1"


def test_tracing_without_an_endpoint_or_collector_layer_is_reported() -> None:
    # GIVEN tracing enabled, no OTEL exporter variables and no collector layer
    function = function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "tracing"})

    # WHEN diagnosed
    findings = diagnose(Setup(function))

    # THEN one finding says the spans go to localhost:4318 and are dropped, and how to fix it
    assert checks(findings) == ["tracing-no-destination"]
    assert "http://localhost:4318" in findings[0].problem
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in findings[0].fix


@pytest.mark.parametrize(
    ("env", "layers"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example:4318"}, []),
        ({"OTEL_TRACES_EXPORTER": "console"}, []),
        ({}, [{"Arn": ADOT_LAYER, "CodeSize": 1}]),
    ],
    ids=["endpoint", "exporter", "collector-layer"],
)
def test_tracing_with_a_destination_is_clean(env: dict[str, str], layers: list[dict[str, Any]]) -> None:
    # GIVEN tracing enabled with an endpoint, an exporter choice or a collector layer
    function = function_config(env={"OBSERVED_BATCH_MIDDLEWARE": "tracing", **env})
    function["Layers"] = layers

    # WHEN diagnosed THEN nothing is reported
    assert diagnose(Setup(function)) == []


@pytest.mark.parametrize(
    ("env", "redrive", "flagged"),
    [
        ({"OBSERVED_BATCH_MIDDLEWARE": "metrics,retry_policy"}, None, True),
        ({"OBSERVED_BATCH_MIDDLEWARE": "metrics,retry_policy"}, "default", False),
        (
            {"OBSERVED_BATCH_MIDDLEWARE": "retry_policy", "OBSERVED_BATCH_RETRY_POLICY_ON_NON_RETRYABLE": "drop"},
            None,
            False,
        ),
        (
            {
                "OBSERVED_BATCH_MIDDLEWARE": "retry_policy",
                "OBSERVED_BATCH_RETRY_POLICY_DEAD_LETTER_QUEUE_URL": f"{QUEUE_URL}-dlq",
            },
            None,
            False,
        ),
        ({"OBSERVED_BATCH_MIDDLEWARE": "metrics"}, None, False),
    ],
)
def test_retry_policy_dead_lettering_needs_a_dlq(env: dict[str, str], redrive: Any, flagged: bool) -> None:
    # GIVEN retry_policy (or not), its settings, and a queue with or without a redrive policy
    findings = check_mapping(mapping(), function_config(env=env), queue(redrive=redrive))

    # WHEN / THEN only dead_letter without any DLQ is reported
    assert ("retry-policy-no-dlq" in {f.check for f in findings}) is flagged
