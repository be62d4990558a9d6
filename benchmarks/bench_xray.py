"""Per-record cost of the ``xray`` tracing backend against a hand-rolled Powertools subsegment per record.

    python benchmarks/bench_xray.py [--records 2000] [--repeats 7] [--json out.json]

Three ways to process the same SQS batch, each under a Lambda facade segment (the SDK's Lambda context,
``streaming_threshold=0`` as in Lambda) with the real UDP emitter sending to a local socket that is
never read (the X-Ray daemon's side costs the function nothing):

- ``bare``: Powertools' ``BatchProcessor``, no tracing;
- ``hand_rolled``: Powertools' ``BatchProcessor``, the handler opening
  ``tracer.provider.in_subsegment("## process orders")`` and annotating ``message_id`` itself (what a
  Powertools user writes to get a subsegment per record);
- ``xray``: ``observed_batch.BatchProcessor`` with ``tracing`` on ``backend=xray`` (three annotations,
  the subsegment sent on its own).

Prints µs per record (best of the repeats) and the ratio ``xray / hand_rolled``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor as PowertoolsBatchProcessor
from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_xray_sdk.core.lambda_launcher import LambdaContext
from aws_xray_sdk.core.recorder import AWSXRayRecorder

from observed_batch import BatchProcessor
from observed_batch.middleware import TracingMiddleware
from observed_batch.testing import sqs_event

TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def _recorder(address: str) -> AWSXRayRecorder:
    os.environ["_X_AMZN_TRACE_ID"] = TRACE_HEADER
    recorder = AWSXRayRecorder()
    recorder.configure(daemon_address=address, context=LambdaContext(), streaming_threshold=0, sampling=False)
    return recorder


def _variants(recorder: AWSXRayRecorder) -> dict[str, Callable[[dict[str, Any]], Any]]:
    def plain(record: Any) -> None:
        return None

    def hand_rolled(record: Any) -> None:
        with recorder.in_subsegment("## process orders") as subsegment:
            subsegment.put_annotation("message_id", record.message_id)

    bare = PowertoolsBatchProcessor(EventType.SQS)
    by_hand = PowertoolsBatchProcessor(EventType.SQS)
    ours = BatchProcessor(EventType.SQS, middleware=[TracingMiddleware(backend="xray", xray_recorder=recorder)])
    return {
        "bare": lambda event: process_partial_response(event, plain, bare),
        "hand_rolled": lambda event: process_partial_response(event, hand_rolled, by_hand),
        "xray": lambda event: process_partial_response(event, plain, ours),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", help="write the results to this file")
    arguments = parser.parse_args(argv)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    recorder = _recorder(f"127.0.0.1:{sink.getsockname()[1]}")
    event = sqs_event(arguments.records)
    results: dict[str, float] = {}
    variants = _variants(recorder)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(arguments.repeats):  # interleaved, so that drift affects every variant alike
        for name, run in variants.items():
            started = time.perf_counter_ns()
            run(event)
            best[name] = min(best[name], (time.perf_counter_ns() - started) / 1e3 / arguments.records)
    results.update({f"{name}_us_per_record": round(value, 2) for name, value in best.items()})
    results["xray_over_hand_rolled"] = round(best["xray"] / best["hand_rolled"], 3)
    sink.close()
    for name, value in results.items():
        print(f"{name:28s} {value}")
    if arguments.json:
        with open(arguments.json, "w") as out:
            json.dump(results, out, indent=2)
    return results


if __name__ == "__main__":
    main()
