"""The alarm pack: which alarms apply, their thresholds, cfn-lint, a deploy to moto, and ``observed-batch alarms``.

moto 5.2's CloudFormation has no ``AWS::CloudWatch::Alarm`` provider; ``moto_alarms`` adds one that
maps the resolved resource onto moto's ``put_metric_alarm``, so ``describe_alarms`` reads back what the
stack created.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto_server import FAKE_CREDENTIALS, REGION, moto_server, unique_name

from observed_batch import ConfigError
from observed_batch.alarms import ALARMS, AWS_METRICS, Thresholds, alarm_name_prefix, alarm_names, render_alarms
from observed_batch.cli import main
from observed_batch.dashboards import load, render

EVERY_SOURCE: dict[str, Any] = {
    "queue": "orders",
    "dlq": "orders-dlq",
    "stream": "clicks",
    "kafka_topic": "payments",
    "timeout_s": 30,
}


def properties(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Alarm name -> properties."""
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in template["Resources"].values()}


def suffixes(template: dict[str, Any], function: str = "f") -> set[str]:
    return {name.removeprefix(alarm_name_prefix(function)) for name in properties(template)}


FUNCTION_ALARMS = {"failure-rate", "throttles", "errors", "records-skipped"} | {
    "telemetry-dropped-otel",
    "telemetry-dropped-sentry",
}


# -- which alarms -----------------------------------------------------------------------------------
def test_a_function_alone_gets_only_the_function_alarms() -> None:
    # GIVEN no source and no timeout WHEN rendered THEN no queue, stream, Kafka or duration alarm
    assert suffixes(render_alarms(function="f")) == FUNCTION_ALARMS


@pytest.mark.parametrize(
    ("source", "added"),
    [
        ({"queue": "q"}, {"queue-age"}),
        ({"dlq": "d"}, {"dlq-depth", "dlq-age"}),
        ({"stream": "s"}, {"iterator-age"}),
        ({"table": "Orders"}, {"iterator-age"}),
        ({"kafka_topic": "t"}, {"kafka-offset-lag"}),
        ({"timeout_s": 30}, {"duration-p99"}),
    ],
    ids=["queue", "dlq", "stream", "table", "kafka", "timeout"],
)
def test_each_source_adds_its_alarms(source: dict[str, Any], added: set[str]) -> None:
    # GIVEN one source WHEN rendered THEN exactly its alarms join the function's
    assert suffixes(render_alarms(function="f", **source)) == FUNCTION_ALARMS | added


def test_telemetry_alarms_can_be_limited_to_the_backends_in_use() -> None:
    # GIVEN only the otel backend WHEN rendered THEN no Sentry alarm
    assert "telemetry-dropped-sentry" not in suffixes(render_alarms(function="f", telemetry_backends=["otel"]))


def test_alarm_names_match_the_rendered_pack() -> None:
    # GIVEN every source WHEN names and template are computed THEN they agree, logical id by logical id
    template = render_alarms(function="f", **EVERY_SOURCE)
    assert alarm_names("f", **EVERY_SOURCE) == {
        k: r["Properties"]["AlarmName"] for k, r in template["Resources"].items()
    }


# -- what each alarm says and does --------------------------------------------------------------------
def test_every_alarm_says_what_to_do_within_the_description_limit() -> None:
    # GIVEN the whole pack THEN each description names the action, within CloudWatch's 1024 characters
    for name, alarm in properties(render_alarms(function="f", **EVERY_SOURCE)).items():
        assert "What to do:" in alarm["AlarmDescription"], name
        assert len(alarm["AlarmDescription"]) <= 1024, name


def test_every_alarm_has_the_treat_missing_data_of_its_spec() -> None:
    # GIVEN the whole pack THEN TreatMissingData comes from the spec, which explains it
    template = render_alarms(function="f", **EVERY_SOURCE)
    for spec in ALARMS:
        chosen = {p["TreatMissingData"] for n, p in properties(template).items() if spec.suffix in n}
        assert chosen == {spec.treat_missing_data}, spec.suffix
        assert spec.missing_data_reason


def test_every_alarm_notifies_the_optional_topic_on_alarm_and_recovery() -> None:
    template = render_alarms(function="f", sns_topic_arn="arn:aws:sns:eu-west-1:123456789012:ops")
    expected = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert template["Parameters"]["AlarmTopicArn"]["Default"] == "arn:aws:sns:eu-west-1:123456789012:ops"
    assert all(p["AlarmActions"] == p["OKActions"] == expected for p in properties(template).values())


def test_the_duration_alarm_fires_at_its_share_of_the_timeout() -> None:
    # GIVEN a 30 s timeout WHEN rendered THEN p99 >= 24000 ms (80 %)
    alarm = properties(render_alarms(function="f", timeout_s=30))["f-batch-duration-p99"]
    assert (alarm["ExtendedStatistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "p99",
        24_000,
        "GreaterThanOrEqualToThreshold",
    )


def test_the_queue_age_alarm_fires_at_its_share_of_the_retention() -> None:
    alarm = properties(render_alarms(function="f", queue="q", queue_retention_s=86_400))["f-batch-queue-age"]
    assert alarm["Threshold"] == 43_200


def test_every_threshold_is_an_option() -> None:
    # GIVEN thresholds different from the defaults
    custom = Thresholds(**dict.fromkeys(Thresholds.__dataclass_fields__, 7))
    # WHEN rendered THEN each alarm uses its own (percentages applied to the timeout / retention)
    alarms = properties(render_alarms(function="f", queue_retention_s=1000, thresholds=custom, **EVERY_SOURCE))
    assert {name: alarm["Threshold"] for name, alarm in alarms.items()} == {
        f"f-batch-{suffix}": value
        for suffix, value in {
            "failure-rate": 7, "dlq-depth": 7, "dlq-age": 7, "queue-age": 70, "iterator-age": 7,
            "kafka-offset-lag": 7, "throttles": 7, "errors": 7, "duration-p99": 2100, "records-skipped": 7,
            "telemetry-dropped-otel": 7, "telemetry-dropped-sentry": 7,
        }.items()
    }  # fmt: skip


@pytest.mark.parametrize(
    "bad",
    [
        {"thresholds": {"errors": -1}},
        {"thresholds": {"failure_rate_percent": 101}},
        {"thresholds": {"throttles": True}},
        {"timeout_s": 0},
        {"queue_retention_s": "4d"},
        {"telemetry_backends": ["xray"]},
        {"kafka_topic": "a topic"},
    ],
)
def test_invalid_input_is_a_config_error(bad: dict[str, Any]) -> None:
    # GIVEN a value AWS or the pack cannot use WHEN rendered THEN ConfigError names it
    if "thresholds" in bad:
        with pytest.raises(ConfigError, match=next(iter(bad["thresholds"]))):
            Thresholds(**bad["thresholds"])
        return
    with pytest.raises(ConfigError, match="alarms"):
        render_alarms(function="f", **bad)


# -- dashboard and alarms in step -----------------------------------------------------------------------
def _alarm_metrics(template: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    found = set()
    for alarm in properties(template).values():
        stats = [q["MetricStat"]["Metric"] for q in alarm.get("Metrics", []) if "MetricStat" in q] or [alarm]
        found |= {(m["Namespace"], m["MetricName"], frozenset(d["Name"] for d in m["Dimensions"])) for m in stats}
    return found


def _dashboard_metrics(body: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    found = set()
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            names = [e for e in entry if isinstance(e, str)]
            if len(names) >= 2:
                found.add((names[0], names[1], frozenset(names[2::2])))
    return found


def test_every_alarm_reads_a_metric_the_dashboard_shows() -> None:
    # GIVEN the shipped dashboard and the whole pack on its placeholders
    template = render_alarms(function="OB_FUNCTION", namespace="OB_NAMESPACE", service="OB_SERVICE", **EVERY_SOURCE)
    # THEN every alarm metric (namespace, name, dimension names) is on the dashboard
    assert _alarm_metrics(template) <= _dashboard_metrics(load())


def test_every_aws_metric_the_pack_reads_is_alarmed_and_on_the_dashboard() -> None:
    # GIVEN the AWS metrics the pack declares THEN each is read by an alarm and drawn by a widget
    template = render_alarms(function="f", **EVERY_SOURCE)
    declared = {(ns, name, frozenset({dim})) for ns, name, dim in AWS_METRICS}
    assert declared == {m for m in _alarm_metrics(template) if m[0].startswith("AWS/")}
    assert declared <= _dashboard_metrics(load())


def test_every_threshold_line_on_the_dashboard_is_an_alarm_default() -> None:
    # GIVEN the widgets drawing an "alarm threshold" line
    template = render_alarms(function="OB_FUNCTION", namespace="OB_NAMESPACE", service="OB_SERVICE", **EVERY_SOURCE)
    by_metric = {}
    for alarm in properties(template).values():
        metric = alarm.get("MetricName") or "rate"
        by_metric.setdefault(metric, set()).add(alarm["Threshold"])
    for widget in load()["widgets"]:
        for line in widget["properties"].get("annotations", {}).get("horizontal", []):
            # THEN the line is at the default threshold of an alarm on one of the widget's metrics
            drawn = {e[1] for e in widget["properties"]["metrics"] if len(e) > 2} | {"rate"}
            assert any(line["value"] in by_metric.get(metric, set()) for metric in drawn), widget["properties"]["title"]


def test_the_dashboard_alarm_widget_lists_the_whole_pack() -> None:
    # GIVEN every source and an account WHEN the dashboard is rendered
    body = render(function="f", region=REGION, account_id="123456789012", **EVERY_SOURCE)
    (widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    # THEN its ARNs are the pack's alarms
    listed = {arn.rsplit(":", 1)[1] for arn in widget["properties"]["alarms"]}
    assert listed == set(properties(render_alarms(function="f", **EVERY_SOURCE)))


# -- cfn-lint ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sources", [{}, EVERY_SOURCE, {"table": "Orders", "dlq": "d"}], ids=["none", "all", "ddb"])
def test_generated_templates_pass_cfn_lint(tmp_path: Path, sources: dict[str, Any]) -> None:
    # GIVEN a generated template in a file
    path = tmp_path / "alarms.json"
    path.write_text(json.dumps(render_alarms(function="orders-consumer", **sources)))
    # WHEN cfn-lint's command line checks it (errors and warnings; informational rules are style)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--format", "parseable", "--", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # THEN nothing is reported above informational
    problems = [line for line in result.stdout.splitlines() if ":E" in line or ":W" in line]
    assert problems == []
    assert result.returncode in (0, 8), result.stderr  # 8: informational matches only


# -- deploy to moto -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    import moto_alarms

    moto_alarms.install()
    with moto_server() as endpoint_url:
        yield endpoint_url


def _client(service: str, endpoint_url: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION, **FAKE_CREDENTIALS)


@pytest.mark.e2e
def test_the_pack_deploys_and_each_alarm_reads_its_metric(endpoint: str) -> None:
    # GIVEN the whole pack for a function
    function = unique_name("consumer")
    template = render_alarms(function=function, namespace="Shop", service="orders", **EVERY_SOURCE)
    # WHEN deployed as a stack with an SNS topic
    cloudformation = _client("cloudformation", endpoint)
    topic = _client("sns", endpoint).create_topic(Name=unique_name("ops"))["TopicArn"]
    cloudformation.create_stack(
        StackName=unique_name("alarms"),
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "AlarmTopicArn", "ParameterValue": topic}],
    )
    alarms = _client("cloudwatch", endpoint).describe_alarms(AlarmNamePrefix=alarm_name_prefix(function))
    deployed = {a["AlarmName"]: a for a in alarms["MetricAlarms"]}
    # THEN every alarm exists with its metric, dimensions, threshold and the topic as action
    assert set(deployed) == set(properties(template))
    for name, expected in properties(template).items():
        alarm = deployed[name]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (
            expected["Threshold"],
            expected["ComparisonOperator"],
        )
        assert alarm["AlarmActions"] == [topic]
        if "Metrics" in expected:
            queried = {q["Id"]: q for q in alarm["Metrics"]}
            assert queried["rate"]["Expression"] == expected["Metrics"][-1]["Expression"]
            assert queried["failures"]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "service", "Value": "orders"}]
            continue
        assert (alarm["Namespace"], alarm["MetricName"]) == (expected["Namespace"], expected["MetricName"])
        assert alarm["Dimensions"] == expected["Dimensions"]


@pytest.mark.e2e
def test_the_pack_without_a_topic_deploys_without_actions(endpoint: str) -> None:
    # GIVEN the default (empty) topic parameter WHEN deployed THEN the alarms notify nobody
    function = unique_name("consumer")
    cloudformation = _client("cloudformation", endpoint)
    cloudformation.create_stack(
        StackName=unique_name("alarms"), TemplateBody=json.dumps(render_alarms(function=function))
    )
    alarms = _client("cloudwatch", endpoint).describe_alarms(AlarmNamePrefix=alarm_name_prefix(function))
    assert alarms["MetricAlarms"]
    assert all(a["AlarmActions"] == [] for a in alarms["MetricAlarms"])


@pytest.mark.e2e
def test_the_rendered_dashboard_is_accepted_by_put_dashboard(endpoint: str) -> None:
    # GIVEN the dashboard for every source WHEN put to CloudWatch THEN it is stored as sent
    body = json.dumps(render(function="f", region=REGION, account_id="123456789012", **EVERY_SOURCE))
    cloudwatch = _client("cloudwatch", endpoint)
    name = unique_name("batch")
    assert cloudwatch.put_dashboard(DashboardName=name, DashboardBody=body)["DashboardValidationMessages"] == []
    assert json.loads(cloudwatch.get_dashboard(DashboardName=name)["DashboardBody"]) == json.loads(body)


# -- CLI ----------------------------------------------------------------------------------------------
def test_cli_writes_the_pack_with_every_option() -> None:
    # GIVEN sources, thresholds and a topic on the command line
    args = ["alarms", "--function", "f", "--queue", "q", "--dlq", "d", "--timeout-s", "30", "--errors", "3"]
    args += ["--telemetry-backend", "otel", "--sns-topic-arn", "arn:aws:sns:eu-west-1:123456789012:ops"]
    # WHEN the command runs
    result = CliRunner().invoke(main, args, env={"POWERTOOLS_METRICS_NAMESPACE": "Shop"})
    # THEN it writes render_alarms' template for them
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == render_alarms(
        function="f",
        namespace="Shop",
        queue="q",
        dlq="d",
        timeout_s=30,
        thresholds=Thresholds(errors=3),
        telemetry_backends=["otel"],
        sns_topic_arn="arn:aws:sns:eu-west-1:123456789012:ops",
    )


def test_cli_help_lists_a_threshold_option_per_alarm() -> None:
    result = CliRunner().invoke(main, ["alarms", "--help"], terminal_width=200)
    assert all(f"--{spec.threshold.replace('_', '-')}" in result.output for spec in ALARMS)


def test_cli_rejects_an_invalid_name_with_exit_2() -> None:
    result = CliRunner().invoke(main, ["alarms", "--function", "f", "--queue", "a queue"])
    assert result.exit_code == 2
    assert "Error: alarms queue='a queue' is not valid" in result.output
