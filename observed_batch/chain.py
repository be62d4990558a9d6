"""Runs an ordered middleware chain around each record; the first middleware is outermost."""

from __future__ import annotations

import logging
import sys
from array import array
from collections.abc import Iterator, Sequence
from typing import Any

from aws_lambda_powertools.utilities.batch.exceptions import (
    SQSFifoCircuitBreakerError,
    SQSFifoMessageGroupCircuitBreakerError,
)

from observed_batch import sources
from observed_batch.errors import FailRecord
from observed_batch.typing import (
    DEAD_LETTERED,
    FIFO_SHORT_CIRCUIT,
    RESOLUTIONS,
    BatchContext,
    Middleware,
    Outcome,
    RecordContext,
)

__all__ = ["Chain", "release_resolved", "settle"]

logger = logging.getLogger("observed_batch")

_FIFO_BREAKERS = (SQSFifoCircuitBreakerError, SQSFifoMessageGroupCircuitBreakerError)
_DONE = object()
#: In ``entered``: this middleware only has ``on_record_failed`` for the record (no generator to resume).
_ON_FAILURE: Any = object()


def _overrides(middleware: object, hook: str) -> bool:
    """Hooks left as the no-op base implementation are not called at all (zero cost)."""
    implementation = getattr(type(middleware), hook, None)
    return implementation is not None and implementation is not getattr(Middleware, hook)


class Chain:
    __slots__ = ("_budget", "_durations", "_end", "_record", "_start", "middlewares")

    def __init__(self, middlewares: Sequence[Middleware]) -> None:
        self.middlewares = tuple(middlewares)
        self._start = tuple(m for m in self.middlewares if _overrides(m, "on_batch_start"))
        # Per record: a middleware's wrap_record if it has one, else (None) its on_record_failed, if any.
        self._record = tuple(
            (m, m.wrap_record if _overrides(m, "wrap_record") else None)
            for m in self.middlewares
            if _overrides(m, "wrap_record") or _overrides(m, "on_record_failed")
        )
        self._durations = any(getattr(type(m), "needs_durations", False) is True for m in self.middlewares)
        # Batch ends unwind like nested context managers: outermost middleware last.
        self._end = tuple(m for m in reversed(self.middlewares) if _overrides(m, "on_batch_end"))
        self._budget = tuple(m for m in self.middlewares if _overrides(m, "flush_budget_ms"))

    def __bool__(self) -> bool:
        return bool(self.middlewares)

    def check_event_type(self, event_type: Any) -> None:
        """Each middleware refuses a source it cannot serve (``ConfigError``, not contained: configuration)."""
        for middleware in self.middlewares:
            if _overrides(middleware, "check_event_type"):
                middleware.check_event_type(event_type)

    def resolve(self, record: RecordContext, middleware: Any, resolution: str) -> bool:
        """``RecordContext.resolve``: only a declared policy may take a failed record out of the failures."""
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}, not {resolution!r}")
        if getattr(type(middleware), "policy", False) is not True:
            _contain(record.batch, middleware, "resolve", PermissionError("only a policy middleware may resolve"))
            return False
        if record.outcome is not Outcome.FAILURE or record._resolution is not None:
            return False
        record._resolution = resolution
        batch = record.batch
        batch._resolved.append(record)
        if resolution == DEAD_LETTERED:
            batch.summary.dead_lettered += 1
        else:
            batch.summary.dropped += 1
        return True

    def start_batch(self, batch: BatchContext) -> None:
        batch._steps = self._record  # on_batch_start may narrow it (BatchContext.skip_record_hooks)
        batch._wraps = any(wrap is not None for _, wrap in self._record)
        batch._chain = self
        if self._durations:
            batch.durations_ns = array("q")  # 8 bytes a record, not ~36 for a list of ints
        for middleware in self._start:
            try:
                middleware.on_batch_start(batch)
            except Exception as exc:
                _contain(batch, middleware, "on_batch_start", exc)

    def telemetry_budget_ms(self, batch: BatchContext) -> int:
        """Sum of the middlewares' ``flush_budget_ms`` now (see ``BatchContext.telemetry_budget_ms``)."""
        budget = 0
        for middleware in self._budget:
            try:
                budget += max(0, int(middleware.flush_budget_ms(batch)))
            except Exception as exc:
                _contain(batch, middleware, "flush_budget_ms", exc)
        return budget

    def end_batch(self, batch: BatchContext) -> None:
        summary = batch.summary
        summary.duration_ms = batch.elapsed_ms()
        for middleware in self._end:
            try:
                middleware.on_batch_end(batch, summary)
            except Exception as exc:
                _contain(batch, middleware, "on_batch_end", exc)
        for name, count in summary.middleware_errors.items():
            if count > 1:
                logger.warning("observed_batch middleware %r failed %d times in this batch", name, count)

    def enter(self, record: RecordContext) -> list[Iterator[None] | None]:
        """Run every middleware up to its ``yield``. Returns their suspended hooks, aligned with the
        batch's record middlewares (``None`` where one failed to enter).

        A ``FailRecord`` stops the descent: inner middlewares and the handler do not run, and the
        record is marked skipped (the caller reports it as failed to Powertools). After a
        ``FailRecord(rest_of_batch=True)`` later records enter no middleware at all.
        """
        entered: list[Iterator[None] | None] = []
        batch = record.batch
        stop = batch._stop
        if stop is not None:
            record.outcome = Outcome.SKIPPED
            record.skip_reason = getattr(stop[1], "reason", None)
            record.exc_info = stop
            return entered
        for middleware, wrap in batch._steps:
            if wrap is None:
                entered.append(_ON_FAILURE)
                continue
            try:
                hook = wrap(record)
                next(hook)
            except FailRecord as guard:
                record.outcome = Outcome.SKIPPED
                record.skip_reason = guard.reason
                record.exc_info = sys.exc_info()
                if guard.rest_of_batch:
                    batch._stop = record.exc_info
                break
            except StopIteration:
                entered.append(None)
                _contain(record.batch, middleware, "wrap_record", RuntimeError("wrap_record did not yield"))
            except Exception as exc:
                entered.append(None)
                _contain(record.batch, middleware, "wrap_record", exc)
            except BaseException:
                _unwind(entered)  # KeyboardInterrupt, SystemExit, cancellation: nothing stays bound
                raise
            else:
                entered.append(hook)
        return entered

    def exit(self, record: RecordContext, entered: list[Iterator[None] | None], entry: Any) -> None:
        """Classify the core's result, update the batch summary, resume middlewares inside-out."""
        batch = record.batch
        if record.outcome is None and type(entry) is tuple and entry and entry[0] == "success":
            # The common case, inlined (every call saved is ~5 % of a bare record).
            record.outcome = Outcome.SUCCESS
            record.result = entry[1]
            batch.summary.successes += 1
        else:
            if record.outcome is not Outcome.SKIPPED:
                outcome = record.outcome = _classify(entry if record.outcome is None else None, record.exc_info)
                if outcome is Outcome.SUCCESS:
                    record.result = entry[1]
                elif outcome is Outcome.SKIPPED:
                    record.skip_reason = FIFO_SHORT_CIRCUIT
            _count(batch, record.outcome, record.raw)
        if batch.durations_ns is not None and record.outcome is not Outcome.SKIPPED:
            batch.durations_ns.append(record.duration_ns)
        steps = batch._steps
        position = len(entered)
        while position:
            position -= 1
            hook = entered[position]
            if hook is None:
                continue
            if hook is _ON_FAILURE:
                if record.outcome is Outcome.FAILURE:
                    try:
                        steps[position][0].on_record_failed(record)
                    except Exception as exc:
                        _contain(batch, steps[position][0], "on_record_failed", exc)
                    except BaseException:
                        _unwind(entered[:position])
                        raise
                continue
            try:
                if next(hook, _DONE) is _DONE:
                    continue
            except Exception as exc:
                _contain(record.batch, steps[position][0], "wrap_record", exc)
                continue
            except BaseException:
                _unwind(entered[:position])
                raise
            middleware = steps[position][0]
            _contain(record.batch, middleware, "wrap_record", RuntimeError("wrap_record yielded twice"))
            close = getattr(hook, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as exc:
                    _contain(record.batch, middleware, "wrap_record", exc)


def _unwind(hooks: list[Iterator[None] | None]) -> None:
    """A ``BaseException`` is leaving the chain: close the suspended hooks, innermost first, so that
    their ``finally`` blocks restore what they bound (contextvars, current span, Sentry scope)
    before it propagates. It is not contained: ``KeyboardInterrupt`` / ``SystemExit`` still end
    the invocation."""
    for hook in reversed(hooks):
        close = getattr(hook, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                logger.debug("observed_batch: a middleware failed while closing", exc_info=True)


def release_resolved(batch: BatchContext, processor: Any) -> None:
    """Before Powertools builds the response (``_clean``): take the records policies resolved out of its
    ``fail_messages`` and ``exceptions`` (kept aligned: ``failure_handler`` appends to both), so that the
    response, ``raise_on_entire_batch_failure`` and ``processor.exceptions`` agree with the resolutions."""
    exceptions = getattr(processor, "exceptions", None)
    fail_messages = getattr(processor, "fail_messages", None)
    if not isinstance(exceptions, list) or not isinstance(fail_messages, list):
        return
    for record in batch._resolved:
        # The core kept the very tuple Powertools appended (sync: exceptions[-1]; async: failure_handler).
        position = next((i for i, known in enumerate(exceptions) if known is record.exc_info), None)
        if position is None or len(exceptions) != len(fail_messages):
            logger.error(
                "observed_batch: record %s was resolved as %s but the processor's failure bookkeeping does not"
                " hold it (a failure_handler override?); it stays in batchItemFailures",
                record.message_id,
                record.resolution,
            )
            continue
        del exceptions[position], fail_messages[position]


def settle(batch: BatchContext, raw: Any, index: int, entry: Any, exc_info: Any, duration_ns: int) -> None:
    """A record no middleware wrapped: count it (the summary stays exact), keep its duration, and only if it
    failed build its ``RecordContext`` for the ``on_record_failed`` hooks, innermost first."""
    outcome = _classify(entry, exc_info)
    _count(batch, outcome, raw)
    if outcome is Outcome.SKIPPED:
        return
    if batch.durations_ns is not None:
        batch.durations_ns.append(duration_ns)
    if outcome is not Outcome.FAILURE or not batch._steps:
        return
    record = RecordContext(batch, raw, index)
    record.outcome, record.exc_info, record.duration_ns = outcome, exc_info, duration_ns
    for middleware, _ in reversed(batch._steps):
        try:
            middleware.on_record_failed(record)
        except Exception as exc:
            _contain(batch, middleware, "on_record_failed", exc)


def _count(batch: BatchContext, outcome: Outcome | None, raw: Any) -> None:
    summary = batch.summary
    if outcome is Outcome.SUCCESS:
        summary.successes += 1
    elif outcome is Outcome.SKIPPED:
        summary.skipped += 1
    else:
        summary.failures += 1
        summary.failed_ids.append(sources.record_identifier(batch.event_type, raw))


def _classify(entry: Any, exc_info: Any) -> Outcome:
    """What Powertools decided: its success entry, its FIFO short-circuit, or a failure."""
    if type(entry) is tuple and entry and entry[0] == "success":
        return Outcome.SUCCESS
    if exc_info is not None and isinstance(exc_info[1], _FIFO_BREAKERS):
        return Outcome.SKIPPED
    return Outcome.FAILURE


def _contain(batch: BatchContext, middleware: Any, phase: str, exc: BaseException) -> None:
    """Log a middleware's error once per batch per middleware; the record outcome stays the core's."""
    name = getattr(middleware, "name", None) or type(middleware).__name__
    errors = batch.summary.middleware_errors
    count = errors.get(name, 0)
    errors[name] = count + 1
    if count == 0:
        logger.warning(
            "observed_batch middleware %r failed in %s; record outcomes are unaffected",
            name,
            phase,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
