"""``sentry``: each failed record's own exception sent to Sentry, with record context, limits and privacy.

After the core has decided a record's outcome, a **failed** record's exception (the handler's, as
Powertools' failure path saw it) is captured inside a fresh isolation scope, tagged with
``event_source``, ``queue``/``stream``/``table``/``topic``, ``message_id``, ``receive_count``,
``fifo_group`` and ``observed_batch.mode`` (``sync`` or ``async``), with an ``observed_batch``
context block of record metadata. Skipped records (FIFO short-circuit, timeout guard) are never
captured: they did not fail, they were not tried.

Flood control: at most ``max_events_per_batch`` exception events per invocation. Further failures
are counted (per exception type, with their message ids) and reported at batch end as **one summary
event** (level ``warning``, one issue per destination), so a bad deploy costs ``cap + 1`` events per
invocation and no failure disappears from the count.

Privacy: no record body unless ``include_body`` (then cut to ``max_body_bytes`` and put in ``extra``
where the SDK's ``EventScrubber`` and ``before_send`` see it); frame local variables are dropped
unless ``include_local_variables`` (the handler's frames hold the record); a pydantic
``ValidationError`` is sent as its error list without input values.

Which client: an injected ``client=``; else the active one from the user's ``sentry_sdk.init``; else,
when ``SENTRY_DSN`` is set, one created from ``SENTRY_DSN`` / ``SENTRY_ENVIRONMENT`` / ``SENTRY_RELEASE``
when the first record fails (``sentry_sdk`` is not even imported before: most invocations never need
it; see ``_sentry_client``); else the middleware does nothing (one info log at cold start).

Deadlines: an invocation that captured something ends with ``flush()``, bounded by ``flush_timeout_ms``
and by the invocation's deadline budget (``BatchContext.wait_budget_s``); one that captured nothing does
not flush. A flush that runs out of time, or an envelope the transport could not deliver (connection
refused, 5xx), opens the client's breaker: while it is open, nothing is captured or flushed and the
events that would have been sent are counted in ``BatchSummary.telemetry_dropped["sentry"]``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from observed_batch.breaker import Breaker
from observed_batch.log_lines import is_failure_line
from observed_batch.options import Option, Options, validated
from observed_batch.otel_ids import current_trace_ids
from observed_batch.typing import BatchContext, BatchSummary, Middleware, Outcome, RecordContext

from ._sentry_client import BACKEND, active_client, breaker_for, can_send, check_dsn, init_from_environment, queued
from ._sentry_compat import RecordBreadcrumbs, holds, install_breadcrumbs
from ._sentry_event import (
    add_source_context,
    batch_tags,
    bounded_body,
    event_options,
    record_body,
    record_context,
    record_tags,
    redact_event,
    redact_validation_errors,
    summary_event,
)

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

__all__ = ["SentryMiddleware"]

logger = logging.getLogger("observed_batch")

#: ``eventSource`` as Lambda spells it, by ``BatchContext.messaging_system`` (same values as the logs).
_CONTEXT = "observed_batch"
#: The handler raised and nothing in the user's code handled it; Powertools only reported it.
_MECHANISM = {"type": "observed_batch", "handled": False}
#: Bounds on what one summary / validation context carries (Sentry's databags cut lists at 10 anyway).
_MAX_SUPPRESSED_IDS = 50
_MAX_EXCEPTION_TYPES = 20
_OTHER_TYPES = "(other)"


class _BatchState:
    """What one invocation has sent and held back (lives in ``batch.scratch``)."""

    __slots__ = (
        "breadcrumbs",
        "breaker",
        "client",
        "destination",
        "lazy",
        "options",
        "scope",
        "scope_manager",
        "sent",
        "source_lines",
        "suppressed",
        "suppressed_ids",
        "suppressed_types",
    )

    def __init__(self, client: BaseClient | None, breaker: Breaker | None) -> None:
        #: ``None`` until the first failure when Sentry is to be initialised from ``SENTRY_DSN`` then.
        self.client = client
        self.breaker = breaker
        #: Sentry was initialised by a failure of this batch (no per-record scopes in this batch).
        self.lazy = False
        #: The client's options as events are built from them (frame locals and source context ours).
        self.options: dict[str, Any] | None = None
        #: Source lines by frame, for the batch's events (``add_source_context``).
        self.source_lines: dict[Any, Any] = {}
        #: Sync batches: the batch's own isolation scope, whose breadcrumbs are the running record's.
        self.scope_manager: Any = None
        self.scope: Any = None
        self.breadcrumbs: RecordBreadcrumbs | None = None
        #: Where the held-back records came from (Kafka: the topic, which the batch's ARN does not name).
        self.destination: str | None = None
        self.sent = 0
        self.suppressed = 0
        self.suppressed_ids: list[str] = []
        self.suppressed_types: dict[str, int] = {}

    def to_flush(self) -> bool:
        """Captured something, or the application's own events wait in a lean transport's queue."""
        return bool(self.sent or self.suppressed or (self.client is not None and queued(self.client)))

    def hold_back(self, record: RecordContext, exception: BaseException) -> None:
        if not self.suppressed:
            self.destination = record.destination
        self.suppressed += 1
        if len(self.suppressed_ids) < _MAX_SUPPRESSED_IDS and record.message_id is not None:
            self.suppressed_ids.append(record.message_id)
        name = type(exception).__qualname__
        if name not in self.suppressed_types and len(self.suppressed_types) >= _MAX_EXCEPTION_TYPES:
            name = _OTHER_TYPES
        self.suppressed_types[name] = self.suppressed_types.get(name, 0) + 1


def _is_client(value: Any) -> bool:
    # Imported only when a client is passed: then sentry_sdk is imported already.
    from sentry_sdk.client import BaseClient

    return isinstance(value, BaseClient)


@validated
class SentryMiddleware(Middleware):
    """Captures failed records' exceptions in Sentry (see the module docstring for what is sent)."""

    name = "sentry"
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option("include_body", bool, False, "attach the record body as `extra.record_body`"),
        Option(
            "max_body_bytes",
            int,
            1024,
            "bodies longer than this are cut (UTF-8 bytes, whole characters) and end with `...[truncated "
            "N of M bytes]`",
        ),
        Option(
            "max_events_per_batch",
            int,
            10,
            "exception events per invocation; the rest go into one summary event (`0`: summary only)",
        ),
        Option(
            "flush_timeout_ms", int, 2000, "longest wait for delivery at the end of each invocation (`0`: no flush)"
        ),
        Option(
            "include_local_variables",
            bool,
            False,
            "keep stack-frame local variables, which the SDK collects by default",
        ),
        Option(
            "include_input_values",
            bool,
            False,
            "send a pydantic `ValidationError` as the SDK renders it, input values included (see "
            "[privacy](../privacy.md))",
        ),
        Option(
            "client",
            None,
            None,
            "a `sentry_sdk.Client` to use instead of the global one",
            default_doc="the global one",
            accepts=_is_client,
            expects="a sentry_sdk client (sentry_sdk.Client)",
        ),
    )

    def __init__(
        self,
        *,
        include_body: bool = False,
        max_body_bytes: int = 1024,
        max_events_per_batch: int = 10,
        flush_timeout_ms: int = 2000,
        include_local_variables: bool = False,
        include_input_values: bool = False,
        client: BaseClient | None = None,
    ) -> None:
        # Each value was checked against OPTIONS (@validated).
        self._include_body = include_body
        self._include_local_variables = include_local_variables
        self._include_input_values = include_input_values
        self._max_body_bytes = max_body_bytes
        self._max_events_per_batch = max_events_per_batch
        self._flush_timeout_s = flush_timeout_ms / 1000.0
        self._client = client
        #: ``SENTRY_DSN`` to initialise Sentry from at the first failure (nobody initialised it).
        self._dsn: str | None = None
        current = client if client is not None else active_client()
        if current is None:
            self._dsn = os.environ.get("SENTRY_DSN", "").strip() or None
            if self._dsn is None:
                logger.info(
                    "observed_batch sentry: no active sentry_sdk client and SENTRY_DSN is not set; "
                    "failed records are not sent to Sentry"
                )
            else:
                check_dsn(self._dsn)
        elif not can_send(current):
            logger.info("observed_batch sentry: the sentry_sdk client has no DSN; failed records are not sent")

    # -- hooks --------------------------------------------------------------------------------
    def on_batch_start(self, batch: BatchContext) -> None:
        # Resolved per invocation: a user may call sentry_sdk.init after building the processor.
        client = self._client if self._client is not None else active_client()
        if client is None and self._dsn is not None:
            # Sentry is initialised if a record fails. Nothing can record a breadcrumb before: successful
            # records need no hook at all (the events of this batch are sent without breadcrumbs).
            batch.scratch[self] = _BatchState(None, None)
            batch.skip_record_hooks(self, failures=True)
        elif client is not None and can_send(client):
            import sentry_sdk

            state = batch.scratch[self] = _BatchState(client, breaker_for(client))
            if not batch.is_async:
                # Records run one after the other in this context: one forked isolation scope for the batch, whose
                # breadcrumbs are always the running record's (RecordBreadcrumbs), isolates them as well as a scope
                # per record, with no per-record hook. Async records interleave: each gets its own (wrap_record).
                state.scope_manager = sentry_sdk.isolation_scope()
                state.scope = state.scope_manager.__enter__()
                state.scope.add_event_processor(_without_failure_lines)
                state.breadcrumbs = install_breadcrumbs(state.scope, batch)
                batch.skip_record_hooks(self, failures=True)
        else:
            batch.skip_record_hooks(self)  # no DSN: nothing to capture, nothing to pay per record

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        # The breadcrumbs a failed record's event carries are the ones recorded while it ran, never another
        # record's or another invocation's.
        state: _BatchState | None = record.batch.scratch.get(self)
        sdk = sys.modules.get("sentry_sdk")
        if sdk is None or state is None or state.client is None:
            yield  # (only without a state: the batch started before this middleware did)
            if record.outcome is Outcome.FAILURE:
                self.on_record_failed(record)
            return
        # An isolation scope of its own, without breadcrumbs; leaving the `with` (also when the chain
        # closes this hook) restores the scope it forked.
        with sdk.isolation_scope() as scope:
            scope.clear_breadcrumbs()
            scope.add_event_processor(_without_failure_lines)
            yield
            if record.outcome is Outcome.FAILURE:
                self.on_record_failed(record)

    def on_record_failed(self, record: RecordContext) -> None:
        state: _BatchState | None = record.batch.scratch.get(self)
        exc_info = record.exc_info
        # BaseExceptions (KeyboardInterrupt, task cancellation) end the invocation: not a record's failure.
        if state is None or exc_info is None or not isinstance(exc_info[1], Exception):
            return
        if state.sent >= self._max_events_per_batch:
            state.hold_back(record, exc_info[1])
            return
        state.sent += 1
        if state.client is None or state.breaker is None:
            state.client, state.breaker = self._initialise()
            state.lazy = True
        if state.breaker.is_open:
            # Sentry is down: the event is counted (in time for the logging summary line), not built or sent.
            record.batch.summary.add_dropped(BACKEND, 1)
            return
        self._capture(record, exc_info, state)

    def _initialise(self) -> tuple[BaseClient, Breaker]:
        """The first failure with Sentry to be set up from ``SENTRY_DSN``: unless the application has
        initialised it since, initialise it now (once per process)."""
        client = active_client()
        if client is None and self._dsn is not None:
            # The lean transport sends only when flushed: a middleware that never flushes keeps the SDK's.
            client = init_from_environment(self._dsn, lean_transport=self._flush_timeout_s > 0)
        assert client is not None
        return client, breaker_for(client)

    def flush_budget_ms(self, batch: BatchContext) -> int:
        state: _BatchState | None = batch.scratch.get(self)
        if state is None or not state.to_flush() or state.breaker is None or state.breaker.is_open:
            return 0  # a batch without captured failures (or queued envelopes) does not flush
        return int(self._flush_timeout_s * 1000)

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        state: _BatchState | None = batch.scratch.pop(self, None)
        if state is not None and state.scope_manager is not None:
            state.scope_manager.__exit__(None, None, None)  # back to the scope the batch started in
            state.scope = state.scope_manager = None
            if state.breadcrumbs is not None:
                state.breadcrumbs.release()
        if state is None or not state.to_flush() or state.client is None or state.breaker is None:
            return  # nothing captured or queued: nothing to flush
        breaker = state.breaker
        if breaker.is_open:
            summary.add_dropped(BACKEND, 1 if state.suppressed else 0)
            return
        if state.suppressed:
            self._capture_summary(batch, summary, state)
        timeout_s = batch.wait_budget_s(int(self._flush_timeout_s * 1000))
        if timeout_s <= 0:
            return
        failures, dropped = breaker.failures, breaker.dropped
        started = time.monotonic()
        state.client.flush(timeout=timeout_s)
        # flush() returns nothing either way: a flush that used up its time left events behind.
        if time.monotonic() - started >= timeout_s * 0.95:
            breaker.failed(f"flush did not finish within {timeout_s * 1000:.0f} ms")
        elif breaker.failures == failures:
            breaker.succeeded()
        summary.add_dropped(BACKEND, breaker.dropped - dropped)

    # -- events -------------------------------------------------------------------------------
    def _capture(self, record: RecordContext, exc_info: Any, state: _BatchState) -> None:
        client = state.client
        assert client is not None
        if state.options is None:
            state.options = event_options(client.options, self._include_local_variables)
        import sentry_sdk
        from sentry_sdk.utils import event_from_exception

        event, hint = event_from_exception(exc_info, client_options=state.options, mechanism=dict(_MECHANISM))
        if state.options is not client.options and client.options.get("include_source_context", True):
            add_source_context(event, client.options.get("max_value_length"), state.source_lines)
        validation = None if self._include_input_values else redact_validation_errors(event, exc_info[1])
        trace_ids = current_trace_ids()
        redaction = record.batch.redaction
        own_breadcrumbs = self._own_breadcrumbs(state, sentry_sdk.Scope.get_isolation_scope(), record.batch)
        with sentry_sdk.isolation_scope() as scope:
            if self._client is not None:
                sentry_sdk.Scope.get_current_scope().set_client(client)
            if not own_breadcrumbs:
                scope.clear_breadcrumbs()
            if redaction.active:
                scope.add_event_processor(lambda event, hint: redact_event(event, redaction))
            context = record_context(record)
            for key, value in record_tags(context, trace_ids).items():  # (Scope.set_tags: not in sentry-sdk 2.0)
                scope.set_tag(key, value)
            scope.set_context(_CONTEXT, context)
            if validation is not None:
                scope.set_context("validation_errors", validation)
            if self._include_body:
                body = record_body(record)
                if body is not None:
                    scope.set_extra("record_body", bounded_body(redaction.text(body), self._max_body_bytes))
            if trace_ids is not None and sentry_sdk.get_current_span() is None:
                # Without a Sentry span of its own, the event joins the OpenTelemetry trace.
                event.setdefault("contexts", {})["trace"] = {"trace_id": trace_ids[0], "span_id": trace_ids[1]}
            sentry_sdk.capture_event(event, hint=hint)

    @staticmethod
    def _own_breadcrumbs(state: _BatchState, isolation: Any, batch: BatchContext) -> bool:
        """Whether the isolation scope's breadcrumbs are exactly the failed record's."""
        if state.lazy:
            # Initialised by this batch's first failure, in no isolation scope of the batch: what the records
            # since recorded is not one record's.
            return False
        if state.breadcrumbs is None or holds(isolation, batch):
            return True  # async: the record's own scope (wrap_record); sync: the running record's breadcrumbs
        # User code cleared the batch scope's breadcrumbs or left a scope of its own: they may hold other
        # records'. None are sent; the batch scope gets a new buffer, exact again from the next record on.
        if isolation is state.scope:
            state.breadcrumbs.release()
            state.breadcrumbs = install_breadcrumbs(isolation, batch)
        return False

    def _capture_summary(self, batch: BatchContext, summary: BatchSummary, state: _BatchState) -> None:
        event, details = summary_event(batch, summary, state, self._max_events_per_batch)
        import sentry_sdk

        with sentry_sdk.isolation_scope() as scope:
            if self._client is not None:
                sentry_sdk.Scope.get_current_scope().set_client(state.client)
            for key, value in batch_tags(batch, state.destination).items():
                scope.set_tag(key, value)
            scope.set_context(_CONTEXT, details)
            sentry_sdk.capture_event(event)


def _without_failure_lines(event: Any, hint: Any) -> Any:
    """The ``logging`` middleware's ``record_failed`` line is not a second event of a failure we capture."""
    return None if hint and is_failure_line(hint.get("log_record")) else event
