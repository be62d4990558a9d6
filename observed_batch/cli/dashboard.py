"""``observed-batch dashboard``: the CloudWatch dashboard body (or alarms template) for one function."""

from __future__ import annotations

import json
from typing import IO

import click

from observed_batch.cli._common import UsageProblem
from observed_batch.dashboards import SHIPPED_REGION, render, render_alarms
from observed_batch.errors import ConfigError
from observed_batch.middleware.metrics import DEFAULT_NAMESPACE, DEFAULT_SERVICE

__all__ = ["command"]


@click.command(
    name="dashboard",
    epilog="Import: aws cloudwatch put-dashboard --dashboard-name NAME --dashboard-body file://FILE",
)
@click.option(
    "--namespace",
    envvar="POWERTOOLS_METRICS_NAMESPACE",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="Metrics namespace the function emits to (env POWERTOOLS_METRICS_NAMESPACE).",
)
@click.option(
    "--service",
    envvar="POWERTOOLS_SERVICE_NAME",
    default=DEFAULT_SERVICE,
    show_default=True,
    help="Value of the service dimension (env POWERTOOLS_SERVICE_NAME).",
)
@click.option("--function", "function", required=True, help="Lambda function name.")
@click.option("--queue", help="SQS queue the function consumes (adds the queue widgets).")
@click.option("--dlq", help="Dead-letter queue (adds the DLQ depth widget and alarm).")
@click.option("--stream", help="Kinesis stream the function consumes (adds the iterator age widget).")
@click.option(
    "--region",
    envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
    default=SHIPPED_REGION,
    show_default=True,
    help="Region of every widget (env AWS_REGION).",
)
@click.option("--account-id", help="AWS account id: adds a widget with the state of the --alarms alarms.")
@click.option(
    "--output",
    "-o",
    type=click.File("w", encoding="utf-8", lazy=True),
    default="-",
    help="Write to FILE instead of stdout.",
)
@click.option(
    "--alarms",
    is_flag=True,
    help="Write a CloudFormation template with the failure-rate and DLQ alarms instead of the dashboard.",
)
def command(
    namespace: str,
    service: str,
    function: str,
    queue: str | None,
    dlq: str | None,
    stream: str | None,
    region: str,
    account_id: str | None,
    output: IO[str],
    alarms: bool,
) -> None:
    """Write the batch-processing CloudWatch dashboard body filled in for FUNCTION."""
    try:
        if alarms:
            document = render_alarms(function=function, namespace=namespace, service=service, dlq=dlq)
        else:
            document = render(
                function=function,
                namespace=namespace,
                service=service,
                queue=queue,
                dlq=dlq,
                stream=stream,
                region=region,
                account_id=account_id,
            )
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    output.write(json.dumps(document, indent=2) + "\n")
