"""The ``xray`` backend of ``tracing``: an aws-xray-sdk subsegment per record, for Powertools ``Tracer`` users.

Each record gets a subsegment ``## process {destination}`` (Powertools' ``## name`` style) under the
entity that is current when the batch starts: the ``## lambda_handler`` subsegment of
``@tracer.capture_lambda_handler``, else the Lambda facade segment (or a segment of yours). Searchable
annotations ``message_id``, ``event_source``, ``destination`` and, when the record carries one,
``producer_trace_id``; the rest is metadata in the ``observed_batch`` namespace (``response``,
``body``, ``exception``, ``skip_reason``, ``producers``, ``capture_dropped``). A failure sets ``fault``
and a ``cause`` whose message went through ``batch.redaction`` (pydantic input values left out unless
``include_input_values``). Captured text stays within the limits of ``_capture``.

**No document over 64 KB**: each record's subsegment is sent on its own as soon as the record ends
(as the SDK streams subsegments in Lambda), so no document holds more than one record's captures,
whatever the SDK's ``streaming_threshold``. Sending is one non-blocking UDP datagram to the X-Ray
daemon: nothing is flushed or waited for at the end of the batch (``flush_budget_ms`` is 0), and a
daemon that is not there costs nothing (the SDK's emitter logs a failed send).

Sync records are pushed on the recorder's context while the handler runs, so the handler's own
subsegments (``@tracer.capture_method``, patched boto3) nest under the record's. Async records
interleave on one thread, whose context stack would mix them up: their subsegments are attached to
the batch's parent without becoming current (the handler's own subsegments are then siblings).
"""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core.models.subsegment import Subsegment

from observed_batch.redaction import Redaction
from observed_batch.sources import EVENT_SOURCES
from observed_batch.typing import BatchContext, BatchSummary, Outcome, RecordContext

from ._capture import CaptureBudget

if TYPE_CHECKING:
    from .tracing import TracingMiddleware

__all__ = ["NAMESPACE", "XrayTracing", "subsegment_name"]

#: Metadata namespace of what this backend records beyond the annotations.
NAMESPACE = "observed_batch"
_NAME_LIMIT = 200
_INVALID_NAME_CHARACTERS = re.compile(r"[^\w\s.:/%&#=+\\\-@]")


def subsegment_name(destination: str | None) -> str:
    """``## process {destination}``, within X-Ray's name length and character set."""
    name = f"## process {destination}" if destination else "## process"
    return _INVALID_NAME_CHARACTERS.sub("_", name)[:_NAME_LIMIT]


def _producer_trace_id(headers: dict[str, str]) -> str | None:
    """The producer's X-Ray trace id from ``AWSTraceHeader`` (``Root=``), else from a W3C ``traceparent``."""
    header = headers.get("x-amzn-trace-id")
    if header:
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == "Root" and value:
                return value
    parent = headers.get("traceparent", "").split("-")
    if len(parent) == 4 and len(parent[1]) == 32:
        return f"1-{parent[1][:8]}-{parent[1][8:]}"
    return None


class _Cause:
    """An exception of a subsegment's ``cause``, with our (redacted) message: the SDK's ``Throwable`` would
    record ``str(exception)`` and mark the user's exception object."""

    __slots__ = ("_document",)

    def __init__(self, document: dict[str, Any]) -> None:
        self._document = document

    def to_dict(self) -> dict[str, Any]:
        return self._document


class _BatchState:
    __slots__ = ("capture", "name", "parent", "recorder", "redaction", "segment")

    def __init__(self, recorder: Any, parent: Any, capture: CaptureBudget, redaction: Redaction, name: str) -> None:
        self.recorder = recorder
        self.parent = parent
        self.segment = getattr(parent, "parent_segment", parent)
        self.capture = capture
        self.redaction = redaction
        self.name = name


class XrayTracing:
    """The X-Ray backend of one ``TracingMiddleware`` (whose options it reads)."""

    def __init__(self, options: TracingMiddleware, recorder: Any) -> None:
        # The middleware: its options (read when used: they may change after construction), and the
        # batch.scratch key of this backend's state (per middleware instance).
        self.key = options
        # A Powertools Tracer records through its provider, the SDK's recorder.
        provider = getattr(recorder, "provider", None)
        self._recorder: Any = provider if provider is not None else recorder

    def _current_entity(self) -> Any:
        recorder = self._recorder
        if recorder is None:
            from aws_xray_sdk.core import xray_recorder

            recorder = self._recorder = xray_recorder
        try:
            # No segment: the SDK's context-missing strategy applies (log or raise), once per batch.
            return recorder.get_trace_entity()
        except Exception:
            return None

    # -- batch ------------------------------------------------------------------------------------
    def on_batch_start(self, batch: BatchContext) -> None:
        # Disabled (Powertools disables the SDK outside Lambda), no segment, or not sampled: no subsegments.
        entity = self._current_entity() if global_sdk_config.sdk_enabled() else None
        if entity is None or not getattr(entity, "sampled", False):
            batch.skip_record_hooks(self.key)
            return
        capture = CaptureBudget(self.key.max_batch_capture_bytes, self.key.max_response_bytes)
        name = subsegment_name(batch.destination)
        batch.scratch[self.key] = _BatchState(self._recorder, entity, capture, batch.redaction, name)

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        """Nothing to flush: every subsegment left when its record ended."""

    def flush_budget_ms(self, batch: BatchContext) -> int:
        return 0  # UDP to the daemon: sent per record, never waited for

    # -- record -----------------------------------------------------------------------------------
    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        state: _BatchState | None = record.batch.scratch.get(self.key)
        if state is None:
            yield
            return
        batch = record.batch
        destination = record.destination
        name = state.name if destination == batch.destination else subsegment_name(destination)
        subsegment = Subsegment(name, "local", state.segment)
        annotations = subsegment.annotations
        message_id = record.message_id
        if message_id is not None:
            annotations["message_id"] = message_id
        annotations["event_source"] = EVENT_SOURCES.get(batch.event_type, batch.messaging_system)
        if destination is not None:
            annotations["destination"] = destination
        headers = record.trace_headers
        if headers:
            producer = _producer_trace_id(headers)
            if producer is not None:
                annotations["producer_trace_id"] = producer
            subsegment.put_metadata("producers", headers, NAMESPACE)
        dropped_before = state.capture.dropped
        if self.key.capture_body:
            self._capture_body(subsegment, state, record)
        recorder = state.recorder
        current = not batch.is_async
        if current:
            recorder.context.put_subsegment(subsegment)  # the handler's subsegments nest under it
        else:
            state.parent.add_subsegment(subsegment)
        resumed = False
        try:
            yield
            resumed = True
        finally:
            if not resumed:
                subsegment.put_metadata("incomplete", True, NAMESPACE)
                self._end(state, subsegment, current)
        try:
            self._finish(subsegment, state, record)
            if state.capture.dropped > dropped_before:
                # Running total: the last such subsegment of the invocation carries the final count.
                subsegment.put_metadata("capture_dropped", state.capture.dropped, NAMESPACE)
        finally:
            self._end(state, subsegment, current)

    def _end(self, state: _BatchState, subsegment: Subsegment, current: bool) -> None:
        """Close the subsegment and send it on its own (see the module docstring)."""
        recorder = state.recorder
        context = recorder.context
        # Each context lookup re-reads the Lambda trace header: the fewer, the cheaper (the SDK's own
        # end_subsegment takes three, and a streaming pass that sending it ourselves makes moot).
        if current and context.get_trace_entity() is subsegment:
            context.end_subsegment()  # closes and pops it
        elif subsegment.in_progress:
            subsegment.close()
        parent = state.parent
        if subsegment in parent.subsegments:
            parent.remove_subsegment(subsegment)
            recorder.emitter.send_entity(subsegment)

    def _finish(self, subsegment: Subsegment, state: _BatchState, record: RecordContext) -> None:
        outcome = record.outcome
        if outcome is Outcome.FAILURE:
            self._record_exception(subsegment, state, record.exc_info)
        elif outcome is Outcome.SKIPPED:
            # Not an error of this record: Powertools reports it failed so that it is retried later.
            subsegment.put_metadata("skip_reason", record.skip_reason or "skipped", NAMESPACE)
        elif self.key.capture_response and record.result is not None:
            captured = state.capture.response(state.redaction, record.result)
            if captured is not None:
                subsegment.put_metadata("response", captured[0], NAMESPACE)
                subsegment.put_metadata("response_size", captured[1], NAMESPACE)

    def _capture_body(self, subsegment: Subsegment, state: _BatchState, record: RecordContext) -> None:
        captured = state.capture.body(state.redaction, record)
        if captured is not None:
            subsegment.put_metadata("body", captured[0], NAMESPACE)
            subsegment.put_metadata("body_size", captured[1], NAMESPACE)

    def _record_exception(self, subsegment: Subsegment, state: _BatchState, exc_info: Any) -> None:
        subsegment.add_fault_flag()
        exception = exc_info[1] if exc_info else None
        if exception is None:
            return
        redaction = state.redaction
        document: dict[str, Any] = {
            "id": os.urandom(8).hex(),
            "type": type(exception).__qualname__,
            "remote": False,
        }
        message, stacktrace = state.capture.exception(redaction, exc_info, self.key.include_input_values)
        if message is not None:
            document["message"] = message[0]
        # Frames name files, lines and functions only (no values); as many as the recorder keeps.
        frames = traceback.extract_tb(exc_info[2], limit=getattr(state.recorder, "max_trace_back", 10))
        document["stack"] = [
            {"path": os.path.basename(frame.filename), "line": frame.lineno, "label": frame.name} for frame in frames
        ]
        subsegment.cause = {"working_directory": os.getcwd(), "exceptions": [_Cause(document)]}
        if stacktrace is not None:
            subsegment.put_metadata("exception", stacktrace[0], NAMESPACE)
