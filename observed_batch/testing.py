"""Test helpers for users' own tests: realistic events, a fake Lambda context, a recording middleware.

    from observed_batch.testing import sqs_event, FakeLambdaContext, RecordingMiddleware

Events look like what Lambda delivers (attributes, ARNs, base64 Kinesis data, DynamoDB images), and
are deterministic for a given ``seed``.
"""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from observed_batch.typing import BatchContext, BatchSummary, Middleware, RecordContext

__all__ = [
    "FakeLambdaContext",
    "RecordingMiddleware",
    "dynamodb_event",
    "dynamodb_record",
    "kafka_event",
    "kinesis_event",
    "kinesis_record",
    "sqs_event",
    "sqs_fifo_event",
    "sqs_record",
]

REGION = "us-east-1"
ACCOUNT = "123456789012"
_NOW_MS = 1_700_000_000_000


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _body(index: int, body: Any) -> str:
    if body is None:
        return json.dumps({"order_id": f"order-{index}", "amount": 10 + index % 90, "currency": "EUR"})
    if callable(body):
        body = body(index)
    return body if isinstance(body, str) else json.dumps(body)


def sqs_record(
    index: int = 0,
    *,
    body: Any = None,
    queue: str = "orders",
    message_id: str | None = None,
    group_id: str | None = None,
    receive_count: int = 1,
    sent_timestamp_ms: int | None = None,
    traceparent: str | None = None,
    xray_header: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One SQS record. ``group_id`` makes it a FIFO record (the queue should end in ``.fifo``)."""
    rng = random.Random(seed * 1_000_003 + index)
    attributes: dict[str, str] = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(sent_timestamp_ms if sent_timestamp_ms is not None else _NOW_MS + index),
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": str(_NOW_MS + index + 5),
    }
    if xray_header is not None:
        attributes["AWSTraceHeader"] = xray_header
    if group_id is not None:
        attributes["MessageGroupId"] = group_id
        attributes["SequenceNumber"] = str(18_849_496_460_467_696_128 + index)
        attributes["MessageDeduplicationId"] = f"dedup-{index}"
    message_attributes: dict[str, Any] = {}
    if traceparent is not None:
        message_attributes["traceparent"] = {"stringValue": traceparent, "dataType": "String"}
    return {
        "messageId": message_id or _uuid(rng),
        "receiptHandle": f"AQEB{base64.b64encode(rng.randbytes(24)).decode()}",
        "body": _body(index, body),
        "attributes": attributes,
        "messageAttributes": message_attributes,
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}",
        "awsRegion": REGION,
    }


def sqs_event(
    count: int = 3, *, body: Any = None, queue: str = "orders", seed: int = 0, **record: Any
) -> dict[str, Any]:
    """``body`` may be a value, or a callable ``index -> value`` to vary it per record."""
    return {"Records": [sqs_record(i, body=body, queue=queue, seed=seed, **record) for i in range(count)]}


def sqs_fifo_event(
    count: int = 3,
    *,
    groups: Sequence[str] = ("group-a",),
    body: Any = None,
    queue: str = "orders.fifo",
    seed: int = 0,
) -> dict[str, Any]:
    """Records assigned round-robin to ``groups``."""
    return {
        "Records": [
            sqs_record(i, body=body, queue=queue, group_id=groups[i % len(groups)], seed=seed) for i in range(count)
        ]
    }


def kinesis_record(
    index: int = 0, *, data: Any = None, stream: str = "clickstream", shard: str = "shardId-000000000000"
) -> dict[str, Any]:
    payload = _body(index, data).encode()
    sequence = str(49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898 + index)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": f"user-{index % 7}",
            "sequenceNumber": sequence,
            "data": base64.b64encode(payload).decode(),
            "approximateArrivalTimestamp": (_NOW_MS + index) / 1000.0,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard}:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT}:role/lambda-role",
        "awsRegion": REGION,
        "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
    }


def kinesis_event(count: int = 3, *, data: Any = None, stream: str = "clickstream") -> dict[str, Any]:
    return {"Records": [kinesis_record(i, data=data, stream=stream) for i in range(count)]}


def dynamodb_record(index: int = 0, *, table: str = "Orders", new_image: Any = None) -> dict[str, Any]:
    image = new_image(index) if callable(new_image) else new_image
    if image is None:
        image = {"pk": {"S": f"order-{index}"}, "amount": {"N": str(10 + index % 90)}}
    return {
        "eventID": f"{index:032x}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": (_NOW_MS + index * 1000) // 1000,
            "Keys": {"pk": {"S": f"order-{index}"}},
            "NewImage": image,
            "SequenceNumber": str(4_421_584_500_000_000_017_450_439_091 + index),
            "SizeBytes": 26,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}/stream/2024-01-01T00:00:00.000",
    }


def dynamodb_event(count: int = 3, *, table: str = "Orders", new_image: Any = None) -> dict[str, Any]:
    return {"Records": [dynamodb_record(i, table=table, new_image=new_image) for i in range(count)]}


def kafka_event(count: int = 3, *, topic: str = "orders", partitions: int = 1, value: Any = None) -> dict[str, Any]:
    """An Amazon MSK event: records grouped under ``topic-partition`` keys."""
    records: dict[str, list[dict[str, Any]]] = {}
    for i in range(count):
        partition = i % partitions
        records.setdefault(f"{topic}-{partition}", []).append(
            {
                "topic": topic,
                "partition": partition,
                "offset": 15 + i // partitions,
                "timestamp": _NOW_MS + i,
                "timestampType": "CREATE_TIME",
                "key": base64.b64encode(f"key-{i}".encode()).decode(),
                "value": base64.b64encode(_body(i, value).encode()).decode(),
                "headers": [],
            }
        )
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/demo-cluster/abcd1234",
        "bootstrapServers": "b-1.demo-cluster.kafka.us-east-1.amazonaws.com:9092",
        "records": records,
    }


class FakeLambdaContext:
    """A LambdaContext stand-in whose remaining time you control.

    ``remaining_ms`` is a fixed budget counted down by the real clock (like Lambda), or pass
    ``remaining=callable`` returning milliseconds to script it (e.g. decreasing per call).
    """

    def __init__(
        self,
        remaining_ms: int = 30_000,
        *,
        remaining: Callable[[], int] | None = None,
        function_name: str = "orders-consumer",
        memory_limit_in_mb: int = 512,
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2024/01/01/[$LATEST]abcdef"
        self._deadline = time.monotonic() + remaining_ms / 1000.0
        self._remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        if self._remaining is not None:
            return int(self._remaining())
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class RecordingMiddleware(Middleware):
    """Records every hook call, for asserting on what the chain did: ``events`` is a list of tuples
    ``("start", batch)``, ``("enter", record)``, ``("exit", record)``, ``("end", batch, summary)``."""

    name = "recording"

    def __init__(self, label: str = "recording") -> None:
        self.label = label
        self.events: list[tuple[Any, ...]] = []

    def on_batch_start(self, batch: BatchContext) -> None:
        self.events.append(("start", batch))

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        self.events.append(("enter", record))
        yield
        self.events.append(("exit", record))

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        self.events.append(("end", batch, summary))

    def records(self, phase: str = "exit") -> list[RecordContext]:
        return [event[1] for event in self.events if event[0] == phase]
