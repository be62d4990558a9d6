"""Fail the records a batch has no time left for, instead of letting Lambda time out mid-batch.

A Lambda that times out mid-batch returns no partial response, so the whole batch comes back,
including the records that already succeeded. The guard checks the remaining time before each
record; once it is below what the rest of the invocation needs, that record and every record after
it are failed without calling the handler (``FailRecord("timeout_guard", rest_of_batch=True)``).
They are reported in ``batchItemFailures`` and come back on the next delivery; the records that
succeeded are deleted / checkpointed.

What the rest of the invocation needs, checked before each record:

- the margin, ``max(min_remaining_ms, remaining_fraction * time remaining at batch start)``;
- the end-of-batch telemetry budget, ``batch.telemetry_budget_ms()``: the flush timeouts of the enabled
  middlewares that have something to flush and whose backend is up (0 for a backend whose breaker is
  open). Those flushes are bounded by the deadline anyway; keeping their time free lets them finish;
- with ``estimate=True`` (the default), a moving average of how long this batch's records took inside
  the guard (the handler), and (sync processing) of the time each record spends outside it: Powertools'
  bookkeeping and the middlewares placed before the guard. The fixed margin alone only protects handlers
  faster than the margin.

Once tripped, the guard stays tripped for the rest of the batch, which keeps FIFO order and makes the
first skipped record the Kinesis / DynamoDB checkpoint. The records after the first skipped one enter
no middleware at all (a slow middleware placed before the guard would otherwise still run for each of
them): middlewares outside the guard see the first skipped record; the batch summary counts them all.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

from observed_batch.errors import FailRecord
from observed_batch.options import Option, Options, validated
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

__all__ = ["DEFAULT_MIN_REMAINING_MS", "DEFAULT_REMAINING_FRACTION", "REASON", "TimeoutGuardMiddleware"]

logger = logging.getLogger("observed_batch.timeout_guard")

#: ``RecordContext.skip_reason`` of the records the guard failed.
REASON = "timeout_guard"
DEFAULT_MIN_REMAINING_MS = 2000
DEFAULT_REMAINING_FRACTION = 0.10
#: Weight of the newest record duration in the moving average: recent records predict the next best.
_SMOOTHING = 0.3
_RAN_HANDLER = (Outcome.SUCCESS, Outcome.FAILURE)


class _BatchState:
    """Per-batch state, kept in ``batch.scratch[guard]`` (per instance)."""

    __slots__ = (
        "average_ms",
        "initial_ms",
        "last_exit",
        "margin_ms",
        "outside_ms",
        "remaining_ms",
        "tripped_at_ms",
        "tripped_index",
        "tripped_needed_ms",
        "tripped_telemetry_ms",
    )

    def __init__(self, initial_ms: int, margin_ms: float, remaining_ms: Callable[[], int]) -> None:
        self.initial_ms = initial_ms
        #: The Lambda context's ``get_remaining_time_in_millis``, looked up once per batch (asked per record).
        self.remaining_ms = remaining_ms
        self.margin_ms = margin_ms
        #: Moving average of the duration of records that ran, in ms (``None`` before the first).
        self.average_ms: float | None = None
        #: Moving average of the time between one record leaving the guard and the next entering it (sync).
        self.outside_ms: float | None = None
        self.last_exit: float | None = None
        self.tripped_index: int | None = None
        self.tripped_at_ms: int | None = None
        self.tripped_needed_ms = 0.0
        self.tripped_telemetry_ms = 0


@validated
class TimeoutGuardMiddleware(Middleware):
    """Fails the records not yet started once the Lambda's remaining time drops below the margin.

    Place it last in the chain (the default order does): middlewares outside it see the skipped
    records with ``outcome == Outcome.SKIPPED`` and ``skip_reason == "timeout_guard"``; middlewares
    inside it never see them.
    """

    name = "timeout_guard"
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option(
            "min_remaining_ms", int, DEFAULT_MIN_REMAINING_MS, "Never start a record with less time left than this."
        ),
        Option(
            "remaining_fraction",
            float,
            DEFAULT_REMAINING_FRACTION,
            "... or less than this fraction of the time left when the batch started, if larger.",
            below=1,
        ),
        Option("estimate", bool, True, "Add the moving average of this batch's record durations to the margin."),
        Option(
            "clock",
            None,
            None,
            "Seconds clock used to time records for the estimate (tests script it).",
            default_doc="`time.perf_counter`",
            accepts=callable,
            expects="a callable returning seconds",
        ),
    )

    def __init__(
        self,
        *,
        min_remaining_ms: int = DEFAULT_MIN_REMAINING_MS,
        remaining_fraction: float = DEFAULT_REMAINING_FRACTION,
        estimate: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``clock`` (seconds, monotonic) measures record durations for the estimate; tests script it."""
        # Each value was checked against OPTIONS (@validated).
        self.min_remaining_ms = min_remaining_ms
        self.remaining_fraction = float(remaining_fraction)
        self.estimate = estimate
        self._clock: Callable[[], float] = clock if clock is not None else time.perf_counter

    def on_batch_start(self, batch: BatchContext) -> None:
        initial = batch.remaining_time_ms()
        if initial is None:
            batch.skip_record_hooks(self)  # no Lambda context (local run, tests): nothing to guard against
            return
        margin = max(float(self.min_remaining_ms), self.remaining_fraction * initial)
        batch.scratch[self] = _BatchState(initial, margin, batch.lambda_context.get_remaining_time_in_millis)
        if initial < margin:
            logger.warning(
                "timeout_guard: the batch starts with %d ms left, below the %.0f ms margin; every record will"
                " be failed and retried. Raise the function timeout or lower"
                " OBSERVED_BATCH_TIMEOUT_GUARD_MIN_REMAINING_MS.",
                initial,
                margin,
            )

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        batch = record.batch
        state: _BatchState | None = batch.scratch.get(self)
        if state is None:
            yield
            return
        clock, estimate = self._clock, self.estimate
        entered = clock()
        # Moving averages (weight _SMOOTHING for the newest sample), inlined: this runs for every record.
        if estimate and state.last_exit is not None and not batch.is_async:
            sample, outside = (entered - state.last_exit) * 1000.0, state.outside_ms
            state.outside_ms = sample if outside is None else outside + _SMOOTHING * (sample - outside)
        remaining = int(state.remaining_ms())
        telemetry_ms = batch.telemetry_budget_ms()
        needed = state.margin_ms + telemetry_ms
        if estimate:
            needed += (state.average_ms or 0.0) + (state.outside_ms or 0.0)
        if remaining < needed:
            state.tripped_index = record.index
            state.tripped_at_ms = remaining
            state.tripped_needed_ms = needed
            state.tripped_telemetry_ms = telemetry_ms
            raise FailRecord(
                REASON,
                f"not processed: {remaining} ms were left when record {record.index} was due, below the"
                f" {needed:.0f} ms the timeout guard keeps for the rest of the invocation",
                rest_of_batch=True,
            )
        yield
        exited = clock()
        if record.outcome in _RAN_HANDLER:
            sample, average = (exited - entered) * 1000.0, state.average_ms
            state.average_ms = sample if average is None else average + _SMOOTHING * (sample - average)
        state.last_exit = exited

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: _BatchState | None = batch.scratch.get(self)
        if state is None or state.tripped_index is None:
            return
        logger.warning(
            "timeout_guard: %d of %d records were failed without running (%d ms left at record %d, needed %.0f ms:"
            " margin %.0f ms + telemetry budget %d ms%s); they will be retried",
            batch.size - state.tripped_index,
            batch.size,
            state.tripped_at_ms,
            state.tripped_index,
            state.tripped_needed_ms,
            state.margin_ms,
            state.tripped_telemetry_ms,
            _estimate_text(state) if self.estimate else "",
        )


def _estimate_text(state: _BatchState) -> str:
    text = ""
    if state.average_ms is not None:
        text += f" + record estimate {state.average_ms:.0f} ms"
    if state.outside_ms is not None:
        text += f" + outside the guard {state.outside_ms:.0f} ms"
    return text
