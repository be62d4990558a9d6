"""Checks a deployed batch consumer, every event source of it, and its observability wiring.

The checks are pure functions over what boto3 returns (``get_function_configuration``,
``get_function_concurrency``, ``list_event_source_mappings``, ``get_queue_attributes``,
``describe_alarms``), so they are tested on recorded responses as well as against moto; ``collect`` is
the only part that talks to AWS. Each finding has a severity, says what was found and why it hurts,
and carries a one-line fix. One module per concern: ``environment``, ``telemetry``, ``mappings``
(shared mapping checks) with ``sqs``, ``streams`` and ``kafka``, and ``alarms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observed_batch.alarms import alarm_name_prefix

from .alarms import check_alarms
from .environment import check_environment
from .mappings import MIN_VISIBILITY_FACTOR, check_mapping
from .model import SEVERITIES, Finding, Setup, _service
from .telemetry import check_telemetry

__all__ = [
    "MIN_VISIBILITY_FACTOR",
    "SEVERITIES",
    "Finding",
    "Setup",
    "check_alarms",
    "check_environment",
    "check_mapping",
    "check_telemetry",
    "collect",
    "diagnose",
    "failing",
]

_MAX_PAGES = 100
#: SQS's JSON protocol code, and the query protocol code older endpoints (and moto) return.
_MISSING_QUEUE_CODES = ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")
#: Errors that mean "these credentials may not read this": the check is skipped, not failed.
_NO_ACCESS_CODES = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


# -- I/O ------------------------------------------------------------------------------------------
def collect(lambda_client: Any, sqs_client: Any, function_name: str, cloudwatch_client: Any = None) -> Setup:
    """Read the function, its event source mappings, their SQS queues and (with ``cloudwatch_client``) the
    alarm pack. boto3 errors propagate, except AccessDenied on the concurrency and the alarms: those
    checks are then skipped."""
    function = lambda_client.get_function_configuration(FunctionName=function_name)
    reserved = _optional(lambda: lambda_client.get_function_concurrency(FunctionName=function_name))
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
    alarms = None if cloudwatch_client is None else _read_alarms(cloudwatch_client, str(function["FunctionName"]))
    concurrency = (reserved or {}).get("ReservedConcurrentExecutions")
    return Setup(function, mappings, queues, concurrency, alarms)


def _read_alarms(cloudwatch_client: Any, function_name: str) -> list[str] | None:
    names: list[str] = []
    token: str | None = None
    prefix = alarm_name_prefix(function_name)
    for _ in range(_MAX_PAGES):
        extra = {"NextToken": token} if token else {}
        page = _optional(lambda extra=extra: cloudwatch_client.describe_alarms(AlarmNamePrefix=prefix, **extra))
        if page is None:
            return None
        names.extend(alarm["AlarmName"] for alarm in page.get("MetricAlarms", []))
        token = page.get("NextToken")
        if not token:
            break
    return names


def _optional(call: Any) -> Any:
    """``call()``, or None when AWS says these credentials may not make it."""
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NO_ACCESS_CODES:
            return None
        raise


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
    """Every finding for a function and its event sources, function-level first, then the alarm pack."""
    findings = check_environment(setup.function) + check_telemetry(setup.function)
    for mapping in setup.mappings:
        arn = str(mapping.get("EventSourceArn") or "")
        findings.extend(
            check_mapping(mapping, setup.function, setup.queues.get(arn), p99_ms, setup.reserved_concurrency)
        )
    return findings + check_alarms(setup)


def failing(findings: list[Finding]) -> bool:
    """Whether the findings make the doctor exit 1: any error or warning."""
    return any(finding.severity != SEVERITIES[-1] for finding in findings)
