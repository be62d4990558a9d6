"""doctor: ``OBSERVED_BATCH_*`` variables on the function that would fail its cold start."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observed_batch import config
from observed_batch.errors import ConfigError
from observed_batch.options import Options

from .model import Finding, _middleware_names

__all__ = ["check_environment"]

_ENV_PREFIX = "OBSERVED_BATCH_"
_GLOBAL_VARIABLES = set(config.CORE_VARIABLES)
_GUARD = "timeout_guard"
_COLD_START = "the processor raises ConfigError at construction: every invocation fails and nothing is processed"


def check_environment(function: Mapping[str, Any]) -> list[Finding]:
    """``OBSERVED_BATCH_*`` variables on the function that would fail its cold start (or be ignored)."""
    name = str(function.get("FunctionName") or "function")
    environ: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    resource = f"function {name}"
    findings: list[Finding] = []

    def finding(check: str, problem: str, fix: str, why: str = _COLD_START) -> None:
        findings.append(Finding(check, resource, problem, fix, why=why))

    valid = ", ".join(config.BUILTINS)
    names = _middleware_names(function)
    unknown = [n for n in names if n not in config.BUILTINS]
    if unknown:
        finding(
            "unknown-middleware",
            f"{config.ENV_MIDDLEWARE}={environ[config.ENV_MIDDLEWARE]!r} names unknown middleware"
            f" {', '.join(map(repr, unknown))}: every invocation fails at processor construction",
            f"set {config.ENV_MIDDLEWARE} on {name} to a comma-separated subset of: {valid}",
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        finding(
            "unknown-middleware",
            f"{config.ENV_MIDDLEWARE} lists {', '.join(map(repr, duplicates))} more than once: processor"
            " construction fails",
            f"list each middleware once in {config.ENV_MIDDLEWARE}",
        )
    if config.ENV_DISABLED in environ:
        try:
            config.parse_bool(environ[config.ENV_DISABLED], config.ENV_DISABLED)
        except ConfigError as exc:
            finding("invalid-option", str(exc), f"set {config.ENV_DISABLED} to true or false")

    guard_options = _declared_options(_GUARD)
    guard_min_remaining_ms: int = guard_options["min_remaining_ms"].default if guard_options else 0
    for variable in sorted(environ):
        if not variable.startswith(_ENV_PREFIX) or variable in _GLOBAL_VARIABLES:
            continue
        owner = next((b for b in config.BUILTINS if variable.startswith(f"{_ENV_PREFIX}{b.upper()}_")), None)
        if owner is None:
            finding(
                "unknown-middleware",
                f"{variable} does not belong to any middleware (valid: {valid}): processor construction fails",
                f"rename or remove {variable}",
            )
            continue
        options = _declared_options(owner)
        if options is None:
            continue  # this observed_batch cannot load the middleware: the function's version may
        option = options.get(variable[len(f"{_ENV_PREFIX}{owner.upper()}_") :].lower())
        if option is None or not option.settable:
            choices = ", ".join(options[o].variable(owner) for o in sorted(options.settable())) or "(none)"
            finding(
                "invalid-option",
                f"{variable} is not an option of middleware {owner!r}: processor construction fails",
                f"use one of: {choices}",
            )
            continue
        try:
            value = option.parse(environ[variable], variable)
        except ConfigError as exc:
            finding(
                "invalid-option",
                f"{exc}: processor construction fails",
                f"set {variable} to {option.describe()}",
            )
            continue
        if owner == _GUARD and option.name == "min_remaining_ms":
            guard_min_remaining_ms = value

    timeout_ms = int(function.get("Timeout") or 3) * 1000
    if _GUARD in names and guard_min_remaining_ms >= timeout_ms:
        finding(
            "timeout-guard-margin",
            f"timeout_guard keeps {guard_min_remaining_ms} ms in reserve but the function timeout is only"
            f" {timeout_ms} ms: every record of every batch is failed without running",
            f"lower {_ENV_PREFIX}TIMEOUT_GUARD_MIN_REMAINING_MS well below {timeout_ms} or raise the function timeout",
            why="records are handed back unprocessed, retried, and end in the DLQ without ever running",
        )
    return findings


def _declared_options(builtin: str) -> Options | None:
    try:
        return config.declared_options(builtin)
    except ConfigError:
        return None
