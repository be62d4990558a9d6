"""The metric schema: names, units, kinds and dimensions of everything the ``metrics`` middleware emits.

One neutral module that the middleware, the dashboard, the alarm pack and the doctor all import, and the
backend names the telemetry middlewares count drops under, so that none of them imports another.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "BACKEND_DIMENSION",
    "BATCH_SIZE",
    "DEFAULT_DIMENSION_SETS",
    "DEFAULT_NAMESPACE",
    "DEFAULT_SERVICE",
    "METRICS",
    "OTEL_BACKEND",
    "RECORDS_DEAD_LETTERED",
    "RECORDS_DROPPED",
    "RECORDS_SKIPPED",
    "RECORD_AGE",
    "RECORD_FAILURES",
    "RECORD_PROCESSING_TIME",
    "RECORD_SUCCESSES",
    "SENTRY_BACKEND",
    "SERVICE_DIMENSION",
    "TELEMETRY_BACKENDS",
    "TELEMETRY_DIMENSION_SETS",
    "TELEMETRY_DROPPED",
    "TELEMETRY_METRICS",
    "MetricDefinition",
]


@dataclass(frozen=True)
class MetricDefinition:
    """One emitted metric. ``kind`` tells how to query it: ``Sum`` of counts, percentiles of distributions."""

    name: str
    unit: str
    kind: Literal["count", "distribution"]
    description: str


#: Everything the middleware emits, in document order; the dashboard renders from this too.
METRICS: Final = (
    MetricDefinition("BatchRecordSuccesses", "Count", "count", "Records the handler processed without raising."),
    MetricDefinition(
        "BatchRecordFailures",
        "Count",
        "count",
        "Records whose handler raised; reported in batchItemFailures unless a policy resolved them.",
    ),
    MetricDefinition(
        "BatchRecordsSkipped",
        "Count",
        "count",
        "Records reported failed without the handler running (FIFO short-circuit, timeout guard).",
    ),
    MetricDefinition(
        "BatchRecordsDeadLettered",
        "Count",
        "count",
        "Failed records retry_policy copied to the dead-letter queue (accepted) and left out of batchItemFailures.",
    ),
    MetricDefinition(
        "BatchRecordsDropped",
        "Count",
        "count",
        "Failed records retry_policy dropped as non-retryable (on_non_retryable=drop): not retried.",
    ),
    MetricDefinition("BatchSize", "Count", "count", "Records delivered to the invocation."),
    MetricDefinition(
        "RecordProcessingTime",
        "Milliseconds",
        "distribution",
        "Time Powertools spent on a record, handler included; records whose handler ran.",
    ),
    MetricDefinition(
        "RecordAge",
        "Milliseconds",
        "distribution",
        "Batch start minus the time the record entered the source (SentTimestamp, approximateArrivalTimestamp, "
        "ApproximateCreationDateTime, Kafka timestamp).",
    ),
)
#: Each definition by role, for the code that queries them (dashboards, alarms).
(
    RECORD_SUCCESSES,
    RECORD_FAILURES,
    RECORDS_SKIPPED,
    RECORDS_DEAD_LETTERED,
    RECORDS_DROPPED,
    BATCH_SIZE,
    RECORD_PROCESSING_TIME,
    RECORD_AGE,
) = METRICS
SERVICE_DIMENSION: Final = "service"
#: Dimension sets of every document; configured extra dimensions add one more set.
DEFAULT_DIMENSION_SETS: Final = ((SERVICE_DIMENSION,),)
#: Emitted only by invocations that dropped telemetry: one small document per backend (``otel``,
#: ``sentry``), so the main document keeps its one directive and its size.
TELEMETRY_METRICS: Final = (
    MetricDefinition(
        "TelemetryDropped",
        "Count",
        "count",
        "Spans / events not sent because their backend was down (its breaker open, or a failed flush).",
    ),
)
BACKEND_DIMENSION: Final = "backend"
#: Values of the ``backend`` dimension: the tracing middleware's OTLP export and the sentry middleware.
OTEL_BACKEND: Final = "otel"
SENTRY_BACKEND: Final = "sentry"
TELEMETRY_BACKENDS: Final = (OTEL_BACKEND, SENTRY_BACKEND)
(TELEMETRY_DROPPED,) = TELEMETRY_METRICS
TELEMETRY_DIMENSION_SETS: Final = ((SERVICE_DIMENSION, BACKEND_DIMENSION),)
DEFAULT_NAMESPACE: Final = "ObservedBatch"
DEFAULT_SERVICE: Final = "service_undefined"
