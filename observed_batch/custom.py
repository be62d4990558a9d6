"""Bases for custom partial processors, written the documented Powertools way, with the middleware chain.

    class MyProcessor(observed_batch.BasePartialBatchProcessor):   # instead of Powertools' base
        def _prepare(self): ...
        def _clean(self): ...
        def _process_record(self, record):
            try:
                return self.success_handler(record, self.handler(record))
            except Exception:
                return self.failure_handler(record, sys.exc_info())
        async def _async_process_record(self, record): ...

The user's methods run unchanged; we wrap around them without needing their ``super()`` calls:

- the batch hooks ride on ``__enter__`` / ``__exit__`` (around the user's ``_prepare`` / ``_clean``);
- each record's chain wraps the user's ``_process_record`` / ``_async_process_record``, and its outcome is
  what the user's code reported through ``success_handler`` / ``failure_handler``. Both are bound on the
  instance (shadowing the class's methods, the user's overrides included), so every call made during a
  batch, from Powertools' ``process()`` or the user's own loop, passes through here first;
- a record a middleware fails (``FailRecord``, e.g. ``timeout_guard``) still goes through the user's
  ``_process_record``, but ``self.handler`` raises the ``FailRecord`` instead of calling the record
  handler: the user's ``except`` reports it with ``failure_handler`` in the user's own record shape.

With no middleware nothing is bound: the class is exactly the user's class on Powertools' base.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from time import perf_counter_ns
from typing import Any

from aws_lambda_powertools.utilities.batch import BasePartialBatchProcessor as _PtBasePartialBatchProcessor
from aws_lambda_powertools.utilities.batch import BasePartialProcessor as _PtBasePartialProcessor
from aws_lambda_powertools.utilities.batch import EventType

from observed_batch import driver, sources
from observed_batch.chain import Chain
from observed_batch.config import Config
from observed_batch.errors import ConfigError
from observed_batch.processors import (
    AsyncBatchProcessor,
    BatchProcessor,
    ObservedBase,
    PartialBatchInit,
    logger_argument,
)
from observed_batch.typing import BatchContext, Middleware, Outcome, RecordContext

__all__ = ["BasePartialBatchProcessor", "BasePartialProcessor"]

logger = logging.getLogger("observed_batch")

_SUCCESS_ENTRY = "success"
#: Key in ``BatchContext.scratch`` of the warnings already logged for the batch (once per batch each).
_WARNED = object()


class _Report:
    """What the user's code reported for one record while the chain is suspended around it; as a context
    manager, the span of the user's ``_process_record`` / ``_async_process_record`` (sync and async alike)."""

    __slots__ = (
        "batch",
        "context",
        "exc_info",
        "failed",
        "guard",
        "guard_raised",
        "owner",
        "raw",
        "result",
        "started",
        "succeeded",
        "token",
    )

    def __init__(self, owner: _CustomObserved, batch: BatchContext, raw: Any, context: RecordContext | None) -> None:
        self.owner = owner
        self.batch = batch
        self.raw = raw
        #: ``None`` when no middleware takes part in records this batch (``driver.enter``).
        self.context = context
        self.succeeded = False
        self.failed = False
        self.result: Any = None
        self.exc_info: Any = None
        #: The FailRecord a middleware raised: ``self.handler`` raises it (every call, retries included).
        self.guard: BaseException | None = None
        self.guard_raised = False
        self.started = 0
        self.token: Token[_Report | None] | None = None

    def __enter__(self) -> None:
        self.token = _REPORT.set(self)
        self.started = perf_counter_ns()

    def __exit__(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        if self.token is not None:
            _REPORT.reset(self.token)
        context = self.context
        if exception_value is not None:
            # Past the user's own ``except`` (e.g. KeyboardInterrupt): the middlewares still resume.
            if context is None:
                driver.unwrapped(self.batch, self.raw, None, sys.exc_info(), self.started)
            else:
                driver.crash(context, self.started)
            return
        entry = self.owner._ob_settle(self)
        if context is None:
            driver.unwrapped(self.batch, self.raw, entry, self.exc_info if self.failed else None, self.started)
        else:
            driver.finish(context, entry, self.started)


# The record being processed: a ContextVar, as async records each run in their own task.
_REPORT: ContextVar[_Report | None] = ContextVar("observed_batch_custom_record", default=None)


class _GuardedHandler:
    """Stands in for ``self.handler`` once a middleware failed a record in the batch: for that record it
    raises the middleware's ``FailRecord`` (the record handler does not run), for the others it calls
    the record handler."""

    __slots__ = ("handler",)

    def __init__(self, handler: Callable[..., Any]) -> None:
        self.handler = handler

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        report = _REPORT.get()
        if report is not None and report.guard is not None:
            report.guard_raised = True
            raise report.guard
        return self.handler(*args, **kwargs)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], name: str, default: Any) -> Any:
    """The second argument of ``success_handler(record, result)`` / ``failure_handler(record, exception)``."""
    if name in kwargs:
        return kwargs[name]
    return args[1] if len(args) > 1 else default


class _CustomObserved(ObservedBase):
    """Mixin in front of Powertools' abstract bases: the chain around a user's processor methods."""

    #: A subclass whose ``__init__`` never reaches ours is not observed: exactly Powertools' behaviour.
    _ob_chain = Chain(())
    _ob_batch: BatchContext | None = None
    _ob_handler: Callable[..., Any] | None = None
    _ob_checked: EventType | None = None
    records: list[Any]
    handler: Callable[..., Any]
    _is_async = False

    def _observe(
        self,
        middleware: Sequence[str | Middleware] | None,
        config: Config | None,
        event_type: EventType | None = None,
    ) -> None:
        self._ob_build(middleware, config)
        self._ob_event_type = event_type
        self._ob_handler = None  # the record handler, while _GuardedHandler stands in for it
        if not self._ob_chain:
            return
        known = event_type if event_type is not None else getattr(self, "event_type", None)
        self._ob_checked = known if isinstance(known, EventType) else None
        if self._ob_checked is not None:
            self._ob_chain.check_event_type(self._ob_checked)
        # The class's implementations (the user's), bound once; the instance attributes below shadow them.
        self._ob_process = self._ob_class_method("_process_record")
        self._ob_async_process = self._ob_class_method("_async_process_record")
        self._ob_success = self._ob_class_method("success_handler")
        self._ob_failure = self._ob_class_method("failure_handler")
        setattr(self, "_process_record", self._ob_record)  # noqa: B010
        setattr(self, "_async_process_record", self._ob_async_record)  # noqa: B010
        setattr(self, "success_handler", self._ob_report_success)  # noqa: B010
        setattr(self, "failure_handler", self._ob_report_failure)  # noqa: B010

    def _ob_class_method(self, name: str) -> Callable[..., Any]:
        """``name`` as the class defines it, bound to this instance (what ``self.name`` was before shadowing)."""
        cls = type(self)
        attribute = inspect.getattr_static(cls, name)
        binder = getattr(type(attribute), "__get__", None)
        return binder(attribute, self, cls) if binder is not None else attribute  # type: ignore[no-any-return]

    def _ob_resolve_event_type(self) -> EventType | None:
        event_type = getattr(self, "event_type", None) or self._ob_event_type
        if isinstance(event_type, EventType):
            return event_type
        records = getattr(self, "records", None)
        if isinstance(records, Sequence) and not records:
            return None  # nothing to observe
        # A generator is not peeked at (it would lose its first record): it needs event_type= too.
        event_type = sources.event_type_of(records[0]) if isinstance(records, Sequence) else None
        if event_type is None:
            raise ConfigError(
                f"observed_batch cannot tell which event source {type(self).__name__}'s records come from"
                " (no 'eventSource' in the first record), so its middleware cannot name them: pass"
                f" event_type=EventType.<source> to BasePartialProcessor.__init__ in {type(self).__name__}.__init__,"
                " or subclass observed_batch.BasePartialBatchProcessor"
            )
        return event_type

    # -- batch --------------------------------------------------------------------------------
    def __enter__(self) -> Any:
        if not self._ob_chain:
            return super().__enter__()  # type: ignore[misc]
        event_type = self._ob_resolve_event_type()
        if event_type is not None and event_type is not self._ob_checked:
            self._ob_chain.check_event_type(event_type)  # a source learnt from the records: refused before _prepare
            self._ob_checked = event_type
        entered = super().__enter__()  # type: ignore[misc]  # the user's _prepare
        if event_type is not None:
            self._ob_batch = driver.open_batch(
                self._ob_chain,
                self,
                event_type,
                self.records,
                self._ob_lambda_context,
                self._ob_redaction,
                self._is_async,
            )
        return entered

    def __exit__(self, exception_type: Any, exception_value: Any, traceback: Any) -> Any:
        batch = self._ob_batch
        if batch is None:
            return super().__exit__(exception_type, exception_value, traceback)  # type: ignore[misc]
        self._ob_batch = None
        if exception_value is not None:
            batch.summary.error = exception_value
        try:
            exit_ = super().__exit__  # type: ignore[misc]  # runs the user's _clean
            return driver.close_batch(self._ob_chain, batch, self, exit_, exception_type, exception_value, traceback)
        finally:
            if self._ob_handler is not None:
                self.handler, self._ob_handler = self._ob_handler, None

    # -- record -------------------------------------------------------------------------------
    def _ob_start_record(self, batch: BatchContext, record: dict[str, Any]) -> _Report:
        context = driver.enter(batch, record, False)
        report = _Report(self, batch, record, context)
        if context is not None and context.outcome is Outcome.SKIPPED and context.exc_info is not None:
            # A middleware failed the record: the user's code reports it, but its handler must not run.
            report.guard = context.exc_info[1]
            if self._ob_handler is None:
                self._ob_handler = self.handler
                self.handler = _GuardedHandler(self.handler)
        return report

    def _ob_record(self, record: dict[str, Any]) -> Any:
        batch = self._ob_batch
        if batch is None:
            return self._ob_process(record)
        with self._ob_start_record(batch, record):
            return self._ob_process(record)

    async def _ob_async_record(self, record: dict[str, Any]) -> Any:
        batch = self._ob_batch
        if batch is None:
            return await self._ob_async_process(record)
        batch.is_async = True
        with self._ob_start_record(batch, record):
            return await self._ob_async_process(record)

    def _ob_settle(self, report: _Report) -> Any:
        """The record's outcome from what the user's code reported; returns the entry the driver classifies."""
        context = report.context
        if context is not None and context.outcome is Outcome.SKIPPED and not (report.guard_raised and report.failed):
            if not report.guard_raised:
                self._ob_warn_once(
                    report.batch,
                    "did not call self.handler for a record a middleware failed (FailRecord); the record was"
                    " processed. Call self.handler(...) in _process_record for guards to take effect",
                )
            # The user's code processed the record or reported it successful: its report decides.
            context.outcome = context.skip_reason = context.exc_info = None
        if report.failed:
            if context is not None:
                context.exc_info = report.exc_info
            return None
        if report.succeeded:
            return (_SUCCESS_ENTRY, report.result)
        self._ob_warn_once(
            report.batch,
            "returned from _process_record without calling success_handler or failure_handler; the record"
            " is counted as successful. Report each record through them",
        )
        return (_SUCCESS_ENTRY, None)

    def _ob_warn_once(self, batch: BatchContext, problem: str) -> None:
        warned: set[str] = batch.scratch.setdefault(_WARNED, set())
        if problem not in warned:
            warned.add(problem)
            logger.warning("observed_batch: %s %s", type(self).__name__, problem)

    def _ob_report_success(self, *args: Any, **kwargs: Any) -> Any:
        report = _REPORT.get()
        if report is not None and report.owner is self:
            report.succeeded = True
            report.result = _argument(args, kwargs, "result", None)
        return self._ob_success(*args, **kwargs)

    def _ob_report_failure(self, *args: Any, **kwargs: Any) -> Any:
        report = _REPORT.get()
        if report is not None and report.owner is self:
            report.failed = True
            report.exc_info = _argument(args, kwargs, "exception", None) or sys.exc_info()
        return self._ob_failure(*args, **kwargs)


class BasePartialProcessor(_CustomObserved, _PtBasePartialProcessor):
    """Powertools' ``BasePartialProcessor`` with the middleware chain around your processor's records.

    Extra keyword-only parameters: ``middleware=``, ``config=`` (as the processors), and ``event_type=``,
    which names the records' source for the middlewares; without it, it is read from the first record's
    ``eventSource`` (Kafka: from its shape), and a batch whose source cannot be told raises ``ConfigError``
    when middleware is enabled.
    """

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        event_type: EventType | None = None,
        middleware: Sequence[str | Middleware] | None = None,
        config: Config | None = None,
    ) -> None:
        _PtBasePartialProcessor.__init__(self, **logger_argument(logger))
        self._observe(middleware, config, event_type)


class BasePartialBatchProcessor(PartialBatchInit, BasePartialProcessor, _PtBasePartialBatchProcessor):
    """Powertools' ``BasePartialBatchProcessor`` (partial batch responses) with the middleware chain
    around your processor's records; same arguments plus ``middleware=`` / ``config=``."""

    _ob_base = _PtBasePartialBatchProcessor


# Our processors are Powertools' BasePartialBatchProcessor subclasses; they are ours too, virtually
# (ABC registration), so `isinstance(processor, observed_batch.BasePartialProcessor)` holds as in Powertools.
BasePartialBatchProcessor.register(BatchProcessor)
BasePartialBatchProcessor.register(AsyncBatchProcessor)
