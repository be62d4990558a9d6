"""Names AWS accepts for the resources the dashboard and the alarm pack refer to."""

from __future__ import annotations

import re
from typing import Final

from observed_batch.errors import ConfigError

__all__ = ["check", "checked"]

_RULES: Final = {
    "function": (re.compile(r"^[A-Za-z0-9_-]{1,64}$"), "1-64 letters, digits, '-' or '_'"),
    "queue": (re.compile(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$"), "1-80 letters, digits, '-' or '_' (optional '.fifo')"),
    "stream": (re.compile(r"^[A-Za-z0-9_.-]{1,128}$"), "1-128 letters, digits, '.', '-' or '_'"),
    "table": (re.compile(r"^[A-Za-z0-9_.-]{3,255}$"), "3-255 letters, digits, '.', '-' or '_'"),
    "kafka_topic": (re.compile(r"^[A-Za-z0-9._-]{1,249}$"), "1-249 letters, digits, '.', '-' or '_'"),
    "namespace": (re.compile(r"^(?!AWS/)[A-Za-z0-9.\-_/#: ]{1,255}$"), "a CloudWatch namespace, not under 'AWS/'"),
    "service": (re.compile(r"^[\x20-\x7e]{1,1024}$"), "1-1024 printable ASCII characters"),
    "region": (re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"), "an AWS region such as eu-west-1"),
    "account_id": (re.compile(r"^\d{12}$"), "12 digits"),
}
_RULES["dlq"] = _RULES["queue"]


def check(key: str, value: str, what: str = "dashboard") -> str:
    """``value`` if AWS accepts it as ``key``, else ``ConfigError`` naming ``what`` and the rule."""
    pattern, rule = _RULES[key]
    if not isinstance(value, str) or not pattern.match(value) or not value.strip():
        raise ConfigError(f"{what} {key}={value!r} is not valid: {rule}")
    return value


def checked(what: str = "dashboard", **values: str | None) -> dict[str, str | None]:
    return {key: None if value is None else check(key, value, what) for key, value in values.items()}
