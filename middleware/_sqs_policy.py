"""What ``retry_policy`` asks of SQS: queue URLs from ARNs, the dead-letter queue of a source queue, and
the copy of a failed message it sends there. boto3 is imported only when a client has to be built."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from observed_batch import sources
from observed_batch.typing import RecordContext

__all__ = ["ATTRIBUTE_PREFIX", "MAX_ATTRIBUTES", "QueueDirectory", "dead_letter_message", "error_text"]

logger = logging.getLogger("observed_batch.retry_policy")

#: SQS accepts at most 10 message attributes per message.
MAX_ATTRIBUTES = 10
ATTRIBUTE_PREFIX = "observed_batch."
MAX_ERROR_MESSAGE_CHARS = 256
#: Ours, in the order they are kept when the original attributes leave fewer than five free slots.
_OURS = ("error_type", "original_message_id", "error_message", "source_queue", "receive_count")


def error_text(exc: BaseException) -> str:
    """A short message for the copy's attributes. Pydantic validation errors are rebuilt from their
    locations and messages only: their text repeats the rejected input values, which may be personal data."""
    errors = getattr(exc, "errors", None)
    if callable(errors) and hasattr(exc, "title"):
        try:
            details = errors(include_url=False, include_context=False, include_input=False)
            parts = [f"{'.'.join(str(p) for p in item.get('loc', ()))}: {item.get('msg', '')}" for item in details]
            text = f"{len(parts)} validation error(s) for {exc.title}: " + "; ".join(parts)
        except Exception:
            text = f"validation error for {exc.title}"
    else:
        text = str(exc)
    if len(text) > MAX_ERROR_MESSAGE_CHARS:
        text = text[: MAX_ERROR_MESSAGE_CHARS - 1] + "…"
    return text


def dead_letter_message(record: RecordContext, exc: BaseException, queue_url: str) -> dict[str, Any]:
    """SendMessage parameters of the copy: the body and message attributes, plus ours (error type, error
    message, source queue, original message id, receive count) in the slots SQS's limit leaves free."""
    raw = record.raw
    attributes = sources.sqs_message_attributes(raw)
    receive_count = record.receive_count
    ours = {
        "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "original_message_id": record.message_id or "",
        "error_message": error_text(exc) or type(exc).__name__,
        "source_queue": record.batch.destination or "",
        "receive_count": str(receive_count) if receive_count is not None else "",
    }
    free = MAX_ATTRIBUTES - len(attributes)
    for key in _OURS[: max(0, free)]:
        if ours[key]:
            data_type = "Number" if key == "receive_count" else "String"
            attributes[ATTRIBUTE_PREFIX + key] = {"DataType": data_type, "StringValue": ours[key]}
    message: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": str(raw.get("body") or "")}
    if attributes:
        message["MessageAttributes"] = attributes
    if queue_url.endswith(".fifo"):
        # A FIFO DLQ keeps the group's order; the same message dead-lettered twice is stored once.
        message["MessageGroupId"] = record.fifo_group or "observed_batch"
        message["MessageDeduplicationId"] = hashlib.sha256((record.message_id or "").encode()).hexdigest()
    return message


class QueueDirectory:
    """Queue URLs by ARN and each source queue's dead-letter queue, looked up once per cold start."""

    def __init__(self, client: Any, dead_letter_queue_url: str | None, timeout_s: float) -> None:
        self._client = client
        self._explicit = dead_letter_queue_url
        self._timeout_s = timeout_s
        self._urls: dict[str, str] = {}
        self._dead_letter: dict[str, str | None] = {}

    def client(self, region: str | None) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            timeout = max(1.0, self._timeout_s)
            self._client = boto3.client(
                "sqs",
                region_name=region,
                config=Config(
                    connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 2, "mode": "standard"}
                ),
            )
        return self._client

    def url(self, arn: str) -> str:
        """The URL of the queue ``arn`` names (GetQueueUrl, cached)."""
        url = self._urls.get(arn)
        if url is None:
            parts = arn.split(":")
            response = self.client(parts[3]).get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=parts[4])
            url = self._urls[arn] = str(response["QueueUrl"])
        return url

    def dead_letter_url(self, source_arn: str) -> str | None:
        """The explicit URL, else the source queue's RedrivePolicy target; ``None`` when it has none."""
        if self._explicit:
            return self._explicit
        if source_arn in self._dead_letter:
            return self._dead_letter[source_arn]
        attributes = self.client(source_arn.split(":")[3]).get_queue_attributes(
            QueueUrl=self.url(source_arn), AttributeNames=["RedrivePolicy"]
        )["Attributes"]
        try:
            target = json.loads(attributes.get("RedrivePolicy") or "{}").get("deadLetterTargetArn")
        except (ValueError, AttributeError):
            target = None
        url = self.url(target) if isinstance(target, str) and target else None
        if url is None:
            logger.error(
                "retry_policy: queue %s has no redrive policy and no dead_letter_queue_url is set; non-retryable"
                " records stay failures (set OBSERVED_BATCH_RETRY_POLICY_DEAD_LETTER_QUEUE_URL or a RedrivePolicy)",
                source_arn,
            )
        self._dead_letter[source_arn] = url
        return url
