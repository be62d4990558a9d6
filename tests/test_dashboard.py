"""The shipped CloudWatch dashboard, ``render``, the alarms template and ``observed-batch dashboard``."""

from __future__ import annotations

import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import pytest
from cli_runner import cli_runner
from click.testing import CliRunner

from observed_batch import (
    BatchContext,
    BatchProcessor,
    BatchSummary,
    ConfigError,
    EventType,
    Middleware,
    process_partial_response,
)
from observed_batch import dashboards as dashboards_module
from observed_batch.cli import main
from observed_batch.cli.dashboard import DEPRECATION, command
from observed_batch.dashboards import (
    FAILURE_RATE_ALARM_PERCENT,
    PLACEHOLDERS,
    SHIPPED_REGION,
    load,
    render,
    render_alarms,
)
from observed_batch.metric_schema import (
    DEFAULT_DIMENSION_SETS,
    METRICS,
    TELEMETRY_BACKENDS,
    TELEMETRY_DIMENSION_SETS,
    TELEMETRY_METRICS,
)
from observed_batch.middleware import MetricsMiddleware, RetryPolicyMiddleware
from observed_batch.testing import FakeLambdaContext, sqs_fifo_event

WIDGET_TYPES = {"metric", "text", "log", "alarm", "explorer"}
METRIC_ID = re.compile(r"^[a-z][A-Za-z0-9_]*$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
# Fields the logging middleware writes (the shared log contract).
LOG_FIELDS = {"message_id", "event_source", "destination", "receive_count", "fifo_group", "exc_type", "exc_message"}


def full_render(**overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "function": "orders-consumer",
        "namespace": "Shop",
        "service": "orders",
        "queue": "orders",
        "dlq": "orders-dlq",
        "stream": "clicks",
        "table": "Orders",
        "kafka_topic": "payments",
        "region": "eu-west-1",
        "account_id": "123456789012",
        "timeout_s": 30,
    }
    options.update(overrides)
    return render(**options)


def assert_valid_dashboard(body: dict[str, Any]) -> None:
    """Rules of the CloudWatch dashboard body structure that put-dashboard enforces."""
    widgets = body["widgets"]
    assert isinstance(widgets, list)
    assert len(widgets) <= 500
    assert sum(len(w["properties"].get("metrics", [])) for w in widgets) <= 2500
    for widget in widgets:
        assert widget["type"] in WIDGET_TYPES
        assert 0 <= widget["x"] <= 23
        assert widget["y"] >= 0
        assert 1 <= widget["width"] <= 24
        assert widget["x"] + widget["width"] <= 24
        assert 1 <= widget["height"] <= 1000
        properties = widget["properties"]
        if widget["type"] == "metric":
            assert_valid_metric_widget(properties)
        elif widget["type"] == "log":
            assert REGION.match(properties["region"])
            assert properties["query"].startswith("SOURCE '")
        elif widget["type"] == "text":
            assert properties["markdown"].strip()
        elif widget["type"] == "alarm":
            assert properties["alarms"]
            assert all(arn.startswith("arn:aws:cloudwatch:") for arn in properties["alarms"])
    for first, second in combinations(widgets, 2):
        overlap_x = first["x"] < second["x"] + second["width"] and second["x"] < first["x"] + first["width"]
        overlap_y = first["y"] < second["y"] + second["height"] and second["y"] < first["y"] + first["height"]
        assert not (overlap_x and overlap_y), (first["properties"].get("title"), second["properties"].get("title"))


def assert_valid_metric_widget(properties: dict[str, Any]) -> None:
    assert REGION.match(properties["region"])
    metrics = properties["metrics"]
    assert 1 <= len(metrics) <= 500
    ids: set[str] = set()
    expressions: list[str] = []
    for entry in metrics:
        options = entry[-1] if isinstance(entry[-1], dict) else {}
        if "expression" in options:
            assert len(entry) == 1
            expressions.append(options["expression"])
        else:
            names = entry[: len(entry) - (1 if options else 0)]
            assert all(isinstance(n, str) and n for n in names), "no '.' shorthand: the contract test reads names"
            assert len(names) % 2 == 0
            assert len(names) >= 2
        if "id" in options:
            assert METRIC_ID.match(options["id"])
            assert options["id"] not in ids
            ids.add(options["id"])
    for expression in expressions:
        assert set(re.findall(r"[a-z][A-Za-z0-9_]*", expression)) <= ids


def queried_metrics(body: dict[str, Any], namespace: str) -> dict[tuple[str, frozenset[str]], set[str]]:
    """(metric name, dimension names) -> statistics the body queries in ``namespace``."""
    queried: dict[tuple[str, frozenset[str]], set[str]] = {}
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            if entry[0] != namespace:
                continue
            options = entry[-1] if isinstance(entry[-1], dict) else {}
            names = entry[: len(entry) - (1 if options else 0)]
            key = (names[1], frozenset(names[2::2]))
            queried.setdefault(key, set()).add(options.get("stat", widget["properties"].get("stat", "Average")))
    return queried


class _DroppingTelemetry(Middleware):
    """Stands for the tracing and Sentry backends with their breakers open: each batch drops for both."""

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        for backend in TELEMETRY_BACKENDS:
            summary.add_dropped(backend, batch.size)


def emitted_metrics() -> set[tuple[str, frozenset[str]]]:
    """What the middleware actually writes for a batch with every kind of outcome and dropped telemetry, with a
    policy middleware in the chain (without one, the dead-lettered / dropped counts are left out)."""
    lines: list[str] = []
    policy = RetryPolicyMiddleware(non_retryable=[LookupError], on_non_retryable="drop")
    processor = BatchProcessor(
        EventType.SQS, middleware=[MetricsMiddleware(sink=lines.append), _DroppingTelemetry(), policy]
    )

    def handler(record: Any) -> str:
        if record.message_id == processor.records[1]["messageId"]:
            raise ValueError("fails")
        return "ok"

    process_partial_response(sqs_fifo_event(4, queue="orders"), handler, processor, FakeLambdaContext())
    directives = [json.loads(line)["_aws"]["CloudWatchMetrics"][0] for line in lines]
    return {
        (metric["Name"], frozenset(dimension_set))
        for directive in directives
        for metric in directive["Metrics"]
        for dimension_set in directive["Dimensions"]
    }


# -- the shipped body -----------------------------------------------------------------------------


def test_shipped_body_is_a_valid_dashboard() -> None:
    # GIVEN the body shipped as package data
    # WHEN loaded
    body = load()
    # THEN it follows the dashboard body structure
    assert_valid_dashboard(body)


def test_shipped_body_is_the_repository_file() -> None:
    # GIVEN the dashboards/ folder of the repository
    # WHEN the package data is loaded
    # THEN it is that file (so `put-dashboard --dashboard-body file://dashboards/batch-processing.json` works)
    repository_file = Path(__file__).parent.parent / "dashboards" / "batch-processing.json"
    assert load() == json.loads(repository_file.read_text())


def test_shipped_body_has_a_variable_for_every_placeholder() -> None:
    # GIVEN the shipped body
    body = load()
    text = json.dumps(body["widgets"])
    variables = {v.get("pattern") or v.get("property"): v for v in body["variables"]}
    # THEN each token is used by a widget and can be typed in through a pattern variable; region is a property
    for token in PLACEHOLDERS.values():
        assert token in text
        assert variables[token]["type"] == "pattern"
        assert variables[token]["inputType"] == "input"
    assert variables["region"]["type"] == "property"
    assert len({v["id"] for v in body["variables"]}) == len(body["variables"])


def test_widgets_of_one_row_have_one_height() -> None:
    # GIVEN the shipped body (render reflows rows, which assumes it)
    rows: dict[int, set[int]] = {}
    for widget in load()["widgets"]:
        rows.setdefault(widget["y"], set()).add(widget["height"])
    # THEN every row is of uniform height and rows tile the grid without vertical gaps
    assert all(len(heights) == 1 for heights in rows.values())
    bottoms = {y + heights.pop() for y, heights in rows.items()}
    assert sorted(rows)[1:] == sorted(bottoms)[:-1]


def test_text_widget_only_mentions_required_placeholders() -> None:
    # GIVEN the text widget (a widget mentioning an unset optional token is dropped)
    (text,) = [w for w in load()["widgets"] if w["type"] == "text"]
    # THEN it mentions no optional token
    for optional in ("queue", "dlq", "stream", "table", "kafka_topic"):
        assert PLACEHOLDERS[optional] not in text["properties"]["markdown"]


def test_failed_records_widget_queries_the_logging_fields() -> None:
    # GIVEN the Logs Insights widget
    (log,) = [w for w in load()["widgets"] if w["type"] == "log"]
    query = log["properties"]["query"]
    # THEN it reads the function's log group, filters record_failed lines and lists the shared fields
    assert query.startswith("SOURCE '/aws/lambda/OB_FUNCTION'")
    assert 'filter event = "record_failed"' in query
    fields = set(re.findall(r"fields ([^\n|]+)", query)[0].replace(" ", "").split(","))
    assert fields >= LOG_FIELDS


def test_failure_rate_widget_and_alarm_agree() -> None:
    # GIVEN the failure-rate widget and the alarms template
    (widget,) = [w for w in load()["widgets"] if "Failure rate" in w["properties"].get("title", "")]
    alarm = render_alarms(function="f")["Resources"]["BatchFailureRateAlarm"]["Properties"]
    # THEN they use the same expression and threshold
    (expression,) = [e[0]["expression"] for e in widget["properties"]["metrics"] if "expression" in e[0]]
    assert expression == next(m for m in alarm["Metrics"] if "Expression" in m)["Expression"]
    assert widget["properties"]["annotations"]["horizontal"][0]["value"] == FAILURE_RATE_ALARM_PERCENT
    assert alarm["Threshold"] == FAILURE_RATE_ALARM_PERCENT


# -- the contract with the metrics middleware -----------------------------------------------------


def test_dashboard_queries_exactly_what_the_middleware_emits() -> None:
    # GIVEN what the middleware emits for a batch with successes, failures and skips
    emitted = emitted_metrics()
    # WHEN reading what the shipped and the rendered dashboards query in the namespace
    shipped = queried_metrics(load(), PLACEHOLDERS["namespace"])
    rendered = queried_metrics(full_render(namespace="Shop"), "Shop")
    # THEN both query every emitted metric + dimension set and nothing else
    assert set(shipped) == emitted
    assert set(rendered) == emitted
    assert emitted == {(m.name, frozenset(s)) for m in METRICS for s in DEFAULT_DIMENSION_SETS} | {
        (m.name, frozenset(s)) for m in TELEMETRY_METRICS for s in TELEMETRY_DIMENSION_SETS
    }


def test_dashboard_reads_counts_as_sums_and_distributions_as_percentiles() -> None:
    # GIVEN the statistics the shipped body asks for
    queried = queried_metrics(load(), PLACEHOLDERS["namespace"])
    # THEN distributions are read through percentiles, per-record counts through sums
    for metric in (*METRICS, *TELEMETRY_METRICS):
        stats = set().union(*(s for (name, _), s in queried.items() if name == metric.name))
        if metric.kind == "distribution":
            assert stats, metric.name
            assert all(re.match(r"^p\d+(\.\d+)?$", s) for s in stats), metric.name
        elif metric.name == "BatchSize":
            assert stats <= {"Average", "Maximum", "Sum", "SampleCount"}
        else:
            assert stats == {"Sum"}, metric.name


def test_alarms_query_only_emitted_metrics() -> None:
    # GIVEN the whole alarm pack
    template = render_alarms(function="f", namespace="Shop", service="orders", queue="q", dlq="d", timeout_s=30)
    emitted = emitted_metrics()
    # WHEN reading every metric it queries in the namespace
    metrics = [p for p in (r["Properties"] for r in template["Resources"].values()) if "MetricName" in p]
    metrics += [
        q["MetricStat"]["Metric"]
        for r in template["Resources"].values()
        for q in r["Properties"].get("Metrics", [])
        if "MetricStat" in q
    ]
    own = [m for m in metrics if m["Namespace"] == "Shop"]
    # THEN each is emitted with those dimensions (failure rate: 3, skipped: 1, dropped: one per backend)
    assert len(own) == 4 + len(TELEMETRY_BACKENDS)
    for metric in own:
        assert (metric["MetricName"], frozenset(d["Name"] for d in metric["Dimensions"])) in emitted


def test_telemetry_alarms_read_each_backend_the_middlewares_drop_for() -> None:
    # GIVEN the values of the backend dimension in the emitted documents
    lines: list[str] = []
    processor = BatchProcessor(EventType.SQS, middleware=[MetricsMiddleware(sink=lines.append), _DroppingTelemetry()])
    process_partial_response(sqs_fifo_event(2, queue="orders"), lambda record: "ok", processor, FakeLambdaContext())
    emitted = {json.loads(line).get("backend") for line in lines} - {None}
    # WHEN the pack is rendered
    template = render_alarms(function="f")
    alarmed = {
        d["Value"]
        for r in template["Resources"].values()
        for d in r["Properties"].get("Dimensions", [])
        if d["Name"] == "backend"
    }
    # THEN there is one alarm per backend that emits
    assert alarmed == emitted == set(TELEMETRY_BACKENDS)


# -- render -----------------------------------------------------------------------------------------


def test_render_fills_every_placeholder_and_region() -> None:
    # GIVEN every name
    # WHEN rendered
    body = full_render()
    text = json.dumps(body)
    # THEN no token is left, every widget with a region uses the one asked for, variables are gone
    assert_valid_dashboard(body)
    assert not any(token in text for token in PLACEHOLDERS.values())
    assert SHIPPED_REGION not in text
    assert {w["properties"]["region"] for w in body["widgets"] if "region" in w["properties"]} == {"eu-west-1"}
    assert "variables" not in body
    assert "SOURCE '/aws/lambda/orders-consumer'" in text


def test_render_keeps_every_widget_when_every_name_is_given() -> None:
    # GIVEN every name
    # WHEN rendered
    body = full_render()
    # THEN all shipped widgets plus the alarm status widget are there
    assert len(body["widgets"]) == len(load()["widgets"]) + 1


def test_render_for_a_queue_without_dlq_or_stream_closes_the_gaps() -> None:
    # GIVEN only a queue
    # WHEN rendered
    body = render(function="orders-consumer", queue="orders")
    titles = [w["properties"].get("title", "") for w in body["widgets"]]
    # THEN the DLQ and stream widgets are gone, the queue widget takes the full row, rows close up
    assert_valid_dashboard(body)
    assert not any("Dead-letter" in t or "Stream" in t for t in titles)
    (queue,) = [w for w in body["widgets"] if "age of oldest message" in w["properties"].get("title", "")]
    assert (queue["x"], queue["width"]) == (0, 24)
    assert_rows_tile(body)


def test_render_for_a_stream_drops_the_queue_widgets() -> None:
    # GIVEN only a stream
    # WHEN rendered
    body = render(function="clicks-consumer", stream="clicks")
    text = json.dumps(body)
    # THEN no SQS widget is left and the stream widget reads the stream
    assert_valid_dashboard(body)
    assert "AWS/SQS" not in text
    assert '"StreamName", "clicks"' in text
    assert_rows_tile(body)


def test_render_without_account_has_no_alarm_widget() -> None:
    # GIVEN no account id
    # WHEN rendered
    body = render(function="orders-consumer", queue="orders", dlq="orders-dlq")
    # THEN no alarm status widget (its ARNs need the account)
    assert not [w for w in body["widgets"] if w["type"] == "alarm"]


def test_render_with_account_shows_the_alarms_of_the_template() -> None:
    # GIVEN an account id and a DLQ
    # WHEN rendered
    body = full_render()
    (alarm,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    # THEN the widget lists the ARN of every alarm of the pack for the same sources, at the bottom
    sources = {"queue": "orders", "dlq": "orders-dlq", "stream": "clicks", "table": "Orders"}
    template = render_alarms(function="orders-consumer", kafka_topic="payments", timeout_s=30, **sources)
    names = [r["Properties"]["AlarmName"] for r in template["Resources"].values()]
    assert alarm["properties"]["alarms"] == [f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{n}" for n in names]
    assert alarm["y"] == max(w["y"] + w["height"] for w in body["widgets"] if w is not alarm)


def test_render_does_not_change_the_shipped_body() -> None:
    # GIVEN a rendered dashboard
    before = load()
    full_render()
    # THEN loading again gives the pristine body
    assert load() == before


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("function", "orders consumer"),
        ("function", ""),
        ("queue", "orders.fifo.extra"),
        ("dlq", "x" * 81),
        ("stream", "a/b"),
        ("namespace", "AWS/Lambda"),
        ("service", "caf\u00e9"),
        ("region", "moon-1"),
        ("account_id", "12345"),
    ],
)
def test_render_rejects_names_aws_would_not_accept(option: str, value: str) -> None:
    # GIVEN an invalid name
    # WHEN rendering
    # THEN ConfigError names the option
    with pytest.raises(ConfigError, match=option):
        full_render(**{option: value})


def assert_rows_tile(body: dict[str, Any]) -> None:
    rows: dict[int, list[dict[str, Any]]] = {}
    for widget in body["widgets"]:
        rows.setdefault(widget["y"], []).append(widget)
    y = 0
    for row_y in sorted(rows):
        assert row_y == y
        assert sum(w["width"] for w in rows[row_y]) == 24
        y += rows[row_y][0]["height"]


# -- CLI --------------------------------------------------------------------------------------------


@pytest.fixture
def runner() -> CliRunner:
    return cli_runner()


NO_REGION_ENV = {"AWS_REGION": None, "AWS_DEFAULT_REGION": None}


def test_cli_writes_the_rendered_body(runner: CliRunner) -> None:
    # GIVEN the names of a deployed function
    args = ["dashboard", "--namespace", "Shop", "--service", "orders", "--function", "orders-consumer"]
    args += ["--queue", "orders", "--dlq", "orders-dlq", "--region", "eu-west-1"]
    # WHEN the command runs
    result = runner.invoke(main, args, env=NO_REGION_ENV)
    # THEN it prints render()'s body
    assert result.exit_code == 0, result.output
    expected = render(
        function="orders-consumer",
        namespace="Shop",
        service="orders",
        queue="orders",
        dlq="orders-dlq",
        region="eu-west-1",
    )
    assert json.loads(result.output) == expected


def test_cli_defaults_come_from_the_environment(runner: CliRunner) -> None:
    # GIVEN Powertools and AWS variables
    env = {"POWERTOOLS_METRICS_NAMESPACE": "Shop", "POWERTOOLS_SERVICE_NAME": "orders", "AWS_REGION": "ap-south-1"}
    # WHEN the command runs with the function only
    result = runner.invoke(command, ["--function", "orders-consumer"], env=env)
    # THEN namespace, service and region are taken from them
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == render(
        function="orders-consumer", namespace="Shop", service="orders", region="ap-south-1"
    )


def test_cli_writes_to_a_file(runner: CliRunner, tmp_path: Path) -> None:
    # GIVEN an output path
    target = tmp_path / "dashboard.json"
    # WHEN the command runs with --output and --account-id
    args = ["--function", "orders-consumer", "--stream", "clicks", "--account-id", "123456789012", "-o", str(target)]
    result = runner.invoke(command, args, env=NO_REGION_ENV)
    # THEN the file holds the body, stdout stays empty
    assert result.exit_code == 0, result.output
    assert result.output == ""
    assert json.loads(target.read_text()) == render(
        function="orders-consumer", stream="clicks", account_id="123456789012"
    )


def test_cli_alarms_flag_is_a_deprecated_alias_of_the_alarms_command(runner: CliRunner) -> None:
    # GIVEN --alarms
    # WHEN the command runs
    args = ["--function", "orders-consumer", "--dlq", "orders-dlq", "--queue", "orders", "--alarms"]
    result = runner.invoke(command, args)
    # THEN it writes the alarm pack and says on stderr which command replaces it
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == render_alarms(function="orders-consumer", dlq="orders-dlq", queue="orders")
    assert result.stderr.strip() == DEPRECATION


def test_cli_rejects_an_invalid_name_with_one_line_and_exit_2(runner: CliRunner) -> None:
    # GIVEN a function name with a space
    # WHEN the command runs
    result = runner.invoke(command, ["--function", "orders consumer"])
    # THEN usage error: exit 2, one error line naming the option
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: dashboard function='orders consumer' is not valid: 1-64 letters, digits, '-' or '_'"]


def test_cli_requires_the_function(runner: CliRunner) -> None:
    # GIVEN no --function
    # WHEN the command runs
    result = runner.invoke(command, ["--queue", "orders"])
    # THEN click reports the missing option on stderr with exit 2
    assert result.exit_code == 2
    assert "--function" in result.stderr


def test_group_lists_the_dashboard_command(runner: CliRunner) -> None:
    # GIVEN the observed-batch group
    # WHEN asking for help
    result = runner.invoke(main, ["--help"])
    # THEN dashboard is one of its commands
    assert result.exit_code == 0
    assert "dashboard" in result.output


def test_module_exports_what_it_documents() -> None:
    # GIVEN the dashboards module
    # THEN its public names exist
    assert all(hasattr(dashboards_module, name) for name in dashboards_module.__all__)
