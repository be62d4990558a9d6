"""Driving a middleware by hand, as a custom core would, for tests of what happens between its hooks."""

from __future__ import annotations

from collections.abc import Iterator

from observed_batch import BatchContext, EventType, Middleware, RecordContext
from observed_batch.testing import sqs_event

__all__ = ["enter_one_record"]


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
