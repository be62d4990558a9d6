"""doctor: Amazon MSK and self-managed Kafka event source mappings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Finding

__all__ = ["check_kafka"]


def check_kafka(mapping: Mapping[str, Any], resource: str, update_esm: str) -> list[Finding]:
    if ((mapping.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"):
        return []
    return [
        Finding(
            "no-dlq",
            resource,
            "no on-failure destination",
            f'{update_esm} --destination-config \'{{"OnFailure":{{"Destination":"<sqs-sns-or-s3-arn>"}}}}\'',
            severity="warning",
            why="a batch that keeps failing is retried until its records expire, blocking its partition",
        )
    ]
