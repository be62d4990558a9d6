"""Drop-in processors: Powertools' own classes with the middleware chain around each record.

Powertools decides every outcome; we only observe. The per-record hooks wrap Powertools'
``_process_record`` / ``_async_process_record``, the batch hooks ride on ``_prepare`` / ``_clean``
(which Powertools calls on ``__enter__`` / ``__exit__``), and the exception a failed record carried comes from
Powertools' own bookkeeping (sync) or ``failure_handler`` (async). With no middleware configured,
Powertools' methods are bound on the instance: exactly Powertools' code path and cost.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor as _PtAsyncBatchProcessor
from aws_lambda_powertools.utilities.batch import BatchProcessor as _PtBatchProcessor
from aws_lambda_powertools.utilities.batch import EventType
from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor as _PtSqsFifoPartialProcessor

from observed_batch import _compat, driver, sources
from observed_batch.chain import Chain, contain
from observed_batch.config import Config, build_middlewares
from observed_batch.redaction import Redaction
from observed_batch.typing import BatchContext, Middleware, Outcome, RecordContext

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
    from aws_lambda_powertools.utilities.batch.types import BatchSqsTypeModel, BatchTypeModels

__all__ = ["AsyncBatchProcessor", "BatchProcessor", "SqsFifoPartialProcessor"]

# The record being processed, so failure_handler can attach its exception. A ContextVar, because
# AsyncBatchProcessor runs every record in its own task with its own copy of the context.
_CURRENT: ContextVar[RecordContext | None] = ContextVar("observed_batch_record", default=None)


#: ``middleware=``: names or instances, in chain order (``None``: from the configuration / environment).
MiddlewareOption: TypeAlias = "Sequence[str | Middleware] | None"

_SUCCESS = Outcome.SUCCESS
_HOOKED_METHODS = (*_compat.PROCESSOR_HOOKS, "failure_handler")


def logger_argument(logger: logging.Logger | None) -> dict[str, Any]:
    """Powertools' ``logger=`` only when given: versions before it was added take no such argument."""
    return {"logger": logger} if logger is not None else {}


class ObservedBase:
    """What every observed processor (ours, and the bases for custom ones) sets up and adapts the same way."""

    def _ob_build(self, middleware: Sequence[str | Middleware] | None, config: Config | None) -> Chain:
        self.middlewares: tuple[Middleware, ...] = build_middlewares(middleware, config)
        self._ob_chain = chain = Chain(self.middlewares)
        self._ob_redaction = Redaction.from_config(config, os.environ) if chain else None
        self._ob_batch: BatchContext | None = None
        self._ob_lambda_context: Any = None
        return chain

    def __call__(self, records: list[dict[str, Any]], handler: Callable[..., Any], lambda_context: Any = None) -> Any:
        self._ob_lambda_context = lambda_context
        return super().__call__(records, handler, lambda_context)  # type: ignore[misc]


class _Observed(ObservedBase):
    """Mixin placed in front of a Powertools processor in the MRO."""

    # Provided by the Powertools base class.
    event_type: EventType
    model: Any
    records: list[Any]
    _is_async = False

    def _observe(self, middleware: Sequence[str | Middleware] | None, config: Config | None) -> None:
        self._ob_build(middleware, config).check_event_type(self.event_type)
        # Powertools' per-record implementation, bound once (zero-argument super() costs per call).
        self._ob_core = super()._process_record  # type: ignore[misc]
        self._ob_async_core = super()._async_process_record  # type: ignore[misc]
        if not self._ob_chain:
            # Nothing to observe: bind Powertools' own implementations on the instance, so every
            # record and batch runs exactly Powertools' code at exactly Powertools' cost.
            for method in _HOOKED_METHODS:
                owner = next(c for c in type(self).__mro__ if method in c.__dict__)
                if owner.__module__ == __name__:  # ours, not a user subclass override
                    setattr(self, method, getattr(super(owner, self), method))

    # -- batch --------------------------------------------------------------------------------
    def _prepare(self) -> None:
        super()._prepare()  # type: ignore[misc]
        if self._ob_chain:
            self._ob_batch = driver.open_batch(
                self._ob_chain,
                self,
                self.event_type,
                getattr(self, "records", []),
                self._ob_lambda_context,
                self._ob_redaction,
                self._is_async,
            )

    def __exit__(self, exception_type: Any, exception_value: Any, traceback: Any) -> Any:
        if self._ob_batch is not None and exception_value is not None:
            self._ob_batch.summary.error = exception_value
        return super().__exit__(exception_type, exception_value, traceback)  # type: ignore[misc]

    def _clean(self) -> None:
        batch = self._ob_batch
        if batch is None:
            super()._clean()  # type: ignore[misc]
            return
        self._ob_batch = None
        driver.close_batch(self._ob_chain, batch, self, super()._clean)  # type: ignore[misc]

    # -- record -------------------------------------------------------------------------------
    def _ob_report_skip(self, record: dict[str, Any], context: RecordContext) -> Any:
        """A middleware raised FailRecord: report the record failed, as Powertools' FIFO breaker does."""
        # SqsFifoPartialProcessor attributes failures to the group of the record being processed.
        _compat.set_fifo_group(self, sources.fifo_group(record))
        data = _compat.to_batch_type(self, record, self.event_type)
        exc_info = context.exc_info
        # driver.enter kept the FailRecord's sys.exc_info()
        assert exc_info is not None
        assert exc_info[1] is not None
        try:
            # Reported from an except block, as Powertools reports a handler's exception: a failure_handler
            # override sees the FailRecord in sys.exc_info() too (Sentry's capture_exception() reads it).
            raise exc_info[1]
        except BaseException:
            entry = self.failure_handler(data, exc_info)  # type: ignore[attr-defined]
        driver.finish(context, entry)
        return entry


class PartialBatchInit:
    """The one constructor of the processors built on Powertools' ``BasePartialBatchProcessor`` (ours and the
    base for custom ones): Powertools' arguments, then ``middleware=`` / ``config=`` for ``_observe``."""

    #: The Powertools class whose constructor runs first.
    _ob_base: ClassVar[Any]

    def __init__(
        self,
        event_type: EventType,
        model: BatchTypeModels | None = None,
        raise_on_entire_batch_failure: bool = True,
        logger: logging.Logger | None = None,
        *,
        middleware: Sequence[str | Middleware] | None = None,
        config: Config | None = None,
    ) -> None:
        self._ob_base.__init__(self, event_type, model, raise_on_entire_batch_failure, **logger_argument(logger))
        self._observe(middleware, config)  # type: ignore[attr-defined]


class BatchProcessor(PartialBatchInit, _Observed, _PtBatchProcessor):
    """Powertools ``BatchProcessor`` with a middleware chain; same arguments plus ``middleware=``/``config=``."""

    _ob_base = _PtBatchProcessor

    def _process_record(self, record: dict[str, Any]) -> Any:
        batch = self._ob_batch
        if batch is None:
            return super()._process_record(record)
        exceptions = self.exceptions
        known = len(exceptions)
        if not batch._wraps:
            # No middleware wraps records (driver.enter would return None): Powertools' core, then a count and
            # a duration; a success's bookkeeping (driver.unwrapped's common case) inlined.
            if batch._streamed:
                batch._arrived(record)
            batch._next_index += 1
            durations = batch.durations_ns
            started = perf_counter_ns() if durations is not None else 0
            try:
                entry = self._ob_core(record)
            except BaseException:
                driver.unwrapped(batch, record, None, sys.exc_info(), started)
                raise
            if len(exceptions) == known and type(entry) is tuple and entry and entry[0] == "success":
                batch.summary.successes += 1
                if durations is not None:
                    durations.append(perf_counter_ns() - started)
            else:
                driver.unwrapped(batch, record, entry, exceptions[-1] if len(exceptions) > known else None, started)
            return entry
        quick = batch._quick
        if quick:
            # Only after_record hooks in this batch (nothing can fail a record before the handler): driver.enter
            # inlined.
            index = batch._next_index
            batch._next_index = index + 1
            context = RecordContext(batch, record, index, batch._exits)
        else:
            entered = driver.enter(batch, record, True)
            assert entered is not None  # a middleware wraps records: enter gives every record its context
            context = entered
            if context.outcome is not None:
                entry = self._ob_report_skip(record, context)
                del context  # as below
                return entry
        started = perf_counter_ns()
        try:
            entry = self._ob_core(record)
        except BaseException:
            driver.crash(context, started)
            raise
        after = batch._single_after if quick else None
        if len(exceptions) > known:
            # Records run one at a time here, so the exception Powertools appended is this record's.
            context.exc_info = exceptions[-1]
        elif after is not None and entry[0] == "success" and batch.durations_ns is None:
            # A success under one after_record hook: driver.finish inlined.
            context.duration_ns = perf_counter_ns() - started
            context.outcome = _SUCCESS
            context.result = entry[1]
            batch.summary.successes += 1
            context._hooks = None
            try:
                after(context)
            except Exception as exc:
                contain(batch, batch._steps[0][0], "after_record", exc)
            return entry
        driver.finish(context, entry, started)
        # A failed record's traceback (Powertools keeps it until the next batch) keeps this frame alive
        # through frame.f_back: let go of the record's context, or each failure holds on to it.
        del context
        return entry


class AsyncBatchProcessor(PartialBatchInit, _Observed, _PtAsyncBatchProcessor):
    """Powertools ``AsyncBatchProcessor`` with the same middleware chain as ``BatchProcessor``."""

    _ob_base = _PtAsyncBatchProcessor
    _is_async = True

    async def _async_process_record(self, record: dict[str, Any]) -> Any:
        batch = self._ob_batch
        if batch is None:
            return await super()._async_process_record(record)
        # Failure hooks need the exception, which only the ContextVar below carries here.
        context = driver.enter(batch, record, False)
        if context is not None and context.outcome is not None:
            entry = self._ob_report_skip(record, context)
            del context  # as below
            return entry
        token = None if context is None else _CURRENT.set(context)
        started = perf_counter_ns()
        try:
            entry = await self._ob_async_core(record)
        except BaseException:
            if token is not None:
                _CURRENT.reset(token)
            if context is None:
                driver.unwrapped(batch, record, None, sys.exc_info(), started)
            else:
                driver.crash(context, started)
            raise
        if token is not None:
            _CURRENT.reset(token)
        if context is None:
            # No FIFO short-circuit in async processing: Powertools' entry says success or failure.
            driver.unwrapped(batch, record, entry, None, started)
        else:
            driver.finish(context, entry, started)
        del context  # as in BatchProcessor._process_record: a failure's traceback keeps this frame alive
        return entry

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> Any:
        # Records run concurrently: the ContextVar (one copy per record task) says whose failure this is.
        current = _CURRENT.get()
        if current is not None:
            current.exc_info = exception
        return super().failure_handler(record, exception)


class SqsFifoPartialProcessor(BatchProcessor, _PtSqsFifoPartialProcessor):
    """Powertools ``SqsFifoPartialProcessor`` (short-circuit on first failure) with the middleware chain.

    Short-circuited records reach the middlewares with outcome ``skipped`` and
    ``skip_reason == "fifo_short_circuit"``.
    """

    def __init__(
        self,
        model: BatchSqsTypeModel | None = None,
        skip_group_on_error: bool = False,
        logger: logging.Logger | None = None,
        *,
        middleware: MiddlewareOption = None,
        config: Config | None = None,
    ) -> None:
        _PtSqsFifoPartialProcessor.__init__(self, model, skip_group_on_error, **logger_argument(logger))
        self._observe(middleware, config)
