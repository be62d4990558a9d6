"""Finished SDK spans as an OTLP ``ExportTraceServiceRequest``, in protobuf wire format, without protobuf.

The same message OTel's ``encode_spans(spans).SerializePartialToString()`` writes
(``opentelemetry.exporter.otlp.proto.common._internal.trace_encoder``), byte for byte: spans grouped by
resource, then by instrumentation scope, in first-seen order; fields in field-number order; proto3 scalars
left out when zero or empty, sub-messages OTel sets (status, scope, resource, each attribute's value)
written even when empty; an attribute whose value cannot be encoded is left out and logged, as OTel does.
``tests/test_otlp_encode.py`` checks it against OTel's encoder with hypothesis. Importing protobuf and
the generated ``*_pb2`` modules is most of what OTel's exporter costs a cold start; this costs none.

Field numbers: ``opentelemetry/proto/trace/v1/trace.proto``, ``common/v1/common.proto``,
``resource/v1/resource.proto``.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind

__all__ = ["encode_spans"]

logger = logging.getLogger("observed_batch.tracing")

# Wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. A tag is (field << 3) | wire type.
_LEN, _FIXED64, _FIXED32, _VARINT = 2, 1, 5, 0

#: SDK span kind -> ``Span.SpanKind`` (the proto's values are the SDK's plus one: 0 is UNSPECIFIED).
_KIND = {
    SpanKind.INTERNAL: 1,
    SpanKind.SERVER: 2,
    SpanKind.CLIENT: 3,
    SpanKind.PRODUCER: 4,
    SpanKind.CONSUMER: 5,
}
#: ``SpanFlags``: whether the parent (or linked) context is remote is known, and whether it is.
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
_INT64 = 1 << 63
_UINT64_MASK = (1 << 64) - 1
_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _field(field: int, payload: bytes) -> bytes:
    """A length-delimited field: bytes, string or sub-message."""
    return _tag(field, _LEN) + _varint(len(payload)) + payload


def _string(field: int, value: str | None) -> bytes:
    return _field(field, value.encode()) if value else b""


def _uint(field: int, value: int | None) -> bytes:
    return _tag(field, _VARINT) + _varint(value) if value else b""


def _fixed64(field: int, value: int | None) -> bytes:
    return _tag(field, _FIXED64) + _pack_fixed64(value) if value else b""


def _fixed32(field: int, value: int) -> bytes:
    return _tag(field, _FIXED32) + _pack_fixed32(value) if value else b""


def _any_value(value: Any) -> bytes:
    """An ``AnyValue``: a oneof, so a set member is written even when it is zero or empty."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _tag(2, _VARINT) + (b"\x01" if value else b"\x00")
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"Value out of range: {value}")
        return _tag(3, _VARINT) + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return _tag(4, _FIXED64) + _pack_double(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any) -> bytes:
    return _string(1, key) + _field(2, _any_value(value))


def _attributes(field: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        try:
            out.append(_field(field, _key_value(key, value)))
        except Exception as error:  # as OTel's encoder: the attribute is lost, not the span
            logger.exception("Failed to encode key %s: %s", key, error)
    return b"".join(out)


def _flags(context: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if context is not None and context.is_remote else _HAS_IS_REMOTE


def _span(span: ReadableSpan) -> bytes:
    context = span.get_span_context()
    assert context is not None  # a finished SDK span always has one
    parent = span.parent
    trace_state = ",".join(f"{key}={value}" for key, value in context.trace_state.items())
    status = span.status
    parts = [
        _field(1, context.trace_id.to_bytes(16, "big")),
        _field(2, context.span_id.to_bytes(8, "big")),
        _string(3, trace_state),
        _field(4, parent.span_id.to_bytes(8, "big")) if parent else b"",
        _string(5, span.name),
        _uint(6, _KIND[span.kind]),
        _fixed64(7, span.start_time),
        _fixed64(8, span.end_time),
        _attributes(9, span.attributes),
        _uint(10, span.dropped_attributes),
    ]
    for event in span.events:
        parts.append(
            _field(
                11,
                _fixed64(1, event.timestamp)
                + _string(2, event.name)
                + _attributes(3, event.attributes)
                + _uint(4, event.dropped_attributes),
            )
        )
    parts.append(_uint(12, span.dropped_events))
    for link in span.links:
        parts.append(
            _field(
                13,
                _field(1, link.context.trace_id.to_bytes(16, "big"))
                + _field(2, link.context.span_id.to_bytes(8, "big"))
                + _attributes(4, link.attributes)
                + _uint(5, link.dropped_attributes)
                + _fixed32(6, _flags(link.context)),
            )
        )
    parts.append(_uint(14, span.dropped_links))
    if status is not None:
        parts.append(_field(15, _string(2, status.description) + _uint(3, status.status_code.value)))
    parts.append(_fixed32(16, _flags(parent)))
    return b"".join(parts)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialized ``ExportTraceServiceRequest`` carrying ``spans``."""
    grouped: dict[Any, dict[Any, list[bytes]]] = {}
    for span in spans:
        encoded = _span(span)
        grouped.setdefault(span.resource, {}).setdefault(span.instrumentation_scope or None, []).append(encoded)
    out = []
    for resource, scopes in grouped.items():
        scope_spans = []
        for scope, encoded_spans in scopes.items():
            scope_message = b""
            if scope is not None:
                scope_message = _string(1, scope.name) + _string(2, scope.version) + _attributes(3, scope.attributes)
            scope_spans.append(
                _field(
                    2,
                    _field(1, scope_message)
                    + b"".join(_field(2, s) for s in encoded_spans)
                    + _string(3, scope.schema_url if scope is not None else None),
                )
            )
        resource_spans = (
            _field(1, _attributes(1, resource.attributes)) + b"".join(scope_spans) + _string(3, resource.schema_url)
        )
        out.append(_field(1, resource_spans))
    return b"".join(out)
