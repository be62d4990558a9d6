"""The one place ``sentry`` relies on sentry-sdk beyond its documented API.

``Transport.on_dropped_event(reason)`` is the transport's own notification that an envelope was not
delivered (``"network"`` on a connection error, ``"status_5xx"`` on a server error, ``"full_queue"``,
``"status_429"`` for rate limits). It has no underscore but is not in the documented API; checked on
sentry-sdk 2.0.0 and 2.75.0, where ``HttpTransport`` calls it from its worker thread. Without it a
refused connection (which fails in milliseconds, so no flush times out) would never open the breaker.

``RecordBreadcrumbs`` replaces ``Scope._breadcrumbs`` (the scope's ``deque`` of breadcrumbs) of a sync batch's
isolation scope, and resets ``Scope._n_breadcrumbs_truncated`` (how many the scope dropped past
``max_breadcrumbs``, sent as the event's original breadcrumb count). Checked on sentry-sdk 2.0.0 and 2.75.0:
the scope only ever calls ``append``, ``popleft`` (past ``max_breadcrumbs``), ``len`` / truth, iteration
(``update_from_scope``, ``_apply_breadcrumbs_to_event``) and ``copy`` (``Scope.__copy__``, when a scope is
forked) on it, and replaces it with a plain ``deque`` in ``clear_breadcrumbs``. 2.0.0 has no
``_n_breadcrumbs_truncated`` (then there is nothing to reset).

``envelope_endpoint`` builds the envelope URL and the ``User-Agent`` / ``X-Sentry-Auth`` headers the SDK's
``HttpTransport`` sends, through ``Dsn.to_auth("sentry.python/<VERSION>")``, ``Auth.get_api_url`` and
``Auth.to_header`` / ``Auth.client`` (``sentry_sdk.utils``, not documented), as ``HttpTransport`` does
(``_update_headers``); ``ca_bundle`` picks the CA file as ``HttpTransport._get_pool_options`` does. Checked
on sentry-sdk 2.0.0 and 2.75.0, except that 2.0.0 reads only ``ca_certs`` and certifi (``SSL_CERT_FILE`` /
``REQUESTS_CA_BUNDLE`` are read from a later 2.x on, and here on every version). ``LeanSentryTransport`` also
relies on ``sentry_sdk.envelope`` (the type ``Transport.capture_envelope`` takes): ``Envelope(headers=, items=)``,
``.items``, ``.headers``, ``.serialize()``, ``Item.data_category``, ``.headers``, ``.get_bytes()`` and
``Item(PayloadRef(json=...), type="client_report")``, the same on both versions.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

from observed_batch.breaker import Breaker
from observed_batch.typing import BatchContext

__all__ = ["RecordBreadcrumbs", "ca_bundle", "envelope_endpoint", "holds", "install_breadcrumbs", "watch_transport"]

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


def envelope_endpoint(parsed_dsn: Any) -> tuple[str, dict[str, str]]:
    """The envelope endpoint's URL of a ``sentry_sdk.utils.Dsn`` and the headers the SDK authenticates with."""
    from sentry_sdk.consts import VERSION, EndpointType

    auth = parsed_dsn.to_auth(f"sentry.python/{VERSION}")
    headers = {"User-Agent": str(auth.client), "X-Sentry-Auth": str(auth.to_header())}
    return str(auth.get_api_url(EndpointType.ENVELOPE)), headers


def ca_bundle(options: dict[str, Any]) -> str:
    """The CA file the SDK verifies Sentry's certificate with."""
    import certifi  # a dependency of sentry-sdk

    found: str = (
        options.get("ca_certs")
        or os.environ.get("SSL_CERT_FILE")
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or certifi.where()
    )
    return found


class RecordBreadcrumbs(deque[Any]):
    """A sync batch's breadcrumbs, owned by one record at a time: those of the record running now.

    A breadcrumb belongs to the record that started last (``BatchContext.records_started``): those a record's
    middlewares and handler record, and those recorded after it ended, before the next one starts. As soon as
    it is read or written while a newer record runs, what an older one left is dropped (and the scope's count
    of truncated breadcrumbs reset), so a failed record's event carries exactly the breadcrumbs of its own run,
    with no per-record hook: successful records pay for nothing but their own breadcrumbs.
    """

    __slots__ = ("_batch", "_owner", "_scope")

    def __init__(self, batch: BatchContext, scope: Any) -> None:
        super().__init__()
        self._batch: BatchContext | None = batch
        self._scope = scope
        self._owner = batch.records_started

    def _settle(self) -> None:
        batch = self._batch
        if batch is not None and batch.records_started != self._owner:
            self._owner = batch.records_started
            super().clear()
            if getattr(self._scope, "_n_breadcrumbs_truncated", 0):
                self._scope._n_breadcrumbs_truncated = 0

    def append(self, crumb: Any) -> None:
        self._settle()
        super().append(crumb)

    def __len__(self) -> int:
        self._settle()
        return super().__len__()

    def __iter__(self) -> Any:
        self._settle()
        return super().__iter__()

    def __copy__(self) -> deque[Any]:  # type: ignore[override]  # a plain deque, on purpose
        # A scope forked inside a handler starts from the running record's breadcrumbs, in a plain deque.
        self._settle()
        return deque(super().__iter__())

    def __reduce__(self) -> Any:
        # deepcopy / pickle (not done by the SDK): likewise a plain deque.
        return deque, (list(self.__iter__()),)

    def release(self) -> None:
        """The batch ended: no reference back to it or to the scope (and no more dropping)."""
        self._batch = self._scope = None


def install_breadcrumbs(scope: Any, batch: BatchContext) -> RecordBreadcrumbs:
    """Give ``scope`` (the batch's forked isolation scope) breadcrumbs owned by the running record."""
    crumbs = RecordBreadcrumbs(batch, scope)
    scope.clear_breadcrumbs()  # also resets the truncation count
    scope._breadcrumbs = crumbs
    return crumbs


def holds(scope: Any, batch: BatchContext) -> bool:
    """``scope`` keeps its breadcrumbs in a ``RecordBreadcrumbs`` of ``batch`` (user code did not clear them or
    leave a scope of its own entered): they are the running record's. Settled, so that a fork of ``scope``
    copies the right truncation count."""
    crumbs = getattr(scope, "_breadcrumbs", None)
    if type(crumbs) is not RecordBreadcrumbs or crumbs._batch is not batch:
        return False
    crumbs._settle()
    return True
