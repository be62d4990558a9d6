"""Small stand-ins for Lambda's event source mappings (ESM), to drive real handlers against moto.

``SqsEventSourceMapping`` behaves like the SQS ESM with ``FunctionResponseTypes:
[ReportBatchItemFailures]``:

- ReceiveMessage up to ``batch_size`` (max 10) messages with all system and message attributes;
- builds the event Lambda delivers (``messageId``, ``receiptHandle``, ``body``, ``attributes`` with
  ``ApproximateReceiveCount``/``SentTimestamp``/``MessageGroupId``..., ``messageAttributes`` in
  Lambda's lower-camel shape, ``md5OfBody``, ``eventSource``, ``eventSourceARN``, ``awsRegion``);
- calls the handler once per batch with a ``FakeLambdaContext``;
- deletes only the messages not listed in ``batchItemFailures``; a handler that raises, or a
  response naming an identifier that is not in the batch (or an empty/null one), fails the whole
  batch, as Lambda does;
- failed messages are not deleted and come back when their visibility timeout expires. Lambda
  waits for the queue's visibility timeout; to keep tests fast, ``retry_visibility_timeout_s=0``
  makes them visible again at once through ChangeMessageVisibility (``None`` keeps Lambda's
  behaviour and waits).

The redrive to the dead-letter queue is moto's own: a message whose ``ApproximateReceiveCount``
reached ``maxReceiveCount`` is moved to the DLQ by the next ReceiveMessage, as SQS does.

``KinesisEventSourceMapping`` behaves like the Kinesis ESM on one shard: GetRecords from the
checkpoint, and after a partial failure checkpoints *before the lowest failed sequence number* and
re-reads from it (AT_SEQUENCE_NUMBER); a handler that raises retries the whole batch.

Both record every invocation (event, response or error, captured stdout) for the test to reconcile.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from observed_batch.cli._common import Telemetry, capture_stdout, split_telemetry
from observed_batch.testing import FakeLambdaContext

__all__ = ["Invocation", "KinesisEventSourceMapping", "SqsEventSourceMapping", "queue_depth"]

Handler = Callable[[dict[str, Any], Any], Any]
REGION = "us-east-1"


@dataclass
class Invocation:
    """One handler call: the records it got and what came back."""

    records: list[dict[str, Any]]
    response: Any = None
    error: BaseException | None = None
    stdout: list[str] = field(default_factory=list)
    #: Identifiers the mapping treated as failed (all of them after an error or invalid response).
    failed_ids: list[str] = field(default_factory=list)
    #: True when the whole batch was failed (handler raised or returned an invalid response).
    whole_batch_failed: bool = False

    @property
    def telemetry(self) -> Telemetry:
        return split_telemetry(self.stdout)


def _invoke(handler: Handler, event: dict[str, Any], function_timeout_s: int) -> Invocation:
    invocation = Invocation(records=event["Records"])
    context = FakeLambdaContext(function_timeout_s * 1000, function_name="e2e-consumer")
    with capture_stdout() as captured:
        try:
            invocation.response = handler(event, context)
        except BaseException as exc:  # a crashed invocation, whatever it raised
            invocation.error = exc
    invocation.stdout = captured()
    return invocation


def _reported_failures(invocation: Invocation, identifiers: list[str]) -> list[str] | None:
    """Identifiers from ``batchItemFailures``, or ``None`` when Lambda would fail the whole batch."""
    if invocation.error is not None:
        return None
    response = invocation.response
    if not isinstance(response, dict) or "batchItemFailures" not in response:
        return []  # no partial response: Lambda counts the invocation as successful
    failures = response["batchItemFailures"]
    if not isinstance(failures, list):
        return None
    known = set(identifiers)
    reported: list[str] = []
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier or identifier not in known:
            return None
        reported.append(identifier)
    return reported


class SqsEventSourceMapping:
    """Polls one queue and invokes ``handler`` like Lambda's SQS event source mapping."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        function_timeout_s: int = 30,
        retry_visibility_timeout_s: int | None = 0,
    ) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError("SQS returns at most 10 messages per ReceiveMessage")
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.function_timeout_s = function_timeout_s
        self.retry_visibility_timeout_s = retry_visibility_timeout_s
        self.queue_arn: str = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.invocations: list[Invocation] = []
        #: Message ids deleted after a successful invocation, in order (duplicates would show here).
        self.deleted: list[str] = []

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return {"Records": [self._record(message) for message in messages]}

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        attributes = {key: str(value) for key, value in message.get("Attributes", {}).items()}
        message_attributes: dict[str, Any] = {}
        for name, value in message.get("MessageAttributes", {}).items():
            converted: dict[str, Any] = {
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            if "StringValue" in value:
                converted["stringValue"] = value["StringValue"]
            if "BinaryValue" in value:
                converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
            message_attributes[name] = converted
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": REGION,
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        return record

    def poll(self) -> Invocation | None:
        """One ReceiveMessage and, if it returned messages, one invocation. ``None`` when empty."""
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages = received.get("Messages", [])
        if not messages:
            return None
        invocation = _invoke(self.handler, self.event(messages), self.function_timeout_s)
        self.invocations.append(invocation)
        identifiers = [message["MessageId"] for message in messages]
        reported = _reported_failures(invocation, identifiers)
        invocation.whole_batch_failed = reported is None
        failed = set(identifiers if reported is None else reported)
        invocation.failed_ids = [identifier for identifier in identifiers if identifier in failed]
        succeeded = [message for message in messages if message["MessageId"] not in failed]
        retried = [message for message in messages if message["MessageId"] in failed]
        self._delete(succeeded)
        if retried and self.retry_visibility_timeout_s is not None:
            self._change_visibility(retried, self.retry_visibility_timeout_s)
        return invocation

    def _entries(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(messages)]

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            result = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=self._entries(chunk))
            if result.get("Failed"):
                raise RuntimeError(f"DeleteMessageBatch failed: {result['Failed']}")
            self.deleted.extend(chunk[int(entry["Id"])]["MessageId"] for entry in result.get("Successful", []))

    def _change_visibility(self, messages: list[dict[str, Any]], timeout_s: int) -> None:
        entries = [{**entry, "VisibilityTimeout": timeout_s} for entry in self._entries(messages)]
        result = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
        if result.get("Failed"):
            raise RuntimeError(f"ChangeMessageVisibilityBatch failed: {result['Failed']}")

    def drain(self, *, max_polls: int, timeout_s: float, idle_sleep_s: float = 0.05) -> int:
        """Poll until the queue holds no message, visible or in flight; returns the number of polls.

        Bounded: raises ``TimeoutError`` after ``max_polls`` polls or ``timeout_s`` seconds.
        """
        deadline = time.monotonic() + timeout_s
        empty_readings = 0
        for polls in range(1, max_polls + 1):
            if time.monotonic() > deadline:
                break
            if self.poll() is not None:
                empty_readings = 0
                continue
            if queue_depth(self.sqs, self.queue_url) != 0:
                empty_readings = 0
                time.sleep(idle_sleep_s)  # in flight: wait for visibility timeouts to expire
                continue
            # moto counts visible and invisible messages at two instants: a message becoming visible
            # between them is in neither count. Empty only when a later poll and reading agree.
            empty_readings += 1
            if empty_readings == 2:
                return polls
            time.sleep(idle_sleep_s)
        raise TimeoutError(
            f"queue not drained after {len(self.invocations)} invocations ({max_polls} polls / {timeout_s} s max);"
            f" {queue_depth(self.sqs, self.queue_url)} messages left"
        )


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages in the queue: visible + in flight + delayed."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


class KinesisEventSourceMapping:
    """Reads one shard from TRIM_HORIZON and invokes ``handler`` like Lambda's Kinesis mapping."""

    def __init__(
        self,
        kinesis: Any,
        stream_name: str,
        handler: Handler,
        *,
        batch_size: int = 100,
        function_timeout_s: int = 30,
    ) -> None:
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.handler = handler
        self.batch_size = batch_size
        self.function_timeout_s = function_timeout_s
        description = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
        if len(description["Shards"]) != 1:
            raise ValueError("this mapping reads single-shard streams")
        self.stream_arn: str = description["StreamARN"]
        self.shard_id: str = description["Shards"][0]["ShardId"]
        self.invocations: list[Invocation] = []
        #: Sequence number of the last record known processed (everything up to it is done).
        self.checkpoint: str | None = None
        #: Sequence numbers each batch started at, in order (a re-read shows up as a repeat).
        self.batch_starts: list[str] = []
        self._iterator: str | None = self._shard_iterator("TRIM_HORIZON")

    def _shard_iterator(self, kind: str, sequence_number: str | None = None) -> str:
        extra = {"StartingSequenceNumber": sequence_number} if sequence_number is not None else {}
        iterator: str = self.kinesis.get_shard_iterator(
            StreamName=self.stream_name, ShardId=self.shard_id, ShardIteratorType=kind, **extra
        )["ShardIterator"]
        return iterator

    def _record(self, record: dict[str, Any]) -> dict[str, Any]:
        sequence = record["SequenceNumber"]
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": sequence,
                "data": base64.b64encode(record["Data"]).decode(),
                "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{self.shard_id}:{sequence}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/e2e-consumer",
            "awsRegion": REGION,
            "eventSourceARN": self.stream_arn,
        }

    def poll(self) -> Invocation | None:
        """One GetRecords from the checkpoint and, if it returned records, one invocation."""
        if self._iterator is None:
            return None
        result = self.kinesis.get_records(ShardIterator=self._iterator, Limit=self.batch_size)
        records = result.get("Records", [])
        if not records:
            self._iterator = result.get("NextShardIterator")
            return None
        invocation = _invoke(self.handler, {"Records": [self._record(r) for r in records]}, self.function_timeout_s)
        self.invocations.append(invocation)
        sequences = [record["SequenceNumber"] for record in records]
        self.batch_starts.append(sequences[0])
        reported = _reported_failures(invocation, sequences)
        invocation.whole_batch_failed = reported is None
        if reported is None:
            invocation.failed_ids = sequences
            self._iterator = self._shard_iterator("AT_SEQUENCE_NUMBER", sequences[0])
        elif reported:
            invocation.failed_ids = reported
            first_failed = min(reported, key=int)
            position = sequences.index(first_failed)
            self.checkpoint = sequences[position - 1] if position > 0 else self.checkpoint
            self._iterator = self._shard_iterator("AT_SEQUENCE_NUMBER", first_failed)
        else:
            self.checkpoint = sequences[-1]
            self._iterator = result.get("NextShardIterator")
        return invocation

    def drain(self, *, max_polls: int, timeout_s: float) -> int:
        """Poll until GetRecords returns nothing after a successful batch; returns the number of polls."""
        deadline = time.monotonic() + timeout_s
        for polls in range(1, max_polls + 1):
            if time.monotonic() > deadline:
                break
            if self.poll() is None:
                return polls
        raise TimeoutError(f"shard not drained after {len(self.invocations)} invocations")
