"""Our JSON lines without structlog: the lines structlog's processor chain would write, and the default
backend of ``logging`` while the application has not imported structlog.

``render`` produces, character for character, what the structlog backend's chain
(``merge_contextvars``, ``add_log_level``, ``TimeStamper(fmt="iso", utc=True)``, ``format_exc_info``,
leading fields, ``JSONRenderer(separators=(",", ":"))``) renders; ``JsonLines`` writes them to stdout.

``PlainBackend``: a Lambda function that does not use structlog should not pay for importing it (the
largest part of this middleware's cold start). While ``"structlog"`` is not in ``sys.modules`` at a batch
start, only our own lines can carry the record context (nobody else can log through structlog): with the
default options (no success lines) no per-record hook runs at all, a failure's line is built by
``on_record_failed``; with success lines on, the context lives in our own ContextVar, holding the record's
``RecordFields``, whose fields the first line that needs them computes. From the first batch that
starts after the application imported structlog on, the structlog backend takes over, so the user's
structlog lines carry the context.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator, MutableMapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

from observed_batch.typing import Outcome, RecordContext

from ._log_fields import EVENT_SOURCES, BatchState, RecordFields

if TYPE_CHECKING:
    from .logging import LoggingMiddleware

__all__ = ["RECORD_CONTEXT", "JsonLines", "PlainBackend", "StdoutLogger", "merge_record_context", "render"]

#: The record context while a record runs, without structlog (async records each in their own context copy):
#: its fields are computed by the first line that merges them.
RECORD_CONTEXT: ContextVar[RecordFields | None] = ContextVar("observed_batch_record_context", default=None)

_UTC = datetime.timezone.utc
#: structlog's ``map_method_name``: the level a method writes.
_LEVEL_NAMES = {"warn": "warning", "exception": "error"}

Merge = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]


class StdoutLogger:
    """structlog's ``PrintLogger`` binds ``sys.stdout`` at import; this one looks it up per line, so
    redirections (tests, the CLI) apply. Flushed per line: a Lambda timeout must not eat the lines."""

    def msg(self, message: str) -> None:
        stream = sys.stdout
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg


#: (whole second, its ``YYYY-MM-DDTHH:MM:SS``) of the last line: one tuple, replaced whole (threads).
_SECOND: tuple[int, str] = (-1, "")


def timestamp() -> str:
    """``TimeStamper(fmt="iso", utc=True)``: ``datetime.now(timezone.utc).isoformat()`` with ``Z`` (no fraction
    on a whole second, as ``isoformat``), the date and time of day formatted once per second."""
    global _SECOND
    second, micro = divmod(time.time_ns() // 1000, 1_000_000)
    known = _SECOND
    if known[0] != second:
        known = _SECOND = (second, datetime.datetime.fromtimestamp(second, tz=_UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{known[1]}.{micro:06d}Z" if micro else f"{known[1]}Z"


def json_default(value: Any) -> Any:
    """``JSONRenderer``'s fallback for values JSON has no type for: ``__structlog__()``, else ``repr``."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


#: ``json.dumps(line, separators=(",", ":"), default=json_default)`` (``JSONRenderer``'s call), with the
#: encoder built once: ``json.dumps`` builds one per call when given options, a third of a line's cost.
_encode = json.JSONEncoder(separators=(",", ":"), default=json_default).encode


def _exc_info(value: Any) -> tuple[type[BaseException], BaseException, TracebackType | None] | None:
    """structlog's reading of an ``exc_info`` field: an exception, an exc_info tuple, or true (the current one)."""
    if isinstance(value, BaseException):
        return (value.__class__, value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3:
        kind, exc, tb = value
        is_type = isinstance(kind, type) and issubclass(kind, BaseException)
        if is_type and isinstance(exc, BaseException) and (tb is None or isinstance(tb, TracebackType)):
            return (kind, exc, tb)
    if value:
        current = sys.exc_info()
        return None if current[0] is None or current[1] is None else (current[0], current[1], current[2])
    return None


def _format_exception(exc_info: tuple[type[BaseException], BaseException, TracebackType | None]) -> str:
    out = io.StringIO()
    traceback.print_exception(exc_info[0], exc_info[1], exc_info[2], None, out)
    text = out.getvalue()
    return text[:-1] if text[-1:] == "\n" else text


def merge_record_context(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``merge_contextvars`` for our own ContextVar: the record's context, where the line does not set a key."""
    context = RECORD_CONTEXT.get()
    if context is not None:
        for key, value in context.fields().items():
            event_dict.setdefault(key, value)
    return event_dict


def render(method: str, event_dict: MutableMapping[str, Any], now: Callable[[], str] = timestamp) -> str:
    """One line from an event dict (``event`` and the merged context in it), as structlog's chain renders it:
    ``timestamp``, ``level`` (always the method's), ``event`` first, then the rest in order; ``exc_info``
    becomes ``exception``."""
    event = event_dict.pop("event", None)
    event_dict.pop("timestamp", None)
    event_dict.pop("level", None)
    if "exc_info" in event_dict:
        exc_info = _exc_info(event_dict.pop("exc_info"))
        if exc_info is not None:
            event_dict["exception"] = _format_exception(exc_info)
    # The three leading fields, then the rest: the characters of encoding them as one dict, without building it.
    level = _LEVEL_NAMES.get(method, method)
    head = f'{{"timestamp":{_encode(now())},"level":{_encode(level)},"event":{_encode(event)}'
    rest = _encode(event_dict)
    return f"{head},{rest[1:]}" if len(rest) > 2 else f"{head}}}"


class JsonLines:
    """The private logger (no structlog configuration, none injected): our lines in one call instead of a
    bound logger's proxy and six processors. ``merge``: where the context comes from (structlog's
    ``merge_contextvars``, or ``merge_record_context``)."""

    def __init__(self, level: int, merge: Merge = merge_record_context) -> None:
        self._merge = merge
        self._out = StdoutLogger()
        for method, method_level in (("debug", logging.DEBUG), ("info", logging.INFO), ("error", logging.ERROR)):
            if method_level < level:  # as make_filtering_bound_logger: below the level, a line costs a call
                setattr(self, method, _drop)

    def debug(self, event: str, **fields: Any) -> None:
        self._write("debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._write("info", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._write("error", event, fields)

    def bind(self) -> JsonLines:
        return self

    def _write(self, method: str, event: str, fields: dict[str, Any]) -> None:
        fields["event"] = event
        self._out.msg(render(method, self._merge(None, method, fields)))


def _drop(event: str, **fields: Any) -> None:
    """A line below the level."""


class PlainBackend:
    """The default backend while the application has not imported structlog (checked at each batch start)."""

    def __init__(self, middleware: LoggingMiddleware) -> None:
        self.middleware = middleware
        self.private = JsonLines(middleware.level)
        #: The structlog backend, once the application imported structlog.
        self.structlog: Any = None

    def logger(self) -> Any:
        """The logger of one batch's lines; the switch to the structlog backend happens here, at a batch start."""
        if self.structlog is None and "structlog" in sys.modules:
            from ._structlog_logging import StructlogBackend

            self.structlog = StructlogBackend(self.middleware, None, False, False)
        if self.structlog is not None:
            return self.structlog.logger()
        return self.private

    def binds_records(self) -> bool:
        """Whether records need the per-record hook this batch: only our own lines could read the context
        bound in our ContextVar, and they get it handed; so only for success lines, or once structlog is in."""
        return self.structlog is not None or self.middleware.log_success

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        if self.structlog is not None:
            yield from self.structlog.wrap_record(record)
            return
        middleware = self.middleware
        state: BatchState | None = record.batch.scratch.get(middleware)
        if state is None:  # on_batch_start failed: the context still, no lines (no logger)
            context = RecordFields(record, BatchState(None, EVENT_SOURCES.get(record.batch.event_type), None, False))
        else:
            # Nothing computed yet: a success without a line (the default) never needs the fields.
            context = RecordFields(record, state)
        token = RECORD_CONTEXT.set(context)
        try:
            yield
            # A success writes nothing unless success lines are on: no call at all then.
            if state is not None and (record.outcome is not Outcome.SUCCESS or middleware.log_success):
                middleware.after(record, state, context)
        finally:
            # ValueError: closed (e.g. by the GC) in another context, where nothing of ours is set.
            # No contextlib.suppress here: this runs for every record.
            try:  # noqa: SIM105
                RECORD_CONTEXT.reset(token)
            except ValueError:
                pass
