"""``observed-batch doctor``: check a deployed function and its event sources for batch pitfalls.

Exit codes: 0 no findings, 1 findings, 2 usage or AWS access errors (one line on stderr).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from observed_batch.cli._common import UsageProblem
from observed_batch.doctor import Finding, Setup, collect, diagnose

__all__ = ["DoctorError", "aws_errors", "command"]

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
    """Check a deployed function for partial-batch pitfalls: missing ReportBatchItemFailures, short SQS
    visibility timeout, missing DLQ, maxReceiveCount of 1, oversized FIFO batches, batches that cannot
    finish in time and OBSERVED_BATCH_* variables that would fail the cold start."""
    setup, region_name = _read(function_name, region, endpoint_url)
    findings = diagnose(setup, p99_ms)
    if as_json:
        click.echo(json.dumps(_report(setup, region_name, findings), indent=2))
    else:
        _print(setup, region_name, findings)
    if findings:
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
        return collect(lambda_client, sqs_client, function_name), region_name


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


def _report(setup: Setup, region: str, findings: list[Finding]) -> dict[str, Any]:
    return {
        "function": setup.function_name,
        "region": region,
        "timeout_s": setup.timeout_s,
        "event_source_mappings": [str(m.get("EventSourceArn")) for m in setup.mappings],
        "ok": not findings,
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
    for finding in findings:
        click.echo(f"\nFINDING {finding.check}: {finding.resource}")
        click.echo(f"  {finding.problem}")
        click.echo(f"  fix: {finding.fix}")
    if findings:
        click.echo(f"\n{len(findings)} finding{'' if len(findings) == 1 else 's'}")
    else:
        click.echo("OK: no findings")
