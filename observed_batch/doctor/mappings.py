"""doctor: an event source mapping, whatever its source; dispatches to the per-source modules.

Checks every source shares: partial batch responses, a batch that cannot finish in time, the mapping's
own metrics (``MetricsConfig``). Then ``sqs``, ``streams`` (Kinesis, DynamoDB Streams) or ``kafka``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .kafka import check_kafka
from .model import Finding, _middleware_names, _service, _source_name
from .sqs import (
    MAX_FIFO_BATCH_SIZE,
    MIN_SENSIBLE_RECEIVE_COUNT,
    MIN_VISIBILITY_FACTOR,
    check_concurrency,
    check_queue,
    check_retry_policy,
)
from .streams import check_stream

__all__ = ["MAX_FIFO_BATCH_SIZE", "MIN_SENSIBLE_RECEIVE_COUNT", "MIN_VISIBILITY_FACTOR", "check_mapping", "source_of"]

#: Sources whose event source mapping understands ``batchItemFailures``.
_PARTIAL_BATCH_SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")
_STREAM_SOURCES = ("kinesis", "dynamodb")


def source_of(mapping: Mapping[str, Any]) -> tuple[str, str]:
    """(service, source name) of a mapping: ``("kafka", topics)`` for MSK and self-managed Kafka."""
    arn = str(mapping.get("EventSourceArn") or "")
    if mapping.get("SelfManagedEventSource") or _service(arn) == "kafka":
        return "kafka", ",".join(mapping.get("Topics") or []) or _source_name(arn)
    return _service(arn), _source_name(arn)


def check_mapping(
    mapping: Mapping[str, Any],
    function: Mapping[str, Any],
    queue: Mapping[str, Any] | None = None,
    p99_ms: float | None = None,
    reserved_concurrency: int | None = None,
) -> list[Finding]:
    """Checks of one event source mapping and, for SQS, its queue (``{"QueueUrl", "Attributes"}``)."""
    arn = str(mapping.get("EventSourceArn") or "")
    service, source_name = source_of(mapping)
    uuid = str(mapping.get("UUID") or "?")
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
                "FunctionResponseTypes lacks ReportBatchItemFailures: Lambda ignores the partial batch response",
                f"{update_esm} --function-response-types ReportBatchItemFailures"
                + (" (Kafka: needs provisioned mode, --provisioned-poller-config)" if service == "kafka" else ""),
                why="one failed record retries the whole batch (or, if the handler swallows it, loses it)",
            )
        )
    if p99_ms is not None and batch_size:
        needed_s = batch_size * p99_ms / 1000.0
        if needed_s > timeout_s:
            fitting = max(1, int(timeout_s * 1000 * 0.9 // p99_ms))
            guard = (
                "" if "timeout_guard" in _middleware_names(function) else ", and enable the timeout_guard middleware"
            )
            findings.append(
                Finding(
                    "batch-duration",
                    resource,
                    f"a full batch of {batch_size} records at p99 {p99_ms:g} ms needs {needed_s:.1f} s, more than"
                    f" the function timeout of {timeout_s} s",
                    f"{update_esm} --batch-size {fitting}, or raise the timeout of {function_name}{guard}",
                    why="the invocation times out and the whole batch is retried",
                )
            )
    if service in _PARTIAL_BATCH_SOURCES and not (mapping.get("MetricsConfig") or {}).get("Metrics"):
        wanted = "EventCount,ErrorCount,KafkaMetrics" if service == "kafka" else "EventCount"
        findings.append(
            Finding(
                "metrics-config",
                resource,
                "the mapping's metrics (MetricsConfig) are off",
                f"{update_esm} --metrics-config Metrics={wanted}",
                severity="info",
                why="no polled, filtered, failed or dropped counts per mapping: one that drops records goes unseen",
            )
        )
    if service == "sqs":
        findings.extend(check_concurrency(mapping, resource, reserved_concurrency))
        findings.extend(check_queue(arn, queue, uuid, resource, timeout_s, batch_size, window_s, p99_ms))
        findings.extend(check_retry_policy(function, queue, function_name))
    elif service in _STREAM_SOURCES:
        findings.extend(check_stream(mapping, resource, update_esm))
    elif service == "kafka":
        findings.extend(check_kafka(mapping, resource, update_esm))
    return findings
