"""An OTLP/HTTP trace endpoint on 127.0.0.1 for tests: the real OTLP exporter sends, this decodes.

    with OtlpReceiver() as receiver:
        exporter = OTLPSpanExporter(endpoint=receiver.endpoint)
        ...
        spans = receiver.wait_for_spans(3)

Accepts ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest`` (gzip or uncompressed),
decodes it with ``opentelemetry-proto`` and keeps every span with its resource attributes.
``closed_endpoint()`` names a port where nothing listens (connections are refused at once).
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass, field
from typing import Any

from loopback_http import LoopbackServer, QuietHandler, unused_port
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpReceiver", "ReceivedSpan", "closed_endpoint"]

TRACES_PATH = "/v1/traces"


@dataclass
class ReceivedSpan:
    """One decoded span; ids as ints, attributes as plain Python values."""

    name: str
    kind: int
    trace_id: int
    span_id: int
    parent_span_id: int | None
    status_code: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    links: list[tuple[int, int]] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def _decode(payload: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(payload)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        kind=span.kind,
                        trace_id=int.from_bytes(span.trace_id, "big"),
                        span_id=int.from_bytes(span.span_id, "big"),
                        parent_span_id=int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else None,
                        status_code=span.status.code,
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        links=[
                            (int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"))
                            for link in span.links
                        ],
                        events=[(event.name, _attributes(event.attributes)) for event in span.events],
                    )
                )
    return spans


class OtlpReceiver(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 (random port) that decodes the trace exports it receives."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self.content_types: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._condition = threading.Condition()
        receiver = self

        class Handler(QuietHandler):
            content_type = "application/x-protobuf"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?", 1)[0] != TRACES_PATH:
                    self._reply(404, b"")
                    return
                if self.headers.get("Content-Encoding", "").strip().lower() == "gzip":
                    body = gzip.decompress(body)
                try:
                    spans = _decode(body)
                except Exception:
                    self._reply(400, b"")
                    return
                with receiver._condition:
                    receiver.requests += 1
                    receiver.content_types.append(self.headers.get("Content-Type", ""))
                    receiver.headers.append(dict(self.headers.items()))
                    receiver.spans.extend(spans)
                    receiver._condition.notify_all()
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

        super().__init__(Handler, name="otlp-receiver", port=port)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """The full traces URL, as ``OTLPSpanExporter(endpoint=...)`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` want."""
        return self.base_url + TRACES_PATH

    def wait_for_spans(self, count: int, timeout: float = 5.0) -> list[ReceivedSpan]:
        """Wait until at least ``count`` spans arrived (or ``timeout`` seconds passed); return all."""
        with self._condition:
            self._condition.wait_for(lambda: len(self.spans) >= count, timeout)
            return list(self.spans)


def closed_endpoint() -> str:
    """A traces URL whose port has no listener (bound then closed)."""
    return f"http://127.0.0.1:{unused_port()}{TRACES_PATH}"
