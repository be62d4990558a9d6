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

import importlib.resources
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal, Unpack

from observed_batch._alarm_properties import (
    DEFAULT_QUEUE_RETENTION_S,
    FAILURE_RATE_EXPRESSION,
    AlarmProperties,
    aws_metrics,
    check_metric,
)
from observed_batch._targets import Targets, Watched
from observed_batch.errors import ConfigError

__all__ = [
    "ALARMS",
    "ALARM_NAME_INFIX",
    "AWS_METRICS",
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
    """One alarm of the pack (an entry of ``dashboards/alarm-pack.json``): for the template, the CLI and the docs."""

    suffix: str
    logical_id: str
    requires: Requires
    threshold: str
    treat_missing_data: TreatMissingData
    missing_data_reason: str
    watches: str
    #: ``str.format`` template over ``AlarmProperties``' values (function, queue, threshold, age_s, ...).
    description: str
    #: The failure-rate math, one of our metrics (``own``), or an AWS metric of a watched resource.
    metric: Mapping[str, Any]
    #: Which value is the threshold, the operator, evaluation periods and datapoints.
    compare: Mapping[str, Any]


def _load() -> tuple[AlarmSpec, ...]:
    text = importlib.resources.files("observed_batch.dashboard_bodies").joinpath(PACK).read_text(encoding="utf-8")
    specs = tuple(AlarmSpec(**entry) for entry in json.loads(text)["alarms"])
    for spec in specs:
        check_metric(spec.suffix, spec.metric)
        if spec.threshold not in {field.name for field in fields(Thresholds)}:
            raise ValueError(f"{PACK}: alarm {spec.suffix!r} names an unknown threshold {spec.threshold!r}")
    return specs


#: The pack definition, package data (shipped next to the dashboard body).
PACK: Final = "alarm-pack.json"
ALARMS: Final = _load()
#: (namespace, metric, dimension) of every AWS metric an alarm reads (the dashboard shows the same).
AWS_METRICS: Final = aws_metrics([spec.metric for spec in ALARMS])


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
        properties = {"AlarmName": name, **builder.build(spec, getattr(limits, spec.threshold), backend)}
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
