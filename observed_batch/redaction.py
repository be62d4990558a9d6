"""What leaves the function as text: the one place every built-in passes captured text through.

``Redaction.text`` is applied to every text a built-in exports (exception messages and stack traces,
bodies, handler responses, Sentry event strings and breadcrumbs):

1. invalid UTF-8 (lone surrogates, e.g. from ``bytes.decode("utf-8", "surrogateescape")``) is replaced,
   so exporters never fail on it and no attribute is lost;
2. the configured patterns are replaced by ``[REDACTED]``: regular expressions, or the presets ``card``
   (payment card numbers), ``email``, ``aws_secret`` (40-character secret access keys) and ``bearer``
   (``Bearer <token>``); from ``Config(redact_patterns=...)`` or ``OBSERVED_BATCH_REDACT_PATTERNS``
   (comma-separated names / expressions, or a JSON array for expressions containing commas);
3. the user's hook, ``Config(redact=callable)``, gets the result and returns what is exported.

Independently of that, a pydantic ``ValidationError`` is rendered without the input values it quotes
(field locations, error types and messages stay) unless a middleware's ``include_input_values`` is set.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from observed_batch.errors import ConfigError
from observed_batch.tracebacks import format_exception, safe_str

__all__ = [
    "ENV_REDACT_PATTERNS",
    "PRESETS",
    "REDACTED",
    "Redaction",
    "clean_text",
    "is_validation_error",
    "validation_message",
]

ENV_REDACT_PATTERNS = "OBSERVED_BATCH_REDACT_PATTERNS"
REDACTED = "[REDACTED]"
PRESETS: Mapping[str, str] = {
    # 13-19 digits, optionally grouped by spaces or dashes (what a card number looks like in free text).
    "card": r"\b(?:\d[ -]?){12,18}\d\b",
    "email": r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b",
    "aws_secret": r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])",
    "bearer": r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+",
}
_MAX_VALIDATION_ERRORS = 10


def clean_text(text: str) -> str:
    """``text`` as valid UTF-8: lone surrogates become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)
    return text


def validation_message(error: Any) -> str:
    """A pydantic ``ValidationError`` as text without the input values it quotes."""
    details = error.errors(include_url=False, include_context=False, include_input=False)
    parts = []
    for item in details[:_MAX_VALIDATION_ERRORS]:
        location = ".".join(str(part) for part in item.get("loc", ())) or "(root)"
        parts.append(f"{location}: {item.get('msg')} [type={item.get('type')}]")
    count = error.error_count()
    more = f"; and {count - len(parts)} more" if count > len(parts) else ""
    return f"{count} validation error{'s' if count != 1 else ''} for {error.title}: {'; '.join(parts)}{more}"


def is_validation_error(exc: BaseException) -> bool:
    pydantic_core = sys.modules.get("pydantic_core")  # loaded by whoever raised one: never imported here
    return pydantic_core is not None and isinstance(exc, pydantic_core.ValidationError)


def _message(exc: BaseException, include_input_values: bool) -> str:
    """An exception's message; a pydantic ``ValidationError``'s without its input values unless asked."""
    if not include_input_values and is_validation_error(exc):
        return validation_message(exc)
    return safe_str(exc)


class Redaction:
    """Patterns and a hook applied to every exported text (see the module docstring)."""

    __slots__ = ("_hook", "_pattern", "patterns")

    def __init__(self, hook: Callable[[str], str] | None = None, patterns: Sequence[str] = ()) -> None:
        if hook is not None and not callable(hook):
            raise ConfigError(f"Config.redact={hook!r} must be a callable taking and returning a str")
        self._hook = hook
        self.patterns = tuple(patterns)
        expressions = [PRESETS.get(p, p) for p in self.patterns]
        try:
            self._pattern = re.compile("|".join(f"(?:{e})" for e in expressions)) if expressions else None
        except re.error as exc:
            raise ConfigError(f"redaction pattern is not a valid regular expression: {exc}") from None

    @property
    def active(self) -> bool:
        """Whether patterns or a hook are configured (texts are only sanitised otherwise)."""
        return self._pattern is not None or self._hook is not None

    @classmethod
    def from_config(cls, config: Any, environ: Mapping[str, str]) -> Redaction:
        hook = getattr(config, "redact", None)
        patterns = getattr(config, "redact_patterns", None)
        if patterns is None:
            patterns = _parse_patterns(environ.get(ENV_REDACT_PATTERNS, ""))
        elif isinstance(patterns, str):
            raise ConfigError("Config.redact_patterns must be a list of pattern names or expressions, not a str")
        if hook is None and not patterns:
            return DEFAULT
        return cls(hook, patterns)

    def text(self, value: str) -> str:
        value = clean_text(value)
        if self._pattern is not None:
            value = self._pattern.sub(REDACTED, value)
        if self._hook is not None:
            value = clean_text(str(self._hook(value)))
        return value

    def exception_message(self, exc: BaseException, include_input_values: bool = False) -> str:
        return self.text(_message(exc, include_input_values))

    def exception_text(self, exc: BaseException, tb: TracebackType | None, include_input_values: bool = False) -> str:
        """The formatted traceback (chained exceptions and groups included) with each message rendered as
        ``exception_message`` renders it."""
        return self.text(format_exception(exc, tb, message=lambda error: _message(error, include_input_values)))


def _parse_patterns(raw: str) -> list[str]:
    raw = raw.strip()
    if not raw:
        return []
    if raw.startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{ENV_REDACT_PATTERNS} is not a valid JSON array: {exc}") from None
        if not isinstance(parsed, list) or not all(isinstance(p, str) for p in parsed):
            raise ConfigError(f"{ENV_REDACT_PATTERNS} must be a JSON array of strings")
        return parsed
    return [p.strip() for p in raw.split(",") if p.strip()]


#: No patterns, no hook: texts are sanitised and pydantic inputs left out, nothing else.
DEFAULT = Redaction()
