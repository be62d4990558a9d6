"""Cost of the ``logging`` middleware per record, against bare Powertools in the same run.

    python benchmarks/bench_logging.py [--records 10000] [--fail-every 10] [--repeat 5]

Scenarios (same event, same handler, 10% of records raise, output to /dev/null):

- ``powertools``: bare ``aws_lambda_powertools`` BatchProcessor, no logging at all;
- ``powertools+Logger``: the docs' pattern, a Powertools ``Logger`` line per record
  (``logger.info`` per record, ``logger.exception`` per failure);
- ``observed (no middleware)``: observed_batch with ``middleware=[]``;
- ``observed no-op middleware``: one middleware whose ``wrap_record`` only yields (the chain's own cost);
- ``observed logging``: ``LoggingMiddleware()`` at the default level (INFO): context bound per
  record, one error line per failure, one summary line.

Reports the best of ``--repeat`` runs in µs/record and the ratio to bare Powertools (goal <= 2x).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor as PtBatchProcessor
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.batch import process_partial_response as pt_process_partial_response

from observed_batch import BatchProcessor, Middleware, RecordContext, process_partial_response
from observed_batch.middleware import LoggingMiddleware
from observed_batch.testing import sqs_event


def _make_handler(fail_every: int) -> Callable[[Any], Any]:
    def record_handler(record: Any) -> Any:
        amount = int(record.attributes.approximate_receive_count) + len(record.body)
        if int(record.attributes.sent_timestamp) % fail_every == 0:
            raise ValueError(f"payment declined for {record.message_id}")
        return amount

    return record_handler


def _make_logged_handler(fail_every: int, logger: Logger) -> Callable[[Any], Any]:
    """The Powertools docs' pattern: a Logger line per record, the exception logged on failure."""
    inner = _make_handler(fail_every)

    def record_handler(record: Any) -> Any:
        logger.info("processing record", message_id=record.message_id)
        try:
            return inner(record)
        except Exception:
            logger.exception("record failed", message_id=record.message_id)
            raise

    return record_handler


class _Noop(Middleware):
    """What the chain itself costs a middleware that does nothing around each record."""

    name = "noop"

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        yield


def _time(scenarios: dict[str, Callable[[], Any]], repeat: int, records: int) -> dict[str, float]:
    """Best µs/record of each scenario; rounds interleave the scenarios so that a noisy neighbour
    slows all of them alike rather than the one that happened to run at the time."""
    best = dict.fromkeys(scenarios, float("inf"))
    for _ in range(repeat):
        for name, run in scenarios.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / records * 1e6 for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--fail-every", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    event = sqs_event(args.records)
    handler = _make_handler(args.fail_every)
    scenarios: dict[str, Callable[[], Any]] = {}

    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        pt_processor = PtBatchProcessor(EventType.SQS)
        scenarios["powertools"] = lambda: pt_process_partial_response(event, handler, pt_processor)

        pt_logger = Logger(service="bench", logger_handler=logging.StreamHandler(devnull))
        logged_handler = _make_logged_handler(args.fail_every, pt_logger)
        scenarios["powertools+Logger"] = lambda: pt_process_partial_response(event, logged_handler, pt_processor)

        bare = BatchProcessor(EventType.SQS, middleware=[])
        scenarios["observed (no middleware)"] = lambda: process_partial_response(event, handler, bare)

        chained = BatchProcessor(EventType.SQS, middleware=[_Noop()])
        scenarios["observed no-op middleware"] = lambda: process_partial_response(event, handler, chained)

        logged = BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware()])
        scenarios["observed logging"] = lambda: process_partial_response(event, handler, logged)

        for run in scenarios.values():  # warm up imports, linecache, structlog caches
            run()
        results = _time(scenarios, args.repeat, args.records)

    base = results["powertools"]
    print(
        f"{args.records} SQS records, 1 in {args.fail_every} failing, best of {args.repeat}, "
        f"Python {sys.version.split()[0]}"
    )
    for name, micros in results.items():
        print(f"  {name:<26} {micros:8.2f} µs/record  {micros / base:5.2f}x powertools")


if __name__ == "__main__":
    main()
