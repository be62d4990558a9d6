"""Order table change feed: DynamoDB Streams with partial batch responses.

Same checkpoint semantics as Kinesis: a failure makes Lambda retry from the first failed record.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from observed_batch import BatchProcessor, EventType, process_partial_response

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class OrderChangeRejected(Exception):
    """The change cannot be applied downstream."""


def record_handler(record: DynamoDBRecord) -> dict[str, Any]:
    stream = record.dynamodb
    image = (stream.new_image if stream is not None else None) or {}
    change = record.event_name.name if record.event_name is not None else "UNKNOWN"
    if image.get("fail"):
        raise OrderChangeRejected(f"{change} of {image.get('pk')} rejected")
    return {"pk": image.get("pk"), "event": change}


def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
