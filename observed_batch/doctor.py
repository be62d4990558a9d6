"""Checks a deployed batch consumer for the classic partial-batch pitfalls.

The checks are pure functions over what boto3 returns (``get_function_configuration``,
``list_event_source_mappings``, ``get_queue_attributes``), so they are tested on recorded responses
as well as against moto; ``collect`` is the only part that talks to AWS. Each finding says what is
wrong and carries a one-line fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from observed_batch import config
from observed_batch.errors import ConfigError

__all__ = [
    "MIN_VISIBILITY_FACTOR",
    "Finding",
    "Setup",
    "check_environment",
    "check_mapping",
    "collect",
    "diagnose",
]

#: AWS: "set the source queue's visibility timeout to at least six times the timeout of your function".
MIN_VISIBILITY_FACTOR = 6
#: Lambda's cap on a FIFO queue event source mapping's batch size.
MAX_FIFO_BATCH_SIZE = 10
#: A DLQ after a single receive sends every throttled or timed-out batch's messages to the DLQ.
MIN_SENSIBLE_RECEIVE_COUNT = 2
#: Sources whose event source mapping understands ``batchItemFailures``.
_PARTIAL_BATCH_SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")
_STREAM_SOURCES = ("kinesis", "dynamodb")
_MAX_PAGES = 100
#: SQS's JSON protocol code, and the query protocol code older endpoints (and moto) return.
_MISSING_QUEUE_CODES = ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")
_ENV_PREFIX = "OBSERVED_BATCH_"
_GLOBAL_VARIABLES = set(config.CORE_VARIABLES)
_GUARD = "timeout_guard"
#: ``TimeoutGuardMiddleware``'s default ``min_remaining_ms`` (a test keeps the two equal).
_GUARD_MIN_REMAINING_MS = 2000


@dataclass(frozen=True)
class Finding:
    """One misconfiguration: ``check`` is a stable identifier, ``fix`` one actionable line."""

    check: str
    resource: str
    problem: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Setup:
    """What the doctor read, as boto3 returned it.

    ``queues`` maps a queue ARN to ``{"QueueUrl": ..., "Attributes": {...}}``, or to ``None`` when the
    queue does not exist.
    """

    function: Mapping[str, Any]
    mappings: Sequence[Mapping[str, Any]] = ()
    queues: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)

    @property
    def function_name(self) -> str:
        return str(self.function.get("FunctionName") or self.function.get("FunctionArn") or "?")

    @property
    def timeout_s(self) -> int:
        return int(self.function.get("Timeout") or 3)  # Lambda's default timeout is 3 s


# -- I/O ------------------------------------------------------------------------------------------
def collect(lambda_client: Any, sqs_client: Any, function_name: str) -> Setup:
    """Read the function, its event source mappings and their SQS queues. boto3 errors propagate."""
    function = lambda_client.get_function_configuration(FunctionName=function_name)
    mappings: list[Mapping[str, Any]] = []
    marker: str | None = None
    for _ in range(_MAX_PAGES):
        page = lambda_client.list_event_source_mappings(
            FunctionName=function_name, **({"Marker": marker} if marker else {})
        )
        mappings.extend(page.get("EventSourceMappings", []))
        marker = page.get("NextMarker")
        if not marker:
            break
    queues: dict[str, Mapping[str, Any] | None] = {}
    for mapping in mappings:
        arn = str(mapping.get("EventSourceArn") or "")
        if _service(arn) == "sqs" and arn not in queues:
            queues[arn] = _read_queue(sqs_client, arn)
    return Setup(function, mappings, queues)


def _read_queue(sqs_client: Any, arn: str) -> Mapping[str, Any] | None:
    import botocore.exceptions

    parts = arn.split(":")
    try:
        url = sqs_client.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
        attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _MISSING_QUEUE_CODES:
            return None
        raise
    return {"QueueUrl": url, "Attributes": attributes}


# -- checks ---------------------------------------------------------------------------------------
def diagnose(setup: Setup, p99_ms: float | None = None) -> list[Finding]:
    """Every finding for a function and its event sources, function-level first."""
    findings = check_environment(setup.function)
    for mapping in setup.mappings:
        arn = str(mapping.get("EventSourceArn") or "")
        findings.extend(check_mapping(mapping, setup.function, setup.queues.get(arn), p99_ms))
    return findings


def check_environment(function: Mapping[str, Any]) -> list[Finding]:
    """``OBSERVED_BATCH_*`` variables on the function that would fail its cold start (or be ignored)."""
    name = str(function.get("FunctionName") or "function")
    environ: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    resource = f"function {name}"
    findings: list[Finding] = []

    def finding(check: str, problem: str, fix: str) -> None:
        findings.append(Finding(check, resource, problem, fix))

    valid = ", ".join(config.BUILTINS)
    names = _middleware_names(function)
    unknown = [n for n in names if n not in config.BUILTINS]
    if unknown:
        finding(
            "unknown-middleware",
            f"{config.ENV_MIDDLEWARE}={environ[config.ENV_MIDDLEWARE]!r} names unknown middleware"
            f" {', '.join(map(repr, unknown))}: every invocation fails at processor construction",
            f"set {config.ENV_MIDDLEWARE} on {name} to a comma-separated subset of: {valid}",
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        finding(
            "unknown-middleware",
            f"{config.ENV_MIDDLEWARE} lists {', '.join(map(repr, duplicates))} more than once: processor"
            " construction fails",
            f"list each middleware once in {config.ENV_MIDDLEWARE}",
        )
    if config.ENV_DISABLED in environ:
        try:
            config.parse_bool(environ[config.ENV_DISABLED], config.ENV_DISABLED)
        except ConfigError as exc:
            finding("invalid-option", str(exc), f"set {config.ENV_DISABLED} to true or false")

    guard_min_remaining_ms = _GUARD_MIN_REMAINING_MS
    for variable in sorted(environ):
        if not variable.startswith(_ENV_PREFIX) or variable in _GLOBAL_VARIABLES:
            continue
        owner = next((b for b in config.BUILTINS if variable.startswith(f"{_ENV_PREFIX}{b.upper()}_")), None)
        if owner is None:
            finding(
                "unknown-middleware",
                f"{variable} does not belong to any middleware (valid: {valid}): processor construction fails",
                f"rename or remove {variable}",
            )
            continue
        kinds = _option_kinds(owner)
        if kinds is None:
            continue  # this observed_batch cannot load the middleware: the function's version may
        option = variable[len(f"{_ENV_PREFIX}{owner.upper()}_") :].lower()
        if option not in kinds:
            choices = ", ".join(f"{_ENV_PREFIX}{owner.upper()}_{o.upper()}" for o in sorted(kinds)) or "(none)"
            finding(
                "invalid-option",
                f"{variable} is not an option of middleware {owner!r}: processor construction fails",
                f"use one of: {choices}",
            )
            continue
        try:
            value = config._coerce(environ[variable], kinds[option], variable)
        except ConfigError as exc:
            finding(
                "invalid-option",
                f"{exc}: processor construction fails",
                f"set {variable} to {_expected(kinds[option])}",
            )
            continue
        if owner == _GUARD and option == "min_remaining_ms":
            guard_min_remaining_ms = value

    timeout_ms = int(function.get("Timeout") or 3) * 1000
    if _GUARD in names and guard_min_remaining_ms >= timeout_ms:
        finding(
            "timeout-guard-margin",
            f"timeout_guard keeps {guard_min_remaining_ms} ms in reserve but the function timeout is only"
            f" {timeout_ms} ms: every record of every batch is failed without running",
            f"lower {_ENV_PREFIX}TIMEOUT_GUARD_MIN_REMAINING_MS well below {timeout_ms} or raise the function timeout",
        )
    return findings


def _expected(kind: Any) -> str:
    if isinstance(kind, tuple):
        return "one of: " + ", ".join(kind)
    return {int: "an integer >= 0", float: "a number >= 0", bool: "true or false"}.get(kind, "a valid value")


def _option_kinds(builtin: str) -> dict[str, Any] | None:
    try:
        return config.option_kinds(config.builtin_class(builtin))
    except (ConfigError, ImportError):
        return None


def check_mapping(
    mapping: Mapping[str, Any],
    function: Mapping[str, Any],
    queue: Mapping[str, Any] | None = None,
    p99_ms: float | None = None,
) -> list[Finding]:
    """Checks of one event source mapping and, for SQS, its queue (``{"QueueUrl", "Attributes"}``)."""
    arn = str(mapping.get("EventSourceArn") or "")
    service = _service(arn)
    uuid = str(mapping.get("UUID") or "?")
    source_name = _source_name(arn)
    if mapping.get("SelfManagedEventSource") or service == "kafka":
        service = "kafka"
        source_name = ",".join(mapping.get("Topics") or []) or source_name
    resource = f"event source mapping {uuid} ({service} {source_name})"
    update_esm = f"aws lambda update-event-source-mapping --uuid {uuid}"
    function_name = str(function.get("FunctionName") or "?")
    timeout_s = int(function.get("Timeout") or 3)
    batch_size = int(mapping.get("BatchSize") or 0)
    window_s = int(mapping.get("MaximumBatchingWindowInSeconds") or 0)
    findings: list[Finding] = []

    if service in _PARTIAL_BATCH_SOURCES and "ReportBatchItemFailures" not in (
        mapping.get("FunctionResponseTypes") or []
    ):
        findings.append(
            Finding(
                "report-batch-item-failures",
                resource,
                "FunctionResponseTypes lacks ReportBatchItemFailures: Lambda ignores the partial batch response,"
                " so one failed record retries the whole batch (or, if the handler swallows it, loses it)",
                f"{update_esm} --function-response-types ReportBatchItemFailures"
                + (" (Kafka: needs provisioned mode, --provisioned-poller-config)" if service == "kafka" else ""),
            )
        )
    if p99_ms is not None and batch_size:
        needed_s = batch_size * p99_ms / 1000.0
        if needed_s > timeout_s:
            fitting = max(1, int(timeout_s * 1000 * 0.9 // p99_ms))
            findings.append(
                Finding(
                    "batch-duration",
                    resource,
                    f"a full batch of {batch_size} records at p99 {p99_ms:g} ms needs {needed_s:.1f} s, more than"
                    f" the function timeout of {timeout_s} s: the invocation times out and the whole batch is retried",
                    f"{update_esm} --batch-size {fitting}, or raise the timeout of {function_name}"
                    + ("" if _GUARD in _middleware_names(function) else ", and enable the timeout_guard middleware"),
                )
            )
    if service in _STREAM_SOURCES and not ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
        "Destination"
    ):
        findings.append(
            Finding(
                "no-dlq",
                resource,
                "no on-failure destination: a record that keeps failing blocks its shard until it expires"
                f" (MaximumRetryAttempts={mapping.get('MaximumRetryAttempts', -1)}) and is then dropped unseen",
                f"{update_esm} --maximum-retry-attempts 10 --destination-config"
                ' \'{"OnFailure":{"Destination":"<sqs-or-sns-arn>"}}\'',
            )
        )
    if service == "sqs":
        findings.extend(_check_queue(arn, queue, uuid, resource, timeout_s, batch_size, window_s, p99_ms))
    return findings


def _check_queue(
    arn: str,
    queue: Mapping[str, Any] | None,
    uuid: str,
    mapping_resource: str,
    timeout_s: int,
    batch_size: int,
    window_s: int,
    p99_ms: float | None,
) -> list[Finding]:
    name = _source_name(arn)
    update_esm = f"aws lambda update-event-source-mapping --uuid {uuid}"
    if queue is None:
        return [
            Finding(
                "source-missing",
                mapping_resource,
                f"the source queue {arn} does not exist (or is not visible to these credentials)",
                f"recreate the queue, or delete the mapping: aws lambda delete-event-source-mapping --uuid {uuid}",
            )
        ]
    attributes: Mapping[str, str] = queue.get("Attributes") or {}
    url = str(queue.get("QueueUrl") or name)
    resource = f"queue {name}"
    set_attribute = f"aws sqs set-queue-attributes --queue-url {url} --attributes"
    findings: list[Finding] = []
    visibility_s = int(attributes.get("VisibilityTimeout", 30))
    if visibility_s < MIN_VISIBILITY_FACTOR * timeout_s:
        findings.append(
            Finding(
                "visibility-timeout",
                resource,
                f"VisibilityTimeout is {visibility_s} s, less than {MIN_VISIBILITY_FACTOR}x the function timeout"
                f" ({timeout_s} s): messages of a slow, throttled or retried batch become visible again while"
                " still being processed, and are processed twice",
                f"{set_attribute} VisibilityTimeout={MIN_VISIBILITY_FACTOR * timeout_s}",
            )
        )
    processing_s = min(float(timeout_s), batch_size * p99_ms / 1000.0) if p99_ms is not None else float(timeout_s)
    if window_s and window_s + processing_s > visibility_s:
        enough_s = max(MIN_VISIBILITY_FACTOR * timeout_s, window_s + math.ceil(processing_s))
        findings.append(
            Finding(
                "batch-window",
                mapping_resource,
                f"messages received early in the {window_s} s batching window stay in flight up to"
                f" {window_s + processing_s:.0f} s (window + processing), longer than the {visibility_s} s"
                " VisibilityTimeout: they are delivered again while the first copy is processed",
                f"{update_esm} --maximum-batching-window-in-seconds {max(0, int(visibility_s - processing_s))},"
                f" or {set_attribute} VisibilityTimeout={enough_s}",
            )
        )
    redrive = _json(attributes.get("RedrivePolicy"))
    if not redrive.get("deadLetterTargetArn"):
        findings.append(
            Finding(
                "no-dlq",
                resource,
                "no redrive policy: a poison message is retried until the retention period ends, then lost",
                f"create a dead-letter queue, then {set_attribute}"
                ' \'{"RedrivePolicy":"{\\"deadLetterTargetArn\\":\\"<dlq-arn>\\",\\"maxReceiveCount\\":\\"5\\"}"}\'',
            )
        )
    else:
        receive_count = _int(redrive.get("maxReceiveCount"))
        if receive_count is not None and receive_count < MIN_SENSIBLE_RECEIVE_COUNT:
            findings.append(
                Finding(
                    "max-receive-count",
                    resource,
                    f"maxReceiveCount is {receive_count}: a message goes to the DLQ after its first failure,"
                    " including throttles, timeouts and records the timeout guard handed back",
                    f"{set_attribute} with RedrivePolicy maxReceiveCount of at least 3 (5 is a common choice)",
                )
            )
    is_fifo = name.endswith(".fifo") or str(attributes.get("FifoQueue", "")).lower() == "true"
    if is_fifo and batch_size > MAX_FIFO_BATCH_SIZE:
        findings.append(
            Finding(
                "fifo-batch-size",
                mapping_resource,
                f"BatchSize is {batch_size} on a FIFO queue; Lambda delivers at most {MAX_FIFO_BATCH_SIZE}"
                " records per FIFO batch and rejects this value on update",
                f"{update_esm} --batch-size {MAX_FIFO_BATCH_SIZE}",
            )
        )
    return findings


# -- helpers --------------------------------------------------------------------------------------
def _middleware_names(function: Mapping[str, Any]) -> list[str]:
    environ: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    return [n.strip() for n in environ.get(config.ENV_MIDDLEWARE, "").split(",") if n.strip()]


def _service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) > 2 else ""


def _source_name(arn: str) -> str:
    """Queue name, stream name or table name of an event source ARN."""
    resource = arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) > 1 else resource


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
