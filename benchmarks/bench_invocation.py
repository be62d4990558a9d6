"""What one typical invocation pays on top of bare Powertools: 10 SQS records, added wall time, paired.

    python benchmarks/bench_invocation.py                    # 30 samples per variant (~1 min)
    python benchmarks/bench_invocation.py --samples 3 --inner 1   # smoke run

Rows (issue 22's table):

- 10 records, none failing: chain only, metrics+sentry+logging, all five built-ins;
- 10 records, 1 failing: the same (the failure is captured by Sentry and flushed at batch end);
- 10 records, all failing, Sentry only: 10 captured events per invocation, next to the Powertools docs'
  ``failure_handler`` + ``sentry_sdk.capture_exception`` with the same options (frame locals off), so a
  gain is ours and not a dropped feature; once with the application's ``sentry_sdk.init`` (SDK defaults),
  once with the client the middleware initialises from ``SENTRY_DSN`` (whose transport is
  ``LeanSentryTransport``). "SDK sending only" is the SDK's floor: the same 10 envelopes, built beforehand,
  only sent and flushed by the SDK's transport (``HttpTransport``); "lean transport sending only" the same
  through ``LeanSentryTransport``;
- 10 records, 1 failing, with the client the middleware initialises from ``SENTRY_DSN``.

Each sample times ``--inner`` invocations of every variant, interleaved (A B C A B C ...), and divides by
``--inner``; the row reports the median over samples of (variant - bare in the same sample): "added ms".
Sentry sends to a receiver in its own process on 127.0.0.1 (tests/sentry_receiver.py), OTel to an SDK
provider whose exporter drops spans, stdout (EMF, logs) to a counting sink.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _variants as v
import aws_lambda_powertools.utilities.batch as pt

import observed_batch as ob
from observed_batch.testing import FakeLambdaContext, sqs_event

Invoke = Callable[[], Any]
SIZE = 10
MSL = ("metrics", "sentry", "logging")
#: Issue 22's goals, in ms added per invocation: (row title, variant) -> threshold.
GOALS = {
    ("10 records, none failing", "metrics+sentry+logging"): 0.2,
    ("10 records, none failing", "all five"): 0.6,
    ("10 records, 1 failing", "metrics+sentry+logging"): 1.5,
    ("10 records, 1 failing", "all five"): 1.5,
    ("10 records, all failing: 10 Sentry events", "sentry middleware"): 10.0,
    ("10 records, all failing: 10 Sentry events, Sentry initialised from SENTRY_DSN", "sentry middleware"): 10.0,
    ("10 records, 1 failing, Sentry initialised from SENTRY_DSN", "metrics+sentry+logging"): 1.5,
    ("10 records, 1 failing, Sentry initialised from SENTRY_DSN", "all five"): 1.5,
}
SENTRY_ROW = "10 records, all failing: 10 Sentry events"
#: The same, with the client the middleware initialises from ``SENTRY_DSN`` (the integrations it leaves out).
SENTRY_DSN_ROW = "10 records, all failing: 10 Sentry events, Sentry initialised from SENTRY_DSN"
ONE_FAILING_DSN_ROW = "10 records, 1 failing, Sentry initialised from SENTRY_DSN"


def _event(failing: int) -> dict[str, Any]:
    return sqs_event(SIZE, body=lambda i: {"order_id": f"order-{i}", "fail": i >= SIZE - failing})


def handler(record: Any) -> str:
    order = json.loads(record.body)
    if order["fail"]:
        raise ValueError(f"order {order['order_id']} rejected")
    return str(order["order_id"])


def _invoke(processor: Any, event: dict[str, Any], after: Callable[[], None] | None = None) -> Invoke:
    def invoke() -> Any:
        try:
            return pt.process_partial_response(event, handler, processor, FakeLambdaContext(remaining_ms=900_000))
        finally:
            if after is not None:
                after()

    return invoke


def _ours(names: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    return lambda event: _invoke(ob.BatchProcessor(ob.EventType.SQS, middleware=list(names)), event)


def _bare(event: dict[str, Any]) -> Invoke:
    return _invoke(pt.BatchProcessor(pt.EventType.SQS, raise_on_entire_batch_failure=False), event)


def _hand_rolled_sentry(event: dict[str, Any]) -> Invoke:
    """The Powertools docs' pattern: ``capture_exception`` in ``failure_handler``, ``flush`` per invocation,
    with frame locals off as the middleware has them (the SDK's other defaults unchanged)."""
    import sentry_sdk

    client = sentry_sdk.get_client()
    client.options["include_local_variables"] = False

    class HandRolled(pt.BatchProcessor):
        def failure_handler(self, record: Any, exception: Any) -> Any:
            sentry_sdk.capture_exception(exception[1])
            return super().failure_handler(record, exception)

    return _invoke(HandRolled(pt.EventType.SQS, raise_on_entire_batch_failure=False), event, lambda: client.flush(2.0))


#: The global client's options a benchmark client copies (integrations included: the SDK's defaults or ours).
_CLIENT_OPTIONS = (
    "dsn",
    "environment",
    "release",
    "default_integrations",
    "auto_enabling_integrations",
    "integrations",
)


def _null_client(sink: Callable[[Any], None] = lambda envelope: None) -> Any:
    """A client with the global one's options whose transport hands envelopes to ``sink`` (drops them): what
    building an event costs, without the SDK's sending (its worker thread, compression, HTTP) and the flush."""
    import sentry_sdk

    options = sentry_sdk.get_client().options
    client = sentry_sdk.Client(**{name: options[name] for name in _CLIENT_OPTIONS})
    client.transport.capture_envelope = sink  # type: ignore[union-attr,method-assign]
    return client


def _sending_only(transport: str) -> Callable[[dict[str, Any]], Invoke]:
    """A transport alone: the envelopes of the row's 10 events, built once beforehand with the global client's
    options, then per invocation handed to ``transport`` (the SDK's ``HttpTransport`` or ours) and flushed."""

    def build(event: dict[str, Any]) -> Invoke:
        import sentry_sdk
        from sentry_sdk.transport import HttpTransport

        from observed_batch.middleware import LeanSentryTransport

        envelopes: list[Any] = []
        builder = _null_client(envelopes.append)
        builder.options["include_local_variables"] = False
        with sentry_sdk.new_scope() as scope:
            scope.set_client(builder)
            for record in event["Records"]:
                try:
                    handler(SimpleNamespace(body=record["body"]))
                except ValueError as error:
                    sentry_sdk.capture_exception(error)
        options = sentry_sdk.get_client().options
        transport_class = HttpTransport if transport == "sdk" else LeanSentryTransport
        client = sentry_sdk.Client(**{name: options[name] for name in _CLIENT_OPTIONS}, transport=transport_class)
        assert type(client.transport) is transport_class

        def invoke() -> None:
            for envelope in envelopes:
                client.transport.capture_envelope(envelope)  # type: ignore[union-attr]
            client.flush(2.0)

        return invoke

    return build


def _hand_rolled_unsent(event: dict[str, Any]) -> Invoke:
    import sentry_sdk

    client = _null_client()
    client.options["include_local_variables"] = False

    class HandRolled(pt.BatchProcessor):
        def failure_handler(self, record: Any, exception: Any) -> Any:
            with sentry_sdk.new_scope() as scope:
                scope.set_client(client)
                sentry_sdk.capture_exception(exception[1])
            return super().failure_handler(record, exception)

    return _invoke(HandRolled(pt.EventType.SQS, raise_on_entire_batch_failure=False), event, lambda: client.flush(2.0))


def _sentry_unsent(event: dict[str, Any]) -> Invoke:
    from observed_batch.middleware import SentryMiddleware

    middleware = SentryMiddleware(client=_null_client())
    return _invoke(
        ob.BatchProcessor(ob.EventType.SQS, raise_on_entire_batch_failure=False, middleware=[middleware]), event
    )


def _sentry_powertools_logging(event: dict[str, Any]) -> Invoke:
    """``sentry`` with ``logging`` writing through a Powertools Logger (stdlib logging, which Sentry's logging
    integration sees): one ``record_failed`` error line per failure next to the Sentry event."""
    from observed_batch.middleware import LoggingMiddleware, SentryMiddleware

    middleware = [SentryMiddleware(), LoggingMiddleware(backend="powertools")]
    processor = ob.BatchProcessor(ob.EventType.SQS, raise_on_entire_batch_failure=False, middleware=middleware)
    return _invoke(processor, event)


def rows() -> list[tuple[str, int, dict[str, Callable[[dict[str, Any]], Invoke]]]]:
    """(row title, failing records, {variant: build(event) -> invoke})."""
    common: dict[str, Callable[[dict[str, Any]], Invoke]] = {
        "chain, no middleware": _ours(()),
        "chain, one no-op middleware": lambda e: _invoke(
            ob.BatchProcessor(ob.EventType.SQS, middleware=[v.NoopMiddleware()]), e
        ),
        "metrics+sentry+logging": _ours(MSL),
        "all five": _ours(v.BUILTIN_NAMES),
    }
    sentry: dict[str, Callable[[dict[str, Any]], Invoke]] = {
        "capture_exception (docs pattern, locals off)": _hand_rolled_sentry,
        "sentry middleware": lambda e: _invoke(
            ob.BatchProcessor(ob.EventType.SQS, raise_on_entire_batch_failure=False, middleware=["sentry"]), e
        ),
        "capture_exception, events built, not sent": _hand_rolled_unsent,
        "sentry middleware, events built, not sent": _sentry_unsent,
        "SDK sending only (the same envelopes, built beforehand)": _sending_only("sdk"),
    }
    sentry_dsn = {
        **sentry,
        "lean transport sending only (the same envelopes)": _sending_only("lean"),
        "sentry + logging (Powertools Logger backend)": _sentry_powertools_logging,
    }
    return [
        ("10 records, none failing", 0, common),
        ("10 records, 1 failing", 1, common),
        (SENTRY_ROW, SIZE, sentry),
        (SENTRY_DSN_ROW, SIZE, sentry_dsn),
        (ONE_FAILING_DSN_ROW, 1, common),
    ]


def measure(invokers: dict[str, Invoke], samples: int, inner: int) -> dict[str, list[float]]:
    """ms per invocation, one value per sample and variant, variants interleaved within each sample."""
    timings: dict[str, list[float]] = {name: [] for name in invokers}
    for invoke in invokers.values():
        invoke()  # warm-up: first-call caches, Sentry connection
    names = list(invokers)
    for sample in range(samples):
        gc.collect()
        # A different variant goes first in each sample: none always runs right after the collection.
        shift = sample % len(names)
        for name in names[shift:] + names[:shift]:
            invoke = invokers[name]
            started = time.perf_counter()
            for _ in range(inner):
                invoke()
            timings[name].append((time.perf_counter() - started) * 1000.0 / inner)
    return timings


def report(title: str, timings: dict[str, list[float]], out: Any) -> list[str]:
    """Prints the row's table; returns its goal lines."""
    base = timings["bare Powertools"]
    out.write(f"\n### {title}\n\n| variant | ms/invocation median | added ms (median of pairs) | x bare (paired) |\n")
    out.write("|---|---:|---:|---:|\n")
    goals = []
    for name, values in timings.items():
        added = statistics.median(a - b for a, b in zip(values, base, strict=True))
        ratio = statistics.median(a / b for a, b in zip(values, base, strict=True))
        out.write(f"| {name} | {statistics.median(values):.3f} | {added:+.3f} | {ratio:.2f} |\n")
        goal = GOALS.get((title, name))
        if goal is not None:
            verdict = "PASS" if added <= goal else "MISS"
            goals.append(f"| {title}: {name} ≤ +{goal:g} ms | {added:+.3f} ms | {verdict} |")
    out.flush()
    return goals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--inner", type=int, default=20, help="invocations per sample and variant")
    args = parser.parse_args(argv)
    out = sys.stdout
    sink = v.CountingSink()
    from bench_sentry import receiver_process

    with receiver_process() as dsn:
        sys.stdout = sink
        import sentry_sdk

        backends = v.install_backends(sink)
        sentry_sdk.init(dsn=dsn, environment="bench", release="bench")  # the out-of-process receiver
        try:
            out.write(f"# One invocation of {SIZE} SQS records: added wall time over bare Powertools\n")
            out.write(f"\n{args.samples} samples of {args.inner} invocations per variant, interleaved\n")
            goals: list[str] = []
            for title, failing, variants in rows():
                if title == SENTRY_DSN_ROW:
                    from observed_batch.middleware._sentry_client import init_options

                    sentry_sdk.init(**{**init_options(dsn), "environment": "bench", "release": "bench"})
                event = _event(failing)
                invokers = {"bare Powertools": _bare(event)}
                invokers.update({name: build(event) for name, build in variants.items()})
                # A captured event costs milliseconds: fewer invocations per sample keep the row under a minute.
                inner = args.inner if failing < SIZE else max(1, args.inner // 10)
                goals += report(title, measure(invokers, args.samples, inner), out)
            out.write("\n### Goals (issue 22)\n\n| goal | added, median of pairs | verdict |\n|---|---:|---|\n")
            out.write("\n".join(goals) + "\n")
        finally:
            sys.stdout = out
            sentry_sdk.flush(timeout=5.0)
            v.shutdown_backends(backends)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
