"""The CloudWatch alarm properties of each alarm of the pack (``observed_batch.alarms`` decides which)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from observed_batch._targets import Watched
from observed_batch.metric_schema import (
    BACKEND_DIMENSION,
    OTEL_BACKEND,
    RECORD_FAILURES,
    RECORD_SUCCESSES,
    RECORDS_SKIPPED,
    SERVICE_DIMENSION,
    TELEMETRY_DROPPED,
)

#: SQS's default MessageRetentionPeriod (4 days).
DEFAULT_QUEUE_RETENTION_S: Final = 345_600

__all__ = ["AWS_METRICS", "DEFAULT_QUEUE_RETENTION_S", "FAILURE_RATE_EXPRESSION", "AlarmProperties"]

#: 100 * failures / all records, over the three count metrics (ids as in the shipped dashboard).
FAILURE_RATE_EXPRESSION: Final = "100 * failures / (successes + failures + skipped)"

# Metrics AWS publishes that the pack reads (the dashboard shows the same; a test keeps them in step).
_LAMBDA, _SQS = "AWS/Lambda", "AWS/SQS"
_FUNCTION_DIMENSION, _QUEUE_DIMENSION = "FunctionName", "QueueName"
#: (namespace, metric, dimension) of every AWS metric an alarm reads.
AWS_METRICS: Final = (
    (_SQS, "ApproximateNumberOfMessagesVisible", _QUEUE_DIMENSION),
    (_SQS, "ApproximateAgeOfOldestMessage", _QUEUE_DIMENSION),
    (_LAMBDA, "IteratorAge", _FUNCTION_DIMENSION),
    (_LAMBDA, "OffsetLag", _FUNCTION_DIMENSION),
    (_LAMBDA, "Throttles", _FUNCTION_DIMENSION),
    (_LAMBDA, "Errors", _FUNCTION_DIMENSION),
    (_LAMBDA, "Duration", _FUNCTION_DIMENSION),
)


@dataclass(frozen=True)
class AlarmProperties(Watched):
    """Builds the properties (without name, actions and TreatMissingData) of one alarm."""

    queue_retention_s: int = DEFAULT_QUEUE_RETENTION_S

    def build(self, suffix: str, threshold: float, backend: str) -> dict[str, Any]:
        method = getattr(self, "_" + suffix.replace("-", "_"))
        properties: dict[str, Any] = method(threshold, backend)
        return properties

    def _failure_rate(self, percent: float, _: str) -> dict[str, Any]:
        def count(metric_id: str, metric: str) -> dict[str, Any]:
            stat = {"Metric": self._own(metric), "Period": 60, "Stat": "Sum"}
            return {"Id": metric_id, "MetricStat": stat, "ReturnData": False}

        return {
            "AlarmDescription": f"More than {percent:g} % of the records {self.function} processed failed in 2 of 3"
            " minutes. What to do: read the exceptions (the dashboard's 'Recent failed records' table, Sentry), fix"
            " the handler or the input; failed records are retried and then reach the DLQ.",
            "Metrics": [
                count("failures", RECORD_FAILURES.name),
                count("successes", RECORD_SUCCESSES.name),
                count("skipped", RECORDS_SKIPPED.name),
                {"Id": "rate", "Expression": FAILURE_RATE_EXPRESSION, "Label": "Failure rate %", "ReturnData": True},
            ],
            **_compare(percent, periods=3, datapoints=2),
        }

    def _dlq_depth(self, limit: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"{limit + 1}+ messages are waiting in the dead-letter queue {self.dlq}: records"
            f" {self.function} gave up on. What to do: inspect them (aws sqs receive-message), fix the cause, then"
            " redrive them (aws sqs start-message-move-task --source-arn <dlq-arn>).",
            **_stat(_SQS, "ApproximateNumberOfMessagesVisible", _QUEUE_DIMENSION, self.dlq, "Maximum", 60),
            **_compare(limit),
        }

    def _dlq_age(self, age_s: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"The oldest message in the dead-letter queue {self.dlq} is older than {age_s} s:"
            " nobody redrove or deleted it, and it is lost when the DLQ's retention period ends. What to do: redrive"
            " the messages after fixing the cause, or delete them deliberately.",
            **_stat(_SQS, "ApproximateAgeOfOldestMessage", _QUEUE_DIMENSION, self.dlq, "Maximum", 300),
            **_compare(age_s),
        }

    def _queue_age(self, percent: float, _: str) -> dict[str, Any]:
        age_s = int(self.queue_retention_s * percent / 100)
        return {
            "AlarmDescription": f"The oldest message in {self.queue} is older than {age_s} s ({percent:g} % of its"
            f" {self.queue_retention_s} s retention): {self.function} is falling behind and messages will expire"
            " unprocessed. What to do: check the throttles and errors alarms; raise reserved concurrency or the"
            " mapping's ScalingConfig MaximumConcurrency, or BatchSize; look for a poison message cycling.",
            **_stat(_SQS, "ApproximateAgeOfOldestMessage", _QUEUE_DIMENSION, self.queue, "Maximum", 300),
            **_compare(age_s),
        }

    def _iterator_age(self, age_ms: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"{self.function} is more than {age_ms} ms behind its stream {self.stream_name} for 5"
            " minutes; records expire at the end of the stream's retention. What to do: check the errors alarm (a"
            " failing batch blocks its shard until retries run out: BisectBatchOnFunctionError, MaximumRetryAttempts,"
            " an on-failure destination), raise ParallelizationFactor or the shard count, or speed up the handler.",
            **_stat(_LAMBDA, "IteratorAge", _FUNCTION_DIMENSION, self.function, "Maximum", 60),
            **_compare(age_ms, periods=5, datapoints=5),
        }

    def _kafka_offset_lag(self, lag: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"{self.function} is more than {lag} records behind on Kafka topic"
            f" {self.kafka_topic} for 5 minutes. What to do: check the errors alarm (a failing batch is retried"
            " until it succeeds or expires without an on-failure destination), add partitions or pollers"
            " (ProvisionedPollerConfig), or speed up the handler.",
            **_stat(_LAMBDA, "OffsetLag", _FUNCTION_DIMENSION, self.function, "Maximum", 60),
            **_compare(lag, periods=5, datapoints=5),
        }

    def _throttles(self, limit: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"Lambda throttled {self.function} more than {limit} times in 5 minutes. With SQS"
            " every throttled receive counts toward maxReceiveCount and pushes good messages into the DLQ; streams"
            " fall behind. What to do: raise the reserved concurrency, and keep the SQS mapping's ScalingConfig"
            " MaximumConcurrency at or below it.",
            **_stat(_LAMBDA, "Throttles", _FUNCTION_DIMENSION, self.function, "Sum", 300),
            **_compare(limit),
        }

    def _errors(self, limit: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"More than {limit} invocations of {self.function} failed as a whole in 5 minutes"
            " (timeout, out of memory, an error outside the batch processor, or every record failed): the whole"
            " batch is retried. What to do: read the function's log for the error; if these are timeouts, lower"
            " BatchSize or enable the timeout_guard middleware.",
            **_stat(_LAMBDA, "Errors", _FUNCTION_DIMENSION, self.function, "Sum", 300),
            **_compare(limit),
        }

    def _duration_p99(self, percent: float, _: str) -> dict[str, Any]:
        timeout_s = self.timeout_s or 0
        limit_ms = round(timeout_s * 1000 * percent / 100)
        statistic = _stat(_LAMBDA, "Duration", _FUNCTION_DIMENSION, self.function, "Maximum", 60)
        del statistic["Statistic"]
        return {
            "AlarmDescription": f"p99 duration of {self.function} reached {limit_ms} ms, {percent:g} % of its"
            f" {timeout_s} s timeout, for 3 minutes: the next slow batch times out and is retried whole. What to"
            " do: lower BatchSize, raise the timeout (and the queue's VisibilityTimeout to 6x it), or enable the"
            " timeout_guard middleware.",
            **statistic,
            "ExtendedStatistic": "p99",
            **_compare(limit_ms, periods=3, datapoints=3, operator="GreaterThanOrEqualToThreshold"),
        }

    def _records_skipped(self, limit: int, _: str) -> dict[str, Any]:
        return {
            "AlarmDescription": f"{self.function} handed more than {limit} records back unprocessed in 5 minutes"
            " (timeout guard firing, or FIFO short-circuit after a failure); they are retried. What to do: if the"
            " guard fires, batches do not fit the timeout: lower BatchSize or raise the timeout; on FIFO, fix the"
            " message that blocks its group.",
            "Namespace": self.namespace,
            "MetricName": RECORDS_SKIPPED.name,
            "Dimensions": [{"Name": SERVICE_DIMENSION, "Value": self.service}],
            "Statistic": "Sum",
            "Period": 300,
            **_compare(limit),
        }

    def _telemetry_dropped(self, limit: int, backend: str) -> dict[str, Any]:
        what = {OTEL_BACKEND: "spans: the OTLP collector (layer or OTEL_EXPORTER_OTLP_ENDPOINT) was down or slow"}.get(
            backend, "Sentry events: Sentry was unreachable, slow or rate limiting (check SENTRY_DSN)"
        )
        return {
            "AlarmDescription": f"{self.function} dropped more than {limit} {what}. Records were processed; only"
            " their telemetry is missing. What to do: fix the backend; the breaker retries it with backoff.",
            "Namespace": self.namespace,
            "MetricName": TELEMETRY_DROPPED.name,
            "Dimensions": [
                {"Name": SERVICE_DIMENSION, "Value": self.service},
                {"Name": BACKEND_DIMENSION, "Value": backend},
            ],
            "Statistic": "Sum",
            "Period": 300,
            **_compare(limit),
        }

    def _own(self, metric: str) -> dict[str, Any]:
        dimensions = [{"Name": SERVICE_DIMENSION, "Value": self.service}]
        return {"Namespace": self.namespace, "MetricName": metric, "Dimensions": dimensions}


def _stat(
    namespace: str, metric: str, dimension: str, value: str | None, statistic: str, period: int
) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": [{"Name": dimension, "Value": value}],
        "Statistic": statistic,
        "Period": period,
    }


def _compare(
    threshold: float, *, periods: int = 1, datapoints: int = 1, operator: str = "GreaterThanThreshold"
) -> dict[str, Any]:
    return {
        "ComparisonOperator": operator,
        "Threshold": threshold,
        "EvaluationPeriods": periods,
        "DatapointsToAlarm": datapoints,
    }
