"""Option values of the built-ins: which constructor annotations are settable options, and how a
value from the environment or pyproject is coerced and checked (``config`` uses these)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from observed_batch.errors import ConfigError

__all__ = ["check_value", "coerce", "kinds", "parse_bool"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_SCALAR = re.compile(r"^(?:Optional\[)?(int|float|bool|str)\]?(?:\s*\|\s*None)?$")
_LITERAL = re.compile(r"^Literal\[(.+)\]$")


def parse_bool(value: str, variable: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{variable}={value!r} is not a boolean; use true or false")


def kinds(annotations: Mapping[str, str]) -> dict[str, Any]:
    """Option -> kind, for the parameters whose annotation (as text) is a scalar or a Literal."""
    kinds: dict[str, Any] = {}
    for name, annotation in annotations.items():
        text = annotation.replace("typing.", "").strip()
        literal = _LITERAL.match(text.replace(" | None", ""))
        if literal:
            kinds[name] = tuple(v.strip().strip("'\"") for v in literal.group(1).split(","))
            continue
        if text.startswith("str | "):
            kinds[name] = str  # a string from env / pyproject; code may pass richer values (e.g. classes)
            continue
        scalar = _SCALAR.match(text)
        if scalar:
            kinds[name] = {"int": int, "float": float, "bool": bool, "str": str}[scalar.group(1)]
    return kinds


def coerce(raw: str, kind: Any, variable: str) -> Any:
    if kind is bool:
        return parse_bool(raw, variable)
    if kind is int or kind is float:
        try:
            value = kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} is not {'an integer' if kind is int else 'a number'}") from None
        return check_value(value, kind, variable)
    return check_value(raw.strip(), kind, variable)


def check_value(value: Any, kind: Any, where: str) -> Any:
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{where}={value!r} is not one of: {', '.join(kind)}")
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}={value!r} must be of type {kind.__name__}")
    if kind in (int, float) and value < 0:
        raise ConfigError(f"{where}={value!r} must not be negative")
    return value
