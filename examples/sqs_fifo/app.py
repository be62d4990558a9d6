"""Orders consumer for a FIFO queue: one customer's orders in order, other customers unaffected.

``SqsFifoPartialProcessor(skip_group_on_error=True)``: when a message fails, the rest of *its*
message group in the batch is reported failed without running (so order is kept on retry), while
other groups carry on. Middlewares see those records as ``skipped`` (reason ``fifo_short_circuit``).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from observed_batch import SqsFifoPartialProcessor, process_partial_response

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


class OrderRejected(Exception):
    """The order cannot be processed; later orders of the same customer wait for it."""


def record_handler(record: SQSRecord) -> dict[str, Any]:
    order = json.loads(record.body)
    if order.get("fail"):
        raise OrderRejected(f"order {order['order_id']} of {record.attributes.message_group_id} rejected")
    return {"order_id": order["order_id"], "group": record.attributes.message_group_id}


def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
