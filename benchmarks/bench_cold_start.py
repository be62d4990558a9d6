"""Cold start as Lambda bills it: whole-process wall time of a fresh interpreter that imports, builds the
processor and runs a first batch (10 SQS records, none failing), against the same with bare Powertools.

    python benchmarks/bench_cold_start.py                  # every variant, 15 pairs each (~1 min)
    python benchmarks/bench_cold_start.py --pairs 30 --only all,sentry

Each variant runs alternately with bare Powertools (A B B A A B ...: the order flips every pair), after one
warm-up pair that writes the bytecode caches (as a deployment package has them). Reported: medians of both,
the median of the paired differences (variant minus bare, ms) of the wall time and of the CPU time (user +
system of the child, which a loaded machine inflates far less than the wall time; a cold start is
single-threaded, so on an idle machine the two agree within a few ms), and the median of the paired
ratios. ``SENTRY_DSN`` points at a Sentry receiver on 127.0.0.1 and ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
at an OTLP receiver on 127.0.0.1, both started here, so no variant waits for a network.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

_FIRST_BATCH = """
from observed_batch.testing import sqs_event
process_partial_response(sqs_event(10), lambda record: record.message_id, processor)
"""
BARE = (
    "from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response\n"
    "processor = BatchProcessor(EventType.SQS)\n" + _FIRST_BATCH
)


def ours(middleware: str) -> str:
    names = [n for n in middleware.split(",") if n]
    return (
        "from observed_batch import BatchProcessor, EventType, process_partial_response\n"
        f"processor = BatchProcessor(EventType.SQS, middleware={names!r})\n" + _FIRST_BATCH
    )


VARIANTS = {
    "chain_empty": ("", False),
    "metrics": ("metrics", False),
    "tracing": ("tracing", False),
    "sentry": ("sentry", False),
    "sentry_dsn": ("sentry", True),
    "logging": ("logging", False),
    "timeout_guard": ("timeout_guard", False),
    "all": ("metrics,tracing,sentry,logging,timeout_guard", False),
    "all_dsn": ("metrics,tracing,sentry,logging,timeout_guard", True),
}


def _run(code: str, environ: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one fresh interpreter running ``code``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=environ,
        cwd=tempfile.gettempdir(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(done.stderr.decode())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed * 1000.0, cpu * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--only", help=f"comma list of: {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(VARIANTS)

    from otlp_receiver import OtlpReceiver
    from sentry_receiver import SentryReceiver

    base = {k: v for k, v in os.environ.items() if not k.startswith(("OBSERVED_BATCH_", "SENTRY_", "OTEL_"))}
    # As a deployment package has them (pip compiles bytecode): the warm-up pair writes every module's .pyc,
    # ours included (an editable checkout has none, and PYTHONDONTWRITEBYTECODE may be set).
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    cache = tempfile.TemporaryDirectory()
    base["PYTHONPYCACHEPREFIX"] = cache.name
    print(f"# Cold start: fresh interpreter, import + build + first batch of 10 SQS records ({args.pairs} pairs)\n")
    print(
        "| variant | SENTRY_DSN | ours, median ms | bare, median ms | added, median of pairs"
        " | added CPU, median of pairs | ratio (paired) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    with OtlpReceiver() as otlp, SentryReceiver() as sentry:
        base["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = otlp.endpoint
        base["POWERTOOLS_SERVICE_NAME"] = "orders"
        for name in chosen:
            middleware, with_dsn = VARIANTS[name]
            environ = dict(base, **({"SENTRY_DSN": sentry.dsn} if with_dsn else {}))
            code = ours(middleware)
            _run(code, environ), _run(BARE, environ)  # warm-up: bytecode caches
            ours_ms, bare_ms, cpu_diffs = [], [], []
            for pair in range(args.pairs):
                if pair % 2:
                    (bare_wall, bare_cpu), (ours_wall, ours_cpu) = _run(BARE, environ), _run(code, environ)
                else:
                    (ours_wall, ours_cpu), (bare_wall, bare_cpu) = _run(code, environ), _run(BARE, environ)
                ours_ms.append(ours_wall)
                bare_ms.append(bare_wall)
                cpu_diffs.append(ours_cpu - bare_cpu)
            diffs = [a - b for a, b in zip(ours_ms, bare_ms, strict=True)]
            ratios = [a / b for a, b in zip(ours_ms, bare_ms, strict=True)]
            print(
                f"| {middleware or '(chain, none)'} | {'set' if with_dsn else '-'} | {statistics.median(ours_ms):.0f}"
                f" | {statistics.median(bare_ms):.0f} | {statistics.median(diffs):+.0f} ms"
                f" | {statistics.median(cpu_diffs):+.0f} ms | {statistics.median(ratios):.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
