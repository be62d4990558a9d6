"""Our hand-written OTLP encoder (``middleware/_otlp_encode.py``) against OTel's, differentially.

Spans are made by the real SDK (several resources and scopes, nested and remote parents, attributes of
every kind OTel encodes, events, links, status, kinds, span limits that drop), then encoded by both:
our bytes must parse, with the installed ``opentelemetry-proto``, into the message OTel builds, and be
the very bytes it serializes.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as otel_encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from observed_batch.middleware import _otel_compat
from observed_batch.middleware._otlp_encode import encode_spans

_INT64 = 1 << 63
characters = st.characters(exclude_categories=["Cs"])  # lone surrogates are no UTF-8
text = st.text(characters, max_size=8)
keys = st.text(characters, min_size=1, max_size=6)
scalars = st.one_of(
    text,
    st.booleans(),
    st.integers(-_INT64, _INT64 - 1),
    st.floats(allow_nan=False),
)
values = st.one_of(
    scalars,
    st.lists(text, max_size=3),
    st.lists(st.booleans(), max_size=3),
    st.lists(st.integers(-_INT64, _INT64 - 1), max_size=3),
    st.lists(st.floats(allow_nan=False), max_size=3),
)
attributes = st.dictionaries(keys, values, max_size=4)
trace_states = st.lists(
    st.tuples(st.from_regex(r"[a-z][a-z0-9_\-]{0,4}", fullmatch=True), st.from_regex(r"[a-z0-9]{1,4}", fullmatch=True)),
    max_size=2,
    unique_by=lambda pair: pair[0],
).map(TraceState)
contexts = st.builds(
    SpanContext,
    trace_id=st.integers(1, (1 << 128) - 1),
    span_id=st.integers(1, (1 << 64) - 1),
    is_remote=st.booleans(),
    trace_flags=st.sampled_from([TraceFlags(0), TraceFlags(1)]),
    trace_state=trace_states,
)
times = st.integers(0, (1 << 64) - 1)
statuses = st.one_of(
    st.none(),
    st.builds(Status, st.sampled_from(list(StatusCode)), st.one_of(st.none(), text)),
)


@st.composite
def span_specs(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "name": draw(text),
        "kind": draw(st.sampled_from(list(SpanKind))),
        "attributes": draw(attributes),
        "links": draw(st.lists(st.builds(Link, contexts, st.one_of(st.none(), attributes)), max_size=3)),
        "events": draw(st.lists(st.tuples(text, attributes, times), max_size=3)),
        "status": draw(statuses),
        "start": draw(times),
        "end": draw(times),
        "parent": draw(st.one_of(st.none(), st.just("previous"), contexts)),
        "provider": draw(st.integers(0, 2)),
        "scope": draw(st.integers(0, 2)),
    }


_RESOURCES = [
    Resource({"service.name": "orders", "deployment": ["a", "b"]}, schema_url="https://example.com/r"),
    Resource({"service.name": "billing", "replicas": 3, "ratio": 0.5, "on": True}),
    Resource({"service.name": "orders", "deployment": ["a", "b"]}, schema_url="https://example.com/r"),  # == first
]
_SCOPES = [
    ("observed_batch", "1.2.3", "https://opentelemetry.io/schemas/1.26.0", {"scope.kind": "batch"}),
    ("other", None, None, None),
    ("", None, None, None),
]


def _make_spans(specs: list[dict[str, Any]]) -> list[ReadableSpan]:
    limits = SpanLimits(max_attributes=3, max_events=2, max_links=2, max_event_attributes=2, max_link_attributes=2)
    providers = [TracerProvider(resource=r, span_limits=limits, shutdown_on_exit=False) for r in _RESOURCES]
    finished: list[ReadableSpan] = []
    previous: ReadableSpan | None = None
    for spec in specs:
        name, version, schema_url, scope_attributes = _SCOPES[spec["scope"]]
        tracer = providers[spec["provider"]].get_tracer(
            name, version, schema_url=schema_url, attributes=scope_attributes
        )
        parent = spec["parent"]
        if parent == "previous":
            context = trace.set_span_in_context(previous) if previous is not None else None  # type: ignore[arg-type]
        elif parent is not None:
            context = trace.set_span_in_context(NonRecordingSpan(parent))
        else:
            context = None
        span = tracer.start_span(
            spec["name"],
            context=context,
            kind=spec["kind"],
            attributes=spec["attributes"],
            links=spec["links"],
            start_time=spec["start"],
        )
        for event_name, event_attributes, timestamp in spec["events"]:
            span.add_event(event_name, event_attributes, timestamp)
        if spec["status"] is not None:
            span.set_status(spec["status"])
        span.end(end_time=spec["end"])
        if isinstance(span, ReadableSpan):  # an unsampled parent makes a non-recording one: never exported
            finished.append(span)
            previous = span
    return finished


@pytest.mark.skipif(
    not _otel_compat.lean_reproduces(_otel_compat.exporter_user_agent() or ""),
    reason="our encoder stands in for opentelemetry-exporter-otlp-proto-http 1.45 and newer (1.26 encodes otherwise)",
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(span_specs(), max_size=5))
def test_our_bytes_are_the_message_otel_encodes(specs: list[dict[str, Any]]) -> None:
    # GIVEN spans made by the SDK, across resources (two of them equal) and scopes
    spans = _make_spans(specs)

    # WHEN both encoders encode them
    ours = encode_spans(spans)
    theirs = otel_encode_spans(spans)

    # THEN ours parses into OTel's message, and is its very serialization
    assert ExportTraceServiceRequest.FromString(ours) == theirs
    assert ours == theirs.SerializePartialToString()


@pytest.mark.parametrize(
    "value",
    [1 << 63, -(1 << 63) - 1, [1, 1 << 64], float("nan"), [float("inf"), float("-inf"), -0.0]],
    ids=["int64 overflow", "int64 underflow", "overflow in a sequence", "nan", "infinities and -0"],
)
def test_values_at_the_edges_are_encoded_or_left_out_as_otel_does(value: Any, caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a span with an attribute at the edge of what protobuf can hold, beside a plain one
    provider = TracerProvider(shutdown_on_exit=False)
    span = provider.get_tracer("edge").start_span("edge", attributes={"edge": value, "plain": "kept"})
    span.end()
    assert isinstance(span, ReadableSpan)

    # WHEN both encoders encode it
    with caplog.at_level(logging.ERROR):
        ours = encode_spans([span])
        theirs = otel_encode_spans([span]).SerializePartialToString()

    # THEN the bytes are equal: a value protobuf cannot hold is left out (and logged), the span is kept
    assert ours == theirs
    assert b"kept" in ours
