"""doctor: event source mappings and their queues (partial batch responses, visibility, DLQ, FIFO)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .model import Finding, _int, _json, _middleware_names, _service, _source_name

__all__ = ["MAX_FIFO_BATCH_SIZE", "MIN_SENSIBLE_RECEIVE_COUNT", "MIN_VISIBILITY_FACTOR", "check_mapping"]

_GUARD = "timeout_guard"

#: AWS: "set the source queue's visibility timeout to at least six times the timeout of your function".
MIN_VISIBILITY_FACTOR = 6
#: Lambda's cap on a FIFO queue event source mapping's batch size.
MAX_FIFO_BATCH_SIZE = 10
#: A DLQ after a single receive sends every throttled or timed-out batch's messages to the DLQ.
MIN_SENSIBLE_RECEIVE_COUNT = 2
#: Sources whose event source mapping understands ``batchItemFailures``.
_PARTIAL_BATCH_SOURCES = ("sqs", "kinesis", "dynamodb", "kafka")
_STREAM_SOURCES = ("kinesis", "dynamodb")


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
                    + (
                        ""
                        if "timeout_guard" in _middleware_names(function)
                        else ", and enable the timeout_guard middleware"
                    ),
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
        findings.extend(_check_retry_policy(function, queue, function_name))
    return findings


def _check_retry_policy(
    function: Mapping[str, Any], queue: Mapping[str, Any] | None, function_name: str
) -> list[Finding]:
    """``retry_policy`` dead-letters into the queue's redrive target: without one (and no explicit URL)
    every non-retryable record stays a failure, retried until SQS's retention ends."""
    environ: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    if queue is None or "retry_policy" not in _middleware_names(function):
        return []
    if environ.get("OBSERVED_BATCH_RETRY_POLICY_ON_NON_RETRYABLE", "dead_letter").strip() != "dead_letter":
        return []
    if environ.get("OBSERVED_BATCH_RETRY_POLICY_DEAD_LETTER_QUEUE_URL", "").strip():
        return []
    if _json((queue.get("Attributes") or {}).get("RedrivePolicy")).get("deadLetterTargetArn"):
        return []
    name = _source_name(str((queue.get("Attributes") or {}).get("QueueArn") or queue.get("QueueUrl") or "?"))
    return [
        Finding(
            "retry-policy-no-dlq",
            f"function {function_name}",
            f"retry_policy dead-letters non-retryable records, but queue {name} has no redrive policy and"
            " OBSERVED_BATCH_RETRY_POLICY_DEAD_LETTER_QUEUE_URL is not set: those records stay failures and"
            " are retried until the retention period ends",
            "give the queue a RedrivePolicy (see no-dlq), or set OBSERVED_BATCH_RETRY_POLICY_DEAD_LETTER_QUEUE_URL,"
            " or OBSERVED_BATCH_RETRY_POLICY_ON_NON_RETRYABLE=drop",
        )
    ]


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
