"""The types every middleware works with: ``Middleware``, ``RecordContext``, ``BatchContext``."""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from aws_lambda_powertools.utilities.batch import EventType

from observed_batch import _compat, sources
from observed_batch.outcome import DEAD_LETTERED as DEAD_LETTERED
from observed_batch.outcome import DROPPED as DROPPED
from observed_batch.outcome import FIFO_SHORT_CIRCUIT as FIFO_SHORT_CIRCUIT
from observed_batch.outcome import RESOLUTIONS as RESOLUTIONS
from observed_batch.outcome import Outcome
from observed_batch.redaction import DEFAULT as DEFAULT_REDACTION
from observed_batch.redaction import Redaction
from observed_batch.summary import BatchSummary

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch import BasePartialProcessor
    from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo

__all__ = ["DEADLINE_RESERVE_MS", "BatchContext", "BatchSummary", "Middleware", "Outcome", "RecordContext"]

#: Time kept free before Lambda's deadline for what follows the batch (Powertools building the
#: response, the runtime sending it): end-of-batch telemetry waits never reach into it.
DEADLINE_RESERVE_MS = 500


class BatchContext:
    """One invocation's batch, shared by all its records (read-only for middlewares, but ``scratch``)."""

    __slots__ = (
        "_befores",
        "_chain",
        "_destination",
        "_exits",
        "_next_index",
        "_plain",
        "_quick",
        "_resolved",
        "_single_after",
        "_single_wrap",
        "_steps",
        "_stop",
        "_streamed",
        "_wraps",
        "durations_ns",
        "event_source_arn",
        "event_type",
        "is_async",
        "lambda_context",
        "processor",
        "records",
        "redaction",
        "scratch",
        "size",
        "started_at",
        "started_ns",
        "summary",
    )

    def __init__(
        self,
        event_type: EventType,
        records: Any,
        lambda_context: Any = None,
        processor: BasePartialProcessor | None = None,
        is_async: bool = False,
        redaction: Redaction | None = None,
    ) -> None:
        self.event_type = event_type
        if isinstance(records, Sequence):
            self._streamed = False
        else:
            # A generator (or anything else Powertools iterates, including what it then rejects): never
            # consumed or measured here. Records are added as the processor reaches them (``_arrived``).
            records, self._streamed = [], True
        self.records = records
        self.size = len(records)
        self.lambda_context = lambda_context
        #: What every exported text goes through (``observed_batch.redaction``): use ``redaction.text(...)``.
        self.redaction = DEFAULT_REDACTION if redaction is None else redaction
        self.processor = processor
        self.is_async = is_async
        self.event_source_arn = sources.event_source_arn(records[0]) if records else None
        #: Wall clock (epoch seconds) and monotonic start of the batch.
        self.started_at = time.time()
        self.started_ns = time.perf_counter_ns()
        #: Per-batch state of middlewares, keyed by something the middleware owns (e.g. its name).
        self.scratch: dict[Any, Any] = {}
        self._destination: str | None = sources.destination_from_arn(event_type, self.event_source_arn)
        #: Outcome counts, kept up to date as records finish; final in ``on_batch_end``.
        self.summary = BatchSummary()
        self._next_index = 0
        #: The middlewares taking part in this batch's records, in chain order, with their bound record hooks,
        #: and what the driver derives from them (set by ``chain.record_steps``; read there).
        self._steps: tuple[tuple[Any, ...], ...] = ()
        self._wraps, self._plain, self._quick = False, True, False
        self._exits: tuple[Any, ...] = ()
        self._befores: tuple[Any, ...] = ()
        self._single_after: Callable[[RecordContext], None] | None = None
        self._single_wrap: Callable[[RecordContext], Iterator[None]] | None = None
        #: Processing time (ns) of each record the handler ran, in completion order (skips excluded),
        #: when a middleware of the chain sets ``needs_durations``; else ``None``.
        self.durations_ns: array[int] | None = None
        #: Set once a ``FailRecord(rest_of_batch=True)`` stopped the batch: the ``exc_info`` every
        #: later record is failed with, without entering any middleware.
        self._stop: ExceptionInfo | None = None
        #: The chain running this batch (set by it), for ``telemetry_budget_ms``.
        self._chain: Any = None
        #: Failed records a policy middleware resolved (``RecordContext.resolve``), in resolution order.
        self._resolved: list[RecordContext] = []

    def _arrived(self, raw: Any) -> None:
        """A record of a streamed batch (records given as a generator) reached the processor."""
        if not self.records:
            self.event_source_arn = sources.event_source_arn(raw)
            self._destination = sources.destination_from_arn(self.event_type, self.event_source_arn)
        self.records.append(raw)
        self.size += 1

    def next_index(self) -> int:
        """Position of the next record to start (records start in batch order, also when async)."""
        index = self._next_index
        self._next_index = index + 1
        return index

    @property
    def records_started(self) -> int:
        """How many records have started so far (the running record's ``index + 1``; ``0`` before the first)."""
        return self._next_index

    def skip_record_hooks(self, middleware: Middleware, *, failures: bool = False) -> None:
        """Call from ``on_batch_start``: the middleware's record hooks are not called for this batch.

        For a middleware with nothing to do in this invocation (tracing when the sampler drops the
        batch, Sentry without a DSN). Its ``on_batch_end`` still runs; with ``failures=True`` so does its
        ``on_record_failed``. Once no middleware wraps records, each successful record costs what it costs
        in Powertools plus a count for the summary.
        """
        if self._next_index:
            raise RuntimeError("skip_record_hooks() is for on_batch_start, before the first record starts")
        from observed_batch.chain import narrow_steps  # the chain builds steps (it imports this module)

        narrow_steps(self, middleware, failures)

    @property
    def messaging_system(self) -> str:
        """``aws_sqs``, ``aws_kinesis``, ``aws_dynamodb`` or ``kafka`` (OTel ``messaging.system``)."""
        return sources.MESSAGING_SYSTEMS[self.event_type]

    @property
    def destination_kind(self) -> str:
        """``queue``, ``stream``, ``table`` or ``topic``."""
        return sources.DESTINATION_KINDS[self.event_type]

    @property
    def destination(self) -> str | None:
        """Queue / stream / table name from the event source ARN (Kafka: see ``RecordContext``)."""
        return self._destination

    @property
    def is_fifo(self) -> bool:
        return self.event_type is EventType.SQS and bool(self._destination and self._destination.endswith(".fifo"))

    def remaining_time_ms(self) -> int | None:
        """Milliseconds until Lambda's deadline, or ``None`` without a Lambda context."""
        getter = getattr(self.lambda_context, "get_remaining_time_in_millis", None)
        if getter is None:
            return None
        return int(getter())

    def elapsed_ms(self) -> float:
        return (time.perf_counter_ns() - self.started_ns) / 1e6

    def telemetry_budget_ms(self) -> int:
        """The most the chain's ``on_batch_end`` hooks would wait if the batch ended now: the sum of the
        middlewares' ``flush_budget_ms`` (0 for a backend whose breaker is open, or with nothing to flush
        yet). ``timeout_guard`` keeps this much time free before each record."""
        chain = self._chain
        # Asked before every record by timeout_guard: no call at all when no middleware has a flush budget.
        return 0 if chain is None or not chain._budget else int(chain.telemetry_budget_ms(self))

    @property
    def has_policy(self) -> bool:
        """A policy middleware (``policy = True``, e.g. ``retry_policy``) is in this batch's chain: failed
        records may be resolved (dead-lettered or dropped)."""
        chain = self._chain
        return chain is not None and bool(chain.has_policy)

    def time_left_ms(self) -> int | None:
        """Milliseconds telemetry may still use: the remaining Lambda time minus ``DEADLINE_RESERVE_MS``
        (never negative), or ``None`` without a Lambda context (then only the configured timeouts bound waits)."""
        remaining = self.remaining_time_ms()
        if remaining is None:
            return None
        return max(0, remaining - DEADLINE_RESERVE_MS)

    def wait_budget_s(self, timeout_ms: int) -> float:
        """Seconds an end-of-batch wait (a flush) may take now: its configured ``timeout_ms``, cut to what
        is left before the deadline. Hooks that wait one after another share the time this way: each
        asks when it is its turn. ``0.0`` means: do not wait at all."""
        left = self.time_left_ms()
        if left is not None and left < timeout_ms:
            timeout_ms = left
        return max(0, timeout_ms) / 1000.0


class RecordContext:
    """One record's trip through the chain. Middlewares keep per-record state in ``scratch``."""

    __slots__ = (
        "_hooks",
        "_parsed",
        "_resolution",
        "_scratch",
        "batch",
        "duration_ns",
        "exc_info",
        "index",
        "outcome",
        "raw",
        "result",
        "skip_reason",
    )

    def __init__(self, batch: BatchContext, raw: Any, index: int, _hooks: Any = None) -> None:
        # The record's entered middleware hooks while the core runs (observed_batch.driver), passed in by the
        # driver: ~70 ns cheaper than a store after construction.
        self._hooks = _hooks
        self.batch = batch
        self.raw = raw
        self.index = index
        #: Set after the core ran: ``Outcome`` and, for failures/skips, ``exc_info``.
        self.outcome: Outcome | None = None
        self.exc_info: ExceptionInfo | None = None
        #: The record handler's return value (successes only).
        self.result: Any = None
        #: Why a record was skipped: ``fifo_short_circuit`` or a ``FailRecord.reason``.
        self.skip_reason: str | None = None
        #: Time the core spent on this record (handler included), in nanoseconds.
        self.duration_ns: int = 0
        self._scratch: dict[Any, Any] | None = None
        self._parsed: Any = None
        self._resolution: str | None = None

    @property
    def resolution(self) -> str | None:
        """``"dead_lettered"`` or ``"dropped"`` once a policy middleware resolved this failed record (it
        is then left out of ``batchItemFailures``; ``outcome`` stays ``failure``), else ``None``."""
        return self._resolution

    def resolve(self, middleware: Middleware, resolution: str) -> bool:
        """For policy middlewares, after the ``yield``: leave this failed record out of ``batchItemFailures``
        (see "Policy middlewares" in docs/writing-middleware.md). ``True`` when resolved; refused (``False``,
        logged once per batch) for a middleware without ``policy = True``, a record that did not fail, or
        one resolved already."""
        chain = self.batch._chain
        return chain is not None and bool(chain.resolve(self, middleware, resolution))

    @property
    def event_type(self) -> EventType:
        return self.batch.event_type

    @property
    def scratch(self) -> dict[Any, Any]:
        if self._scratch is None:
            self._scratch = {}
        return self._scratch

    @property
    def identifier(self) -> Any:
        """``itemIdentifier`` as Powertools reports it: messageId, sequence number, or Kafka dict."""
        return sources.record_identifier(self.batch.event_type, self.raw)

    @property
    def message_id(self) -> str | None:
        """The identifier as a string (Kafka: ``topic-partition@offset``)."""
        identifier = self.identifier
        if isinstance(identifier, dict):
            return f"{identifier['partition']}@{identifier['offset']}"
        return identifier if isinstance(identifier, str) else None

    @property
    def destination(self) -> str | None:
        """Queue / stream / table name, or the Kafka topic."""
        if self.batch.event_type is getattr(EventType, "Kafka", None):
            topic = self.raw.get("topic") if isinstance(self.raw, dict) else None
            return topic if isinstance(topic, str) else None
        return self.batch.destination

    @property
    def sent_timestamp_ms(self) -> float | None:
        return sources.sent_timestamp_ms(self.batch.event_type, self.raw)

    @property
    def receive_count(self) -> int | None:
        return sources.receive_count(self.raw)

    @property
    def fifo_group(self) -> str | None:
        return sources.fifo_group(self.raw)

    @property
    def trace_headers(self) -> dict[str, str]:
        return sources.producer_trace_headers(self.raw)

    @property
    def duration_ms(self) -> float:
        return self.duration_ns / 1e6

    @property
    def record(self) -> Any:
        """The record as the handler sees it: the pydantic model if one is used, else the data class.

        Built on first access (records that fail model validation come back as the data class).
        A custom processor built on ``BasePartialProcessor`` has no conversion: its records are the raw dicts.
        """
        if self._parsed is None:
            self._parsed = _compat.to_batch_type(self.batch.processor, self.raw, self.batch.event_type)
        return self._parsed


class Middleware:
    """Base class of a middleware: override what you need, the rest costs nothing.

    ``wrap_record`` is a generator that yields exactly once: code before the ``yield`` runs before
    the record is processed, code after it once ``record.outcome`` is set. The same generator serves
    ``BatchProcessor`` and ``AsyncBatchProcessor`` (the await happens at the ``yield``).
    Handler exceptions are never thrown into it: inspect ``record.outcome`` / ``record.exc_info``.
    Keep no per-record state on ``self``; use ``record.scratch`` and ``batch.scratch``.
    """

    #: Name used in logs and in configuration strings.
    name: ClassVar[str] = "custom"
    #: A *policy* middleware (``retry_policy``, ``stop_on_failure``) may change outcomes: resolve failed
    #: records (``RecordContext.resolve``). Telemetry middlewares leave it ``False`` and never change one.
    policy: ClassVar[bool] = False
    #: ``True``: the chain keeps ``batch.durations_ns`` (every record's processing time) for this batch, so
    #: that the middleware needs no per-record hook to aggregate durations (``metrics`` does this).
    needs_durations: ClassVar[bool] = False

    def check_event_type(self, event_type: EventType) -> None:
        """Raise ``ConfigError`` if this middleware cannot serve records of ``event_type``. Called once,
        when the processor is constructed (custom processors: at the first batch whose source it learns)."""

    def on_batch_start(self, batch: BatchContext) -> None:
        """Runs once per invocation, before the first record."""

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        """Wraps one record; yield exactly once. This default runs ``before_record`` / ``after_record`` around
        its ``yield``: a subclass's ``wrap_record`` can delegate with ``yield from super().wrap_record(record)``."""
        self.before_record(record)
        try:
            yield
        finally:
            self.after_record(record)

    def before_record(self, record: RecordContext) -> None:
        """Cheaper than ``wrap_record`` (no generator): runs where ``wrap_record`` runs up to its ``yield``; may
        raise ``FailRecord``. Not combinable with ``wrap_record`` (``ConfigError``)."""

    def after_record(self, record: RecordContext) -> None:
        """Runs where ``wrap_record`` resumes after its ``yield`` (outcome set; innermost first), for each record
        whose ``before_record`` did not raise, also while a ``BaseException`` unwinds the chain."""

    def on_record_failed(self, record: RecordContext) -> None:
        """Runs for each record whose outcome is ``failure`` (the handler raised), never for successes or
        skips, where ``wrap_record`` would resume (innermost middleware first). Only when ``wrap_record`` and
        ``after_record`` are not in use: not overridden, or ``batch.skip_record_hooks(self, failures=True)``. A
        middleware with only this hook costs nothing on successful records (no ``RecordContext`` is built).
        """

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        """Runs once per invocation, after the last record, also when the batch raises.

        Any wait in here (a flush) takes at most ``batch.wait_budget_s(timeout_ms)`` seconds.
        """

    def flush_budget_ms(self, batch: BatchContext) -> int:
        """The longest ``on_batch_end`` would wait if the batch ended now (e.g. its flush timeout; 0 while
        its backend's breaker is open or it has nothing to send). ``timeout_guard`` asks before each record
        and keeps the sum of all middlewares' answers free."""
        return 0
