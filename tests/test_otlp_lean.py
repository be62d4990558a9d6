"""Our lean OTLP/HTTP exporter (``middleware/_otlp_lean.py``): where it stands in for OTel's, it sends what
OTel's sends.

Real exporters, real sockets: a recording collector on 127.0.0.1 keeps each request's path, headers and
(decompressed) body, and both exporters send the same SDK spans under the same ``OTEL_*`` environment.
Which modules the lean path imports is checked in fresh interpreters by tests/test_import_laziness.py.
"""

from __future__ import annotations

import gzip
import os
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loopback_http import LoopbackServer, QuietHandler
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_receiver import OtlpReceiver

from observed_batch.breaker import Breaker
from observed_batch.middleware import _otel_compat
from observed_batch.middleware._otel_export import GuardedSpanExporter
from observed_batch.middleware._otlp_lean import LeanSpanExporter, lean_settings


class RecordingCollector(LoopbackServer):
    """Keeps every request as (path, headers in order, decompressed body); answers with ``statuses`` in turn
    (then 200), each with ``retry_after`` as its ``Retry-After`` header when given."""

    def __init__(self, statuses: tuple[int, ...] = (), retry_after: str | None = None) -> None:
        self.requests: list[tuple[str, list[tuple[str, str]], bytes]] = []
        self._statuses = list(statuses)
        self._lock = threading.Lock()
        collector = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body) if encoding else body
                with collector._lock:
                    collector.requests.append((self.path, list(self.headers.items()), body))
                    status = collector._statuses.pop(0) if collector._statuses else 200
                self.send_response(status)
                if status != 200 and retry_after is not None:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler, name="recording-collector")


def finished_spans(*names: str) -> list[ReadableSpan]:
    provider = TracerProvider(resource=Resource.create({"service.name": "orders"}), shutdown_on_exit=False)
    tracer = provider.get_tracer("test", "1.0")
    spans = []
    for name in names:
        span = tracer.start_span(name, attributes={"messaging.system": "aws_sqs", "index": 3})
        span.add_event("retry", {"attempt": 2})
        span.end()
        spans.append(span)
    return spans  # type: ignore[return-value]


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with the OTLP exporter's variables replaced by ``variables`` inside the block."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("OTEL_") or n.lower() in ("http_proxy", "all_proxy")]:
        del os.environ[name]
    os.environ.update(variables)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def otels_exporter() -> Any:
    """OTel's exporter as ``_otel_compat`` builds it for plain HTTP when the lean one is not equivalent."""
    return _otel_compat.otels_span_exporter()


#: Whether the installed OTel exporter is one the lean exporter stands in for (``_otel_compat.LEAN_FROM`` on).
LEAN_RELEASE = _otel_compat.lean_reproduces(_otel_compat.exporter_user_agent() or "")
needs_lean_release = pytest.mark.skipif(
    not LEAN_RELEASE,
    reason="the lean exporter stands in for opentelemetry-exporter-otlp-proto-http 1.45 and newer only",
)


def lean_exporter() -> LeanSpanExporter:
    """The lean exporter from the ``OTEL_*`` environment, whatever OTel exporter release is installed."""
    settings = lean_settings(_otel_compat.exporter_user_agent() or "OTel-OTLP-Exporter-Python/1.45.2")
    assert settings is not None
    return LeanSpanExporter(settings)


def guarded_export(
    collector: RecordingCollector, name: str, variables: dict[str, str]
) -> tuple[SpanExportResult, Breaker]:
    """One span exported to ``collector`` by the lean exporter behind its breaker, built from ``variables``
    plus the collector's endpoint; the result and the breaker."""
    with environment({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}", **variables}):
        breaker = Breaker("otel")
        exporter = GuardedSpanExporter(lean_exporter(), breaker)
    result = exporter.export(finished_spans(name))
    exporter.shutdown()
    return result, breaker


def _client(exporter: Any) -> Any:
    """Where OTel's exporter keeps its timeout and headers: its HTTP client (newer releases), else itself."""
    return getattr(exporter, "_client", exporter)


header_names = st.sampled_from(["x-team", "Authorization", "x-api-key"])
header_values = st.sampled_from(["orders", "Bearer%20abc", "a b", "k=v=w", "caf%C3%A9"])
env_headers = st.lists(st.tuples(header_names, header_values), max_size=3).map(
    lambda pairs: ",".join(f"{name}={value}" for name, value in pairs)
)


@st.composite
def exporter_environments(draw: st.DrawFn, base_url: str) -> dict[str, str]:
    variables: dict[str, str] = {}
    endpoint = draw(st.sampled_from(["traces", "base", "base/", "both"]))
    if endpoint in ("traces", "both"):
        variables["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = base_url + draw(st.sampled_from(["/v1/traces", "/x?y=1"]))
    if endpoint != "traces":
        variables["OTEL_EXPORTER_OTLP_ENDPOINT"] = base_url + ("/" if endpoint == "base/" else "")
    for suffix, strategy in (
        ("HEADERS", env_headers),
        ("COMPRESSION", st.sampled_from(["gzip", " GZIP ", "deflate", "none", ""])),
        ("TIMEOUT", st.sampled_from(["5", "2.5", ""])),
    ):
        for prefix in ("OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"):
            if draw(st.booleans()):
                variables[prefix + suffix] = draw(strategy)
    return variables


@needs_lean_release
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_lean_exporter_sends_what_otels_sends(data: st.DataObject) -> None:
    with RecordingCollector() as collector:
        # GIVEN an OTLP environment for a plain-HTTP collector (endpoints, headers, compression, timeout)
        variables = data.draw(exporter_environments(f"http://127.0.0.1:{collector.port}"))
        spans = finished_spans("a", "b")
        with environment(variables):
            lean = _otel_compat.otlp_span_exporter()
            reference = otels_exporter()
            timeouts = (lean.settings.timeout_s, _client(reference)._timeout)

        # WHEN each exports the same spans
        results = [lean.export(spans), reference.export(spans)]
        lean.shutdown()
        reference.shutdown()

    # THEN ours was chosen, and both requests are the same: path, headers (in order) and the protobuf body
    assert isinstance(lean, LeanSpanExporter)
    assert results == [SpanExportResult.SUCCESS] * 2
    assert collector.requests[0] == collector.requests[1]
    assert timeouts[0] == timeouts[1]


@pytest.mark.parametrize(
    "variables",
    [
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example/v1/traces"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:secret@127.0.0.1:4318"},
        {"HTTP_PROXY": "http://proxy:3128"},
        {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/etc/ssl/ca.pem"},
        {"OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY": "/etc/ssl/key.pem"},
        {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "mine"},
        {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "brotli"},
        {"OTEL_EXPORTER_OTLP_TIMEOUT": "ten"},
        {"OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": "true"},
    ],
    ids=lambda variables: next(iter(variables)),
)
def test_a_setting_the_lean_exporter_does_not_follow_keeps_otels(variables: dict[str, str]) -> None:
    # GIVEN an OTLP environment where OTel's exporter would send differently from ours
    with environment(variables):
        # WHEN the exporter is built
        try:
            exporter = _otel_compat.otlp_span_exporter()
        except RuntimeError:  # the credential provider does not exist: OTel's exporter says so
            exporter = None
        except ValueError:  # exporters before 1.45 refuse an unknown compression or timeout
            exporter = None

    # THEN it is OTel's
    assert not isinstance(exporter, LeanSpanExporter)
    if exporter is not None:
        exporter.shutdown()


@needs_lean_release
def test_spans_reach_the_collector_over_the_lean_path_with_headers_and_gzip() -> None:
    with OtlpReceiver() as receiver:
        # GIVEN the exporter built from OTEL_* for a plain-HTTP collector, with gzip and a header
        variables = {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.endpoint,
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=orders",
        }
        with environment(variables):
            exporter = GuardedSpanExporter(_otel_compat.otlp_span_exporter(), Breaker("otel"))

        # WHEN spans are exported twice (the second on the kept-alive connection)
        results = [exporter.export(finished_spans("first")), exporter.export(finished_spans("second"))]
        exporter.shutdown()
        received = receiver.wait_for_spans(2)

    # THEN the collector decodes both with OTel's protobuf classes, with the header, gzipped, from OTel's agent
    assert isinstance(exporter.exporter, LeanSpanExporter)
    assert results == [SpanExportResult.SUCCESS] * 2
    assert [s.name for s in received] == ["first", "second"]
    assert received[0].attributes == {"messaging.system": "aws_sqs", "index": 3}
    assert received[0].resource["service.name"] == "orders"
    assert received[0].events == [("retry", {"attempt": 2})]
    assert [h.get("x-team") for h in receiver.headers] == ["orders", "orders"]
    assert [h.get("Content-Encoding") for h in receiver.headers] == ["gzip", "gzip"]
    assert {h.get("user-agent") for h in receiver.headers} == {_client(otels_exporter())._headers["user-agent"]}


@pytest.mark.parametrize("retry_after", ["0", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["seconds", "past date"])
def test_a_throttled_export_is_retried_after_the_collectors_retry_after(retry_after: str) -> None:
    # GIVEN a collector that answers 503 then 429, each with a Retry-After that is due, then 200
    with RecordingCollector(statuses=(503, 429), retry_after=retry_after) as collector:
        # WHEN spans are exported
        result, breaker = guarded_export(collector, "throttled", {})

    # THEN they were sent three times, as OTel's exporter retries, and the export succeeded
    assert result is SpanExportResult.SUCCESS
    assert len(collector.requests) == 3
    assert not breaker.is_open


def test_a_retryable_answer_without_time_left_fails_the_export() -> None:
    # GIVEN a collector that answers 503 asking for a minute, and a timeout of one second
    with RecordingCollector(statuses=(503,), retry_after="60") as collector:
        # WHEN spans are exported
        result, breaker = guarded_export(collector, "late", {"OTEL_EXPORTER_OTLP_TIMEOUT": "1"})

    # THEN it gives up at once (the wait would pass the timeout), the breaker opens and says why
    assert result is SpanExportResult.FAILURE
    assert len(collector.requests) == 1
    assert breaker.is_open
    assert breaker.dropped == 1


def test_a_rejected_export_is_not_retried() -> None:
    # GIVEN a collector that rejects the request
    with RecordingCollector(statuses=(400,)) as collector:
        with environment({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}"}):
            exporter = lean_exporter()

        # WHEN spans are exported, and again after shutdown
        results = [exporter.export(finished_spans("rejected"))]
        exporter.shutdown()
        results.append(exporter.export(finished_spans("after shutdown")))

    # THEN the first fails after one request, the second without any
    assert results == [SpanExportResult.FAILURE] * 2
    assert len(collector.requests) == 1


def test_the_lean_exporter_stands_in_only_for_the_exporter_releases_it_reproduces() -> None:
    # GIVEN the user agents of OTel exporter releases before, at and after the first one it reproduces
    # WHEN each is checked
    # THEN only 1.45 and newer get the lean exporter (older ones parse OTEL_* differently: OTel's own sends)
    agents = ["1.26.0", "1.44.0", "1.45.0", "1.45.2", "1.50.0", "2.0.0"]
    assert [_otel_compat.lean_reproduces(f"OTel-OTLP-Exporter-Python/{v}") for v in agents] == [False] * 2 + [True] * 4
    assert not _otel_compat.lean_reproduces("OTel-OTLP-Exporter-Python/unknown")
