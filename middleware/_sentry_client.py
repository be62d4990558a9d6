"""Which Sentry client ``sentry`` sends through, and when ``sentry_sdk`` is imported at all.

Most invocations have no failed record, so most never need Sentry: ``sentry_sdk`` is imported (~70 ms
at cold start) and, from ``SENTRY_DSN``, initialised only when the first record fails, unless the
application already did either. When we initialise it, it is with what a batch consumer needs: the
``logging`` integration for breadcrumbs only, and ``dedupe``. No auto-enabling integrations (which
import botocore and friends: ~600 ms), no default ones (``modules`` alone is half of every event's
serialisation), and no events from ``logging.error`` lines: a failed record is one event, ours, within
``max_events_per_batch``; an error line (the ``logging`` middleware's ``record_failed`` through a Powertools
Logger, or the handler's own) would be a second event per failure, outside the cap. Its transport is
``LeanSentryTransport`` (``_sentry_transport``: sent by the middleware's flush on the calling thread, no
worker thread) unless the middleware never flushes (``flush_timeout_ms=0``: then the SDK's transport sends in
the background) or the options need what only the SDK's transport does (a proxy, a client certificate...).
An application that wants more calls ``sentry_sdk.init`` itself, and that client is used.
"""

from __future__ import annotations

import logging
import os
import sys
import weakref
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from observed_batch.breaker import Breaker
from observed_batch.errors import ConfigError
from observed_batch.metric_schema import SENTRY_BACKEND

from ._sentry_compat import watch_transport

if TYPE_CHECKING:
    from sentry_sdk.client import BaseClient

__all__ = [
    "BACKEND",
    "active_client",
    "breaker_for",
    "can_send",
    "check_dsn",
    "init_from_environment",
    "init_options",
    "queued",
]

logger = logging.getLogger("observed_batch")

#: ``BatchSummary.telemetry_dropped`` key and ``TelemetryDropped`` dimension value of this backend.
BACKEND = SENTRY_BACKEND
#: One breaker per client, shared by every middleware that sends through it.
_BREAKERS: weakref.WeakKeyDictionary[Any, Breaker] = weakref.WeakKeyDictionary()


def breaker_for(client: BaseClient) -> Breaker:
    breaker = _BREAKERS.get(client)
    if breaker is None:
        breaker = _BREAKERS[client] = Breaker(BACKEND)
        watch_transport(client, breaker)
    return breaker


def queued(client: BaseClient) -> int:
    """Envelopes a ``LeanSentryTransport`` holds for the next flush (0 for any other transport)."""
    pending: int = getattr(client.transport, "pending", 0)
    return pending


def can_send(client: BaseClient) -> bool:
    """Initialized with somewhere to send to (``sentry_sdk.init()`` without a DSN is active but mute)."""
    return client.is_active() and client.transport is not None


def active_client() -> BaseClient | None:
    """The application's active client, if it imported and initialised ``sentry_sdk`` (never imports it)."""
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return None
    client: BaseClient = sdk.get_client()
    return client if client.is_active() else None


def check_dsn(dsn: str) -> None:
    """A DSN's shape (``https://<key>@<host>/<project>``), checked without importing ``sentry_sdk``."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("http", "https") or not parts.username or not parts.hostname:
        raise ConfigError(f"SENTRY_DSN is not a usable Sentry DSN: {dsn!r} is not <scheme>://<key>@<host>/<project>")
    if not parts.path.rstrip("/").rsplit("/", 1)[-1].isdigit():
        raise ConfigError(f"SENTRY_DSN is not a usable Sentry DSN: {dsn!r} has no numeric project id")


def init_options(dsn: str, *, lean_transport: bool = True) -> dict[str, Any]:
    """What ``init_from_environment`` passes to ``sentry_sdk.init``: ``SENTRY_DSN`` / ``SENTRY_ENVIRONMENT`` /
    ``SENTRY_RELEASE``; ``logging`` (breadcrumbs from ``INFO``, no events) and ``dedupe`` as the only
    integrations; ``LeanSentryTransport`` when ``lean_transport``. The benchmarks build their clients from it
    too (``capture_exception`` under the same options)."""
    from sentry_sdk.integrations.dedupe import DedupeIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration

    options: dict[str, Any] = {
        "dsn": dsn,
        "default_integrations": False,
        "auto_enabling_integrations": False,
        "integrations": [LoggingIntegration(event_level=None), DedupeIntegration()],
    }
    if lean_transport:
        from ._sentry_transport import LeanSentryTransport

        options["transport"] = LeanSentryTransport
    for option, variable in (("environment", "SENTRY_ENVIRONMENT"), ("release", "SENTRY_RELEASE")):
        value = os.environ.get(variable, "").strip()
        if value:
            options[option] = value
    return options


def init_from_environment(dsn: str, *, lean_transport: bool = True) -> BaseClient:
    """``sentry_sdk.init`` from ``SENTRY_DSN`` / ``SENTRY_ENVIRONMENT`` / ``SENTRY_RELEASE``, lean."""
    import sentry_sdk

    sentry_sdk.init(**init_options(dsn, lean_transport=lean_transport))
    client: BaseClient = sentry_sdk.get_client()
    return client
