"""doctor: an SQS event source mapping and its queue (visibility, batching window, DLQ, FIFO, concurrency)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .model import Finding, _int, _json, _middleware_names, _source_name

__all__ = [
    "MAX_FIFO_BATCH_SIZE",
    "MIN_SENSIBLE_RECEIVE_COUNT",
    "MIN_VISIBILITY_FACTOR",
    "check_concurrency",
    "check_queue",
    "check_retry_policy",
]

#: AWS: "set the source queue's visibility timeout to at least six times the timeout of your function".
MIN_VISIBILITY_FACTOR = 6
#: Lambda's cap on a FIFO queue event source mapping's batch size.
MAX_FIFO_BATCH_SIZE = 10
#: A DLQ after a single receive sends every throttled or timed-out batch's messages to the DLQ.
MIN_SENSIBLE_RECEIVE_COUNT = 2


def check_concurrency(mapping: Mapping[str, Any], resource: str, reserved: int | None) -> list[Finding]:
    """ScalingConfig MaximumConcurrency against the function's reserved concurrency."""
    uuid = str(mapping.get("UUID") or "?")
    maximum = _int((mapping.get("ScalingConfig") or {}).get("MaximumConcurrency"))
    update_esm = f"aws lambda update-event-source-mapping --uuid {uuid}"
    throttled = "throttled receives count toward maxReceiveCount: good messages end in the DLQ"
    if reserved is None:
        return []
    if maximum is None:
        return [
            Finding(
                "maximum-concurrency",
                resource,
                f"the function's reserved concurrency is {reserved} but the mapping sets no ScalingConfig"
                " MaximumConcurrency: the SQS poller scales past it and Lambda throttles the extra batches",
                f"{update_esm} --scaling-config MaximumConcurrency={max(2, reserved)}",
                severity="warning",
                why=throttled,
            )
        ]
    if maximum > reserved:
        return [
            Finding(
                "maximum-concurrency",
                resource,
                f"ScalingConfig MaximumConcurrency is {maximum}, above the function's reserved concurrency of"
                f" {reserved}: up to {maximum - reserved} concurrent batches are throttled",
                f"{update_esm} --scaling-config MaximumConcurrency={max(2, reserved)}, or raise the reserved"
                f" concurrency to {maximum}",
                severity="warning",
                why=throttled,
            )
        ]
    return []


def check_queue(
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
                why="the mapping polls nothing: the function receives no records",
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
                why="messages are processed twice, and their receive count climbs toward the DLQ",
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
                severity="warning",
                why="messages are processed twice, and their receive count climbs toward the DLQ",
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
                severity="warning",
                why="a poison message is retried until the retention period ends, then lost",
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
                    severity="warning",
                    why="good messages that were only throttled or timed out end in the DLQ",
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
                why="Lambda rejects the mapping's next update",
            )
        )
    return findings


def check_retry_policy(
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
            why="a non-retryable record would otherwise be retried until SQS's retention ends",
        )
    ]
