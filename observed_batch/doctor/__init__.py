"""Checks a deployed batch consumer for the classic partial-batch pitfalls.

The checks are pure functions over what boto3 returns (``get_function_configuration``,
``list_event_source_mappings``, ``get_queue_attributes``), so they are tested on recorded responses
as well as against moto; ``collect`` is the only part that talks to AWS. Each finding says what is
wrong and carries a one-line fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .environment import check_environment
from .mappings import MIN_VISIBILITY_FACTOR, check_mapping
from .model import Finding, Setup, _service
from .telemetry import check_telemetry

__all__ = [
    "MIN_VISIBILITY_FACTOR",
    "Finding",
    "Setup",
    "check_environment",
    "check_mapping",
    "check_telemetry",
    "collect",
    "diagnose",
]

_MAX_PAGES = 100
#: SQS's JSON protocol code, and the query protocol code older endpoints (and moto) return.
_MISSING_QUEUE_CODES = ("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")


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
    findings = check_environment(setup.function) + check_telemetry(setup.function)
    for mapping in setup.mappings:
        arn = str(mapping.get("EventSourceArn") or "")
        findings.extend(check_mapping(mapping, setup.function, setup.queues.get(arn), p99_ms))
    return findings
