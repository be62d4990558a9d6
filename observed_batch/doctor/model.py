"""What the doctor reads (``Setup``) and reports (``Finding``), and the readers the checks share."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from observed_batch import config

__all__ = ["SEVERITIES", "Finding", "Setup", "Severity"]

Severity = Literal["error", "warning", "info"]
#: Most severe first. ``error`` and ``warning`` findings make the doctor exit 1; ``info`` ones do not.
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    """One misconfiguration: ``check`` is a stable identifier, ``problem`` what was found, ``why`` why it
    hurts (one line), ``fix`` the exact property to set."""

    check: str
    resource: str
    problem: str
    fix: str
    severity: Severity = field(default="error", kw_only=True)
    why: str = field(default="", kw_only=True)

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class Setup:
    """What the doctor read, as boto3 returned it.

    ``queues`` maps a queue ARN to ``{"QueueUrl": ..., "Attributes": {...}}``, or to ``None`` when the
    queue does not exist.
    """

    function: Mapping[str, Any]
    mappings: Sequence[Mapping[str, Any]] = ()
    queues: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)
    #: ``ReservedConcurrentExecutions`` (``get_function_concurrency``); None when unset or unreadable.
    reserved_concurrency: int | None = None
    #: Names of the alarms with the pack's prefix; None when CloudWatch was not read (no access).
    alarms: Sequence[str] | None = None

    @property
    def function_name(self) -> str:
        return str(self.function.get("FunctionName") or self.function.get("FunctionArn") or "?")

    @property
    def timeout_s(self) -> int:
        return int(self.function.get("Timeout") or 3)  # Lambda's default timeout is 3 s


def _middleware_names(function: Mapping[str, Any]) -> list[str]:
    environ: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    return [n.strip() for n in environ.get(config.ENV_MIDDLEWARE, "").split(",") if n.strip()]


def _service(arn: str) -> str:
    parts = arn.split(":")
    return parts[2] if len(parts) > 2 else ""


def _source_name(arn: str) -> str:
    """Queue name, stream name or table name of an event source ARN."""
    resource = arn.split(":", 5)[-1]
    parts = resource.split("/")
    return parts[1] if len(parts) > 1 else resource


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _environ(function: Mapping[str, Any]) -> Mapping[str, str]:
    variables: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    return variables
