"""Exceptions raised by observed_batch itself (user handler exceptions are never wrapped)."""

from __future__ import annotations

__all__ = ["ConfigError", "FailRecord", "MissingBackendError", "ObservedBatchError"]


class ObservedBatchError(Exception):
    """Base class of every error observed_batch raises on its own behalf."""


class ConfigError(ObservedBatchError, ValueError):
    """Configuration is invalid: raised at processor construction (cold start), never per record."""


class MissingBackendError(ConfigError):
    """A middleware is enabled but the package it needs is not installed."""

    def __init__(self, middleware: str, package: str, extra: str) -> None:
        self.middleware = middleware
        self.package = package
        self.extra = extra
        super().__init__(
            f"middleware {middleware!r} needs the {package!r} package; "
            f'install it with: pip install "observed-batch[{extra}]"'
        )


class FailRecord(Exception):
    """Raise from a middleware *before* its ``yield`` to fail the record without calling the handler.

    The core reports the record in ``batchItemFailures`` exactly like a handler failure, and the
    record's outcome is ``skipped`` with ``reason`` so that other middlewares can tell a guard's
    decision from a real failure (metrics count it as skipped, Sentry ignores it).

    With ``rest_of_batch=True`` every later record of the batch is failed the same way without
    entering any middleware (``wrap_record`` is not called for them; they are counted in the
    summary): what a deadline guard needs, since a slow middleware would otherwise still run for
    each record it gives up on.
    """

    def __init__(self, reason: str, message: str | None = None, *, rest_of_batch: bool = False) -> None:
        self.reason = reason
        self.rest_of_batch = rest_of_batch
        super().__init__(message or f"record not processed: {reason}")
