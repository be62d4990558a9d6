"""Privacy by default, tested on every sink: EMF and log lines, OTel spans (in memory and through the real
OTLP/HTTP exporter to a receiver on 127.0.0.1), Sentry envelopes (real sentry_sdk to a loopback receiver,
breadcrumbs and frames included). Secrets are generated; the test fails if one leaves by default, or if a
configured redaction lets one through."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
import structlog
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver
from pydantic import BaseModel, Json
from sentry_receiver import SentryReceiver
from sentry_sdk.integrations.logging import LoggingIntegration

import observed_batch as ob
from observed_batch.middleware import LoggingMiddleware, MetricsMiddleware, SentryMiddleware, TracingMiddleware
from observed_batch.testing import sqs_record

app_logger = logging.getLogger("privacy_test_app")


class Order(BaseModel):
    order_id: str
    amount: int


class OrderRecord(SqsRecordModel):
    body: Json[Order]  # type: ignore[assignment]


@pytest.fixture(scope="module")
def sinks() -> Iterator[dict[str, Any]]:
    """One OTLP receiver and one Sentry receiver for the module (hypothesis reuses them)."""
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        yield {"otlp": otlp, "sentry": sentry}


@pytest.fixture(autouse=True)
def _sentry_state(clean_sentry: None) -> None:
    """Every test here starts and ends without a Sentry client (see conftest.clean_sentry)."""


class Captured:
    """Every sink of one run, as text."""

    def __init__(self, sinks: dict[str, Any], config: ob.Config | None = None, model: Any = None) -> None:
        self.otlp, self.sentry = sinks["otlp"], sinks["sentry"]
        self.emf: list[str] = []
        self.logs = io.StringIO()
        self.memory = InMemorySpanExporter()
        self.exporter = OTLPSpanExporter(endpoint=self.otlp.endpoint)
        self.provider = TracerProvider(shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.spans_before = len(self.otlp.spans)
        self.envelopes_before = len(self.sentry.raw_bodies())
        sentry_sdk.init(
            dsn=self.sentry.dsn,
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[LoggingIntegration(level=logging.INFO, event_level=None)],
        )
        self.processor = ob.BatchProcessor(
            ob.EventType.SQS,
            model=model,
            raise_on_entire_batch_failure=False,
            config=config,
            middleware=[
                MetricsMiddleware(sink=self.emf.append),
                TracingMiddleware(tracer_provider=self.provider),
                SentryMiddleware(),
                LoggingMiddleware(logger=structlog.wrap_logger(structlog.PrintLogger(self.logs))),
            ],
        )

    def text(self) -> str:
        sentry_sdk.flush(timeout=5)
        otlp_spans = self.otlp.spans[self.spans_before :]
        envelopes = self.sentry.raw_bodies()[self.envelopes_before :]
        memory = [(s.attributes, [(e.name, e.attributes) for e in s.events]) for s in self.memory.get_finished_spans()]
        return "\n".join(
            [
                *self.emf,
                self.logs.getvalue(),
                repr(memory),
                repr(otlp_spans),
                *(body.decode("utf-8", "replace") for body in envelopes),
            ]
        )


def secrets(kind: str) -> st.SearchStrategy[str]:
    """Distinct per kind (a shrunk example must not make two secrets equal)."""
    return st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=10, max_size=16).map(lambda s: f"{kind}{s}Q")


def _record(index: int, body: dict[str, Any], attribute: str) -> dict[str, Any]:
    record = sqs_record(index, body=json.dumps(body))
    record["messageAttributes"] = {
        "token": {"stringValue": attribute, "dataType": "String", "stringListValues": [], "binaryListValues": []}
    }
    return record


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body_secret=secrets("body"),
    attribute_secret=secrets("attr"),
    local_secret=secrets("local"),
    input_secret=secrets("input"),
    message=secrets("msg"),
)
def test_with_default_options_no_body_attribute_local_or_pydantic_input_leaves_the_function(
    sinks: dict[str, Any], body_secret: str, attribute_secret: str, local_secret: str, input_secret: str, message: str
) -> None:
    # GIVEN every built-in on, default options, and secrets in the bodies, message attributes, the handler's
    # locals and a pydantic input (a card number where an amount should be); the handler's own exception
    # message carries a secret too
    captured = Captured(sinks, model=OrderRecord)
    event = {
        "Records": [
            _record(0, {"order_id": "o0", "amount": 1, "note": body_secret}, attribute_secret),
            _record(1, {"order_id": "o1", "amount": input_secret}, attribute_secret),
            _record(2, {"order_id": "o2", "amount": 2, "note": body_secret}, attribute_secret),
        ]
    }

    def handler(record: OrderRecord) -> str:
        secret_in_a_local = local_secret  # a frame variable Sentry would collect by default
        app_logger.info("processing %s", record.messageId)
        if record.body.order_id == "o2":
            raise ValueError(f"declined: {message}")
        return secret_in_a_local[:0] + "ok"

    # WHEN the batch is processed (one pydantic failure, one handler failure)
    response = ob.process_partial_response(event, handler, captured.processor)
    text = captured.text()

    # THEN both failures are reported, and no sink holds a body, attribute, local or input secret
    assert len(response["batchItemFailures"]) == 2
    for secret in (body_secret, attribute_secret, local_secret, input_secret):
        assert secret not in text
    # AND what the failure says is still there: the pydantic field and error type, the handler's message
    assert "amount" in text
    assert "int_parsing" in text
    assert message in text


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=secrets("msg"))
def test_the_redaction_hook_removes_secrets_from_every_exported_text(sinks: dict[str, Any], message: str) -> None:
    # GIVEN a redaction hook that knows the secret, and a handler whose exception message carries it
    config = ob.Config(redact=lambda text: text.replace(message, "[card]"))
    captured = Captured(sinks, config=config)

    def handler(record: Any) -> str:
        raise ValueError(f"declined: {message}")

    # WHEN a batch fails
    ob.process_partial_response({"Records": [sqs_record(0)]}, handler, captured.processor)
    text = captured.text()

    # THEN no sink has the secret, and the redacted message is what they say
    assert message not in text
    assert "declined: [card]" in text


def test_redaction_patterns_come_from_the_environment(sinks: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the card and email presets and a custom expression in OBSERVED_BATCH_REDACT_PATTERNS
    monkeypatch.setenv("OBSERVED_BATCH_REDACT_PATTERNS", r'["card", "email", "ord-[0-9]+"]')
    captured = Captured(sinks)

    def handler(record: Any) -> str:
        raise ValueError("card 4111 1111 1111 1111 of jane@example.com for ord-42 declined")

    # WHEN a batch fails
    ob.process_partial_response({"Records": [sqs_record(0)]}, handler, captured.processor)
    text = captured.text()

    # THEN every match is replaced in every sink
    for secret in ("4111 1111 1111 1111", "jane@example.com", "ord-42"):
        assert secret not in text
    assert "card [REDACTED] of [REDACTED] for [REDACTED] declined" in text


def test_an_invalid_redaction_pattern_fails_at_cold_start_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OBSERVED_BATCH_REDACT_PATTERNS", '["card", "(unclosed"]')
    with pytest.raises(ob.ConfigError, match="redaction pattern"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["metrics"])
    monkeypatch.setenv("OBSERVED_BATCH_REDACT_PATTERNS", "[not json")
    with pytest.raises(ob.ConfigError, match="OBSERVED_BATCH_REDACT_PATTERNS"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=["metrics"])


def test_input_values_are_exported_when_a_middleware_opts_in(sinks: dict[str, Any]) -> None:
    # GIVEN logging with include_input_values, and a record whose amount is not a number
    logs = io.StringIO()
    processor = ob.BatchProcessor(
        ob.EventType.SQS,
        model=OrderRecord,
        raise_on_entire_batch_failure=False,
        middleware=[
            LoggingMiddleware(include_input_values=True, logger=structlog.wrap_logger(structlog.PrintLogger(logs)))
        ],
    )
    event = {"Records": [sqs_record(0, body=json.dumps({"order_id": "o0", "amount": "not-a-number"}))]}

    # WHEN it fails validation
    ob.process_partial_response(event, lambda record: "ok", processor)

    # THEN the failure line quotes the input, as pydantic does
    assert "not-a-number" in logs.getvalue()


# -- breadcrumbs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_async", [False, True])
def test_a_failed_records_event_carries_only_its_own_breadcrumbs(sinks: dict[str, Any], use_async: bool) -> None:
    # GIVEN Sentry with breadcrumbs from stdlib logging, a breadcrumb left by an earlier invocation, and a
    # handler that logs each record's id before failing every second record
    captured = Captured(sinks)
    ob.process_partial_response({"Records": [sqs_record(9)]}, lambda record: "ok", captured.processor)
    app_logger.warning("outside any record")
    event = {"Records": [sqs_record(i) for i in range(6)]}
    ids = [r["messageId"] for r in event["Records"]]

    def handler(record: Any) -> str:
        app_logger.warning("crumb %s", record.message_id)
        if ids.index(record.message_id) % 2:
            raise ValueError("declined")
        return "ok"

    async def async_handler(record: Any) -> str:
        app_logger.warning("crumb %s", record.message_id)
        import asyncio

        await asyncio.sleep(0)  # records interleave
        if ids.index(record.message_id) % 2:
            raise ValueError("declined")
        return "ok"

    # WHEN the batch runs (sync, or async with interleaved records)
    if use_async:
        processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
        ob.async_process_partial_response(event, async_handler, processor)
    else:
        ob.process_partial_response(event, handler, captured.processor)
    sentry_sdk.flush(timeout=5)

    # THEN each failed record's event has exactly its own breadcrumb
    events = [e for e in sinks["sentry"].events() if e.get("tags", {}).get("message_id") in ids]
    failed = {ids[i] for i in (1, 3, 5)}
    mine = [e for e in events if e["tags"]["message_id"] in failed][-3:]
    assert {e["tags"]["message_id"] for e in mine} == failed
    for sentry_event in mine:
        crumbs = [c["message"] for c in sentry_event.get("breadcrumbs", {}).get("values", [])]
        assert crumbs == [f"crumb {sentry_event['tags']['message_id']}"]
