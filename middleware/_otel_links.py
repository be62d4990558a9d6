"""Producer links and provider shortcuts (sampling, inline export) of the OTel backend of ``tracing``.

Producer contexts found in a record (W3C ``traceparent`` / ``tracestate`` message attributes, X-Ray
``AWSTraceHeader``) become span **links**, not parents: a batch mixes messages from many traces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import SpanLimits
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, StaticSampler, TraceIdRatioBased
from opentelemetry.trace import Link, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from observed_batch.sources import producer_trace_headers

from ._otel_compat import parent_based_delegate, span_limits, span_processors

__all__ = [
    "LINK_CACHE_LIMIT",
    "LinkCache",
    "batch_links",
    "exports_inline",
    "max_links",
    "never_samples",
    "producer_contexts",
]

LINK_CACHE_LIMIT = 1024
_W3C = TraceContextTextMapPropagator()


class _Getter(Getter[Mapping[str, str]]):
    """The propagators' header reads on our carriers, which hold one string per header: the default getter's
    answer (``[value]``) without its iterable check (an ABC ``isinstance`` per header read)."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _Getter()


@cache
def _xray_extract() -> Callable[[str, None, _Getter], otel_context.Context]:
    """The X-Ray propagator's extraction, imported with the first ``AWSTraceHeader`` (cold start)."""
    from opentelemetry.propagators.aws.aws_xray_propagator import TRACE_HEADER_KEY, AwsXRayPropagator

    extract = AwsXRayPropagator().extract
    return lambda header, context, getter: extract({TRACE_HEADER_KEY: header}, context, getter)


class LinkCache:
    """Links by producer headers, for one invocation."""

    __slots__ = ("_link_cache", "max_links")

    def __init__(self) -> None:
        self.max_links: int | None = None
        self._link_cache: dict[tuple[str | None, ...], tuple[tuple[Link, ...], int]] = {}

    def links(self, headers: Mapping[str, str]) -> tuple[tuple[Link, ...], int]:
        """Links to the producer contexts in a record's headers, capped, and how many were cut.

        Messages sent in one ``SendMessageBatch`` carry the same context, hence the cache.
        """
        if not headers:
            return (), 0
        key = (headers.get("traceparent"), headers.get("tracestate"), headers.get("x-amzn-trace-id"))
        cached = self._link_cache.get(key)
        if cached is None:
            contexts, cap = producer_contexts(headers), self.max_links
            if cap is None or len(contexts) <= cap:
                cached = tuple(map(Link, contexts)), 0
            else:
                cached = tuple(map(Link, contexts[:cap])), len(contexts) - cap
            if len(self._link_cache) < LINK_CACHE_LIMIT:
                self._link_cache[key] = cached
        return cached


def exports_inline(provider: object) -> bool:
    """Whether every span processor of an SDK provider exports as each span ends (``SimpleSpanProcessor``):
    then nothing is ever queued and a flush would only cost a thread hand-off per invocation. Anything
    else (a batch processor, a provider with a ``force_flush`` of its own, processors that cannot be
    seen) is flushed as before."""
    if getattr(type(provider), "force_flush", None) is not SdkTracerProvider.force_flush:
        return False
    processors = span_processors(provider)
    if not processors:
        return False
    return all(type(processor) is SimpleSpanProcessor for processor in processors)


def never_samples(tracer: trace.Tracer, parent: SpanContext) -> bool:
    """True when the tracer's sampler is certain to drop every child of ``parent``: then records
    skip span creation entirely (a non-recording span would cost more than Powertools itself)."""
    if isinstance(tracer, trace.NoOpTracer):
        return True
    sampler = getattr(tracer, "sampler", None)
    return isinstance(sampler, Sampler) and _drops_all(sampler, parent, 0)


def _drops_all(sampler: Sampler, parent: SpanContext, depth: int) -> bool:
    if isinstance(sampler, StaticSampler) and sampler.get_description() == "AlwaysOffSampler":
        return True
    if isinstance(sampler, ParentBased) and depth < 4:
        flags = parent.trace_flags
        delegate = parent_based_delegate(sampler, parent.is_valid, parent.is_remote, flags.sampled)
        return isinstance(delegate, Sampler) and _drops_all(delegate, parent, depth + 1)
    if isinstance(sampler, TraceIdRatioBased):
        return sampler.rate <= 0
    return False  # a sampler we cannot reason about: ask it per span


def max_links(tracer: trace.Tracer) -> int | None:
    limits = span_limits(tracer)
    if not isinstance(limits, SpanLimits):
        limits = SpanLimits()
    return limits.max_links


def producer_contexts(headers: Mapping[str, str]) -> list[SpanContext]:
    """Valid producer span contexts from W3C and X-Ray headers; malformed headers are ignored."""
    contexts: list[SpanContext] = []
    if "traceparent" in headers:
        found = _extracted(_W3C.extract, headers)
        if found is not None:
            contexts.append(found)
    xray = headers.get("x-amzn-trace-id")
    if xray:
        found = _extracted(_xray_extract(), xray)
        # The same context under both headers is linked once.
        known = contexts[0] if contexts else None
        if found is not None and (known is None or (known.trace_id, known.span_id) != (found.trace_id, found.span_id)):
            contexts.append(found)
    return contexts


def _extracted(extract: Callable[[Any, None, _Getter], otel_context.Context], carrier: Any) -> SpanContext | None:
    try:
        found = trace.get_current_span(extract(carrier, None, _GETTER)).get_span_context()
    except Exception:
        return None
    return found if found.is_valid else None


def batch_links(records: Sequence[Any], max_links: int | None) -> tuple[list[Link], int]:
    """Links to every distinct producer of the batch, up to the link limit.

    Once the limit is reached, the remaining headers are not parsed: distinct header values are
    counted as dropped links instead, which keeps a 10,000-record batch cheap.
    """
    links: list[Link] = []
    linked: set[tuple[int, int]] = set()
    unexamined: set[tuple[str | None, ...]] = set()
    seen: set[tuple[str | None, ...]] = set()
    for raw in records:
        headers = producer_trace_headers(raw)
        if not headers:
            continue
        key = (headers.get("traceparent"), headers.get("tracestate"), headers.get("x-amzn-trace-id"))
        if key in seen:
            continue
        seen.add(key)
        if max_links is not None and len(links) >= max_links:
            unexamined.add(key)
            continue
        for found in producer_contexts(headers):
            if (found.trace_id, found.span_id) in linked:
                continue
            if max_links is not None and len(links) >= max_links:
                unexamined.add(key)
                break
            linked.add((found.trace_id, found.span_id))
            links.append(Link(found))
    return links, len(unexamined)
