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
from observed_batch.chain import Chain, contain, release_resolved
from observed_batch.errors import FailRecord
from observed_batch.redaction import Redaction
from observed_batch.typing import FIFO_SHORT_CIRCUIT, BatchContext, Outcome, RecordContext

__all__ = ["close_batch", "crash", "enter", "finish", "open_batch", "unwrapped"]

logger = logging.getLogger("observed_batch")

_FIFO_BREAKERS = (SQSFifoCircuitBreakerError, SQSFifoMessageGroupCircuitBreakerError)
_DONE = object()
#: In a record's hooks: this middleware only has ``on_record_failed`` for the record (no generator to resume).
_ON_FAILURE: Any = object()
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
    """A record reached the processor: its ``RecordContext``, every middleware run up to its ``yield``.

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
    record = RecordContext(batch, raw, index)
    entered: list[Iterator[None] | None] = []
    record._hooks = entered
    stop = batch._stop
    if stop is not None:
        record.outcome = _SKIPPED
        record.skip_reason = getattr(stop[1], "reason", None)
        record.exc_info = stop
        return record
    for middleware, wrap in batch._steps:
        if wrap is None:
            entered.append(_ON_FAILURE)
            continue
        try:
            hook = wrap(record)
            next(hook)
        except FailRecord as guard:
            record.outcome = _SKIPPED
            record.skip_reason = guard.reason
            record.exc_info = sys.exc_info()
            if guard.rest_of_batch:
                batch._stop = record.exc_info
            break
        except StopIteration:
            entered.append(None)
            contain(batch, middleware, "wrap_record", RuntimeError("wrap_record did not yield"))
        except Exception as exc:
            entered.append(None)
            contain(batch, middleware, "wrap_record", exc)
        except BaseException:
            record._hooks = None
            _unwind(entered)  # KeyboardInterrupt, SystemExit, cancellation: nothing stays bound
            raise
        else:
            entered.append(hook)
    return record


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
    position = len(entered)
    while position:
        position -= 1
        hook = entered[position]
        if hook is None:
            continue
        if hook is _ON_FAILURE:
            if record.outcome is _FAILURE:
                _failed(record, batch._steps[position][0], entered[:position])
            continue
        try:
            if next(hook, _DONE) is _DONE:
                continue
        except Exception as exc:
            contain(batch, batch._steps[position][0], "wrap_record", exc)
            continue
        except BaseException:
            _unwind(entered[:position])
            raise
        _yielded_twice(batch, batch._steps[position][0], hook)


def _failed(record: RecordContext, middleware: Any, outer: list[Iterator[None] | None]) -> None:
    """``on_record_failed`` of a middleware that does not wrap the record."""
    try:
        middleware.on_record_failed(record)
    except Exception as exc:
        contain(record.batch, middleware, "on_record_failed", exc)
    except BaseException:
        _unwind(outer)
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
    for middleware, _ in reversed(batch._steps):
        try:
            middleware.on_record_failed(record)
        except Exception as exc:
            contain(batch, middleware, "on_record_failed", exc)


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
