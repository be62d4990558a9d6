"""``observed-batch doctor``: check a deployed function, its event sources and its observability wiring.

Exit codes: 0 no findings (or only ``info`` ones), 1 an ``error`` or ``warning`` finding, 2 usage or AWS
access errors (one line on stderr). ``--json`` prints ``report`` (schema ``SCHEMA_VERSION``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from observed_batch.cli._common import UsageProblem
from observed_batch.doctor import SEVERITIES, Finding, Setup, collect, diagnose, failing

__all__ = ["SCHEMA_VERSION", "DoctorError", "aws_errors", "command", "report"]

#: Version of the ``--json`` document; bumped only when a field is removed or changes meaning.
SCHEMA_VERSION = 1

_AUTH_ERRORS = {
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
}


class DoctorError(UsageProblem):
    """A usage, credential or connection problem: one clear line, exit code 2."""


@click.command("doctor")
@click.option("--function-name", required=True, help="Function name or ARN of the batch consumer.")
@click.option("--region", default=None, help="AWS region (default: the AWS_REGION / profile region).")
@click.option("--endpoint-url", default=None, help="Custom AWS endpoint, e.g. a moto server.")
@click.option(
    "--p99-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="p99 duration of one record in ms: enables the batch-duration check, sharpens batch-window.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def command(
    function_name: str, region: str | None, endpoint_url: str | None, p99_ms: float | None, as_json: bool
) -> None:
    """Check a deployed function and every event source of it (SQS, Kinesis, DynamoDB Streams, Kafka) for
    the batch pitfalls (partial batch responses, visibility timeout, DLQ or on-failure destination,
    retries, bisect, concurrency, batch window, mapping metrics), its observability wiring (tracing,
    Sentry and metrics settings, OBSERVED_BATCH_* variables) and whether the alarm pack is deployed."""
    setup, region_name = _read(function_name, region, endpoint_url)
    findings = diagnose(setup, p99_ms)
    if as_json:
        click.echo(json.dumps(report(setup, region_name, findings), indent=2))
    else:
        _print(setup, region_name, findings)
    if failing(findings):
        click.get_current_context().exit(1)


def _read(function_name: str, region: str | None, endpoint_url: str | None) -> tuple[Setup, str]:
    try:
        import boto3
        import botocore.config
    except ImportError:
        raise DoctorError('doctor needs boto3; install it with: pip install "observed-batch[doctor]"') from None

    client_config = botocore.config.Config(
        connect_timeout=5, read_timeout=15, retries={"max_attempts": 2, "mode": "standard"}
    )
    with aws_errors(function_name, region):
        session = boto3.session.Session(region_name=region)
    region_name = session.region_name
    if not region_name:
        raise DoctorError("no AWS region: pass --region or set AWS_REGION")
    with aws_errors(function_name, region_name):
        lambda_client = session.client("lambda", endpoint_url=endpoint_url, config=client_config)
        sqs_client = session.client("sqs", endpoint_url=endpoint_url, config=client_config)
        cloudwatch_client = session.client("cloudwatch", endpoint_url=endpoint_url, config=client_config)
        return collect(lambda_client, sqs_client, function_name, cloudwatch_client), region_name


@contextmanager
def aws_errors(function_name: str, region: str | None = None) -> Iterator[None]:
    """Turn boto3's exceptions into one clear line and exit code 2."""
    import botocore.exceptions

    try:
        yield
    except botocore.exceptions.ClientError as exc:
        error = exc.response.get("Error", {})
        code, message = error.get("Code", "?"), error.get("Message", str(exc))
        if code == "ResourceNotFoundException":
            raise DoctorError(
                f"function {function_name!r} not found in {region or 'the default region'}: {message}"
            ) from None
        if code in _AUTH_ERRORS:
            raise DoctorError(f"AWS refused the credentials ({code}): {message}") from None
        raise DoctorError(f"AWS error {code} during {exc.operation_name}: {message}") from None
    except (botocore.exceptions.NoCredentialsError, botocore.exceptions.PartialCredentialsError):
        raise DoctorError(
            "no AWS credentials found: configure a profile (AWS_PROFILE) or set AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY"
        ) from None
    except botocore.exceptions.EndpointConnectionError as exc:
        raise DoctorError(f"cannot reach AWS: {exc}") from None
    except botocore.exceptions.BotoCoreError as exc:
        raise DoctorError(f"AWS client error: {exc}") from None


def report(setup: Setup, region: str, findings: list[Finding]) -> dict[str, Any]:
    """The ``--json`` document (documented in docs/cli.md)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "function": setup.function_name,
        "region": region,
        "timeout_s": setup.timeout_s,
        "reserved_concurrency": setup.reserved_concurrency,
        "event_source_mappings": [str(m.get("EventSourceArn") or m.get("UUID")) for m in setup.mappings],
        "alarms_checked": setup.alarms is not None,
        "ok": not failing(findings),
        "counts": {severity: sum(f.severity == severity for f in findings) for severity in SEVERITIES},
        "findings": [finding.as_dict() for finding in findings],
    }


def _print(setup: Setup, region: str, findings: list[Finding]) -> None:
    sources = len(setup.mappings)
    click.echo(
        f"doctor: {setup.function_name} ({region}), timeout {setup.timeout_s} s,"
        f" {sources} event source mapping{'' if sources == 1 else 's'}"
    )
    if not sources:
        click.echo("note: no event source mappings, only the function configuration was checked")
    if setup.alarms is None:
        click.echo("note: CloudWatch alarms not readable with these credentials, the alarm pack was not checked")
    for finding in findings:
        click.echo(f"\nFINDING {finding.check} [{finding.severity}]: {finding.resource}")
        click.echo(f"  {finding.problem}")
        click.echo(f"  why: {finding.why}")
        click.echo(f"  fix: {finding.fix}")
    if findings:
        counts = ", ".join(f"{n} {s}" for s in SEVERITIES if (n := sum(f.severity == s for f in findings)))
        click.echo(f"\n{len(findings)} finding{'' if len(findings) == 1 else 's'} ({counts})")
    else:
        click.echo("OK: no findings")
