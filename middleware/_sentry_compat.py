"""The one place ``sentry`` relies on sentry-sdk beyond its documented API.

``Transport.on_dropped_event(reason)`` is the transport's own notification that an envelope was not
delivered (``"network"`` on a connection error, ``"status_5xx"`` on a server error, ``"full_queue"``,
``"status_429"`` for rate limits). It has no underscore but is not in the documented API; checked on
sentry-sdk 2.0.0 and 2.75.0, where ``HttpTransport`` calls it from its worker thread. Without it a
refused connection (which fails in milliseconds, so no flush times out) would never open the breaker.
"""

from __future__ import annotations

from typing import Any

from observed_batch.breaker import Breaker

__all__ = ["watch_transport"]

#: Reasons that say the backend could not take the envelope (not a rate limit or a local queue).
_UNREACHABLE = ("network",)


def _is_failure(reason: str) -> bool:
    return reason in _UNREACHABLE or (reason.startswith("status_5") and len(reason) == len("status_500"))


def watch_transport(client: Any, breaker: Breaker) -> None:
    """Report the client's undelivered envelopes to ``breaker``, keeping the transport's own handling."""
    transport = getattr(client, "transport", None)
    original = getattr(transport, "on_dropped_event", None)
    if transport is None or original is None:
        return

    def on_dropped_event(reason: str) -> None:
        if isinstance(reason, str) and _is_failure(reason):
            breaker.drop(1)
            breaker.failed(f"Sentry did not take an event ({reason})")
        original(reason)

    transport.on_dropped_event = on_dropped_event
