"""timeout_guard with the metrics and logging middlewares: guard skips are counted as skipped, not failed."""

from __future__ import annotations

import json
from typing import Any

from observed_batch import BatchProcessor, EventType, process_partial_response
from observed_batch.middleware import LoggingMiddleware, MetricsMiddleware, TimeoutGuardMiddleware
from observed_batch.testing import FakeLambdaContext, sqs_event


class LogSink:
    """An injected logger: the logging methods the logging middleware calls."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def _line(self, level: str, event: str, **fields: Any) -> None:
        self.lines.append({"level": level, "event": event, **fields})

    def debug(self, event: str, **fields: Any) -> None:
        self._line("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._line("info", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._line("error", event, **fields)


def run_tripping_batch(*middleware: Any) -> dict[str, Any]:
    """Five records of 3 s each on a 10 s budget: records 3 and 4 are skipped by the guard."""
    elapsed = [0]

    def handler(record: Any) -> None:
        elapsed[0] += 3000

    context = FakeLambdaContext(remaining=lambda: 10_000 - elapsed[0])
    guard = TimeoutGuardMiddleware(estimate=False)
    processor = BatchProcessor(EventType.SQS, middleware=[*middleware, guard])
    response: dict[str, Any] = process_partial_response(sqs_event(5), handler, processor, context)
    return response


def test_metrics_count_guard_skips_in_batch_records_skipped() -> None:
    # GIVEN the metrics middleware writing EMF to a list
    documents: list[str] = []

    # WHEN the guard trips at record 3 of 5
    response = run_tripping_batch(MetricsMiddleware(sink=documents.append))

    # THEN the two records come back and are counted as skipped, not as failures
    assert len(response["batchItemFailures"]) == 2
    (document,) = [json.loads(d) for d in documents]
    counts = {name: document[name] for name in ("BatchRecordSuccesses", "BatchRecordFailures", "BatchRecordsSkipped")}
    assert counts == {"BatchRecordSuccesses": 3, "BatchRecordFailures": 0, "BatchRecordsSkipped": 2}
    assert document["BatchSize"] == 5


def test_logging_summarises_guard_skips_without_failure_lines() -> None:
    # GIVEN the logging middleware writing to an injected logger
    sink = LogSink()

    # WHEN the guard trips at record 3 of 5
    run_tripping_batch(LoggingMiddleware(logger=sink))

    # THEN there is no record_failed line, and the summary counts the two skips
    assert [line["event"] for line in sink.lines] == ["batch_summary"]
    summary = sink.lines[0]
    assert (summary["successes"], summary["failures"], summary["skipped"]) == (3, 0, 2)
    assert summary["failed_message_ids"] == []
