"""What each event source calls things: identifiers, destinations, timestamps, trace headers.

Every middleware needs the same facts about a record (which queue, which message id, how old), and
each source spells them differently. They are read from the raw record dict, never raise, and return
``None`` when a field is absent or malformed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType

__all__ = [
    "DESTINATION_KINDS",
    "EVENT_SOURCES",
    "MESSAGING_SYSTEMS",
    "body_text",
    "destination_from_arn",
    "event_source_arn",
    "event_type_of",
    "fifo_group",
    "producer_trace_headers",
    "receipt_handle",
    "receive_count",
    "record_identifier",
    "sent_timestamp_ms",
    "sqs_facts",
    "sqs_message_attributes",
]

_KAFKA = getattr(EventType, "Kafka", None)

#: Value of OpenTelemetry's ``messaging.system`` attribute per event type.
MESSAGING_SYSTEMS: dict[Any, str] = {
    EventType.SQS: "aws_sqs",
    EventType.KinesisDataStreams: "aws_kinesis",
    EventType.DynamoDBStreams: "aws_dynamodb",
}
#: What a destination is called per event type (Sentry tag name, log field).
DESTINATION_KINDS: dict[Any, str] = {
    EventType.SQS: "queue",
    EventType.KinesisDataStreams: "stream",
    EventType.DynamoDBStreams: "table",
}
#: ``eventSource`` as Lambda spells it per event type (the ``event_source`` log field and Sentry tag).
EVENT_SOURCES: dict[Any, str] = {
    EventType.SQS: "aws:sqs",
    EventType.KinesisDataStreams: "aws:kinesis",
    EventType.DynamoDBStreams: "aws:dynamodb",
}
if _KAFKA is not None:  # pragma: no branch - every supported Powertools has it
    MESSAGING_SYSTEMS[_KAFKA] = "kafka"
    DESTINATION_KINDS[_KAFKA] = "topic"
    EVENT_SOURCES[_KAFKA] = "aws:kafka"


def _get(mapping: Any, key: str) -> Any:
    # Lambda events are plain dicts; the ABC check is only the slow path for other mappings.
    if type(mapping) is dict or isinstance(mapping, Mapping):
        return mapping.get(key)
    return None


def record_identifier(event_type: EventType, raw: Any) -> Any:
    """The value Powertools reports as ``itemIdentifier`` for this record."""
    if event_type is EventType.SQS:
        return _get(raw, "messageId")
    if event_type is EventType.KinesisDataStreams:
        return _get(_get(raw, "kinesis"), "sequenceNumber")
    if event_type is EventType.DynamoDBStreams:
        return _get(_get(raw, "dynamodb"), "SequenceNumber")
    if event_type is _KAFKA:
        topic, partition = _get(raw, "topic"), _get(raw, "partition")
        return {"partition": f"{topic}-{partition}", "offset": _get(raw, "offset")}
    return None  # pragma: no cover - EventType has no other members


_EVENT_SOURCES = {
    "aws:sqs": EventType.SQS,
    "aws:kinesis": EventType.KinesisDataStreams,
    "aws:dynamodb": EventType.DynamoDBStreams,
}


def event_type_of(raw: Any) -> EventType | None:
    """The event type a raw record comes from, by its ``eventSource`` (Kafka records, flattened out of
    their topic-partition lists, have none: they are told by their ``topic``/``partition``/``offset``)."""
    source = _get(raw, "eventSource")
    if isinstance(source, str) and source in _EVENT_SOURCES:
        return _EVENT_SOURCES[source]
    if _KAFKA is not None and all(_get(raw, key) is not None for key in ("topic", "partition", "offset")):
        return _KAFKA  # type: ignore[no-any-return]
    return None


def event_source_arn(raw: Any) -> str | None:
    arn = _get(raw, "eventSourceARN") or _get(raw, "eventSourceArn")
    return arn if isinstance(arn, str) else None


def destination_from_arn(event_type: EventType, arn: str | None) -> str | None:
    """Queue, stream or table name from an event source ARN.

    ``arn:aws:sqs:eu-west-1:123:orders.fifo`` -> ``orders.fifo``;
    ``arn:aws:kinesis:...:stream/clicks`` -> ``clicks``;
    ``arn:aws:dynamodb:...:table/Orders/stream/2024-...`` -> ``Orders``.
    """
    if not arn:
        return None
    resource = arn.split(":", 5)[-1]
    if event_type is EventType.SQS:
        return resource or None
    parts = resource.split("/")
    return parts[1] if len(parts) > 1 and parts[1] else None


def sent_timestamp_ms(event_type: EventType, raw: Any) -> float | None:
    """When the producer's message entered the source, in epoch milliseconds."""
    try:
        if event_type is EventType.SQS:
            value = _get(_get(raw, "attributes"), "SentTimestamp")
            return float(value) if value is not None else None
        if event_type is EventType.KinesisDataStreams:
            value = _get(_get(raw, "kinesis"), "approximateArrivalTimestamp")
            return float(value) * 1000.0 if value is not None else None
        if event_type is EventType.DynamoDBStreams:
            value = _get(_get(raw, "dynamodb"), "ApproximateCreationDateTime")
            return float(value) * 1000.0 if value is not None else None
        value = _get(raw, "timestamp")  # Kafka: epoch ms
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def receive_count(raw: Any) -> int | None:
    """SQS ``ApproximateReceiveCount`` (1 on first delivery)."""
    value = _get(_get(raw, "attributes"), "ApproximateReceiveCount")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def fifo_group(raw: Any) -> str | None:
    value = _get(_get(raw, "attributes"), "MessageGroupId")
    return value if isinstance(value, str) else None


def sqs_facts(raw: dict[str, Any]) -> tuple[str | None, int | None, str | None]:
    """An SQS record dict's message id, receive count and FIFO group in one pass: the values of
    ``record_identifier``, ``receive_count`` and ``fifo_group``, for per-record hot paths."""
    message_id = raw.get("messageId")
    attributes = raw.get("attributes")
    count = group = None
    if type(attributes) is dict:
        value = attributes.get("ApproximateReceiveCount")
        if value is not None:
            try:
                count = int(value)
            except (TypeError, ValueError):
                count = None
        found = attributes.get("MessageGroupId")
        group = found if type(found) is str else None
    return (message_id if type(message_id) is str else None), count, group


def producer_trace_headers(raw: Any) -> dict[str, str]:
    """Trace propagation headers the producer attached, keyed by their lowercase header name.

    SQS carries W3C context as message attributes (``traceparent``/``tracestate``, as the OTel
    botocore instrumentation writes them) and X-Ray context as the system attribute
    ``AWSTraceHeader`` (returned as ``x-amzn-trace-id``, the header the X-Ray propagator reads).
    """
    headers: dict[str, str] = {}
    if type(raw) is dict:
        # A Lambda event's plain dicts, read without the generic accessor (the same answer: tests/test_sources.py).
        attributes, system = raw.get("messageAttributes"), raw.get("attributes")
        if (attributes is None or type(attributes) is dict) and (system is None or type(system) is dict):
            if attributes:
                for name in ("traceparent", "tracestate"):
                    entry = attributes.get(name)
                    value = entry.get("stringValue") if type(entry) is dict else _get(entry, "stringValue")
                    if isinstance(value, str):
                        headers[name] = value
            xray = system.get("AWSTraceHeader") if system else None
            if isinstance(xray, str):
                headers["x-amzn-trace-id"] = xray
            return headers
    attributes = _get(raw, "messageAttributes")
    if isinstance(attributes, Mapping):
        for name in ("traceparent", "tracestate"):
            value = _get(_get(attributes, name), "stringValue")
            if isinstance(value, str):
                headers[name] = value
    xray = _get(_get(raw, "attributes"), "AWSTraceHeader")
    if isinstance(xray, str):
        headers["x-amzn-trace-id"] = xray
    return headers


def receipt_handle(raw: Any) -> str | None:
    """SQS ``receiptHandle``: what ChangeMessageVisibility needs."""
    value = _get(raw, "receiptHandle")
    return value if isinstance(value, str) else None


def sqs_message_attributes(raw: Any) -> dict[str, dict[str, Any]]:
    """The record's message attributes in the shape SendMessage takes (Lambda delivers them lower-camel,
    binary values base64-encoded). List values, which SQS does not accept on send, are left out."""
    attributes = _get(raw, "messageAttributes")
    converted: dict[str, dict[str, Any]] = {}
    if not isinstance(attributes, Mapping):
        return converted
    for name, value in attributes.items():
        data_type = _get(value, "dataType")
        if not isinstance(data_type, str):
            continue
        text, binary = _get(value, "stringValue"), _get(value, "binaryValue")
        if isinstance(text, str):
            converted[name] = {"DataType": data_type, "StringValue": text}
        elif isinstance(binary, str):
            try:
                converted[name] = {"DataType": data_type, "BinaryValue": base64.b64decode(binary)}
            except ValueError:
                continue
    return converted


def body_text(event_type: EventType, raw: Any) -> str | None:
    """The producer's payload as text, one rule per source: the SQS ``body``; the Kinesis ``data`` and the
    Kafka ``value`` base64-decoded (as they came when they are not base64); for DynamoDB the item as it is
    after the change, ``NewImage`` (``Keys`` for a removal, which has none), as compact JSON."""
    if event_type is EventType.SQS:
        body = _get(raw, "body")
        return body if isinstance(body, str) else None
    if event_type is EventType.DynamoDBStreams:
        change = _get(raw, "dynamodb")
        image = _get(change, "NewImage")
        if image is None:
            image = _get(change, "Keys")
        return json.dumps(image, separators=(",", ":"), default=str) if image is not None else None
    data = _get(_get(raw, "kinesis"), "data") if event_type is EventType.KinesisDataStreams else _get(raw, "value")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", "replace")
    except ValueError:  # not base64 (binascii.Error is a ValueError): the text as it came
        return data
