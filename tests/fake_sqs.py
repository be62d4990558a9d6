"""An in-memory stand-in for the boto3 SQS client calls ``retry_policy`` makes, for fast tests."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["FakeSqs"]

DLQ_ARN = "arn:aws:sqs:eu-west-1:123456789012:orders-dlq"


class FakeSqs:
    """Records every call. ``fail_sends`` makes SendMessage raise; ``redrive=False`` gives a queue without DLQ."""

    def __init__(self, *, redrive: bool = True, dlq_arn: str = DLQ_ARN, fail_sends: bool = False) -> None:
        self.redrive = redrive
        self.dlq_arn = dlq_arn
        self.fail_sends = fail_sends
        self.sent: list[dict[str, Any]] = []
        self.visibility: list[dict[str, Any]] = []
        self.calls: list[str] = []

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str) -> dict[str, Any]:
        self.calls.append("get_queue_url")
        return {"QueueUrl": f"https://sqs.eu-west-1.amazonaws.com/{QueueOwnerAWSAccountId}/{QueueName}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        self.calls.append("get_queue_attributes")
        if not self.redrive:
            return {"Attributes": {}}
        return {
            "Attributes": {"RedrivePolicy": json.dumps({"deadLetterTargetArn": self.dlq_arn, "maxReceiveCount": 5})}
        }

    def send_message(self, **message: Any) -> dict[str, Any]:
        self.calls.append("send_message")
        if self.fail_sends:
            raise ConnectionError("SQS unreachable")
        self.sent.append(message)
        return {"MessageId": f"copy-{len(self.sent)}"}

    def change_message_visibility_batch(self, **request: Any) -> dict[str, Any]:
        self.calls.append("change_message_visibility_batch")
        self.visibility.append(request)
        return {"Successful": [{"Id": entry["Id"]} for entry in request["Entries"]], "Failed": []}
