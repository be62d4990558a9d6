"""What the ``metrics`` middleware costs, and which EMF serializer it should use.

    python benchmarks/bench_metrics.py [--records 10000] [--repeat 5]

1. Throughput: SQS batch, 10 % of the records failing, bare Powertools ``BatchProcessor`` against
   ``observed_batch.BatchProcessor`` with only ``metrics`` enabled (same run, interleaved, best of N).
   Goal: at most 1.5x Powertools' time per record.
2. EMF bytes per invocation (goal: at most 1 KB for 10,000 records).
3. Building the document for one 10,000-record batch: our builder, Powertools' serializer fed the
   same aggregated values, and Powertools ``Metrics``-style per-record ``add_metric`` (which flushes
   every 100 values). The faster spec-valid builder is the one the middleware uses.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from aws_lambda_powertools.utilities.batch import BatchProcessor as PowertoolsBatchProcessor

from observed_batch import (
    BatchContext,
    BatchProcessor,
    BatchSummary,
    EventType,
    Middleware,
    RecordContext,
    process_partial_response,
    sources,
)
from observed_batch.emf import distribution, document
from observed_batch.metric_schema import METRICS
from observed_batch.middleware.metrics import MetricsMiddleware
from observed_batch.testing import FakeLambdaContext, RecordingMiddleware, sqs_record

SCHEMA = Path(__file__).resolve().parent.parent / "tests" / "emf_schema.json"
UNITS = {m.name: m.unit for m in METRICS}


def make_event(count: int) -> dict[str, Any]:
    # Sent over the last 10 s, as a consumer that keeps up would see them.
    first_sent = int(time.time() * 1000) - 10_000
    return {"Records": [sqs_record(i, sent_timestamp_ms=first_sent + i * 10_000 // count) for i in range(count)]}


def best_of(repeat: int, runs: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Best wall time per run name, the runs interleaved so drift hits all alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, run in runs.items():
            gc.collect()
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def throughput(count: int, repeat: int) -> tuple[dict[str, float], list[str]]:
    event = make_event(count)
    failing = {record["messageId"] for record in event["Records"][::10]}

    def handler(record: Any) -> None:
        if record.message_id in failing:
            raise ValueError("cannot process")

    context = FakeLambdaContext()
    documents: list[str] = []
    bare = PowertoolsBatchProcessor(EventType.SQS)
    unobserved = BatchProcessor(EventType.SQS, middleware=[])
    chain_only = BatchProcessor(EventType.SQS, middleware=[_NoOp()])
    observed = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=documents.append)])
    best = best_of(
        repeat,
        {
            "powertools": lambda: process_partial_response(event, handler, bare, context),
            "observed_batch, no middleware": lambda: process_partial_response(event, handler, unobserved, context),
            "observed_batch, no-op middleware": lambda: process_partial_response(event, handler, chain_only, context),
            "observed_batch, metrics": lambda: process_partial_response(event, handler, observed, context),
        },
    )
    return best, documents


class _NoOp(Middleware):
    """Wraps every record and does nothing: the cost of the chain itself, for reference."""

    name = "noop"

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        yield

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        pass


def samples(count: int) -> tuple[list[int], list[int]]:
    """Real per-record durations (ns) and ages (ms) of one batch."""
    event = make_event(count)
    recorder = RecordingMiddleware()
    processor = BatchProcessor(EventType.SQS, middleware=[recorder])
    started_ms = time.time() * 1000
    process_partial_response(event, lambda record: None, processor)
    durations = [record.duration_ns for record in recorder.records()]
    ages = [round(started_ms - (sources.sent_timestamp_ms(EventType.SQS, r) or 0)) for r in event["Records"]]
    return durations, ages


def builders(count: int, repeat: int) -> list[tuple[str, float, int, int, bool]]:
    durations, ages = samples(count)
    counts = {"BatchRecordSuccesses": count - count // 10, "BatchRecordFailures": count // 10}
    counts |= {"BatchRecordsSkipped": 0, "BatchSize": count}
    timestamp = int(time.time() * 1000)

    def values() -> dict[str, Any]:
        return {
            **counts,
            "RecordProcessingTime": distribution(durations, divisor=1e6),
            "RecordAge": distribution(ages),
        }

    def ours() -> list[str]:
        metrics = [(name, UNITS[name], value) for name, value in values().items()]
        built = document(
            namespace="ObservedBatch",
            dimension_sets=[["service"]],
            dimensions={"service": "orders"},
            metrics=metrics,
            timestamp_ms=timestamp,
        )
        return [json.dumps(built, separators=(",", ":"))]

    def powertools_aggregated() -> list[str]:
        provider = AmazonCloudWatchEMFProvider(namespace="ObservedBatch", service="orders")
        metric_set = {name: {"Unit": UNITS[name], "StorageResolution": 60, "Value": v} for name, v in values().items()}
        built = provider.serialize_metric_set(metrics=metric_set, dimensions={"service": "orders"}, metadata={})
        return [json.dumps(built, separators=(",", ":"))]

    def powertools_per_record() -> list[str]:
        provider = AmazonCloudWatchEMFProvider(namespace="ObservedBatch", service="orders")
        output = io.StringIO()
        with contextlib.redirect_stdout(output):  # Powertools prints a document every 100 values
            for duration in durations:
                provider.add_metric(name="RecordProcessingTime", unit="Milliseconds", value=duration / 1e6)
            for age in ages:
                provider.add_metric(name="RecordAge", unit="Milliseconds", value=age)
            for name, value in counts.items():
                provider.add_metric(name=name, unit="Count", value=value)
            print(json.dumps(provider.serialize_metric_set()))
        return output.getvalue().splitlines()

    runs = {
        "own builder": ours,
        "Powertools serializer, our aggregates": powertools_aggregated,
        "Powertools add_metric per record": powertools_per_record,
    }
    best = best_of(repeat, runs)
    rows = []
    for name, run in runs.items():
        lines = run()
        rows.append((name, best[name], sum(len(line) + 1 for line in lines), len(lines), _valid(lines)))
    return rows


def _valid(lines: list[str]) -> bool:
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - dev dependency
        return True
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    return all(validator.is_valid(json.loads(line)) for line in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    count, repeat = args.records, args.repeat

    best, documents = throughput(count, repeat)
    baseline = best["powertools"]
    print(f"{count:,} SQS records, 10 % failing, best of {repeat}")
    print(f"{'':34} {'us/record':>10} {'vs Powertools':>14}")
    for name, seconds in best.items():
        print(f"{name:34} {seconds / count * 1e6:10.2f} {seconds / baseline:13.2f}x")
    own = (best["observed_batch, metrics"] - best["observed_batch, no-op middleware"]) / count * 1e6
    print(f"metrics middleware's own work: {own:.2f} us/record ({own * count / baseline / 1e6:.2f}x of Powertools)")
    sizes = sorted({len(line.encode()) for line in documents})
    print(f"EMF per invocation: 1 document, {sizes[0]}-{sizes[-1]} bytes")
    print()
    print(f"Building one document for {count:,} records, best of {repeat}")
    print(f"{'':40} {'ms':>8} {'bytes':>8} {'lines':>6} {'spec-valid':>10}")
    for name, seconds, size, lines, valid in builders(count, repeat):
        print(f"{name:40} {seconds * 1e3:8.2f} {size:8,} {lines:6} {valid!s:>10}")


if __name__ == "__main__":
    main()
