"""The record driver: the steps around the core's handling of a batch and of each record, written once.

The processors (``processors.py``: sync and async; ``custom.py``: users' own processors) only adapt
Powertools' hook points to these steps: they run the core themselves (called or awaited) and say what it
did. Per batch, ``open_batch`` and ``close_batch``; per record::

    context = enter(batch, raw, sees_failures)   # None: no middleware wraps records in this batch
    if context is None:
        started = perf_counter_ns(); entry = core(raw)
        unwrapped(batch, raw, entry, exc_info, started)      # a count (and a duration)
    elif context.outcome is None:                # not failed by a middleware (FailRecord)
        started = perf_counter_ns(); entry = core(raw)     # on BaseException: crash(context, started)
        finish(context, entry, started)          # duration, outcome, middlewares resumed inside-out
    else:
        finish(context, <the processor's report of the skip>)

Only this module, ``chain.py`` and ``typing.py`` touch ``BatchContext`` / ``RecordContext`` internals.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from time import perf_counter_ns
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.batch.exceptions import (
    SQSFifoCircuitBreakerError,
    SQSFifoMessageGroupCircuitBreakerError,
)

from observed_batch import sources
from observed_batch.chain import ON_FAILURE, Chain, contain, release_resolved
from observed_batch.errors import FailRecord
from observed_batch.redaction import Redaction
from observed_batch.typing import FIFO_SHORT_CIRCUIT, BatchContext, Outcome, RecordContext

__all__ = ["close_batch", "crash", "enter", "finish", "open_batch", "unwrapped"]

logger = logging.getLogger("observed_batch")

_FIFO_BREAKERS = (SQSFifoCircuitBreakerError, SQSFifoMessageGroupCircuitBreakerError)
_DONE = object()
_SUCCESS = Outcome.SUCCESS
_SKIPPED = Outcome.SKIPPED
_FAILURE = Outcome.FAILURE


# -- batch -----------------------------------------------------------------------------------------
def open_batch(
    chain: Chain,
    processor: Any,
    event_type: EventType,
    records: Any,
    lambda_context: Any,
    redaction: Redaction | None,
    is_async: bool,
) -> BatchContext:
    """After the processor's ``_prepare``: the batch's context, and every ``on_batch_start``."""
    batch = BatchContext(event_type, records, lambda_context, processor, is_async, redaction)
    chain.start_batch(batch)
    return batch


def close_batch(chain: Chain, batch: BatchContext, processor: Any, clean: Callable[..., Any], *args: Any) -> Any:
    """Around the processor's ``_clean`` (custom processors: ``__exit__``): hand the records policies resolved
    back to its bookkeeping, return ``clean(*args)``, then run every ``on_batch_end`` (also when it raises)."""
    try:
        if batch._resolved:
            release_resolved(batch, processor)
        return clean(*args)
    except BaseException as exc:
        if batch.summary.error is None:
            batch.summary.error = exc
        raise
    finally:
        chain.end_batch(batch)


# -- record: before the core -----------------------------------------------------------------------
def enter(batch: BatchContext, raw: Any, sees_failures: bool) -> RecordContext | None:
    """A record reached the processor: its ``RecordContext``, every middleware run up to its ``yield`` (its
    ``before_record``).

    ``None`` when no middleware wraps records in this batch (then only ``unwrapped`` follows the core):
    always so when none takes part in records at all, and also when only ``on_record_failed`` hooks do
    and the processor ``sees_failures`` (tells a failure's ``exc_info`` without a context, as the sync
    processor does from Powertools' bookkeeping).

    A ``FailRecord`` stops the descent: inner middlewares and the handler do not run, the record is
    marked skipped, and the processor reports it failed to Powertools. After a
    ``FailRecord(rest_of_batch=True)`` later records enter no middleware at all.
    """
    if batch._streamed:
        batch._arrived(raw)
    index = batch._next_index
    batch._next_index = index + 1
    if not batch._wraps and (sees_failures or not batch._steps):
        return None
    if batch._plain and batch._stop is None:
        # No generator: every record shares the batch's exits (one tuple), copied only if a hook raises.
        record = RecordContext(batch, raw, index, batch._exits)
        for position, middleware, before in batch._befores:
            try:
                before(record)
            except Exception as exc:
                if _entered_badly(record, position, middleware, exc):
                    break
            except BaseException:
                _abandon(record, position)
                raise
        return record
    wrap = batch._single_wrap
    if wrap is not None and batch._stop is None:
        # One generator, the common generator chain: no list, no loop.
        record = RecordContext(batch, raw, index)
        try:
            hook = wrap(record)
            next(hook)
        except Exception as exc:
            _refused(record, batch._steps[0][0], exc)
        else:
            record._hooks = (hook,)
        return record
    record = RecordContext(batch, raw, index)
    if batch._stop is not None:
        _stopped(record, batch._stop)
    else:
        _descend(batch, record)
    return record


def _stopped(record: RecordContext, stop: Any) -> None:
    record._hooks = ()
    record.outcome = _SKIPPED
    record.skip_reason = getattr(stop[1], "reason", None)
    record.exc_info = stop


def _refused(record: RecordContext, middleware: Any, exc: Exception) -> None:
    """The batch's one generator raised on its way in (called from the ``except`` block)."""
    record._hooks = ()
    if isinstance(exc, FailRecord):
        _fail(record, exc)
    else:
        contain(record.batch, middleware, *_phase(True, exc))


def _entered_badly(record: RecordContext, position: int, middleware: Any, exc: Exception) -> bool:
    """``before_record`` at ``position`` raised: ``True`` for a ``FailRecord`` (the descent stops: only the
    outer middlewares' exits remain), else the error is contained and this middleware's exit dropped."""
    hooks = list(record._hooks[:position] if isinstance(exc, FailRecord) else record._hooks)
    record._hooks = hooks
    if isinstance(exc, FailRecord):
        _fail(record, exc)
        return True
    hooks[position] = None
    contain(record.batch, middleware, "before_record", exc)
    return False


def _abandon(record: RecordContext, position: int) -> None:
    """A hook at ``position`` raised a ``BaseException`` on the way in: unwind the outer ones, then let it go."""
    entered = record._hooks[:position]
    record._hooks = None
    _unwind(record, entered)  # KeyboardInterrupt, SystemExit, cancellation: nothing stays bound


def _fail(record: RecordContext, guard: FailRecord) -> None:
    record.outcome = _SKIPPED
    record.skip_reason = guard.reason
    record.exc_info = sys.exc_info()
    if guard.rest_of_batch:
        record.batch._stop = record.exc_info


def _descend(batch: BatchContext, record: RecordContext) -> None:
    """The general descent (a generator in the chain): one resumable per step, in a list."""
    entered: list[Any] = []
    record._hooks = entered
    for middleware, wrap, before, exit_ in batch._steps:
        try:
            if wrap is not None:
                hook = wrap(record)
                next(hook)
            else:
                if before is not None:
                    before(record)
                hook = exit_
        except FailRecord as guard:
            _fail(record, guard)
            break
        except StopIteration as exc:
            entered.append(None)
            contain(batch, middleware, *_phase(wrap, exc))
        except Exception as exc:
            entered.append(None)
            contain(batch, middleware, "wrap_record" if wrap is not None else "before_record", exc)
        except BaseException:
            _abandon(record, len(entered))
            raise
        else:
            entered.append(hook)


def _phase(wrap: Any, exc: Exception) -> tuple[str, Exception]:
    if wrap is None:
        return "before_record", exc
    return "wrap_record", RuntimeError("wrap_record did not yield") if isinstance(exc, StopIteration) else exc


# -- record: after the core ------------------------------------------------------------------------
def finish(record: RecordContext, entry: Any, started: int = 0) -> None:
    """The core is done with the record: ``entry`` is what it returned (a failure's ``exc_info`` is on the
    record already), ``started`` when it began (``0``: the handler did not run). Classify the outcome,
    update the batch summary, resume the middlewares inside-out."""
    if started:
        record.duration_ns = perf_counter_ns() - started
    batch = record.batch
    if record.outcome is None and type(entry) is tuple and entry and entry[0] == "success":
        # The common case, inlined (every call saved is ~5 % of a bare record).
        record.outcome = _SUCCESS
        record.result = entry[1]
        batch.summary.successes += 1
    else:
        if record.outcome is not _SKIPPED:
            outcome = record.outcome = _classify(entry if record.outcome is None else None, record.exc_info)
            if outcome is _SUCCESS:
                record.result = entry[1]
            elif outcome is _SKIPPED:
                record.skip_reason = FIFO_SHORT_CIRCUIT
        _count(batch, record.outcome, record.raw)
    if batch.durations_ns is not None and record.outcome is not _SKIPPED:
        batch.durations_ns.append(record.duration_ns)
    entered = record._hooks
    # A suspended hook's frame holds the record: drop the reference back, so that no cycle outlives it.
    record._hooks = None
    if not entered:
        return
    # The two common cases inlined, one middleware: its after_record only; its generator.
    after = batch._single_after
    if after is not None and entered is batch._exits:
        try:
            after(record)
        except Exception as exc:
            contain(batch, batch._steps[0][0], "after_record", exc)
    elif batch._single_wrap is not None:
        hook = entered[0]
        try:
            if next(hook, _DONE) is _DONE:
                return
        except Exception as exc:
            contain(batch, batch._steps[0][0], "wrap_record", exc)
            return
        _yielded_twice(batch, batch._steps[0][0], hook)
    else:
        _resume(record, batch, entered)


def _resume(record: RecordContext, batch: BatchContext, entered: Any) -> None:
    """Resume the entered middlewares, innermost first: generators, ``after_record``, ``on_record_failed``."""
    steps = batch._steps
    position = len(entered)
    while position:
        position -= 1
        hook = entered[position]
        if hook is None:
            continue
        if hook is ON_FAILURE:
            if record.outcome is _FAILURE:
                _failed(record, steps[position][0], entered[:position])
            continue
        try:
            if steps[position][1] is None:
                hook(record)  # after_record
                continue
            if next(hook, _DONE) is _DONE:
                continue
        except Exception as exc:
            phase = "after_record" if steps[position][1] is None else "wrap_record"
            contain(batch, steps[position][0], phase, exc)
            continue
        except BaseException:
            _unwind(record, entered[:position])
            raise
        _yielded_twice(batch, steps[position][0], hook)


def _failed(record: RecordContext, middleware: Any, outer: Any) -> None:
    """``on_record_failed`` of a middleware that does not wrap the record."""
    try:
        middleware.on_record_failed(record)
    except Exception as exc:
        contain(record.batch, middleware, "on_record_failed", exc)
    except BaseException:
        _unwind(record, outer)
        raise


def _yielded_twice(batch: BatchContext, middleware: Any, hook: Iterator[None]) -> None:
    contain(batch, middleware, "wrap_record", RuntimeError("wrap_record yielded twice"))
    close = getattr(hook, "close", None)
    if close is not None:
        try:
            close()
        except Exception as exc:
            contain(batch, middleware, "wrap_record", exc)


def crash(record: RecordContext, started: int) -> None:
    """Call from an ``except BaseException`` around the core: it raised past Powertools' ``except
    Exception`` (e.g. ``KeyboardInterrupt``). The middlewares still resume, seeing a failure, before the
    exception propagates."""
    record.outcome = _FAILURE
    record.exc_info = sys.exc_info()
    finish(record, None, started)


def unwrapped(batch: BatchContext, raw: Any, entry: Any, exc_info: Any, started: int) -> None:
    """After the core ran a record ``enter`` returned ``None`` for: count it (the summary stays exact), keep
    its duration since ``started`` (``0``: not timed), and only if it failed build its ``RecordContext`` for the
    ``on_record_failed`` hooks, innermost first. (Its index is the last one given out: such records run
    one at a time; async processing only comes here with no record hooks at all.)"""
    durations = batch.durations_ns
    if exc_info is None and type(entry) is tuple and entry and entry[0] == "success":
        batch.summary.successes += 1  # the common case, inlined
        if durations is not None:
            durations.append(perf_counter_ns() - started)
        return
    duration_ns = perf_counter_ns() - started if started else 0  # 0: not timed (no middleware asked)
    outcome = _classify(entry, exc_info)
    _count(batch, outcome, raw)
    if outcome is _SKIPPED:
        return
    if durations is not None:
        durations.append(duration_ns)
    if outcome is not _FAILURE or not batch._steps:
        return
    record = RecordContext(batch, raw, batch._next_index - 1)
    record.outcome, record.exc_info, record.duration_ns = outcome, exc_info, duration_ns
    for step in reversed(batch._steps):
        middleware = step[0]
        try:
            middleware.on_record_failed(record)
        except Exception as exc:
            contain(batch, middleware, "on_record_failed", exc)


def _unwind(record: RecordContext, hooks: Any) -> None:
    """A ``BaseException`` is leaving the chain: close the suspended hooks and call the ``after_record`` of
    the entered middlewares, innermost first, so that what they bound (contextvars, current span, Sentry
    scope) is restored before it propagates. It is not contained: ``KeyboardInterrupt`` / ``SystemExit``
    still end the invocation. ``hooks`` are the entered prefix of the record's steps."""
    steps = record.batch._steps
    for position in range(len(hooks) - 1, -1, -1):
        hook = hooks[position]
        if hook is None or hook is ON_FAILURE:
            continue
        try:
            if steps[position][1] is None:
                hook(record)  # after_record
            else:
                close = getattr(hook, "close", None)
                if close is not None:
                    close()
        except Exception:
            logger.debug("observed_batch: a middleware failed while unwinding", exc_info=True)


def _count(batch: BatchContext, outcome: Outcome | None, raw: Any) -> None:
    summary = batch.summary
    if outcome is _SUCCESS:
        summary.successes += 1
    elif outcome is _SKIPPED:
        summary.skipped += 1
    else:
        summary.failures += 1
        summary.failed_ids.append(sources.record_identifier(batch.event_type, raw))


def _classify(entry: Any, exc_info: Any) -> Outcome:
    """What Powertools decided: its success entry, its FIFO short-circuit, or a failure."""
    if type(entry) is tuple and entry and entry[0] == "success":
        return _SUCCESS
    if exc_info is not None and isinstance(exc_info[1], _FIFO_BREAKERS):
        return _SKIPPED
    return _FAILURE
