"""CloudWatch dashboard and alarms for batch processing, filled in for one function.

The shipped body (``dashboards/batch-processing.json``, package data) imports as is: its names are
placeholder tokens that the dashboard's own variables let you type in, and its region is a
``region`` property variable. ``render(...)`` fills the tokens in instead:

    ==================  =============================================
    token               replaced by
    ==================  =============================================
    ``OB_NAMESPACE``    metrics namespace (``ObservedBatch``)
    ``OB_SERVICE``      ``service`` dimension (``service_undefined``)
    ``OB_FUNCTION``     Lambda function name (required)
    ``OB_QUEUE``        SQS queue name (optional)
    ``OB_DLQ``          dead-letter queue name (optional)
    ``OB_STREAM``       Kinesis stream name (optional)
    ``us-east-1``       region (every widget's ``region``, and in ARNs)
    ==================  =============================================

A widget that mentions an optional token left unset is dropped (no queue: no SQS widgets), and its
row closes up. The metrics the body queries come from ``METRICS`` of the ``metrics`` middleware;
a test checks both ways that the dashboard queries exactly what the middleware emits.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from observed_batch.errors import ConfigError
from observed_batch.middleware.metrics import DEFAULT_NAMESPACE, DEFAULT_SERVICE, SERVICE_DIMENSION

__all__ = [
    "BODY",
    "FAILURE_RATE_ALARM_PERCENT",
    "PLACEHOLDERS",
    "SHIPPED_REGION",
    "alarm_names",
    "load",
    "render",
    "render_alarms",
]

#: The shipped dashboard body.
BODY: Final = "batch-processing.json"
#: ``render`` keyword -> token in the shipped body.
PLACEHOLDERS: Final = {
    "namespace": "OB_NAMESPACE",
    "service": "OB_SERVICE",
    "function": "OB_FUNCTION",
    "queue": "OB_QUEUE",
    "dlq": "OB_DLQ",
    "stream": "OB_STREAM",
}
SHIPPED_REGION: Final = "us-east-1"
#: Threshold of the failure-rate alarm (and of the dashboard's annotation).
FAILURE_RATE_ALARM_PERCENT: Final = 5
# 100 * failures / all records, over the three count metrics (ids as in the shipped body).
_FAILURE_RATE_EXPRESSION: Final = "100 * failures / (successes + failures + skipped)"
_GRID_COLUMNS: Final = 24

_NAMES: Final = {
    "function": (re.compile(r"^[A-Za-z0-9_-]{1,64}$"), "1-64 letters, digits, '-' or '_'"),
    "queue": (re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$"), "1-80 letters, digits, '-' or '_' (optional '.fifo')"),
    "stream": (re.compile(r"^[A-Za-z0-9_.-]{1,128}$"), "1-128 letters, digits, '.', '-' or '_'"),
    "namespace": (re.compile(r"^(?!AWS/)[A-Za-z0-9.\-_/#: ]{1,255}$"), "a CloudWatch namespace, not under 'AWS/'"),
    "service": (re.compile(r"^[\x20-\x7e]{1,1024}$"), "1-1024 printable ASCII characters"),
    "region": (re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"), "an AWS region such as eu-west-1"),
    "account_id": (re.compile(r"^\d{12}$"), "12 digits"),
}
_NAMES["dlq"] = _NAMES["queue"]


def load(name: str = BODY) -> dict[str, Any]:
    """A shipped dashboard body, as is (placeholders and variables included)."""
    text = importlib.resources.files("observed_batch.dashboard_bodies").joinpath(name).read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def alarm_names(function: str) -> dict[str, str]:
    """Names of the alarms ``render_alarms`` creates (the dashboard's alarm widget refers to them)."""
    return {"failure_rate": f"{function}-batch-failure-rate", "dlq_depth": f"{function}-batch-dlq-depth"}


def render(
    *,
    function: str,
    namespace: str = DEFAULT_NAMESPACE,
    service: str = DEFAULT_SERVICE,
    queue: str | None = None,
    dlq: str | None = None,
    stream: str | None = None,
    region: str = SHIPPED_REGION,
    account_id: str | None = None,
) -> dict[str, Any]:
    """The shipped dashboard body filled in for one function, ready for ``put-dashboard``.

    With ``account_id`` a last row shows the state of the alarms ``render_alarms`` defines.
    Raises ``ConfigError`` for a name AWS would not accept.
    """
    values = _checked(
        function=function, namespace=namespace, service=service, queue=queue, dlq=dlq, stream=stream, region=region
    )
    if account_id is not None:
        _check("account_id", account_id)
    body = load()
    missing = [token for key, token in PLACEHOLDERS.items() if values.get(key) is None]
    kept = [widget for widget in body["widgets"] if not any(token in json.dumps(widget) for token in missing)]
    widgets = _reflow(kept, body["widgets"])
    replacements = {token: value for key, token in PLACEHOLDERS.items() if (value := values.get(key)) is not None}
    widgets = [_fill(widget, replacements, region) for widget in widgets]
    if account_id is not None:
        widgets.append(_alarm_widget(function, dlq, region, account_id, _bottom(widgets)))
    rendered = {key: value for key, value in body.items() if key != "variables"}
    rendered["widgets"] = widgets
    return rendered


def render_alarms(
    *,
    function: str,
    namespace: str = DEFAULT_NAMESPACE,
    service: str = DEFAULT_SERVICE,
    dlq: str | None = None,
) -> dict[str, Any]:
    """A CloudFormation template (JSON, so valid YAML too) with the batch alarms.

    ``<function>-batch-failure-rate``: more than 5 % of records failed in 2 of 3 minutes.
    ``<function>-batch-dlq-depth`` (with ``dlq``): any message in the dead-letter queue.
    Optional parameter ``AlarmTopicArn``: an SNS topic notified on alarm and recovery.
    """
    _checked(function=function, namespace=namespace, service=service, dlq=dlq)
    names = alarm_names(function)
    actions = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}

    def count(metric_id: str, metric: str) -> dict[str, Any]:
        dimensions = [{"Name": SERVICE_DIMENSION, "Value": service}]
        stat = {"Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions}, "Period": 60}
        return {"Id": metric_id, "MetricStat": {**stat, "Stat": "Sum"}, "ReturnData": False}

    resources: dict[str, Any] = {
        "BatchFailureRateAlarm": {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": names["failure_rate"],
                "AlarmDescription": f"More than {FAILURE_RATE_ALARM_PERCENT} % of the records {function} processed"
                " failed (observed-batch metrics middleware).",
                "Metrics": [
                    count("failures", "BatchRecordFailures"),
                    count("successes", "BatchRecordSuccesses"),
                    count("skipped", "BatchRecordsSkipped"),
                    {
                        "Id": "rate",
                        "Expression": _FAILURE_RATE_EXPRESSION,
                        "Label": "Failure rate %",
                        "ReturnData": True,
                    },
                ],
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": FAILURE_RATE_ALARM_PERCENT,
                "EvaluationPeriods": 3,
                "DatapointsToAlarm": 2,
                "TreatMissingData": "notBreaching",
                "AlarmActions": actions,
                "OKActions": actions,
            },
        }
    }
    if dlq is not None:
        resources["BatchDlqDepthAlarm"] = {
            "Type": "AWS::CloudWatch::Alarm",
            "Properties": {
                "AlarmName": names["dlq_depth"],
                "AlarmDescription": f"Messages {function} could not process reached the dead-letter queue {dlq}.",
                "Namespace": "AWS/SQS",
                "MetricName": "ApproximateNumberOfMessagesVisible",
                "Dimensions": [{"Name": "QueueName", "Value": dlq}],
                "Statistic": "Maximum",
                "Period": 60,
                "EvaluationPeriods": 1,
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 0,
                "TreatMissingData": "notBreaching",
                "AlarmActions": actions,
                "OKActions": actions,
            },
        }
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Batch processing alarms for {function} (generated by observed-batch dashboard --alarms)",
        "Parameters": {
            "AlarmTopicArn": {
                "Type": "String",
                "Default": "",
                "Description": "SNS topic notified when an alarm fires or recovers (empty: none)",
            }
        },
        "Conditions": {"HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}},
        "Resources": resources,
        "Outputs": {
            name: {
                "Value": {"Fn::GetAtt": [name, "Arn"]},
                "Description": f"ARN of {resource['Properties']['AlarmName']}",
            }
            for name, resource in resources.items()
        },
    }


def _check(key: str, value: str) -> str:
    pattern, rule = _NAMES[key]
    if not isinstance(value, str) or not pattern.match(value) or not value.strip():
        raise ConfigError(f"dashboard {key}={value!r} is not valid: {rule}")
    return value


def _checked(**values: str | None) -> dict[str, str | None]:
    return {key: None if value is None else _check(key, value) for key, value in values.items()}


def _fill(node: Any, replacements: Mapping[str, str], region: str) -> Any:
    if isinstance(node, dict):
        return {key: _fill(value, replacements, region) for key, value in node.items()}
    if isinstance(node, list):
        return [_fill(value, replacements, region) for value in node]
    if isinstance(node, str):
        if node == SHIPPED_REGION:
            return region
        for token, value in replacements.items():
            node = node.replace(token, value)
        return node.replace(f":{SHIPPED_REGION}:", f":{region}:")
    return node


def _reflow(kept: list[dict[str, Any]], original: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Close the gaps dropped widgets leave: rows shift up, a row's remaining widgets share its width."""
    rows: dict[int, list[dict[str, Any]]] = {}
    for widget in original:
        rows.setdefault(widget["y"], [])
    for widget in kept:
        rows[widget["y"]].append(copy.deepcopy(widget))
    result: list[dict[str, Any]] = []
    y = 0
    for original_y in sorted(rows):
        row = sorted(rows[original_y], key=lambda w: w["x"])
        if not row:
            continue
        dropped = sum(1 for w in original if w["y"] == original_y) != len(row)
        x = 0
        for index, widget in enumerate(row):
            widget["y"] = y
            if dropped:
                width = _GRID_COLUMNS // len(row)
                widget["x"], widget["width"] = x, width if index < len(row) - 1 else _GRID_COLUMNS - x
                x += width
            result.append(widget)
        y += max(w["height"] for w in row)
    return result


def _bottom(widgets: list[dict[str, Any]]) -> int:
    return max((w["y"] + w["height"] for w in widgets), default=0)


def _alarm_widget(function: str, dlq: str | None, region: str, account_id: str, y: int) -> dict[str, Any]:
    names = alarm_names(function)
    wanted = [names["failure_rate"]] + ([names["dlq_depth"]] if dlq is not None else [])
    arns = [f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{name}" for name in wanted]
    return {
        "type": "alarm",
        "x": 0,
        "y": y,
        "width": _GRID_COLUMNS,
        "height": 3,
        "properties": {
            "title": "Alarms (observed-batch dashboard --alarms)",
            "alarms": arns,
            "sortBy": "stateUpdatedTimestamp",
        },
    }
