"""Clickstream consumer: Kinesis Data Streams with partial batch responses.

On a failure Lambda checkpoints at the first failed sequence number and retries from there, so
records after it are processed again: keep the handler idempotent (here: keyed by ``event_id``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from observed_batch import BatchProcessor, EventType, process_partial_response

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


class MalformedClick(Exception):
    """The click event cannot be processed."""


def record_handler(record: KinesisStreamRecord) -> dict[str, Any]:
    click = record.kinesis.data_as_json()
    if click.get("fail"):
        raise MalformedClick(f"click {click.get('event_id')} of {record.kinesis.partition_key} is malformed")
    return {"event_id": click.get("event_id"), "action": click.get("action")}


def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
