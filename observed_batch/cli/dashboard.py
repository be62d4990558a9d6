"""``observed-batch dashboard``: the CloudWatch dashboard body for one function."""

from __future__ import annotations

import json
from typing import IO, Any

import click

from observed_batch.cli._common import UsageProblem
from observed_batch.cli.alarms import output_option, source_options, timeout_option, write_alarms
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
@timeout_option("Function timeout in seconds, as given to 'alarms' (its duration alarm joins the alarm widget).")
@output_option
@click.option(
    "--alarms",
    is_flag=True,
    help="Deprecated alias of 'observed-batch alarms' with default thresholds.",
)
def command(region: str, account_id: str | None, output: IO[str], alarms: bool, **targets: Any) -> None:
    """Write the batch-processing CloudWatch dashboard body filled in for FUNCTION."""
    if alarms:
        click.echo(DEPRECATION, err=True)
        write_alarms(output, **targets)
        return
    try:
        document = render(region=region, account_id=account_id, **targets)
    except ConfigError as exc:
        raise UsageProblem(str(exc)) from None
    output.write(json.dumps(document, indent=2) + "\n")
