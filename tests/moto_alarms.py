"""An ``AWS::CloudWatch::Alarm`` provider for moto's CloudFormation, which (moto 5.2) has none.

moto deploys a stack holding an unknown resource type without creating it (and fails on an output
reading its ``Arn``). This provider maps the resource's resolved properties onto moto's own
``put_metric_alarm``, the call the real provider makes, so a deployed template can be read back with
``describe_alarms``. moto resolves parameters, conditions, ``Fn::If`` and ``AWS::NoValue`` itself.

    import moto_alarms
    moto_alarms.install()   # once, in the process running the moto server
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation import parsing
from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat, cloudwatch_backends
from moto.core.common_models import CloudFormationModel

__all__ = ["install"]


class _AlarmResource(CloudFormationModel):  # type: ignore[misc]
    # moto's model metaclass files models by the service in their module path.
    __module__ = "moto.cloudwatch.alarm_provider"

    def __init__(self, alarm: Any) -> None:
        self.alarm = alarm

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        return "AlarmName"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Arn"

    def get_cfn_attribute(self, attribute_name: str) -> str:
        return str(self.alarm.alarm_arn)

    @property
    def physical_resource_id(self) -> str:
        return str(self.alarm.name)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[override]
        cls, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> _AlarmResource:
        p = cloudformation_json["Properties"]
        backend = cloudwatch_backends[account_id][region_name]
        alarm = backend.put_metric_alarm(
            name=p.get("AlarmName", resource_name),
            namespace=p.get("Namespace"),
            metric_name=p.get("MetricName"),
            metric_data_queries=[_query(q) for q in p["Metrics"]] if "Metrics" in p else None,
            comparison_operator=p["ComparisonOperator"],
            evaluation_periods=int(p["EvaluationPeriods"]),
            datapoints_to_alarm=int(p["DatapointsToAlarm"]) if "DatapointsToAlarm" in p else None,
            period=int(p["Period"]) if "Period" in p else None,
            threshold=float(p["Threshold"]),
            statistic=p.get("Statistic"),
            extended_statistic=p.get("ExtendedStatistic"),
            description=p.get("AlarmDescription"),
            dimensions=p.get("Dimensions", []),
            alarm_actions=p.get("AlarmActions", []),
            ok_actions=p.get("OKActions", []),
            treat_missing_data=p.get("TreatMissingData"),
        )
        return cls(alarm)


def _query(query: dict[str, Any]) -> MetricDataQuery:
    stat = None
    if "MetricStat" in query:
        metric = query["MetricStat"]["Metric"]
        dimensions = [Dimension(d["Name"], d["Value"]) for d in metric.get("Dimensions", [])]
        stat = MetricStat(
            Metric(metric["MetricName"], metric["Namespace"], dimensions),
            str(query["MetricStat"]["Period"]),
            query["MetricStat"]["Stat"],
            query["MetricStat"].get("Unit"),
        )
    return MetricDataQuery(
        query["Id"], query.get("Label"), query.get("Period"), query.get("ReturnData"), query.get("Expression"), stat
    )


def install() -> None:
    """Make moto's CloudFormation create alarms (idempotent)."""
    for cached in (parsing.get_model_list, parsing.get_model_map, parsing.get_name_type_map):
        cached.cache_clear()
