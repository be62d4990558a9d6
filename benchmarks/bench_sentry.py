"""What the ``sentry`` middleware costs per record, next to bare Powertools and the docs' hand-rolled capture.

    python benchmarks/bench_sentry.py                      # 10,000 SQS records, 10 % failing, one batch
    python benchmarks/bench_sentry.py --batch-size 100     # the same records as 100 invocations of 100

Every variant sends to the same local Sentry receiver (tests/sentry_receiver.py) through one
``sentry_sdk.init`` with the SDK's default options, and ends each invocation with a flush, as a
Lambda function must before it freezes:

- ``bare``: Powertools ``BatchProcessor`` (no Sentry at all);
- ``hand-rolled``: the Powertools docs' pattern, ``sentry_sdk.capture_exception()`` in a
  ``failure_handler`` override, then ``sentry_sdk.flush()``;
- ``chain only``: observed_batch with an empty middleware list (the chain's own cost);
- ``sentry``: observed_batch with ``SentryMiddleware()`` at default settings.

Variants run interleaved for ``--rounds`` rounds; the median per variant is reported.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sentry_sdk
from aws_lambda_powertools.utilities import batch as pt

import observed_batch as ob
from observed_batch.middleware import SentryMiddleware
from observed_batch.testing import FakeLambdaContext, sqs_event

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _variants import SentryReceiverProcess

RECEIVER = Path(__file__).resolve().parent.parent / "tests" / "sentry_receiver.py"
FAIL_EVERY = 10
BARE = "bare Powertools"
HAND_ROLLED = "hand-rolled capture_exception"
SENTRY = "observed_batch + sentry"


def _payload(index: int) -> dict[str, Any]:
    return {"order_id": f"order-{index}", "amount": 10 + index % 90, "fail": index % FAIL_EVERY == FAIL_EVERY - 1}


def handler(record: Any) -> str:
    order = json.loads(record.body)
    if order["fail"]:
        raise ValueError(f"order {order['order_id']} rejected")
    return str(order["order_id"])


class HandRolledProcessor(pt.BatchProcessor):
    """The Powertools documentation's way to report failed records to Sentry."""

    def failure_handler(self, record: Any, exception: Any) -> Any:
        sentry_sdk.capture_exception()
        return super().failure_handler(record, exception)


Invoke = Callable[[dict[str, Any]], None]


def _invoke(processor: Any, flush: bool) -> Invoke:
    def invoke(event: dict[str, Any]) -> None:
        try:
            pt.process_partial_response(event, handler, processor, FakeLambdaContext(remaining_ms=900_000))
        except ob.BatchProcessingError:
            pass  # a batch of failures only: same for every variant
        finally:
            if flush:
                sentry_sdk.flush(timeout=2.0)

    return invoke


def variants() -> dict[str, Invoke]:
    return {
        BARE: _invoke(pt.BatchProcessor(pt.EventType.SQS), flush=False),
        HAND_ROLLED: _invoke(HandRolledProcessor(pt.EventType.SQS), flush=True),
        "observed_batch, chain only": _invoke(ob.BatchProcessor(ob.EventType.SQS, middleware=[]), flush=False),
        # The middleware flushes at the end of each invocation itself.
        SENTRY: _invoke(ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()]), flush=False),
    }


@contextmanager
def receiver_process() -> Iterator[str]:
    """The receiver in its own process, so that serving HTTP does not compete with the benchmark for the GIL."""
    receiver = SentryReceiverProcess([sys.executable, str(RECEIVER)]).start()
    try:
        yield receiver.dsn
    finally:
        receiver.stop()


def received_events(dsn: str) -> int:
    port = dsn.rsplit(":", 1)[1].split("/", 1)[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as response:
        return int(json.load(response)["events"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    batches = [
        sqs_event(min(args.batch_size, args.records - start), body=lambda i, s=start: _payload(s + i), seed=start)
        for start in range(0, args.records, args.batch_size)
    ]
    with receiver_process() as dsn:
        sentry_sdk.init(dsn=dsn, environment="bench")
        runs = variants()
        for invoke in runs.values():  # warm-up: imports, connection pool, first-capture caches
            invoke(batches[0])
        timings: dict[str, list[float]] = {name: [] for name in runs}
        events: dict[str, list[int]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, invoke in runs.items():
                # Untimed: what an earlier variant left queued must not be flushed on this one's clock.
                sentry_sdk.flush(timeout=60.0)
                before = received_events(dsn)
                started = time.perf_counter()
                for event in batches:
                    invoke(event)
                timings[name].append(time.perf_counter() - started)
                sentry_sdk.flush(timeout=60.0)
                events[name].append(received_events(dsn) - before)
        sentry_sdk.get_client().close(timeout=2.0)

    records = args.records
    median = {name: statistics.median(values) / records * 1e6 for name, values in timings.items()}
    best = {name: min(values) / records * 1e6 for name, values in timings.items()}
    print(
        f"{records:,} SQS records, 1 in {FAIL_EVERY} failing, {len(batches)} invocation(s) of {args.batch_size:,}; "
        f"{args.rounds} rounds"
    )
    print(f"{'variant':32} {'µs/record median':>17} {'over bare':>10} {'min':>8} {'over bare':>10} {'events/run':>11}")
    for name in runs:
        print(
            f"{name:32} {median[name]:17.2f} {median[name] - median[BARE]:10.2f}"
            f" {best[name]:8.2f} {best[name] - best[BARE]:10.2f} {statistics.median(events[name]):11,.0f}"
        )
    for label, table in (("median", median), ("min", best)):
        hand_rolled, ours = table[HAND_ROLLED] - table[BARE], table[SENTRY] - table[BARE]
        ratio = f"{hand_rolled / ours:.1f}x" if ours > 0 else "inf (within noise of bare)"
        print(f"hand-rolled overhead / sentry middleware overhead ({label}): {ratio} (goal >= 10x)")


if __name__ == "__main__":
    main()
