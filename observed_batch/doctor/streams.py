"""doctor: Kinesis and DynamoDB Streams event source mappings (retries, bisect, destination, ordering)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Finding, _int

__all__ = ["check_stream"]

#: A bounded retry count that still survives a short outage of a downstream dependency.
SUGGESTED_RETRY_ATTEMPTS = 10
#: Records older than a day are usually not worth a blocked shard.
SUGGESTED_MAX_RECORD_AGE_S = 86_400


def check_stream(mapping: Mapping[str, Any], resource: str, update_esm: str) -> list[Finding]:
    findings: list[Finding] = []
    retries = _int(mapping.get("MaximumRetryAttempts"))
    retries = -1 if retries is None else retries
    if not ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"):
        findings.append(
            Finding(
                "no-dlq",
                resource,
                f"no on-failure destination (MaximumRetryAttempts={retries})",
                f'{update_esm} --destination-config \'{{"OnFailure":{{"Destination":"<sqs-sns-or-s3-arn>"}}}}\'',
                severity="warning",
                why="a record that keeps failing blocks its shard until it expires, and is then dropped unseen",
            )
        )
    if retries < 0:
        findings.append(
            Finding(
                "retry-forever",
                resource,
                "MaximumRetryAttempts is -1 (infinite)",
                f"{update_esm} --maximum-retry-attempts {SUGGESTED_RETRY_ATTEMPTS}",
                severity="warning",
                why="one poison record blocks its shard for the stream's whole retention period",
            )
        )
    if not mapping.get("BisectBatchOnFunctionError"):
        findings.append(
            Finding(
                "bisect-batch",
                resource,
                "BisectBatchOnFunctionError is off",
                f"{update_esm} --bisect-batch-on-function-error",
                severity="warning",
                why="a failing invocation retries the same whole batch instead of isolating the poison record",
            )
        )
    max_age = _int(mapping.get("MaximumRecordAgeInSeconds"))
    if max_age is None or max_age < 0:
        findings.append(
            Finding(
                "max-record-age",
                resource,
                "MaximumRecordAgeInSeconds is -1 (records are retried until the stream expires them)",
                f"{update_esm} --maximum-record-age-in-seconds {SUGGESTED_MAX_RECORD_AGE_S}",
                severity="info",
                why="the shard keeps retrying records nobody needs any more, and falls behind",
            )
        )
    factor = _int(mapping.get("ParallelizationFactor")) or 1
    if factor > 1:
        findings.append(
            Finding(
                "parallelization-factor",
                resource,
                f"ParallelizationFactor is {factor}: up to {factor} batches of one shard run at once",
                f"{update_esm} --parallelization-factor 1, if the handler needs records in shard order"
                " (order per partition key is kept either way)",
                severity="warning",
                why="records of different partition keys of one shard are processed out of order and concurrently",
            )
        )
    if mapping.get("StartingPosition") == "LATEST":
        findings.append(
            Finding(
                "starting-position",
                resource,
                "StartingPosition is LATEST",
                "recreate the mapping with --starting-position TRIM_HORIZON (or AT_TIMESTAMP) if earlier records"
                " matter; StartingPosition cannot be updated",
                severity="info",
                why="records written before the mapping was (re)created are never processed",
            )
        )
    return findings
