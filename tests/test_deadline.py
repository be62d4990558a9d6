"""Deadline safety with real backends: the real OTLP/HTTP exporter and the real sentry_sdk against a port
that refuses connections and a server that accepts and never answers (tests/blackhole.py), a Lambda
context whose remaining time follows the wall clock, and the breaker that keeps a dead backend from
costing every invocation.

Timings are asserted only as bounds that a deadline must keep (generous for a busy machine); the
performance figures themselves live in benchmarks/bench_deadline.py.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sentry_sdk
from aws_lambda_powertools.utilities import batch as pt
from blackhole import Blackhole
from loopback_http import unused_port
from opentelemetry import trace
from opentelemetry.util._once import Once
from otlp_receiver import OtlpReceiver
from sentry_receiver import SentryReceiver

import observed_batch as ob
from observed_batch.breaker import Breaker
from observed_batch.middleware import (
    MetricsMiddleware,
    SentryMiddleware,
    TimeoutGuardMiddleware,
    TracingMiddleware,
)
from observed_batch.middleware import _otel_export as otel_export
from observed_batch.middleware._sentry_client import _BREAKERS as sentry_breakers
from observed_batch.middleware._sentry_compat import watch_transport
from observed_batch.testing import FakeLambdaContext, RecordingMiddleware, sqs_event

FAST = 0.2  # backoff of the breakers in these tests, in seconds


# -- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture
def env_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """A fresh process as far as tracing knows: no global provider, no provider built from ``OTEL_*``
    yet, a closed OTLP breaker with a short backoff. Call it with the collector's traces URL."""
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)
    monkeypatch.setattr(trace, "_TRACER_PROVIDER_SET_ONCE", Once())
    monkeypatch.setattr(otel_export, "_ENV_PROVIDER", None)
    monkeypatch.setattr(otel_export, "ENV_BREAKER", Breaker("otel", base_s=FAST, max_s=4 * FAST))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1")  # a hung export ends within the test

    def point_at(endpoint: str) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)

    yield point_at
    created = otel_export._ENV_PROVIDER
    if created is not None:
        created.shutdown()


def init_sentry(dsn: str) -> None:
    sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False)


def every_second_fails(record: Any) -> str:
    if int(json.loads(record.body)["index"]) % 2:
        raise ValueError("planned failure")
    return "ok"


def event(size: int) -> dict[str, Any]:
    return sqs_event(size, body=lambda i: json.dumps({"index": i}))


class Invocations:
    """Runs invocations through one processor (built once, as at cold start), keeping what each cost."""

    def __init__(self, middleware: list[Any], handler: Callable[[Any], Any] = every_second_fails) -> None:
        self.emf: list[dict[str, Any]] = []
        self.recorder = RecordingMiddleware()
        metrics = MetricsMiddleware(sink=lambda line: self.emf.append(json.loads(line)))
        self.processor = ob.BatchProcessor(
            ob.EventType.SQS, middleware=[metrics, self.recorder, *middleware], raise_on_entire_batch_failure=False
        )
        self.handler = handler
        self.durations: list[float] = []
        self.responses: list[Any] = []

    def run(self, batch: dict[str, Any], context: Any = None) -> Any:
        started = time.monotonic()
        response = ob.process_partial_response(batch, self.handler, self.processor, context)
        self.durations.append(time.monotonic() - started)
        self.responses.append(response)
        return response

    def summaries(self) -> list[ob.BatchSummary]:
        return [event[2] for event in self.recorder.events if event[0] == "end"]

    def dropped(self, backend: str) -> list[int]:
        """``TelemetryDropped`` per invocation (0 where the invocation dropped nothing of ``backend``)."""
        return [summary.telemetry_dropped.get(backend, 0) for summary in self.summaries()]

    def outcomes(self, invocation: int) -> dict[str, str]:
        """Message id -> outcome of the records of one invocation that reached the middlewares."""
        outcomes: dict[str, str] = {}
        current = -1
        for event in self.recorder.events:
            if event[0] == "start":
                current += 1
            elif event[0] == "exit" and current == invocation:
                outcomes[event[1].message_id] = str(event[1].outcome)
        return outcomes

    def emf_dropped(self, backend: str) -> int:
        return sum(d.get("TelemetryDropped", 0) for d in self.emf if d.get("backend") == backend)


def powertools(batch: dict[str, Any]) -> Any:
    processor = pt.BatchProcessor(pt.EventType.SQS, raise_on_entire_batch_failure=False)
    return pt.process_partial_response(batch, every_second_fails, processor)


def breaker_lines(caplog: pytest.LogCaptureFixture, backend: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "observed_batch" and r.levelno >= logging.WARNING and f" {backend} backend " in r.getMessage()
    ]


# -- OTLP -------------------------------------------------------------------------------------------------
def test_a_refused_collector_is_detected_in_one_invocation_and_costs_nothing_after(
    env_tracing: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN tracing through the provider built from OTEL_*, pointed at a port that refuses connections
    env_tracing(f"http://127.0.0.1:{unused_port()}/v1/traces")
    runs = Invocations([TracingMiddleware()])
    batch = event(10)

    # WHEN ten invocations run
    for _ in range(10):
        runs.run(batch)

    # THEN every response is Powertools'; the first invocation did not wait out its 2 s flush timeout (the
    # refusal failed the export at once), and the later ones made and dropped their spans without exporting
    assert runs.responses == [powertools(batch)] * 10
    assert runs.durations[0] < 1.0
    assert otel_export.ENV_BREAKER.is_open
    assert runs.dropped("otel")[1:] == [10] * 9
    assert runs.emf_dropped("otel") >= 90
    # AND one warning said so, with no exporter retry or error lines in the logs
    assert len(breaker_lines(caplog, "otel")) == 1
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry") and r.levelno >= logging.WARNING]


def test_a_collector_that_never_answers_costs_one_bounded_flush_then_nothing(
    env_tracing: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN tracing pointed at a server that accepts connections and never answers, flush timeout 300 ms
    with Blackhole() as hole:
        env_tracing(hole.url("/v1/traces"))
        runs = Invocations([TracingMiddleware(flush_timeout_ms=300)])
        batch = event(4)

        # WHEN five invocations run
        for _ in range(5):
            runs.run(batch)

    # THEN the first one waited its flush timeout (not the exporter's), the breaker opened, and the
    # others waited for nothing; outcomes are Powertools'
    assert runs.responses == [powertools(batch)] * 5
    assert 0.25 <= runs.durations[0] < 1.5
    assert max(runs.durations[1:]) < 0.25
    assert runs.dropped("otel")[1:] == [4] * 4
    assert len(breaker_lines(caplog, "otel")) == 1


def test_the_breaker_retries_after_its_backoff_and_closes_when_the_collector_is_back(
    env_tracing: Callable[[str], None], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN tracing pointed at a port where no collector listens yet
    port = unused_port()
    env_tracing(f"http://127.0.0.1:{port}/v1/traces")
    runs = Invocations([TracingMiddleware()])
    runs.run(event(2))
    assert otel_export.ENV_BREAKER.is_open

    # WHEN the collector starts on that port and an invocation runs once the backoff has passed
    with OtlpReceiver(port=port) as receiver:
        time.sleep(FAST * 1.5)
        runs.run(event(3))
        spans = receiver.wait_for_spans(3)

    # THEN that invocation's spans were exported, and one line said the backend is back
    assert len(spans) == 3
    assert not otel_export.ENV_BREAKER.is_open
    assert len(breaker_lines(caplog, "otel")) == 2
    assert "reachable again" in breaker_lines(caplog, "otel")[1]


def test_a_failed_trial_opens_the_breaker_again_for_twice_as_long(env_tracing: Callable[[str], None]) -> None:
    # GIVEN a collector that stays down
    env_tracing(f"http://127.0.0.1:{unused_port()}/v1/traces")
    runs = Invocations([TracingMiddleware()])

    # WHEN an invocation runs, then another after the backoff (a trial)
    runs.run(event(1))
    first = otel_export.ENV_BREAKER.backoff_s
    time.sleep(FAST * 1.5)
    runs.run(event(1))

    # THEN the trial failed and the backoff doubled
    assert otel_export.ENV_BREAKER.is_open
    assert otel_export.ENV_BREAKER.backoff_s == 2 * first


def test_without_an_endpoint_one_warning_at_cold_start_says_where_spans_go(
    env_tracing: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN no tracer provider and no OTEL_EXPORTER_OTLP_* / OTEL_TRACES_EXPORTER
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER"):
        monkeypatch.delenv(variable, raising=False)

    # WHEN the provider is built from the environment
    otel_export.provider_from_env().shutdown()

    # THEN one warning names the collector convention and how to change it
    (line,) = [r.getMessage() for r in caplog.records if r.name == "observed_batch.tracing"]
    assert "http://localhost:4318/v1/traces" in line
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in line


# -- Sentry -------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("clean_sentry")
@pytest.mark.parametrize("backend", ["refused", "never-answers"])
def test_a_dead_sentry_costs_one_invocation_then_its_events_are_counted_not_sent(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN Sentry initialised with a DSN whose server refuses connections or never answers
    with Blackhole() as hole:
        init_sentry(hole.sentry_dsn if backend == "never-answers" else f"http://key@127.0.0.1:{unused_port()}/1")
        runs = Invocations([SentryMiddleware(flush_timeout_ms=300)])
        batch = event(6)

        # WHEN four invocations run, each with three failed records
        for _ in range(4):
            runs.run(batch)
            time.sleep(0.05)  # the SDK's worker reports a refused envelope from its own thread

    # THEN outcomes are Powertools'; the first invocation cost at most its flush timeout, the breaker
    # opened, and later invocations built no event and counted three each
    assert runs.responses == [powertools(batch)] * 4
    assert runs.durations[0] < 1.5
    assert max(runs.durations[2:]) < 0.25
    assert runs.dropped("sentry")[2:] == [3, 3]
    assert len(breaker_lines(caplog, "sentry")) == 1


@pytest.mark.usefixtures("clean_sentry")
def test_an_invocation_without_failures_does_not_flush_sentry() -> None:
    # GIVEN Sentry pointed at a server that never answers
    with Blackhole() as hole:
        init_sentry(hole.sentry_dsn)
        runs = Invocations([SentryMiddleware()], handler=lambda record: "ok")

        # WHEN an invocation has no failed record
        runs.run(event(5))

    # THEN it did not wait for Sentry at all (nothing was captured)
    assert runs.durations[0] < 0.5
    assert hole.accepted == 0


@pytest.mark.usefixtures("clean_sentry")
def test_sentry_recovers_when_the_backoff_has_passed() -> None:
    # GIVEN a Sentry DSN on a port where nothing listens yet, and a short backoff
    port = unused_port()
    init_sentry(f"http://key@127.0.0.1:{port}/1")
    breaker = Breaker("sentry", base_s=FAST)
    sentry_breakers[sentry_sdk.get_client()] = breaker
    watch_transport(sentry_sdk.get_client(), breaker)
    runs = Invocations([SentryMiddleware(flush_timeout_ms=1000)])
    runs.run(event(2))
    _wait(lambda: breaker.is_open)

    # WHEN Sentry comes up on that port and an invocation runs after the backoff
    with SentryReceiver(port=port) as receiver:
        time.sleep(FAST * 1.5)
        runs.run(event(2))
        events = receiver.wait_for_events(1)

    # THEN its failure reached Sentry and the breaker closed
    assert len(events) == 1
    assert not breaker.is_open


def _wait(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


# -- the deadline ---------------------------------------------------------------------------------------------
class WallClockContext(FakeLambdaContext):
    """A Lambda context whose deadline is ``budget_ms`` from now on the wall clock, as in Lambda."""

    def __init__(self, budget_ms: int) -> None:
        super().__init__(budget_ms)
        self.deadline = time.monotonic() + budget_ms / 1000.0


@pytest.mark.usefixtures("clean_sentry")
def test_dead_backends_and_slow_records_never_push_an_invocation_past_its_deadline(
    env_tracing: Callable[[str], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a collector and a Sentry that never answer (default 2 s flush timeouts each, default backoff),
    # the guard on, and ten records of 100 ms, every second one failing, with 3 s left on the Lambda context
    monkeypatch.setattr(otel_export, "ENV_BREAKER", Breaker("otel"))

    def slow(record: Any) -> str:
        time.sleep(0.1)
        return every_second_fails(record)

    with Blackhole() as hole:
        env_tracing(hole.url("/v1/traces"))
        init_sentry(hole.sentry_dsn)
        runs = Invocations(
            [TracingMiddleware(), SentryMiddleware(), TimeoutGuardMiddleware(min_remaining_ms=200)], handler=slow
        )
        batch = event(10)
        ids = [r["messageId"] for r in batch["Records"]]

        # WHEN three invocations run, each with a fresh 3 s deadline
        contexts = []
        for _ in range(3):
            context = WallClockContext(3000)
            contexts.append(context)
            runs.run(batch, context)
            contexts[-1].returned = time.monotonic()  # type: ignore[attr-defined]

    # THEN each returned before its deadline, with every record either succeeded or reported (never both):
    # the records the handler ran exactly as Powertools reports them, the others reported failed
    for invocation, (context, response) in enumerate(zip(contexts, runs.responses, strict=True)):
        assert context.returned < context.deadline  # type: ignore[attr-defined]
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        outcomes = runs.outcomes(invocation)
        succeeded = {i for i, outcome in outcomes.items() if outcome == "success"}
        assert len(failed) == len(set(failed))
        assert set(failed) == set(ids) - succeeded
        for index, message_id in enumerate(ids):
            if outcomes.get(message_id) in ("success", "failure"):
                assert outcomes[message_id] == ("failure" if index % 2 else "success")
        assert runs.summaries()[invocation].total == 10
    # AND the first invocation stopped early to keep time for both flushes (Sentry's once a failure was
    # captured); once both breakers had opened, the guard kept no time for telemetry and all ten ran
    handled = [sum(1 for o in runs.outcomes(i).values() if o != "skipped") for i in range(3)]
    assert 0 < handled[0] < 10
    assert handled[1:] == [10, 10]
    assert otel_export.ENV_BREAKER.is_open
