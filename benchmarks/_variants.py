"""What the suite compares: one Lambda invocation per variant, all on the same event and handler.

A variant is a function that returns ``invoke(event) -> response`` (one Lambda invocation, flushes
included) or raises ``Unavailable`` when what it measures does not exist in this checkout yet (a
built-in middleware that has not landed, a backend that is not installed). The harness in
``run.py`` reports those as ``n/a``.

Every variant writes to the same ``CountingSink`` (installed as ``sys.stdout`` before anything is
constructed), so log and EMF lines cost the same for all and never reach the terminal.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aws_lambda_powertools.utilities.batch as pt
from aws_lambda_powertools.utilities.batch import EventType

import observed_batch as ob
from observed_batch.config import BUILTINS, builtin_class
from observed_batch.errors import ConfigError
from observed_batch.testing import FakeLambdaContext, kinesis_event, sqs_event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from loopback_http import LoopbackServer, QuietHandler

__all__ = [
    "BUILTIN_NAMES",
    "CountingSink",
    "Scenario",
    "SentryReceiver",
    "SentryReceiverProcess",
    "Unavailable",
    "Variant",
    "builtin_available",
    "install_backends",
    "make_scenario",
    "variants",
]

#: The telemetry built-ins ("all on"); the policies change outcomes and have their own variants.
BUILTIN_NAMES: tuple[str, ...] = tuple(name for name, spec in BUILTINS.items() if not spec.policy)
FAIL_EVERY = 10  # 10 % of the records fail
#: The three built-ins most functions enable (issue 22's middle row).
_MSL = ("metrics", "sentry", "logging")
LAMBDA_BUDGET_MS = 900_000  # the timeout guard must never trigger in a benchmark

Invoke = Callable[[dict[str, Any]], Any]


class Unavailable(Exception):
    """The variant cannot run in this checkout; the message says why (shown as n/a)."""


# -- output sink ----------------------------------------------------------------------------------
class CountingSink:
    """A text stream that drops everything but counts bytes, and EMF bytes separately."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self) -> None:
        self.bytes = 0
        self.emf_bytes = 0
        self.emf_documents = 0

    def write(self, text: str) -> int:
        size = len(text)
        self.bytes += size
        if '"_aws"' in text:
            self.emf_bytes += size
            self.emf_documents += 1
        return size

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def reset(self) -> None:
        self.bytes = self.emf_bytes = self.emf_documents = 0


# -- a local Sentry endpoint ----------------------------------------------------------------------
class SentryReceiver(LoopbackServer):
    """An HTTP server on 127.0.0.1 that accepts Sentry envelopes and counts them."""

    def __init__(self) -> None:
        receiver = self
        self.envelopes = 0
        self._lock = threading.Lock()

        class Handler(QuietHandler):
            content_type = "application/json"
            default_payload = b"{}"
            # Without TCP_NODELAY, Nagle + delayed ACK add ~40 ms per envelope on loopback: that
            # would measure the receiver, not the Sentry SDK.
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024  # status, headers and body leave in one segment (flushed per request)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.envelopes += 1
                self._reply(200)

            def do_GET(self) -> None:  # /stats, as tests/sentry_receiver.py's
                self._reply(200, json.dumps({"requests": receiver.envelopes}).encode())

        super().__init__(Handler, name="bench-sentry-receiver")

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"


class SentryReceiverProcess:
    """A Sentry receiver in a process of its own: serving HTTP is the Sentry server's work, not the function's,
    and in this process it would compete with the measured code for the GIL. ``command`` prints the DSN, serves
    ``GET /stats`` (``requests``: envelopes received) and stops when its stdin closes; by default
    ``SentryReceiver`` (counts only)."""

    def __init__(self, command: list[str] | None = None) -> None:
        self._command = command or [sys.executable, __file__, "--serve-sentry"]
        self._process: subprocess.Popen[str] | None = None
        self.dsn = ""

    def start(self) -> SentryReceiverProcess:
        process = self._process = subprocess.Popen(
            self._command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None
        if not select.select([process.stdout], [], [], 30.0)[0]:
            raise RuntimeError("the Sentry receiver did not start within 30 s")
        self.dsn = process.stdout.readline().strip()
        return self

    @property
    def envelopes(self) -> int:
        """Envelopes received so far."""
        port = self.dsn.rsplit(":", 1)[1].split("/", 1)[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
            return int(json.load(response)["requests"])

    def stop(self) -> None:
        process = self._process
        if process is None or process.stdin is None:
            return
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# -- backends, configured once per process as a Lambda function would at cold start ---------------
@dataclass
class Backends:
    sink: CountingSink
    receiver: SentryReceiverProcess | None
    sentry_error: str | None
    tracing_error: str | None
    tracer_provider: Any = None


def install_backends(sink: CountingSink) -> Backends:
    """Environment, Sentry (to a local receiver) and an OTel SDK provider with a no-op exporter."""
    os.environ["POWERTOOLS_SERVICE_NAME"] = "bench"
    os.environ["POWERTOOLS_METRICS_NAMESPACE"] = "ObservedBatchBench"
    for variable in [v for v in os.environ if v.startswith("OBSERVED_BATCH_")]:
        del os.environ[variable]
    backends = Backends(sink=sink, receiver=None, sentry_error=None, tracing_error=None)
    try:
        import sentry_sdk
    except ImportError:
        backends.sentry_error = "sentry_sdk not installed"
    else:
        backends.receiver = SentryReceiverProcess().start()
        sentry_sdk.init(dsn=backends.receiver.dsn, environment="bench", release="bench")
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
    except ImportError:
        backends.tracing_error = "opentelemetry-sdk not installed"
    else:

        class NullExporter(SpanExporter):
            def export(self, spans: Any) -> SpanExportResult:
                return SpanExportResult.SUCCESS

            def shutdown(self) -> None:
                pass

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(NullExporter()))
        trace.set_tracer_provider(provider)
        backends.tracer_provider = provider
    return backends


def shutdown_backends(backends: Backends) -> None:
    if backends.receiver is not None:
        import sentry_sdk

        sentry_sdk.flush(timeout=2.0)
        backends.receiver.stop()


# -- the workload ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    name: str
    event_type: EventType
    size: int
    event: dict[str, Any]
    handler: Callable[[Any], Any]
    identify: Callable[[Any], str]


def _payload(index: int) -> dict[str, Any]:
    return {"order_id": f"order-{index}", "amount": 10 + index % 90, "fail": index % FAIL_EVERY == FAIL_EVERY - 1}


def _sqs_handler(record: Any) -> Any:
    order = json.loads(record.body)
    if order["fail"]:
        raise ValueError(f"order {order['order_id']} rejected")
    return order["order_id"]


def _kinesis_handler(record: Any) -> Any:
    order = json.loads(record.kinesis.data_as_text())
    if order["fail"]:
        raise ValueError(f"order {order['order_id']} rejected")
    return order["order_id"]


def make_scenario(kind: str, size: int) -> Scenario:
    """``kind`` is ``sqs`` or ``kinesis``; a handler that parses the JSON body fails 10 % of the records."""
    if kind == "sqs":
        return Scenario(
            f"SQS {size:,}", EventType.SQS, size, sqs_event(size, body=_payload), _sqs_handler, lambda r: r.message_id
        )
    if kind == "kinesis":
        return Scenario(
            f"Kinesis {size:,}",
            EventType.KinesisDataStreams,
            size,
            kinesis_event(size, data=_payload),
            _kinesis_handler,
            lambda r: r.kinesis.sequence_number,
        )
    raise ValueError(f"unknown scenario kind {kind!r}")


def _context() -> Any:
    return FakeLambdaContext(remaining_ms=LAMBDA_BUDGET_MS)


# -- variants -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    build: Callable[[Scenario, Backends], Invoke]
    #: Middlewares the variant needs (checked before building, for a clear n/a).
    needs: tuple[str, ...] = ()


def builtin_available(name: str) -> str | None:
    """``None`` when the built-in can be imported, else why not."""
    try:
        builtin_class(name)
    except ConfigError as exc:
        return str(exc)
    except Exception as exc:  # a middleware being written right now may not even import
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _partial_response(processor: Any, scenario: Scenario) -> Invoke:
    handler = scenario.handler

    def invoke(event: dict[str, Any]) -> Any:
        return pt.process_partial_response(event=event, record_handler=handler, processor=processor, context=_context())

    return invoke


def _bare(scenario: Scenario, backends: Backends) -> Invoke:
    return _partial_response(pt.BatchProcessor(scenario.event_type), scenario)


def _hand_rolled(scenario: Scenario, backends: Backends) -> Invoke:
    """The pattern Powertools' docs suggest for extending the processor, with the usual three tools."""
    if backends.sentry_error:
        raise Unavailable(backends.sentry_error)
    import sentry_sdk
    from aws_lambda_powertools import Logger, Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="HandRolled", service="bench")
    logger = Logger(service="bench", stream=cast(Any, backends.sink))
    identify, inner = scenario.identify, scenario.handler

    class ObservedProcessor(pt.BatchProcessor):
        def success_handler(self, record: Any, result: Any) -> Any:
            metrics.add_metric(name="BatchRecordSuccesses", unit=MetricUnit.Count, value=1)
            return super().success_handler(record, result)

        def failure_handler(self, record: Any, exception: Any) -> Any:
            metrics.add_metric(name="BatchRecordFailures", unit=MetricUnit.Count, value=1)
            sentry_sdk.capture_exception(exception[1])
            return super().failure_handler(record, exception)

    processor = ObservedProcessor(scenario.event_type)

    def handler(record: Any) -> Any:
        logger.info("processing record", message_id=identify(record))
        return inner(record)

    def invoke(event: dict[str, Any]) -> Any:
        try:
            return pt.process_partial_response(
                event=event, record_handler=handler, processor=processor, context=_context()
            )
        finally:
            metrics.flush_metrics()
            sentry_sdk.flush(timeout=2.0)

    return invoke


def _disabled(scenario: Scenario, backends: Backends) -> Invoke:
    # A deployed function with everything configured and the kill switch flipped.
    with _environment(OBSERVED_BATCH_DISABLED="true", OBSERVED_BATCH_MIDDLEWARE=",".join(BUILTIN_NAMES)):
        processor = ob.BatchProcessor(scenario.event_type)
    if processor.middlewares:
        raise Unavailable("kill switch did not disable the chain")
    return _partial_response(processor, scenario)


def _chain(names: tuple[str, ...]) -> Callable[[Scenario, Backends], Invoke]:
    def build(scenario: Scenario, backends: Backends) -> Invoke:
        if "tracing" in names and backends.tracing_error:
            raise Unavailable(backends.tracing_error)
        if "sentry" in names and backends.sentry_error:
            raise Unavailable(backends.sentry_error)
        return _partial_response(ob.BatchProcessor(scenario.event_type, middleware=list(names)), scenario)

    return build


class NoopMiddleware(ob.Middleware):
    """Wraps each record and does nothing: the price of the chain itself, per record."""

    name = "noop"

    def wrap_record(self, record: ob.RecordContext) -> Iterator[None]:
        yield


class NoopHooksMiddleware(ob.Middleware):
    """The plain-hook style's price per record: an ``after_record`` that does nothing (no generator)."""

    name = "noop_hooks"

    def after_record(self, record: ob.RecordContext) -> None:
        pass


def _noop(scenario: Scenario, backends: Backends) -> Invoke:
    return _partial_response(ob.BatchProcessor(scenario.event_type, middleware=[NoopMiddleware()]), scenario)


def _noop_hooks(scenario: Scenario, backends: Backends) -> Invoke:
    return _partial_response(ob.BatchProcessor(scenario.event_type, middleware=[NoopHooksMiddleware()]), scenario)


def _retry_policy_on(*before: str) -> Callable[[Scenario, Backends], Invoke]:
    """retry_policy armed with a non-retryable class the handler never raises, no backoff: its per-record
    hook runs for every record, SQS is never called (the overhead on a batch with no poison)."""

    def build(scenario: Scenario, backends: Backends) -> Invoke:
        if builtin_available("retry_policy") is not None:
            raise Unavailable(builtin_available("retry_policy") or "")
        from observed_batch.middleware import RetryPolicyMiddleware

        policy = RetryPolicyMiddleware(non_retryable=[LookupError], on_non_retryable="drop")
        return _partial_response(ob.BatchProcessor(scenario.event_type, middleware=[*before, policy]), scenario)

    return build


def _msl_dsn_client(scenario: Scenario, backends: Backends) -> Invoke:
    """metrics + sentry + logging where Sentry's client is the one the middleware initialises from ``SENTRY_DSN``
    (its options and lean transport), given to it, since this process's global client is the application's."""
    if backends.sentry_error or backends.receiver is None:
        raise Unavailable(backends.sentry_error or "no Sentry receiver")
    import sentry_sdk

    from observed_batch.middleware import LoggingMiddleware, MetricsMiddleware, SentryMiddleware
    from observed_batch.middleware._sentry_client import init_options

    client = sentry_sdk.Client(**{**init_options(backends.receiver.dsn), "environment": "bench", "release": "bench"})
    middleware = [MetricsMiddleware(), SentryMiddleware(client=client), LoggingMiddleware()]
    return _partial_response(ob.BatchProcessor(scenario.event_type, middleware=middleware), scenario)


def _all_on_batch_tracing(scenario: Scenario, backends: Backends) -> Invoke:
    if backends.tracing_error or backends.sentry_error:
        raise Unavailable(backends.tracing_error or backends.sentry_error or "")
    config = ob.Config(middleware=list(BUILTIN_NAMES), options={"tracing": {"mode": "batch"}})
    return _partial_response(ob.BatchProcessor(scenario.event_type, config=config), scenario)


def variants() -> list[Variant]:
    found = [
        Variant("bare", "bare Powertools", _bare),
        Variant("hand_rolled", "hand-rolled (Metrics + Sentry + Logger)", _hand_rolled),
        Variant("disabled", "observed_batch, kill switch", _disabled),
        Variant("chain_empty", "observed_batch, chain, no middleware", _chain(())),
        Variant("chain_noop", "observed_batch, one no-op middleware", _noop),
        Variant("chain_noop_hooks", "observed_batch, one no-op middleware, after_record", _noop_hooks),
    ]
    found += [Variant(name, f"observed_batch + {name}", _chain((name,)), (name,)) for name in BUILTIN_NAMES]
    found.append(Variant("retry_policy_on", "observed_batch + retry_policy (armed, no poison)", _retry_policy_on()))
    found.append(
        Variant("metrics_retry_policy", "observed_batch + metrics + retry_policy", _retry_policy_on("metrics"))
    )
    found.append(Variant("metrics_sentry_logging", "observed_batch + metrics + sentry + logging", _chain(_MSL), _MSL))
    found.append(
        Variant(
            "metrics_sentry_logging_dsn",
            "observed_batch + metrics + sentry + logging, Sentry's client from SENTRY_DSN",
            _msl_dsn_client,
            _MSL,
        )
    )
    found.append(Variant("all_on", "observed_batch, all on", _chain(BUILTIN_NAMES), BUILTIN_NAMES))
    found.append(
        Variant("all_on_batch_span", "observed_batch, all on, tracing mode=batch", _all_on_batch_tracing, BUILTIN_NAMES)
    )
    return found


if __name__ == "__main__" and sys.argv[1:] == ["--serve-sentry"]:
    # SentryReceiverProcess: print the DSN, serve until stdin closes.
    with SentryReceiver() as serving:
        print(serving.dsn, flush=True)
        sys.stdin.read()
