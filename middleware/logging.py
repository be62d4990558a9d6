"""``logging``: structlog JSON lines with each record's context bound while it is processed.

While a record runs, its context (``message_id``, ``event_source``, ``destination``, ``index``,
``receive_count``, ``fifo_group``, ``trace_id``/``span_id``) is bound with
``structlog.contextvars``, so the handler's own ``structlog.get_logger()`` lines carry it too; the
binding is reset by token after the record (async records each run in their own context copy).
Per record: one ``record_failed`` error line per failure, an optional sampled ``record_processed``
debug line per success, nothing for skipped records. Per invocation: one ``batch_summary`` line.

Which logger writes: an injected ``logger=``; else the user's structlog configuration when there is
one (``structlog.is_configured()``, checked at each batch start); else a private JSON logger to
stdout. The global structlog configuration and the stdlib root logger are only touched on request
(``configure_structlog`` / ``stdlib_interop``), never on import.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import random
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar, copy_context
from typing import Any

import structlog
from structlog.contextvars import bind_contextvars, merge_contextvars, reset_contextvars

from observed_batch.errors import ConfigError
from observed_batch.tracebacks import type_name
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

__all__ = ["LoggingMiddleware"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
#: ``eventSource`` as Lambda spells it, by ``BatchContext.messaging_system``.
_EVENT_SOURCES = {
    "aws_sqs": "aws:sqs",
    "aws_kinesis": "aws:kinesis",
    "aws_dynamodb": "aws:dynamodb",
    "kafka": "aws:kafka",
}
_LOGGER_NAME = "observed_batch"
_TRUNCATED = "...[truncated]"
#: Per-record context keys, bound while the record runs (the last four only when known).
_CONTEXT_KEYS = (
    "message_id",
    "event_source",
    "destination",
    "index",
    "receive_count",
    "fifo_group",
    "trace_id",
    "span_id",
)
_STRUCTLOG_PREFIX = "structlog_"


class _StdoutLogger:
    """structlog's ``PrintLogger`` binds ``sys.stdout`` at import; this one looks it up per line, so
    redirections (tests, the CLI) apply. Flushed per line: a Lambda timeout must not eat the lines."""

    def msg(self, message: str) -> None:
        stream = sys.stdout
        stream.write(message + "\n")
        stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg


class _StdoutLoggerFactory:
    def __call__(self, *args: Any) -> _StdoutLogger:
        return _StdoutLogger()


class _JsonStdoutHandler(logging.Handler):
    """Root handler installed by ``stdlib_interop``: stdlib records as the same JSON lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _StdoutLogger().msg(self.format(record))
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


def _resolve_level(level: str | None, environ: Mapping[str, str]) -> int:
    """``level`` option > ``POWERTOOLS_LOG_LEVEL`` > ``LOG_LEVEL`` > INFO, as Powertools' Logger
    (which also puts ``POWERTOOLS_LOG_LEVEL`` before the legacy ``LOG_LEVEL``)."""
    for source, value in (
        ("logging option level", level),
        ("POWERTOOLS_LOG_LEVEL", environ.get("POWERTOOLS_LOG_LEVEL")),
        ("LOG_LEVEL", environ.get("LOG_LEVEL")),
    ):
        if value is None or not value.strip():  # unset or blank: the next source decides
            continue
        resolved = _LEVELS.get(value.strip().lower())
        if resolved is None:
            raise ConfigError(
                f"{source}={value!r} is not a log level; use one of: debug, info, warning, error, critical"
            )
        return resolved
    return logging.INFO


def _check_count(option: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"logging option {option}={value!r} must be a non-negative integer")
    return value


def _truncate(text: str, limit: int, keep_tail: bool = False) -> str:
    if len(text) <= limit:
        return text
    if keep_tail:  # a traceback's last frames and the exception line matter most
        return _TRUNCATED + text[len(text) - limit :]
    return text[:limit] + _TRUNCATED


def _truncate_bytes(text: str, limit: int) -> str:
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return text
    return encoded[:limit].decode("utf-8", errors="ignore") + _TRUNCATED


def _body(record: RecordContext) -> str | None:
    """The record payload as text: SQS body, decoded Kinesis data / Kafka value, DynamoDB NewImage."""
    raw = record.raw
    system = record.batch.messaging_system
    if system == "aws_sqs":
        body = raw.get("body")
        return body if isinstance(body, str) else None
    if system == "aws_dynamodb":
        image = (raw.get("dynamodb") or {}).get("NewImage")
        return json.dumps(image, separators=(",", ":"), default=str) if image is not None else None
    data = (raw.get("kinesis") or {}).get("data") if system == "aws_kinesis" else raw.get("value")
    if not isinstance(data, str):
        return None
    try:
        return base64.b64decode(data, validate=True).decode("utf-8", errors="replace")
    except ValueError:
        return data


def _identifier_text(identifier: Any) -> str:
    if isinstance(identifier, dict):  # Kafka, as RecordContext.message_id spells it
        return f"{identifier.get('partition')}@{identifier.get('offset')}"
    return str(identifier)


def _trace_ids() -> tuple[str, str] | None:
    """The current OTel span's W3C ids, if OTel is loaded at all (importing it is not our call)."""
    otel_trace: Any = sys.modules.get("opentelemetry.trace")
    if otel_trace is None:
        return None
    context = otel_trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def _receive_count(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _structlog_variables() -> tuple[ContextVar[Any], ...] | None:
    """The ContextVars ``bind_contextvars`` uses for our keys (in ``_CONTEXT_KEYS`` order), found
    through a throwaway context.

    Setting them directly is what ``bind_contextvars`` / ``reset_contextvars`` do, minus their per-call
    key formatting and lookups (half of this middleware's per-record cost). Should a future structlog
    keep context differently, ``None`` sends us back to its public functions.
    """
    marker = object()
    scratch = copy_context()
    scratch.run(bind_contextvars, **dict.fromkeys(_CONTEXT_KEYS, marker))
    found = {
        variable.name[len(_STRUCTLOG_PREFIX) :]: variable
        for variable, value in scratch.items()
        if value is marker and variable.name.startswith(_STRUCTLOG_PREFIX)
    }
    if set(found) != set(_CONTEXT_KEYS):  # pragma: no cover - structlog 20.1 to 26.x keep one ContextVar per key
        return None
    return tuple(found[key] for key in _CONTEXT_KEYS)


def _fields(record: RecordContext, event_source: str | None) -> dict[str, Any]:
    """The record's context fields, through the generic accessors (lines and the portable path)."""
    fields: dict[str, Any] = {
        "message_id": record.message_id,
        "event_source": event_source,
        "destination": record.destination,
        "index": record.index,
    }
    receive_count = record.receive_count
    if receive_count is not None:
        fields["receive_count"] = receive_count
    fifo_group = record.fifo_group
    if fifo_group is not None:
        fields["fifo_group"] = fifo_group
    trace = _trace_ids()
    if trace is not None:
        fields["trace_id"], fields["span_id"] = trace
    return fields


class _BatchState:
    __slots__ = ("destination", "event_source", "is_sqs", "logger")

    def __init__(self, logger: Any, event_source: str | None, destination: str | None, is_sqs: bool) -> None:
        self.logger = logger
        self.event_source = event_source
        self.destination = destination
        self.is_sqs = is_sqs


class LoggingMiddleware(Middleware):
    """structlog JSON lines: per-record bound context, one line per failure, one batch summary."""

    name = "logging"

    def __init__(
        self,
        *,
        level: str | None = None,
        log_success: bool = False,
        success_sample_rate: float = 1.0,
        max_failed_ids: int = 50,
        max_traceback_chars: int = 4096,
        max_message_chars: int = 1024,
        include_body: bool = False,
        max_body_bytes: int = 1024,
        include_input_values: bool = False,
        stdlib_interop: bool = False,
        configure_structlog: bool = False,
        logger: Any = None,
    ) -> None:
        rate = success_sample_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ConfigError(f"logging option success_sample_rate={rate!r} must be a number between 0 and 1")
        if level is not None and not isinstance(level, str):
            raise ConfigError(f"logging option level={level!r} must be a level name such as 'info'")
        self.level = _resolve_level(level, os.environ)
        self.log_success = bool(log_success)
        self.success_sample_rate = float(rate)
        self.max_failed_ids = _check_count("max_failed_ids", max_failed_ids)
        self.max_traceback_chars = _check_count("max_traceback_chars", max_traceback_chars)
        self.max_message_chars = _check_count("max_message_chars", max_message_chars)
        self.include_body = bool(include_body)
        if not isinstance(include_input_values, bool):
            raise ConfigError(f"logging option include_input_values={include_input_values!r} must be true or false")
        self.include_input_values = include_input_values
        self.max_body_bytes = _check_count("max_body_bytes", max_body_bytes)
        self._injected = logger
        self._variables = _structlog_variables()
        wrapper_class = structlog.make_filtering_bound_logger(self.level)
        self._private = structlog.wrap_logger(
            _StdoutLogger(), processors=_json_processors(), wrapper_class=wrapper_class, context_class=dict
        ).bind()
        if configure_structlog and not structlog.is_configured():
            structlog.configure(
                processors=_json_processors(),
                wrapper_class=wrapper_class,
                logger_factory=_StdoutLoggerFactory(),
                cache_logger_on_first_use=False,
            )
        if stdlib_interop:
            self._install_stdlib_handler()

    def _install_stdlib_handler(self) -> None:
        """One JSON handler on the root logger. Lambda's own plain-text root handler would print every
        record a second time, so it is replaced; other handlers (yours, pytest's) are left alone."""
        handler = _JsonStdoutHandler(self.level)
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

    # -- hooks --------------------------------------------------------------------------------
    def _logger(self) -> Any:
        logger = self._injected
        if logger is None:
            if not structlog.is_configured():
                return self._private
            logger = structlog.get_logger(_LOGGER_NAME)
        # A lazy proxy re-reads the configuration on every call; bind once per batch instead.
        bind = getattr(logger, "bind", None)
        return bind() if callable(bind) else logger

    def on_batch_start(self, batch: BatchContext) -> None:
        system = batch.messaging_system
        destination = batch.destination
        if system == "kafka":
            first = batch.records[0] if batch.records else None
            topic = first.get("topic") if isinstance(first, dict) else None
            destination = topic if isinstance(topic, str) else None
        state = _BatchState(self._logger(), _EVENT_SOURCES.get(system), destination, system == "aws_sqs")
        batch.scratch[self] = state

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        state: _BatchState | None = record.batch.scratch.get(self)
        variables = self._variables
        if state is None or variables is None:
            yield from self._wrap_portably(record, state)
            return
        # The hot path: every record pays for it, so it sets structlog's ContextVars directly and
        # reads SQS fields straight from the dict (the generic accessors cost ~1 µs each).
        message_var, source_var, destination_var, index_var, count_var, group_var, trace_var, span_var = variables
        receive_count = fifo_group = None
        if state.is_sqs:
            # Same values as RecordContext.message_id / receive_count / fifo_group.
            raw = record.raw
            message_id = raw.get("messageId")
            message_id = message_id if type(message_id) is str else None
            destination = state.destination
            attributes = raw.get("attributes")
            if type(attributes) is dict:
                receive_count = _receive_count(attributes.get("ApproximateReceiveCount"))
                group = attributes.get("MessageGroupId")
                fifo_group = group if type(group) is str else None
        else:
            message_id = record.message_id
            destination = record.destination
        tokens = [
            message_var.set(message_id),
            source_var.set(state.event_source),
            destination_var.set(destination),
            index_var.set(record.index),
        ]
        if receive_count is not None:
            tokens.append(count_var.set(receive_count))
        if fifo_group is not None:
            tokens.append(group_var.set(fifo_group))
        trace = _trace_ids()
        if trace is not None:
            tokens.append(trace_var.set(trace[0]))
            tokens.append(span_var.set(trace[1]))
        try:
            yield
            self._after(record, state)
        finally:
            # ValueError: closed (e.g. by the GC) in another context, where nothing of ours is bound.
            # No contextlib.suppress here: this runs for every record.
            try:
                for token in reversed(tokens):
                    token.var.reset(token)
            except ValueError:
                pass

    def _wrap_portably(self, record: RecordContext, state: _BatchState | None) -> Iterator[None]:
        """Through structlog's public functions; also when ``on_batch_start`` failed (no logger then)."""
        event_source = state.event_source if state is not None else _EVENT_SOURCES.get(record.batch.messaging_system)
        tokens = bind_contextvars(**_fields(record, event_source))
        try:
            yield
            if state is not None:
                self._after(record, state)
        finally:
            with contextlib.suppress(ValueError):
                reset_contextvars(**tokens)

    def _after(self, record: RecordContext, state: _BatchState) -> None:
        """Still bound here: lines carry whatever the handler bound too, if the logger merges contextvars."""
        outcome = record.outcome
        if outcome is Outcome.FAILURE:
            self._log_failure(state.logger, record, _fields(record, state.event_source))
        elif outcome is Outcome.SUCCESS and self.log_success:
            rate = self.success_sample_rate
            if rate >= 1.0 or random.random() < rate:
                line = _fields(record, state.event_source)
                line["duration_ms"] = round(record.duration_ms, 3)
                self._add_body(line, record)
                state.logger.debug("record_processed", **line)

    def _log_failure(self, logger: Any, record: RecordContext, line: dict[str, Any]) -> None:
        line["duration_ms"] = round(record.duration_ms, 3)
        exc_info = record.exc_info
        exc = exc_info[1] if exc_info is not None else None
        if exc is not None:
            redaction = record.batch.redaction
            line["exc_type"] = type_name(type(exc))
            message = redaction.exception_message(exc, self.include_input_values)
            line["exc_message"] = _truncate(message, self.max_message_chars)
            if self.max_traceback_chars:
                tb = exc_info[2] if exc_info is not None else None
                text = redaction.exception_text(exc, tb, self.include_input_values)
                line["exception"] = _truncate(text, self.max_traceback_chars, keep_tail=True)
        self._add_body(line, record)
        logger.error("record_failed", **line)

    def _add_body(self, line: dict[str, Any], record: RecordContext) -> None:
        if self.include_body:
            body = _body(record)
            if body is not None:
                line["body"] = _truncate_bytes(record.batch.redaction.text(body), self.max_body_bytes)

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: _BatchState | None = batch.scratch.get(self)
        if state is None:
            return
        failed_ids = [_identifier_text(i) for i in summary.failed_ids[: self.max_failed_ids]]
        state.logger.info(
            "batch_summary",
            event_source=state.event_source,
            destination=state.destination,
            batch_size=batch.size,
            successes=summary.successes,
            failures=summary.failures,
            skipped=summary.skipped,
            **({"dead_lettered": summary.dead_lettered} if summary.dead_lettered else {}),
            **({"dropped": summary.dropped} if summary.dropped else {}),
            duration_ms=round(summary.duration_ms, 3),
            failed_message_ids=failed_ids,
            **({"telemetry_dropped": dict(summary.telemetry_dropped)} if summary.telemetry_dropped else {}),
        )
