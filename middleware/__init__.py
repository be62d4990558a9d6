"""Built-in middlewares, installed as ``observed_batch.middleware``.

Classes load on first attribute access so that importing this package never imports a backend
(opentelemetry, sentry_sdk, structlog) that is not used. ``LeanSentryTransport`` is the Sentry transport
applications may pass to ``sentry_sdk.init(transport=...)`` (see docs/middleware/sentry.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "LeanSentryTransport",
    "LoggingMiddleware",
    "MetricsMiddleware",
    "RetryPolicyMiddleware",
    "SentryMiddleware",
    "StopOnFailureMiddleware",
    "TimeoutGuardMiddleware",
    "TracingMiddleware",
]


if TYPE_CHECKING:  # pragma: no cover
    from observed_batch.middleware._sentry_transport import LeanSentryTransport
    from observed_batch.middleware.logging import LoggingMiddleware
    from observed_batch.middleware.metrics import MetricsMiddleware
    from observed_batch.middleware.retry_policy import RetryPolicyMiddleware
    from observed_batch.middleware.sentry import SentryMiddleware
    from observed_batch.middleware.stop_on_failure import StopOnFailureMiddleware
    from observed_batch.middleware.timeout_guard import TimeoutGuardMiddleware
    from observed_batch.middleware.tracing import TracingMiddleware


def __getattr__(attribute: str) -> Any:
    # The registry (observed_batch.config.BUILTINS) says which module holds each class; ``__all__`` stays a
    # literal for type checkers and star imports (a test keeps the two equal).
    if attribute == "LeanSentryTransport":
        from ._sentry_transport import LeanSentryTransport

        return LeanSentryTransport
    from observed_batch.config import BUILTINS, builtin_class

    name = next((name for name, builtin in BUILTINS.items() if builtin.cls == attribute), None)
    if name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")

    # Without the backend check: LoggingMiddleware(backend="powertools") needs no structlog; each
    # constructor checks the package of the backend it is given.
    return builtin_class(name, check_backend=False)
