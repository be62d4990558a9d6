"""The CloudWatch alarm properties of each alarm of the pack, built from its entry in
``dashboards/alarm-pack.json`` (``observed_batch.alarms`` decides which alarms apply)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from observed_batch._targets import Watched
from observed_batch.metric_schema import (
    BACKEND_DIMENSION,
    METRICS,
    OTEL_BACKEND,
    RECORD_FAILURES,
    RECORD_SUCCESSES,
    RECORDS_SKIPPED,
    SERVICE_DIMENSION,
    TELEMETRY_METRICS,
)

__all__ = ["DEFAULT_QUEUE_RETENTION_S", "FAILURE_RATE_EXPRESSION", "AlarmProperties", "aws_metrics", "check_metric"]

#: SQS's default MessageRetentionPeriod (4 days).
DEFAULT_QUEUE_RETENTION_S: Final = 345_600
#: 100 * failures / all records, over the three count metrics (ids as in the shipped dashboard).
FAILURE_RATE_EXPRESSION: Final = "100 * failures / (successes + failures + skipped)"
_OWN_METRICS: Final = frozenset(metric.name for metric in (*METRICS, *TELEMETRY_METRICS))
_DROPPED: Final = {
    OTEL_BACKEND: "spans: the OTLP collector (layer or OTEL_EXPORTER_OTLP_ENDPOINT) was down or slow",
}
_DROPPED_SENTRY: Final = "Sentry events: Sentry was unreachable, slow or rate limiting (check SENTRY_DSN)"


def check_metric(suffix: str, metric: Mapping[str, Any]) -> None:
    """An alarm entry's metric is the failure-rate math, one of our metrics, or an AWS metric."""
    if metric.get("math") == "failure_rate" or metric.get("own") in _OWN_METRICS:
        return
    if {"namespace", "name", "dimension", "resource"} <= metric.keys():
        return
    raise ValueError(f"alarm-pack.json: alarm {suffix!r} has an unknown metric {dict(metric)!r}")


def aws_metrics(metrics: list[Mapping[str, Any]]) -> tuple[tuple[str, str, str], ...]:
    """(namespace, metric, dimension) of every AWS metric the pack reads (the dashboard shows the same)."""
    found = ((m["namespace"], m["name"], m["dimension"]) for m in metrics if "namespace" in m)
    return tuple(dict.fromkeys(found))


@dataclass(frozen=True)
class AlarmProperties(Watched):
    """Builds the properties (without name, actions and TreatMissingData) of one alarm."""

    queue_retention_s: int = DEFAULT_QUEUE_RETENTION_S

    def build(self, entry: Any, threshold: float, backend: str) -> dict[str, Any]:
        """``entry``: an ``AlarmSpec`` (its ``description``, ``metric`` and ``compare``)."""
        values = self._values(threshold, backend)
        metric: Mapping[str, Any] = entry.metric
        properties: dict[str, Any] = {"AlarmDescription": entry.description.format(**values)}
        if "math" in metric:
            properties["Metrics"] = self._failure_rate(metric["period"])
        else:
            if "own" in metric:
                dimensions = [{"Name": SERVICE_DIMENSION, "Value": self.service}]
                if backend:
                    dimensions.append({"Name": BACKEND_DIMENSION, "Value": backend})
                properties.update(Namespace=self.namespace, MetricName=metric["own"], Dimensions=dimensions)
            else:
                dimensions = [{"Name": metric["dimension"], "Value": values[metric["resource"]]}]
                properties.update(Namespace=metric["namespace"], MetricName=metric["name"], Dimensions=dimensions)
            if "extended_statistic" in metric:
                properties["ExtendedStatistic"] = metric["extended_statistic"]
            else:
                properties["Statistic"] = metric["statistic"]
            properties["Period"] = metric["period"]
        compare: Mapping[str, Any] = entry.compare
        properties.update(
            ComparisonOperator=compare["operator"],
            Threshold=values[compare["value"]],
            EvaluationPeriods=compare["periods"],
            DatapointsToAlarm=compare["datapoints"],
        )
        return properties

    def _values(self, threshold: float, backend: str) -> dict[str, Any]:
        """What the descriptions and the thresholds may name."""
        timeout_s = self.timeout_s or 0
        return {
            "function": self.function,
            "queue": self.queue,
            "dlq": self.dlq,
            "stream": self.stream_name,
            "kafka_topic": self.kafka_topic,
            "threshold": threshold,
            "over": threshold + 1,
            "queue_retention_s": self.queue_retention_s,
            "age_s": int(self.queue_retention_s * threshold / 100),
            "timeout_s": timeout_s,
            "limit_ms": round(timeout_s * 1000 * threshold / 100),
            "dropped": _DROPPED.get(backend, _DROPPED_SENTRY),
        }

    def _failure_rate(self, period: int) -> list[dict[str, Any]]:
        def count(metric_id: str, metric: str) -> dict[str, Any]:
            dimensions = [{"Name": SERVICE_DIMENSION, "Value": self.service}]
            own = {"Namespace": self.namespace, "MetricName": metric, "Dimensions": dimensions}
            return {
                "Id": metric_id,
                "MetricStat": {"Metric": own, "Period": period, "Stat": "Sum"},
                "ReturnData": False,
            }

        return [
            count("failures", RECORD_FAILURES.name),
            count("successes", RECORD_SUCCESSES.name),
            count("skipped", RECORDS_SKIPPED.name),
            {"Id": "rate", "Expression": FAILURE_RATE_EXPRESSION, "Label": "Failure rate %", "ReturnData": True},
        ]
