"""CloudWatch dashboard for batch processing, filled in for one function.

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
    ``OB_TABLE``        DynamoDB table whose stream is read (optional)
    ``OB_TOPIC``        Kafka topic (optional)
    ``us-east-1``       region (every widget's ``region``, and in ARNs)
    ==================  =============================================

A widget that mentions an optional token left unset is dropped (no queue: no SQS widgets), and its
row closes up. The metrics the body queries come from ``METRICS`` of the ``metrics`` middleware;
a test checks both ways that the dashboard queries exactly what the middleware emits, and that every
alarm of the pack (``observed_batch.alarms``) reads a metric the dashboard shows.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
from collections.abc import Mapping
from typing import Any, Final, Unpack

from observed_batch._names import check
from observed_batch._targets import Targets, Watched
from observed_batch.alarms import Thresholds, alarm_names, render_alarms

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
    "table": "OB_TABLE",
    "kafka_topic": "OB_TOPIC",
}
SHIPPED_REGION: Final = "us-east-1"
#: Default threshold of the failure-rate alarm (and of the dashboard's annotation).
FAILURE_RATE_ALARM_PERCENT: Final = Thresholds.failure_rate_percent
_GRID_COLUMNS: Final = 24


def load(name: str = BODY) -> dict[str, Any]:
    """A shipped dashboard body, as is (placeholders and variables included)."""
    text = importlib.resources.files("observed_batch.dashboard_bodies").joinpath(name).read_text(encoding="utf-8")
    body: dict[str, Any] = json.loads(text)
    return body


def render(
    *, function: str, region: str = SHIPPED_REGION, account_id: str | None = None, **targets: Unpack[Targets]
) -> dict[str, Any]:
    """The shipped dashboard body filled in for one function, ready for ``put-dashboard``.

    With ``account_id`` a last row shows the state of every alarm ``render_alarms`` defines for the same
    sources (and ``timeout_s``, which adds the duration alarm). Raises ``ConfigError`` for a name AWS would
    not accept.
    """
    watched = Watched.of("dashboard", function, targets)
    values: dict[str, str | None] = {**watched.names(), "region": check("region", region)}
    if account_id is not None:
        check("account_id", account_id)
    body = load()
    missing = [token for key, token in PLACEHOLDERS.items() if values.get(key) is None]
    kept = [widget for widget in body["widgets"] if not any(token in json.dumps(widget) for token in missing)]
    widgets = _reflow(kept, body["widgets"])
    replacements = {token: value for key, token in PLACEHOLDERS.items() if (value := values.get(key)) is not None}
    widgets = [_fill(widget, replacements, region) for widget in widgets]
    if account_id is not None:
        names = alarm_names(function, **targets)
        widgets.append(_alarm_widget(list(names.values()), region, account_id, _bottom(widgets)))
    rendered = {key: value for key, value in body.items() if key != "variables"}
    rendered["widgets"] = widgets
    return rendered


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


def _alarm_widget(names: list[str], region: str, account_id: str, y: int) -> dict[str, Any]:
    return {
        "type": "alarm",
        "x": 0,
        "y": y,
        "width": _GRID_COLUMNS,
        "height": 4,
        "properties": {
            "title": "Alarms (observed-batch alarms)",
            "alarms": [f"arn:aws:cloudwatch:{region}:{account_id}:alarm:{name}" for name in names],
            "sortBy": "stateUpdatedTimestamp",
        },
    }
