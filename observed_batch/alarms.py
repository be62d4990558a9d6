"""The alarm pack: CloudWatch alarms for one batch consumer, as a CloudFormation template.

``render_alarms(function=..., queue=..., dlq=..., stream=..., table=..., kafka_topic=..., timeout_s=...)``
returns a template (JSON, so valid YAML too) with the alarms that apply to the given sources: no
queue, no queue alarm; no ``timeout_s``, no duration alarm. ``ALARMS`` describes each alarm once (what
it reads, its default threshold, why its ``TreatMissingData``); ``docs/alarms.md`` and
``observed-batch alarms --help`` are written from the same table. Every alarm is named
``<function>-batch-<suffix>`` (``alarm_names``), so the doctor and the dashboard find the whole pack by
that prefix. An optional SNS topic (parameter ``AlarmTopicArn``) is notified on alarm and on recovery.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal, Unpack

from observed_batch._alarm_properties import DEFAULT_QUEUE_RETENTION_S, FAILURE_RATE_EXPRESSION, AlarmProperties
from observed_batch._targets import Targets, Watched
from observed_batch.errors import ConfigError

__all__ = [
    "ALARMS",
    "ALARM_NAME_INFIX",
    "DEFAULT_QUEUE_RETENTION_S",
    "FAILURE_RATE_EXPRESSION",
    "AlarmSpec",
    "Thresholds",
    "alarm_name_prefix",
    "alarm_names",
    "render_alarms",
]

#: Every alarm of the pack is named ``<function><ALARM_NAME_INFIX><suffix>``.
ALARM_NAME_INFIX: Final = "-batch-"

Requires = Literal["function", "queue", "dlq", "stream", "kafka", "timeout", "backend"]
TreatMissingData = Literal["notBreaching", "breaching", "ignore", "missing"]


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of the pack; each is an option of ``observed-batch alarms`` (``--<name>``)."""

    failure_rate_percent: float = 5.0
    dlq_visible_messages: int = 0
    dlq_age_s: int = 86_400
    queue_age_percent_of_retention: float = 50.0
    iterator_age_ms: int = 60_000
    kafka_offset_lag: int = 10_000
    throttles: int = 0
    errors: int = 0
    duration_percent_of_timeout: float = 80.0
    skipped_records: int = 0
    telemetry_dropped: int = 0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"alarm threshold {field.name}={value!r} is not valid: a number >= 0")
            if "percent" in field.name and not 0 < value <= 100:
                raise ConfigError(f"alarm threshold {field.name}={value!r} is not valid: a percentage in (0, 100]")


@dataclass(frozen=True)
class AlarmSpec:
    """One alarm of the pack, described once for the template, the CLI and the docs."""

    suffix: str
    logical_id: str
    requires: Requires
    threshold: str
    treat_missing_data: TreatMissingData
    missing_data_reason: str
    watches: str


ALARMS: Final = (
    AlarmSpec("failure-rate", "BatchFailureRateAlarm", "function", "failure_rate_percent", "notBreaching",
              "no records, no failures", "100 x BatchRecordFailures / (successes + failures + skipped), 2 of 3 min"),
    AlarmSpec("dlq-depth", "BatchDlqDepthAlarm", "dlq", "dlq_visible_messages", "notBreaching",
              "SQS stops publishing for a queue idle for 6 h, and an idle DLQ is empty",
              "DLQ ApproximateNumberOfMessagesVisible (fires on redrive too, unlike NumberOfMessagesSent)"),
    AlarmSpec("dlq-age", "BatchDlqAgeAlarm", "dlq", "dlq_age_s", "notBreaching",
              "SQS stops publishing for a queue idle for 6 h, and an idle DLQ is empty",
              "DLQ ApproximateAgeOfOldestMessage: a DLQ nobody drains"),
    AlarmSpec("queue-age", "BatchQueueAgeAlarm", "queue", "queue_age_percent_of_retention", "notBreaching",
              "SQS stops publishing for an idle queue, which has no message to expire",
              "source queue ApproximateAgeOfOldestMessage against its retention period"),
    AlarmSpec("iterator-age", "BatchIteratorAgeAlarm", "stream", "iterator_age_ms", "ignore",
              "no data means no invocations: a consumer that fell behind and then stalled stays in ALARM",
              "Lambda IteratorAge (Kinesis, DynamoDB Streams), 5 of 5 min"),
    AlarmSpec("kafka-offset-lag", "BatchKafkaOffsetLagAlarm", "kafka", "kafka_offset_lag", "ignore",
              "no data means no invocations: a consumer that fell behind and then stalled stays in ALARM",
              "Lambda OffsetLag (MSK, self-managed Kafka), 5 of 5 min"),
    AlarmSpec("throttles", "BatchThrottlesAlarm", "function", "throttles", "notBreaching",
              "Lambda publishes Throttles only when it was asked to run the function",
              "Lambda Throttles, 5 min"),
    AlarmSpec("errors", "BatchErrorsAlarm", "function", "errors", "notBreaching",
              "no invocations, no errors", "Lambda Errors (whole invocations failed), 5 min"),
    AlarmSpec("duration-p99", "BatchDurationAlarm", "timeout", "duration_percent_of_timeout", "notBreaching",
              "no invocations, no duration", "Lambda Duration p99 against the function timeout, 3 of 3 min"),
    AlarmSpec("records-skipped", "BatchRecordsSkippedAlarm", "function", "skipped_records", "notBreaching",
              "no invocations, no skips", "BatchRecordsSkipped: timeout guard firing, FIFO short-circuit, 5 min"),
    AlarmSpec("telemetry-dropped", "BatchTelemetryDropped", "backend", "telemetry_dropped", "notBreaching",
              "TelemetryDropped is only emitted by invocations that dropped something: no data is the healthy state",
              "TelemetryDropped per backend (otel, sentry): a collector or Sentry down, 5 min"),
)  # fmt: skip


def alarm_name_prefix(function: str) -> str:
    """The prefix every alarm of ``function``'s pack starts with (``describe_alarms(AlarmNamePrefix=...)``)."""
    return f"{function}{ALARM_NAME_INFIX}"


def _applies(spec: AlarmSpec, sources: dict[str, Any]) -> bool:
    return spec.requires in ("function", "backend") or sources.get(spec.requires) is not None


def _instances(watched: Watched) -> list[tuple[AlarmSpec, str, str]]:
    """(spec, logical id, alarm name) of every alarm that applies; one per backend for telemetry."""
    result = []
    prefix = alarm_name_prefix(watched.function)
    sources = watched.sources
    for spec in ALARMS:
        if not _applies(spec, sources):
            continue
        if spec.requires == "backend":
            for backend in dict.fromkeys(watched.telemetry_backends):
                result.append(
                    (spec, f"{spec.logical_id}{backend.capitalize()}Alarm", f"{prefix}{spec.suffix}-{backend}")
                )
        else:
            result.append((spec, spec.logical_id, f"{prefix}{spec.suffix}"))
    return result


def alarm_names(function: str, **targets: Unpack[Targets]) -> dict[str, str]:
    """Logical id -> alarm name of every alarm ``render_alarms`` creates for these sources."""
    # Not checked: the names may be a template's references (``${Queue.QueueName}``), as the doctor passes them.
    return {logical_id: name for _, logical_id, name in _instances(Watched(function, **targets))}


def render_alarms(
    *,
    function: str,
    queue_retention_s: int = DEFAULT_QUEUE_RETENTION_S,
    thresholds: Thresholds | None = None,
    sns_topic_arn: str = "",
    **targets: Unpack[Targets],
) -> dict[str, Any]:
    """The alarm pack for one function as a CloudFormation template (``targets``: what it watches, as
    ``dashboards.render`` takes them). Raises ``ConfigError`` on bad input."""
    retention = queue_retention_s
    if isinstance(retention, bool) or not isinstance(retention, int) or retention < 1:
        raise ConfigError(f"alarms queue_retention_s={retention!r} is not valid: a whole number of seconds >= 1")
    builder = replace(AlarmProperties.of("alarms", function, targets), queue_retention_s=retention)
    limits = thresholds or Thresholds()
    actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    resources: dict[str, Any] = {}
    for spec, logical_id, name in _instances(builder):
        backend = name.rsplit("-", 1)[-1] if spec.requires == "backend" else ""
        properties = {"AlarmName": name, **builder.build(spec.suffix, getattr(limits, spec.threshold), backend)}
        properties["TreatMissingData"] = spec.treat_missing_data
        properties["AlarmActions"] = actions
        properties["OKActions"] = actions
        resources[logical_id] = {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Batch processing alarms for {function} (generated by observed-batch alarms)",
        "Parameters": {
            "AlarmTopicArn": {
                "Type": "String",
                "Default": sns_topic_arn,
                "Description": "SNS topic notified when an alarm fires or recovers (empty: none)",
            }
        },
        "Conditions": {"HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}},
        "Resources": resources,
        "Outputs": {
            logical_id: {
                "Value": {"Fn::GetAtt": [logical_id, "Arn"]},
                "Description": f"ARN of {resource['Properties']['AlarmName']}",
            }
            for logical_id, resource in resources.items()
        },
    }
