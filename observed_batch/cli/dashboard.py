"""``observed-batch dashboard``: the CloudWatch dashboard body for one function."""

from __future__ import annotations

import json
from typing import IO

import click

from observed_batch.cli._common import UsageProblem
from observed_batch.cli.alarms import source_options, write_alarms
from observed_batch.dashboards import SHIPPED_REGION, render
from observed_batch.errors import ConfigError

__all__ = ["command"]

#: What ``dashboard --alarms`` prints on stderr: the option stays as an alias of ``alarms``.
DEPRECATION = "warning: 'dashboard --alarms' is deprecated; use 'observed-batch alarms' (same options, more alarms)"


@click.command(
    name="dashboard",
    epilog="Import: aws cloudwatch put-dashboard --dashboard-name NAME --dashboard-body file://FILE",
)
@source_options
@click.option(
    "--region",
    envvar=["AWS_REGION", "AWS_DEFAULT_REGION"],
    default=SHIPPED_REGION,
    show_default=True,
    help="Region of every widget (env AWS_REGION).",
)
@click.option("--account-id", help="AWS account id: adds a widget with the state of the alarm pack.")
@click.option(
    "--timeout-s",
    type=click.IntRange(min=1),
    help="Function timeout in seconds, as given to 'alarms' (its duration alarm joins the alarm widget).",
)
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
    help="Deprecated alias of 'observed-batch alarms' with default thresholds.",
)
def command(
    namespace: str,
    service: str,
    function: str,
    queue: str | None,
    dlq: str | None,
    stream: str | None,
    table: str | None,
    kafka_topic: str | None,
    region: str,
    account_id: str | None,
    timeout_s: int | None,
    output: IO[str],
    alarms: bool,
) -> None:
    """Write the batch-processing CloudWatch dashboard body filled in for FUNCTION."""
    sources = {"queue": queue, "dlq": dlq, "stream": stream, "table": table, "kafka_topic": kafka_topic}
    if alarms:
        click.echo(DEPRECATION, err=True)
        write_alarms(output, function=function, namespace=namespace, service=service, timeout_s=timeout_s, **sources)
        return
    try:
        document = render(
            function=function,
            namespace=namespace,
            service=service,
            region=region,
            account_id=account_id,
            timeout_s=timeout_s,
            queue=queue,
            dlq=dlq,
            stream=stream,
            table=table,
            kafka_topic=kafka_topic,
        )
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    output.write(json.dumps(document, indent=2) + "\n")
