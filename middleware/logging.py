"""``logging``: each record's context on the function's log lines while it is processed, and our own lines.

While a record runs, its context (``message_id``, ``event_source``, ``destination``, ``index``,
``receive_count``, ``fifo_group``, ``trace_id``/``span_id``) is bound where the function's own log
calls pick it up, and unbound after the record (async records each run in their own context copy);
while the application has not imported structlog only our own lines could read it, and by default
(no success lines) no per-record hook runs at all (``_json_lines``).
Per record: one ``record_failed`` error line per failure, an optional sampled ``record_processed``
debug line per success, nothing for skipped records. Per invocation: one ``batch_summary`` line.

Two backends, with the same field names:

- ``structlog`` (default): structlog JSON lines; the context in ``structlog.contextvars``
  (``_structlog_logging``). While the application has not imported structlog (and no option needs
  it), the same lines without importing it, the context in our own ContextVar (``_json_lines``),
  until a batch starts with structlog imported;
- ``powertools``: the user's Powertools ``Logger``; the context in its thread-safe keys
  (``_powertools_logging``). structlog is then not needed, nor imported.

This module imports neither: each backend is imported by the constructor that selects it.
"""

from __future__ import annotations

import logging
import os
import random
import sys
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Literal

from observed_batch.config import require_backend
from observed_batch.errors import ConfigError
from observed_batch.log_lines import BATCH_SUMMARY, RECORD_FAILED, RECORD_PROCESSED
from observed_batch.options import Option, Options, validated
from observed_batch.text import cut, cut_bytes
from observed_batch.tracebacks import type_name
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

from ._log_fields import EVENT_SOURCES, BatchState, RecordFields, body_text, fields, identifier_text

__all__ = ["LoggingMiddleware"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


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


def _line(record: RecordContext, state: BatchState, context: RecordFields | dict[str, Any] | None) -> dict[str, Any]:
    """A record line's fields to add to: the context fields (see ``LoggingMiddleware.after``)."""
    if context is None:
        return fields(record, state.event_source, state)
    if isinstance(context, RecordFields):
        return dict(context.fields())
    return context


@validated
class LoggingMiddleware(Middleware):
    """Per-record bound context, one line per failure, one batch summary; structlog or Powertools Logger."""

    name = "logging"
    #: A failure's line gives its ``duration_ms``, also when no record hook times it.
    needs_durations = True
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option(
            "backend",
            ("structlog", "powertools"),
            "structlog",
            "`structlog`: structlog JSON lines (this page). `powertools`: the record context goes into "
            "your Powertools `Logger` and our lines are written through it; structlog is not needed "
            "([Powertools backend](#powertools-backend)).",
        ),
        Option(
            "level",
            str,
            None,
            "Level of the built-in JSON logger (`debug` … `critical`). Not used when structlog is "
            "configured by you: your configuration filters.",
            default_doc="`POWERTOOLS_LOG_LEVEL`, then `LOG_LEVEL`, then `info`",
        ),
        Option(
            "log_success",
            bool,
            False,
            "Write a `record_processed` debug line per successful record (needs level `debug` to show).",
        ),
        Option(
            "success_sample_rate",
            float,
            1.0,
            "Fraction of successes that get a line, chosen at random per record.",
            max=1,
        ),
        Option("max_failed_ids", int, 50, "Cap of `failed_message_ids` in the summary (`failures` still counts all)."),
        Option(
            "max_traceback_chars",
            int,
            4096,
            "Traceback size; the end is kept (innermost frames, exception line). `0` leaves `exception` out.",
        ),
        Option("max_message_chars", int, 1024, "Cap of `exc_message`."),
        Option(
            "include_body",
            bool,
            False,
            "Add the record payload as `body` to record lines (SQS body, decoded Kinesis data / Kafka "
            "value, DynamoDB `NewImage` as JSON).",
        ),
        Option(
            "max_body_bytes",
            int,
            1024,
            "Cap of `body` in UTF-8 bytes (never splits a character), then `...[truncated]`.",
        ),
        Option(
            "include_input_values",
            bool,
            False,
            "Keep the input values a pydantic `ValidationError` quotes in `exc_message` / `exception` "
            "(left out by default; see [privacy](../privacy.md)).",
        ),
        Option(
            "stdlib_interop",
            bool,
            False,
            "Render stdlib `logging` records (boto3, your libraries) as the same JSON lines, record context included.",
        ),
        Option(
            "configure_structlog",
            bool,
            False,
            "If structlog is not configured yet, configure it globally with the same JSON output.",
        ),
        Option(
            "logger",
            None,
            None,
            "A structlog-style logger (`.error/.info/.debug(event, **fields)`) that receives our lines.",
            default_doc="none",
        ),
        Option(
            "powertools_logger",
            None,
            None,
            "Backend `powertools`: your Powertools `Logger`, checked at construction.",
            default_doc="found at the first batch ([which Logger](#powertools-backend))",
        ),
    )

    def __init__(
        self,
        *,
        backend: Literal["structlog", "powertools"] = "structlog",
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
        powertools_logger: Any = None,
    ) -> None:
        # Each value was checked against OPTIONS (@validated); what is left are rules between options.
        self.backend = backend
        self.level = _resolve_level(level, os.environ)
        self.log_success = log_success
        self.success_sample_rate = success_sample_rate
        self.max_failed_ids = max_failed_ids
        self.max_traceback_chars = max_traceback_chars
        self.max_message_chars = max_message_chars
        self.include_body = include_body
        self.include_input_values = include_input_values
        self.max_body_bytes = max_body_bytes
        require_backend(self.name, backend)
        self._backend: Any
        if backend == "powertools":
            if logger is not None or stdlib_interop or configure_structlog:
                raise ConfigError(
                    "logging options logger, stdlib_interop and configure_structlog are for backend 'structlog';"
                    " with backend 'powertools' pass your Logger as powertools_logger"
                )
            from ._powertools_logging import PowertoolsBackend

            self._backend = PowertoolsBackend(self, powertools_logger)
        else:
            if powertools_logger is not None:
                raise ConfigError("logging option powertools_logger needs backend='powertools'")
            if logger is None and not stdlib_interop and not configure_structlog and "structlog" not in sys.modules:
                # Nothing needs structlog yet: no import (cold start) until the application imports it.
                from ._json_lines import PlainBackend

                self._backend = PlainBackend(self)
            else:
                from ._structlog_logging import StructlogBackend

                self._backend = StructlogBackend(self, logger, stdlib_interop, configure_structlog)
        # The per-record hook is the backend's own: no extra call per record.
        self.wrap_record = self._backend.wrap_record  # type: ignore[method-assign]

    # -- hooks --------------------------------------------------------------------------------
    def on_batch_start(self, batch: BatchContext) -> None:
        system = batch.messaging_system
        destination = batch.destination
        if system == "kafka":
            first = batch.records[0] if batch.records else None
            topic = first.get("topic") if isinstance(first, dict) else None
            destination = topic if isinstance(topic, str) else None
        state = BatchState(
            self._backend.logger(), EVENT_SOURCES.get(batch.event_type), destination, system == "aws_sqs"
        )
        batch.scratch[self] = state
        if not self._backend.binds_records():
            # Nothing reads a record's context while it runs, and a success writes no line: no per-record
            # hook at all, only the failures' lines (``on_record_failed``).
            batch.skip_record_hooks(self, failures=True)

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        """Replaced per instance by the backend's hook (see ``__init__``)."""
        return self._backend.wrap_record(record)  # type: ignore[no-any-return]  # pragma: no cover

    def on_record_failed(self, record: RecordContext) -> None:
        """A failure's line when no record hook runs (``binds_records``): written where the record's hook
        would resume, with the context of that moment (the record's: trace ids included)."""
        state: BatchState | None = record.batch.scratch.get(self)
        if state is not None:
            self.after(record, state)

    def after(
        self, record: RecordContext, state: BatchState, context: RecordFields | dict[str, Any] | None = None
    ) -> None:
        """Called by the backends while the context is still bound: lines carry what the handler bound too.
        ``context``: the record's context fields if the backend has them at hand (a dict this call may
        extend, or the record's ``RecordFields``, copied here and only if a line is written)."""
        outcome = record.outcome
        if outcome is Outcome.FAILURE:
            self._log_failure(state.logger, record, _line(record, state, context))
        elif outcome is Outcome.SUCCESS and self.log_success:
            rate = self.success_sample_rate
            if rate >= 1.0 or random.random() < rate:
                line = _line(record, state, context)
                line["duration_ms"] = round(record.duration_ms, 3)
                self._add_body(line, record)
                state.logger.debug(RECORD_PROCESSED, **line)

    def _log_failure(self, logger: Any, record: RecordContext, line: dict[str, Any]) -> None:
        line["duration_ms"] = round(record.duration_ms, 3)
        exc_info = record.exc_info
        exc = exc_info[1] if exc_info is not None else None
        if exc is not None:
            redaction = record.batch.redaction
            line["exc_type"] = type_name(type(exc))
            message = redaction.exception_message(exc, self.include_input_values)
            line["exc_message"] = cut(message, self.max_message_chars)
            if self.max_traceback_chars:
                tb = exc_info[2] if exc_info is not None else None
                text = redaction.exception_text(exc, tb, self.include_input_values)
                line["exception"] = cut(text, self.max_traceback_chars, keep_tail=True)
        self._add_body(line, record)
        logger.error(RECORD_FAILED, **line)

    def _add_body(self, line: dict[str, Any], record: RecordContext) -> None:
        if self.include_body:
            body = body_text(record)
            if body is not None:
                line["body"] = cut_bytes(record.batch.redaction.text(body), self.max_body_bytes)[0]

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: BatchState | None = batch.scratch.get(self)
        if state is None:
            return
        failed_ids = [identifier_text(i) for i in summary.failed_ids[: self.max_failed_ids]]
        state.logger.info(
            BATCH_SUMMARY,
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
