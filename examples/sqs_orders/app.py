"""Orders consumer: SQS standard queue, pydantic model, partial batch responses, every middleware on.

The middlewares are enabled by environment (``OBSERVED_BATCH_MIDDLEWARE`` in template.yaml, or
env.json for ``observed-batch invoke``); the code is what you would write for bare Powertools, with
``observed_batch`` in the import line.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.parser.types import Json
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from observed_batch import BatchProcessor, EventType, process_partial_response


class Order(BaseModel):
    order_id: str
    customer_id: str
    amount: float
    currency: str = "EUR"
    items: int = 1
    #: Poison marker written by `observed-batch sample-event --fail-every K`.
    fail: bool = False


class OrderRecord(SqsRecordModel):
    body: Json[Order]


class OrderRejected(Exception):
    """The order cannot be processed; the message goes back to the queue, then to the DLQ."""


# Built once per cold start: the middleware chain is configured (and validated) here.
processor = BatchProcessor(event_type=EventType.SQS, model=OrderRecord)


def record_handler(record: OrderRecord) -> dict[str, Any]:
    order = record.body
    if order.fail:
        raise OrderRejected(f"order {order.order_id} rejected by the payment service")
    return {"order_id": order.order_id, "status": "accepted"}


def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
