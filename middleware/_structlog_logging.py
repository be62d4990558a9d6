"""The ``structlog`` backend of ``logging`` (the default): JSON lines, record context in structlog's contextvars.

While a record runs, its context is bound with ``structlog.contextvars``, so the handler's own
``structlog.get_logger()`` lines carry it too; the binding is reset by token after the record (async
records each run in their own context copy).

Which logger writes: an injected ``logger=``; else the user's structlog configuration when there is
one (``structlog.is_configured()``, checked at each batch start); else a private JSON logger to
stdout. The global structlog configuration and the stdlib root logger are only touched on request
(``configure_structlog`` / ``stdlib_interop``), never on import.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar, copy_context
from typing import TYPE_CHECKING, Any

import structlog
from structlog.contextvars import bind_contextvars, merge_contextvars, reset_contextvars

from observed_batch.sources import sqs_facts
from observed_batch.typing import Outcome, RecordContext

from ._json_lines import JsonLines, StdoutLogger
from ._log_fields import CONTEXT_KEYS, EVENT_SOURCES, BatchState, fields

if TYPE_CHECKING:
    from .logging import LoggingMiddleware

__all__ = ["StructlogBackend"]

_LOGGER_NAME = "observed_batch"
_STRUCTLOG_PREFIX = "structlog_"


class _StdoutLoggerFactory:
    def __call__(self, *args: Any) -> StdoutLogger:
        return StdoutLogger()


class _JsonStdoutHandler(logging.Handler):
    """Root handler installed by ``stdlib_interop``: stdlib records as the same JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            StdoutLogger().msg(self.format(record))
        except Exception:
            self.handleError(record)


def _timestamper() -> Any:
    return structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")


def _leading_fields(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """``timestamp``, ``level``, ``event`` first: what a human scanning CloudWatch reads first."""
    return {
        "timestamp": event_dict.pop("timestamp", None),
        "level": event_dict.pop("level", method_name),
        "event": event_dict.pop("event", None),
        **event_dict,
    }


def _json_processors() -> list[Any]:
    return [
        merge_contextvars,
        structlog.processors.add_log_level,
        _timestamper(),
        structlog.processors.format_exc_info,
        _leading_fields,
        structlog.processors.JSONRenderer(separators=(",", ":")),
    ]


def _structlog_variables() -> tuple[ContextVar[Any], ...] | None:
    """The ContextVars ``bind_contextvars`` uses for our keys (in ``CONTEXT_KEYS`` order), found
    through a throwaway context.

    Setting them directly is what ``bind_contextvars`` / ``reset_contextvars`` do, minus their per-call
    key formatting and lookups (half of this middleware's per-record cost). Should a future structlog
    keep context differently, ``None`` sends us back to its public functions.
    """
    marker = object()
    scratch = copy_context()
    scratch.run(bind_contextvars, **dict.fromkeys(CONTEXT_KEYS, marker))
    found = {
        variable.name[len(_STRUCTLOG_PREFIX) :]: variable
        for variable, value in scratch.items()
        if value is marker and variable.name.startswith(_STRUCTLOG_PREFIX)
    }
    if set(found) != set(CONTEXT_KEYS):  # pragma: no cover - structlog 20.1 to 26.x keep one ContextVar per key
        return None
    return tuple(found[key] for key in CONTEXT_KEYS)


def _install_stdlib_handler(level: int) -> None:
    """One JSON handler on the root logger. Lambda's own plain-text root handler would print every
    record a second time, so it is replaced; other handlers (yours, pytest's) are left alone."""
    handler = _JsonStdoutHandler(level)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                _timestamper(),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _leading_fields,
                structlog.processors.JSONRenderer(separators=(",", ":")),
            ],
        )
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, _JsonStdoutHandler) or type(existing).__name__ == "LambdaLoggerHandler":
            root.removeHandler(existing)
    root.addHandler(handler)


class StructlogBackend:
    """Binds the record context in structlog's contextvars; lines go to structlog loggers."""

    def __init__(
        self, middleware: LoggingMiddleware, logger: Any, stdlib_interop: bool, configure_structlog: bool
    ) -> None:
        self.middleware = middleware
        self.injected = logger
        self.variables = _structlog_variables()
        wrapper_class = structlog.make_filtering_bound_logger(middleware.level)
        self.private: Any = JsonLines(middleware.level, merge_contextvars)
        if configure_structlog and not structlog.is_configured():
            structlog.configure(
                processors=_json_processors(),
                wrapper_class=wrapper_class,
                logger_factory=_StdoutLoggerFactory(),
                cache_logger_on_first_use=False,
            )
        if stdlib_interop:
            _install_stdlib_handler(middleware.level)

    def logger(self) -> Any:
        """The logger of one batch's lines."""
        logger = self.injected
        if logger is None:
            if not structlog.is_configured():
                return self.private
            logger = structlog.get_logger(_LOGGER_NAME)
        # A lazy proxy re-reads the configuration on every call; bind once per batch instead.
        bind = getattr(logger, "bind", None)
        return bind() if callable(bind) else logger

    def binds_records(self) -> bool:
        """Always: the application's structlog lines read the bound context while the record runs."""
        return True

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        state: BatchState | None = record.batch.scratch.get(self.middleware)
        variables = self.variables
        if state is None or variables is None:
            yield from self._wrap_portably(record, state)
            return
        # The hot path: every record pays for it, so it sets structlog's ContextVars directly (no token
        # list, no per-key formatting), reads SQS fields straight from the dict (the generic accessors
        # cost ~1 µs each) and reuses the trace ids while the OTel context is the same object.
        message_var, source_var, destination_var, index_var, count_var, group_var, trace_var, span_var = variables
        count_token = group_token = trace_token = span_token = None
        if state.is_sqs:
            # Same values as RecordContext.message_id / receive_count / fifo_group.
            message_id, receive_count, group = sqs_facts(record.raw)
            message_token = message_var.set(message_id)
            destination_token = destination_var.set(state.destination)
            if receive_count is not None:
                count_token = count_var.set(receive_count)
            if group is not None:
                group_token = group_var.set(group)
        else:
            message_token = message_var.set(record.message_id)
            destination_token = destination_var.set(record.destination)
        source_token = source_var.set(state.event_source)
        index_token = index_var.set(record.index)
        trace = state.trace_ids()
        if trace is not None:
            trace_token = trace_var.set(trace[0])
            span_token = span_var.set(trace[1])
        try:
            yield
            middleware = self.middleware
            # A success writes nothing unless success lines are on: no call at all then.
            if record.outcome is not Outcome.SUCCESS or middleware.log_success:
                context = None
                if state.is_sqs:  # the fields just bound, in _log_fields.fields' order, without its lookups
                    context = {
                        "message_id": message_id,
                        "event_source": state.event_source,
                        "destination": state.destination,
                        "index": record.index,
                    }
                    if count_token is not None:
                        context["receive_count"] = receive_count
                    if group_token is not None:
                        context["fifo_group"] = group
                    if trace is not None:
                        context["trace_id"], context["span_id"] = trace
                middleware.after(record, state, context)
        finally:
            # ValueError: closed (e.g. by the GC) in another context, where nothing of ours is bound.
            # No contextlib.suppress here: this runs for every record.
            try:
                if span_token is not None:
                    span_var.reset(span_token)
                if trace_token is not None:
                    trace_var.reset(trace_token)
                if group_token is not None:
                    group_var.reset(group_token)
                if count_token is not None:
                    count_var.reset(count_token)
                index_var.reset(index_token)
                destination_var.reset(destination_token)
                source_var.reset(source_token)
                message_var.reset(message_token)
            except ValueError:
                pass

    def _wrap_portably(self, record: RecordContext, state: BatchState | None) -> Iterator[None]:
        """Through structlog's public functions; also when ``on_batch_start`` failed (no logger then)."""
        event_source = state.event_source if state is not None else EVENT_SOURCES.get(record.batch.event_type)
        tokens = bind_contextvars(**fields(record, event_source))
        try:
            yield
            if state is not None:
                self.middleware.after(record, state)
        finally:
            with contextlib.suppress(ValueError):
                reset_contextvars(**tokens)
