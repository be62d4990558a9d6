"""``observed-batch alarms``: the alarm pack for one function, as a CloudFormation template."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import IO, Any

import click

from observed_batch.alarms import ALARMS, DEFAULT_QUEUE_RETENTION_S, Thresholds, render_alarms
from observed_batch.cli._common import UsageProblem
from observed_batch.errors import ConfigError
from observed_batch.metric_schema import DEFAULT_NAMESPACE, DEFAULT_SERVICE, TELEMETRY_BACKENDS

__all__ = ["command", "output_option", "source_options", "timeout_option"]

_EPILOG = (
    "Deploy: aws cloudformation deploy --stack-name NAME-alarms --template-file FILE"
    " [--parameter-overrides AlarmTopicArn=arn:aws:sns:...]. Alarms whose source is not given are left out."
)


def source_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options naming the function and its sources, shared with ``dashboard``."""
    decorators = [
        click.option(
            "--namespace",
            envvar="POWERTOOLS_METRICS_NAMESPACE",
            default=DEFAULT_NAMESPACE,
            show_default=True,
            help="Metrics namespace the function emits to (env POWERTOOLS_METRICS_NAMESPACE).",
        ),
        click.option(
            "--service",
            envvar="POWERTOOLS_SERVICE_NAME",
            default=DEFAULT_SERVICE,
            show_default=True,
            help="Value of the service dimension (env POWERTOOLS_SERVICE_NAME).",
        ),
        click.option("--function", "function", required=True, help="Lambda function name."),
        click.option("--queue", help="SQS queue the function consumes."),
        click.option("--dlq", help="Dead-letter queue (of the queue, or the streams' on-failure destination)."),
        click.option("--stream", help="Kinesis stream the function consumes."),
        click.option("--table", help="DynamoDB table whose stream the function consumes."),
        click.option("--kafka-topic", help="Kafka topic (MSK or self-managed) the function consumes."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


def timeout_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--timeout-s``, shared with ``dashboard`` (each says what the timeout adds)."""
    return click.option("--timeout-s", type=click.IntRange(min=1), help=help)


#: ``--output/-o``, shared with ``dashboard``.
output_option = click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="Write to FILE instead of stdout.",
)


def _threshold_options(function: Callable[..., Any]) -> Callable[..., Any]:
    for spec in reversed(ALARMS):
        field = next(f for f in dataclasses.fields(Thresholds) if f.name == spec.threshold)
        kind = click.FloatRange(min=0) if field.type in (float, "float") else click.IntRange(min=0)
        function = click.option(
            f"--{field.name.replace('_', '-')}",
            field.name,
            type=kind,
            default=field.default,
            show_default=True,
            help=f"Threshold of the {spec.suffix} alarm: {spec.watches}.",
        )(function)
    return function


@click.command(name="alarms", epilog=_EPILOG)
@source_options
@timeout_option("Function timeout in seconds: adds the duration-p99 alarm (p99 against this timeout).")
@click.option(
    "--queue-retention-s",
    type=click.IntRange(min=60),
    default=DEFAULT_QUEUE_RETENTION_S,
    show_default=True,
    help="MessageRetentionPeriod of --queue; the queue-age alarm fires at a share of it.",
)
@click.option(
    "--telemetry-backend",
    "telemetry_backends",
    type=click.Choice(TELEMETRY_BACKENDS),
    multiple=True,
    help="Backends with a telemetry-dropped alarm (repeat; default: all).",
)
@click.option("--sns-topic-arn", default="", help="Default of the AlarmTopicArn parameter: notified on alarm and OK.")
@_threshold_options
@output_option
def command(output: IO[str], **options: Any) -> None:
    """Write the alarm pack for FUNCTION as a CloudFormation template (JSON, valid YAML): failure rate,
    DLQ depth and age, queue age against retention, iterator age, Kafka offset lag, throttles, errors,
    duration p99 against the timeout, skipped records and dropped telemetry. Each alarm's description
    says what to do when it fires."""
    names = {field.name for field in dataclasses.fields(Thresholds)}
    thresholds = Thresholds(**{name: options.pop(name) for name in names})
    options["telemetry_backends"] = options["telemetry_backends"] or TELEMETRY_BACKENDS
    write_alarms(output, thresholds=thresholds, **options)


def write_alarms(output: IO[str], **options: Any) -> None:
    try:
        template = render_alarms(**options)
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    output.write(json.dumps(template, indent=2) + "\n")
