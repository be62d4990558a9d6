"""The HTTP layer under our OTLP exporters (``middleware/_http_connection.py``): plain HTTP through
our socket client, for our lean exporter (``_otlp_lean``, the default) and for OTel's exporter with its
``OTEL_EXPORTER_OTLP_*`` settings (``_otel_compat``'s transport, when a setting only OTel's follows).

Real exporter, real sockets: the OTLP receiver (tests/otlp_receiver.py) decodes what arrives. Which HTTP
client is imported (none until the first export; ``requests`` only for HTTPS) is checked in fresh
interpreters by tests/test_import_laziness.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loopback_http import LoopbackServer, QuietHandler
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver, closed_endpoint

from observed_batch.breaker import Breaker
from observed_batch.middleware import _otel_export as otel_export
from observed_batch.middleware._otel_compat import otels_span_exporter, otlp_span_exporter
from observed_batch.middleware._otel_export import DeferredSpanExporter, GuardedSpanExporter


def finished_spans(*names: str) -> list[ReadableSpan]:
    provider = TracerProvider(shutdown_on_exit=False)
    tracer = provider.get_tracer("test")
    spans = []
    for name in names:
        span = tracer.start_span(name)
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", running.endpoint)
        yield running


@pytest.fixture(params=[otlp_span_exporter, otels_span_exporter], ids=["lean", "otel"])
def make_exporter(request: pytest.FixtureRequest) -> Callable[[], Any]:
    factory: Callable[[], Any] = request.param
    return factory


class ForgetfulCollector(LoopbackServer):
    """Answers 200 and closes the connection without saying so: the client's kept-alive connection is stale."""

    def __init__(self) -> None:
        self.requests = 0
        self._lock = threading.Lock()
        collector = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with collector._lock:
                    collector.requests += 1
                self._reply(200, b"")
                self.close_connection = True

        super().__init__(Handler, name="forgetful-collector")


def test_spans_reach_the_collector_with_the_exporters_environment_settings(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, make_exporter: Callable[[], Any]
) -> None:
    # GIVEN compression and a header for the OTLP exporter in the environment
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=orders")
    exporter = make_exporter()

    # WHEN spans are exported twice (the second on the kept-alive connection)
    results = [exporter.export(finished_spans("first")), exporter.export(finished_spans("second"))]
    exporter.shutdown()

    # THEN both arrive, gzipped and with the header, as OTel's exporter sends them over any transport
    assert results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
    assert [s.name for s in receiver.wait_for_spans(2)] == ["first", "second"]
    assert receiver.content_types == ["application/x-protobuf"] * 2
    assert [h.get("Content-Encoding") for h in receiver.headers] == ["gzip", "gzip"]
    assert [h.get("x-team") for h in receiver.headers] == ["orders", "orders"]


def test_a_connection_the_collector_closed_is_tried_once_more_on_a_new_one(
    monkeypatch: pytest.MonkeyPatch, make_exporter: Callable[[], Any]
) -> None:
    # GIVEN a collector that drops every connection after answering, without a Connection: close
    with ForgetfulCollector() as collector:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{collector.port}/v1/traces")
        breaker = Breaker("otel")
        exporter = GuardedSpanExporter(make_exporter(), breaker)

        # WHEN three exports follow each other
        results = [exporter.export(finished_spans(f"span-{i}")) for i in range(3)]
        exporter.shutdown()

    # THEN each succeeds on a fresh connection, once, and the breaker stays closed
    assert results == [SpanExportResult.SUCCESS] * 3
    assert collector.requests == 3
    assert not breaker.is_open


def test_a_refused_connection_fails_the_export_at_once_and_opens_the_breaker(
    monkeypatch: pytest.MonkeyPatch, make_exporter: Callable[[], Any]
) -> None:
    # GIVEN an endpoint where nothing listens
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", closed_endpoint())
    breaker = Breaker("otel")
    exporter = GuardedSpanExporter(make_exporter(), breaker)

    # WHEN spans are exported
    result = exporter.export(finished_spans("lost"))
    exporter.shutdown()

    # THEN the export fails without the exporter's retries, the breaker opens and counts the span
    assert result is SpanExportResult.FAILURE
    assert breaker.is_open
    assert breaker.dropped == 1


def test_the_deferred_exporter_is_built_by_the_first_export_only(receiver: OtlpReceiver) -> None:
    # GIVEN a deferred exporter around a factory that counts its calls
    built: list[object] = []

    def factory() -> object:
        built.append(otlp_span_exporter())
        return built[-1]

    exporter = DeferredSpanExporter(factory)  # type: ignore[arg-type]

    # WHEN it is flushed before any export, then exports twice
    flushed = exporter.force_flush()
    before = len(built)
    results = [exporter.export(finished_spans("a")), exporter.export(finished_spans("b"))]
    exporter.shutdown()

    # THEN nothing was built for the flush, one exporter for both exports, and the spans arrived
    assert flushed is True
    assert before == 0
    assert len(built) == 1
    assert results == [SpanExportResult.SUCCESS] * 2
    assert [s.name for s in receiver.wait_for_spans(2)] == ["a", "b"]


def test_the_first_flush_builds_the_exporter_before_its_bounded_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the provider built from OTEL_*, its OTLP exporter factory recording the thread it runs on
    threads: list[str] = []

    def factory() -> InMemorySpanExporter:
        threads.append(threading.current_thread().name)
        return InMemorySpanExporter()

    monkeypatch.setattr(otel_export, "otlp_span_exporter", factory)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", closed_endpoint())
    provider = otel_export.provider_from_env()

    # WHEN it is flushed twice through the Flusher, as tracing does at the end of each invocation
    flusher = otel_export.Flusher(provider.force_flush)
    flushed = [flusher.flush(1000), flusher.flush(1000)]
    provider.shutdown()

    # THEN the exporter was built once, on the flushing thread (its imports are not the collector's time)
    assert flushed == [True, True]
    assert threads == [threading.current_thread().name]
