"""What a dead telemetry backend costs an invocation, and whether the deadline holds.

    python benchmarks/bench_deadline.py                 # latency table + 20 deadline trials (~2 min)
    python benchmarks/bench_deadline.py --trials 4      # fewer deadline trials

**Latency.** Each row is a fresh interpreter (as a Lambda cold start: no provider, no breaker state yet)
that builds one processor and runs ``--invocations`` invocations of 10 SQS records, one failing, with
``metrics`` plus the backend's middleware on default options, against bare Powertools on the same
event in the same loop (A B A B ...). "added" is the invocation's wall time minus the paired bare one.
Backends: ``healthy`` (an OTLP/HTTP receiver and a Sentry receiver on 127.0.0.1 answering 200),
``refused`` (a port with no listener), ``blackhole`` (accepts and never answers). Tracing goes through
the provider built from ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the real OTLP/HTTP exporter), Sentry
through ``sentry_sdk.init(dsn=...)``.

**Deadline.** Each trial is a fresh interpreter running three invocations in a row (a warm Lambda
container), each with a fresh 5 s deadline on a wall-clock Lambda context: 10 records of 1 s each,
every second one failing, OTLP and Sentry both black holes (2 s flush timeouts each), all five
built-ins on. Reports overruns (returned after the deadline) and whether every record was either
processed or reported, never lost, never both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

STACKS = {"tracing": ["metrics", "tracing"], "sentry": ["metrics", "sentry"], "both": ["metrics", "tracing", "sentry"]}
BACKENDS = ("healthy", "refused", "blackhole")


# -- children (one fresh interpreter each) ---------------------------------------------------------------
def _endpoints(stack: ExitStack, backend: str) -> tuple[str, str]:
    """(OTLP traces URL, Sentry DSN) for a backend kind; servers live as long as ``stack``."""
    from blackhole import Blackhole
    from loopback_http import unused_port

    if backend == "healthy":
        from otlp_receiver import OtlpReceiver
        from sentry_receiver import SentryReceiver

        otlp = stack.enter_context(OtlpReceiver())
        sentry = stack.enter_context(SentryReceiver())
        return otlp.endpoint, sentry.dsn
    if backend == "refused":
        return f"http://127.0.0.1:{unused_port()}/v1/traces", f"http://key@127.0.0.1:{unused_port()}/1"
    hole = stack.enter_context(Blackhole())
    return hole.url("/v1/traces"), hole.sentry_dsn


def _quiet_stdout() -> Any:
    """EMF and log lines go to /dev/null (the parent reads one JSON line from the real stdout)."""
    real = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    return real


def child_latency(stack_name: str, backend: str, invocations: int) -> dict[str, Any]:
    out = _quiet_stdout()
    with ExitStack() as servers:
        otlp, dsn = _endpoints(servers, backend)
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp
        import sentry_sdk
        from aws_lambda_powertools.utilities import batch as pt

        import observed_batch as ob
        from observed_batch.testing import FakeLambdaContext, sqs_event

        if "sentry" in STACKS[stack_name]:
            sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False)
        event = sqs_event(10)
        failing = event["Records"][3]["messageId"]

        def handler(record: Any) -> str:
            if record.message_id == failing:
                raise ValueError("declined")
            return "ok"

        ours = ob.BatchProcessor(ob.EventType.SQS, middleware=STACKS[stack_name])
        bare = pt.BatchProcessor(pt.EventType.SQS)
        added: list[float] = []
        for _ in range(invocations):
            started = time.perf_counter()
            pt.process_partial_response(event, handler, bare, FakeLambdaContext(60_000))
            bare_s = time.perf_counter() - started
            started = time.perf_counter()
            ob.process_partial_response(event, handler, ours, FakeLambdaContext(60_000))
            added.append((time.perf_counter() - started - bare_s) * 1000)
    out.write(json.dumps({"stack": stack_name, "backend": backend, "added_ms": added}) + "\n")
    return {}


def child_trial(invocations: int) -> None:
    out = _quiet_stdout()
    import logging

    logging.disable(logging.WARNING)  # the guard's and breakers' lines are expected; keep stderr readable
    with ExitStack() as servers:
        otlp, dsn = _endpoints(servers, "blackhole")
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp
        os.environ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] = "2"
        import sentry_sdk

        import observed_batch as ob
        from observed_batch.testing import FakeLambdaContext, sqs_event

        sentry_sdk.init(dsn=dsn, default_integrations=False, auto_enabling_integrations=False)
        event = sqs_event(10, body=lambda i: json.dumps({"index": i}))
        ids = [r["messageId"] for r in event["Records"]]
        handled: set[str] = set()

        def handler(record: Any) -> str:
            handled.add(record.message_id)
            time.sleep(1.0)
            if json.loads(record.body)["index"] % 2:
                raise ValueError("declined")
            return "ok"

        processor = ob.BatchProcessor(
            ob.EventType.SQS,
            middleware=["metrics", "tracing", "sentry", "logging", "timeout_guard"],
            raise_on_entire_batch_failure=False,
        )
        for _ in range(invocations):
            handled.clear()
            deadline = time.monotonic() + 5.0
            context = FakeLambdaContext(remaining=lambda d=deadline: int((d - time.monotonic()) * 1000))
            response = ob.process_partial_response(event, handler, processor, context)
            returned = time.monotonic()
            failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
            succeeded = {i for i in handled if ids.index(i) % 2 == 0}
            accounted = len(failed) == len(set(failed)) and set(failed) == set(ids) - succeeded
            out.write(
                json.dumps(
                    {
                        "left_ms": round((deadline - returned) * 1000),
                        "handled": len(handled),
                        "failed": len(failed),
                        "accounted": accounted,
                    }
                )
                + "\n"
            )


# -- parent -----------------------------------------------------------------------------------------------
def _spawn(*args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode:
        raise RuntimeError(f"child {args} failed:\n{result.stderr}")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def latency_table(invocations: int) -> None:
    print(f"## Added wall time per invocation (ms; 10 records, 1 failing; {invocations} invocations per row)\n")
    print("| middlewares | backend | 1st invocation | 2nd | steady state (median from the 3rd) | max from the 3rd |")
    print("|---|---|---:|---:|---:|---:|")
    for stack_name in STACKS:
        for backend in BACKENDS:
            (row,) = _spawn("latency", stack_name, backend, str(invocations))
            added = row["added_ms"]
            steady = added[2:]
            print(
                f"| metrics + {stack_name} | {backend} | {added[0]:.1f} | {added[1]:.1f} |"
                f" {statistics.median(steady):.2f} | {max(steady):.2f} |"
            )
    print()


def deadline_trials(trials: int, invocations: int) -> int:
    print(f"## Deadline: {trials} fresh processes x {invocations} invocations, 5 s left, 10 x 1 s records\n")
    with ThreadPoolExecutor(max_workers=4) as pool:  # the handlers sleep: trials overlap without interfering
        results = list(pool.map(lambda _: _spawn("trial", str(invocations)), range(trials)))
    rows = [row for trial in results for row in trial]
    overruns = sum(1 for row in rows if row["left_ms"] < 0)
    lost = sum(1 for row in rows if not row["accounted"])
    for position in range(invocations):
        nth = [trial[position] for trial in results]
        print(
            f"- invocation {position + 1}: ms left at return min {min(r['left_ms'] for r in nth)}"
            f" / median {statistics.median(r['left_ms'] for r in nth):.0f};"
            f" records handled median {statistics.median(r['handled'] for r in nth):.0f} of 10"
        )
    print(f"\n**{overruns} overruns** in {len(rows)} invocations; records unaccounted for: {lost}\n")
    return 1 if overruns or lost else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invocations", type=int, default=12, help="invocations per latency row (default 12)")
    parser.add_argument("--trials", type=int, default=20, help="fresh processes for the deadline (default 20)")
    parser.add_argument("--no-latency", action="store_true")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "latency":
            child_latency(rest[0], rest[1], int(rest[2]))
        else:
            child_trial(int(rest[0]))
        return 0
    if not args.no_latency:
        latency_table(args.invocations)
    return deadline_trials(args.trials, 3) if args.trials else 0


if __name__ == "__main__":
    raise SystemExit(main())
