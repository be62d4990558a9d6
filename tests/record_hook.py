"""Driving a middleware by hand, as a custom core would, for tests of what happens between its hooks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TypeVar

from observed_batch import BatchContext, BatchSummary, EventType, Middleware, RecordContext
from observed_batch.testing import sqs_event

__all__ = ["SkipsRecordHooks", "counting_record_hooks", "enter_one_record"]

_M = TypeVar("_M", bound=Middleware)


def enter_one_record(middleware: Middleware) -> tuple[BatchContext, RecordContext, Iterator[None]]:
    """Start a batch of one SQS record on ``middleware`` and enter that record's hook.

    The hook is left suspended where the record handler would run; the caller decides how it resumes.
    """
    batch = BatchContext(EventType.SQS, sqs_event(1)["Records"])
    middleware.on_batch_start(batch)
    record = RecordContext(batch, batch.records[0], 0)
    hook = middleware.wrap_record(record)
    next(hook)
    return batch, record, hook


def counting_record_hooks(middleware_class: type[_M]) -> type[_M]:
    """A subclass whose instances count in ``entered`` how many records their ``wrap_record`` wrapped."""

    class Counting(middleware_class):  # type: ignore[valid-type,misc]
        entered = 0

        def wrap_record(self, record: RecordContext) -> Iterator[None]:
            self.entered += 1
            yield from super().wrap_record(record)

    Counting.__name__ = f"Counting{middleware_class.__name__}"
    return Counting  # type: ignore[return-value]


class SkipsRecordHooks(Middleware):
    """Opts out of every record (``BatchContext.skip_record_hooks``) and keeps each batch's summary."""

    name = "skips_record_hooks"

    def __init__(self) -> None:
        self.wrapped = 0
        self.summaries: list[BatchSummary] = []

    def on_batch_start(self, batch: BatchContext) -> None:
        batch.skip_record_hooks(self)

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        self.wrapped += 1
        yield

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        self.summaries.append(summary)
