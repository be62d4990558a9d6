"""``stop_on_failure``: after a stream record fails, hand back the rest of the batch without running it.

Kinesis, DynamoDB Streams and Kafka checkpoint at the lowest reported failure: every record after it
is delivered again, so a record processed after the failure is processed twice. With this policy, the
records after the first failure are failed without calling the handler
(``FailRecord("stop_on_failure", rest_of_batch=True)``, the timeout guard's mechanism) and run once,
on the retry. A failure that a policy placed inside this one resolved (``retry_policy`` with
``on_non_retryable="drop"``) does not stop the batch: that record is not reported, Lambda checkpoints
past it.

A Kafka batch may hold several partitions, each with its own checkpoint: with ``scope="partition"``
(the default) only the later records of the failed record's partition are handed back; ``scope="batch"``
hands back everything after the first failure. Kinesis and DynamoDB batches come from one shard, so
both scopes behave the same there.

SQS has no checkpoint (every message is retried on its own; FIFO order is ``SqsFifoPartialProcessor``'s
job): a processor for SQS refuses this middleware with ``ConfigError`` at construction.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from aws_lambda_powertools.utilities.batch import EventType

from observed_batch.errors import ConfigError, FailRecord
from observed_batch.options import Option, Options, validated
from observed_batch.typing import Middleware, Outcome, RecordContext

__all__ = ["REASON", "StopOnFailureMiddleware"]

#: ``RecordContext.skip_reason`` of the records handed back after a failure.
REASON = "stop_on_failure"


@validated
class StopOnFailureMiddleware(Middleware):
    """Policy: fail every record after the first failed one without running it (streams only).

    Place it after ``timeout_guard`` and before ``retry_policy`` (the default order does), so that a
    record ``retry_policy`` dropped does not stop the batch.
    """

    name = "stop_on_failure"
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option(
            "scope",
            ("partition", "batch"),
            "partition",
            "`partition`: hand back the later records of the failed record's Kafka partition only (each "
            "partition has its own checkpoint); `batch`: everything after the first failure. Kinesis and "
            "DynamoDB batches come from one shard: both are the same there.",
        ),
    )
    policy = True

    def __init__(self, *, scope: Literal["partition", "batch"] = "partition") -> None:
        self.scope = scope

    def check_event_type(self, event_type: EventType) -> None:
        if event_type is EventType.SQS:
            raise ConfigError(
                "middleware 'stop_on_failure' is for Kinesis, DynamoDB Streams and Kafka, whose checkpoint is the"
                " lowest failure; SQS retries each message on its own (for FIFO order use SqsFifoPartialProcessor)."
                " Remove it from this SQS processor's middleware"
            )

    def before_record(self, record: RecordContext) -> None:
        failed: dict[Any, int] | None = record.batch.scratch.get(self)
        if failed is not None:
            partition = _partition(record) if self.scope == "partition" else None
            first = failed.get(partition)
            if first is not None:
                raise FailRecord(
                    REASON,
                    f"not processed: record {first} of this batch failed before it; retried from there",
                    rest_of_batch=partition is None,
                )

    def after_record(self, record: RecordContext) -> None:
        if record.outcome is Outcome.FAILURE and record.resolution is None:
            partition = _partition(record) if self.scope == "partition" else None
            record.batch.scratch.setdefault(self, {}).setdefault(partition, record.index)


def _partition(record: RecordContext) -> Any:
    """The checkpoint a record belongs to: its Kafka topic-partition; ``None`` (one shard) for the others."""
    if record.batch.event_type is not getattr(EventType, "Kafka", None) or not isinstance(record.raw, dict):
        return None
    return (record.raw.get("topic"), record.raw.get("partition"))
