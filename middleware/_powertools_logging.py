"""The ``powertools`` backend of ``logging``: the record context in the user's Powertools ``Logger``.

While a record runs, its context (``message_id``, ``event_source``, ``destination``, ``index``,
``receive_count``, ``fifo_group``, ``trace_id``/``span_id``) is in Powertools' *thread-safe keys*, the
ones ``Logger.thread_safe_append_keys`` sets: a ``ContextVar`` holding a dict, so each async record
(its own task, its own context copy) sees only its own keys. ``Logger.append_keys`` /
``append_context_keys`` would not do: they change one dict shared by every record in flight.

After the record the keys are taken out again: the variable is reset by token, and keys the handler
itself added with ``thread_safe_append_keys`` during the record are kept (as Powertools would keep them).

Our own lines (``record_failed``, ``record_processed``, ``batch_summary``) go through the same Logger,
with the structlog backend's field names (``event`` included, next to Powertools' ``message``).

Which Logger: the one given as ``powertools_logger=``; else, at the first batch (after the function's
module created its own), ``Logger(service=...)`` for ``POWERTOOLS_SERVICE_NAME`` or, when that is unset,
for the one service that has a Powertools Logger already (Loggers of a service share one stdlib
logger, handler and formatter: this is the user's Logger under another name). With none, or several
and no service name, a ``Logger()`` as Powertools would build it from the environment.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterator
from contextvars import ContextVar, copy_context
from typing import TYPE_CHECKING, Any

from observed_batch.errors import ConfigError
from observed_batch.typing import Outcome, RecordContext

from ._log_fields import BatchState, fields

if TYPE_CHECKING:
    from .logging import LoggingMiddleware

__all__ = ["PowertoolsBackend", "context_keys_variable"]

log = logging.getLogger("observed_batch")

_PROBE_KEY = "observed_batch_probe"
_UNSUPPORTED = (
    "logging backend 'powertools' needs a Powertools Logger with context-local keys"
    " (Logger.thread_safe_append_keys, honoured by its formatter): {reason}. Upgrade aws-lambda-powertools,"
    " or use OBSERVED_BATCH_LOGGING_BACKEND=structlog"
)


def context_keys_variable(logger: Any) -> ContextVar[dict[str, Any]]:
    """The ContextVar behind ``logger``'s thread-safe keys, found through a throwaway context (as the
    structlog backend finds structlog's), after checking that the Logger's formatter writes them.

    ``ConfigError`` when either is not so: binding the keys anywhere else could put one record's
    ``message_id`` on another record's lines.
    """
    append = getattr(logger, "thread_safe_append_keys", None)
    if not callable(append):
        raise ConfigError(_UNSUPPORTED.format(reason=f"{logger!r} has no thread_safe_append_keys"))
    marker = f"probe-{secrets.token_hex(8)}"
    scratch = copy_context()
    try:
        scratch.run(append, **{_PROBE_KEY: marker})
    except Exception as exc:  # a custom formatter without them (BasePowertoolsFormatter raises)
        raise ConfigError(_UNSUPPORTED.format(reason=f"thread_safe_append_keys raised {exc!r}")) from None
    found = [
        variable
        for variable, value in scratch.items()
        if isinstance(value, dict) and value.get(_PROBE_KEY) == marker and isinstance(variable, ContextVar)
    ]
    if len(found) != 1:
        raise ConfigError(_UNSUPPORTED.format(reason="its keys are not kept in one context variable"))
    formatter = getattr(logger, "registered_formatter", None)
    record = logging.LogRecord("observed_batch", logging.INFO, __file__, 0, "probe", None, None)
    try:
        text = scratch.run(formatter.format, record) if formatter is not None else ""
    except Exception:
        text = ""
    if marker not in str(text):
        raise ConfigError(_UNSUPPORTED.format(reason="its formatter does not write them"))
    return found[0]


def find_logger() -> Any:
    """The function's Powertools Logger (see the module docstring)."""
    from aws_lambda_powertools import Logger

    service = os.environ.get("POWERTOOLS_SERVICE_NAME") or None
    if service is None:
        configured = [
            name
            for name, candidate in logging.Logger.manager.loggerDict.items()
            if isinstance(candidate, logging.Logger) and getattr(candidate, "powertools_handler", None) is not None
        ]
        if len(configured) == 1:  # unambiguous: the function's own
            service = configured[0]
    return Logger(service=service)


class _Lines:
    """Our lines through a Powertools Logger: ``event`` as a field too, as in the structlog backend."""

    __slots__ = ("logger",)

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def error(self, event: str, **line: Any) -> None:
        self.logger.error(event, stacklevel=3, event=event, **line)

    def info(self, event: str, **line: Any) -> None:
        self.logger.info(event, stacklevel=3, event=event, **line)

    def debug(self, event: str, **line: Any) -> None:
        self.logger.debug(event, stacklevel=3, event=event, **line)


class PowertoolsBackend:
    """Binds the record context in the Powertools Logger's thread-safe keys; lines go to that Logger."""

    def __init__(self, middleware: LoggingMiddleware, logger: Any) -> None:
        self.middleware = middleware
        self.resolved = logger
        self.lines: _Lines | None = None
        #: ``None`` until a Logger is resolved, and after one failed the check (then lines, no binding).
        self.variable: ContextVar[dict[str, Any]] | None = None
        if logger is not None:
            self.variable = context_keys_variable(logger)  # the cold start check of a given Logger
            self.lines = _Lines(logger)
        else:
            from aws_lambda_powertools import Logger

            if not callable(getattr(Logger, "thread_safe_append_keys", None)):
                raise ConfigError(_UNSUPPORTED.format(reason="this Powertools has no Logger.thread_safe_append_keys"))

    def logger(self) -> Any:
        """The lines of one batch; resolves the Logger on the first batch."""
        lines = self.lines
        if lines is None:
            logger = self.resolved = find_logger()
            try:
                self.variable = context_keys_variable(logger)
            except ConfigError as exc:
                # Too late to refuse the configuration: write lines, bind nothing, say so once.
                log.warning("observed_batch logging: record keys are not added to %r: %s", logger, exc)
            lines = self.lines = _Lines(logger)
        return lines

    def binds_records(self) -> bool:
        """Always: the application's Logger lines carry the appended keys while the record runs."""
        return True

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        state: BatchState | None = record.batch.scratch.get(self.middleware)
        variable = self.variable
        if state is None or variable is None:
            yield
            if state is not None:
                self.middleware.after(record, state)
            return
        keys = fields(record, state.event_source, state)
        before = variable.get()
        ours = {**before, **keys}
        token = variable.set(ours)
        try:
            yield
            middleware = self.middleware
            # A success writes nothing unless success lines are on: no call at all then.
            if record.outcome is not Outcome.SUCCESS or middleware.log_success:
                middleware.after(record, state, dict(keys))
        finally:
            current = variable.get()
            try:
                variable.reset(token)
            except ValueError:
                pass  # closed (e.g. by the GC) in another context, where nothing of ours is bound
            else:
                if current is not ours or len(current) != len(ours):
                    # The handler changed the thread-safe keys: keep its changes, take ours out.
                    kept = {key: value for key, value in current.items() if key not in keys}
                    kept.update((key, before[key]) for key in keys if key in before)
                    variable.set(kept)
