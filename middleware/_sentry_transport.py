"""``LeanSentryTransport``: Sentry envelopes sent by ``flush()`` on the calling thread, over one kept-alive connection.

The SDK's ``HttpTransport`` hands each envelope to a worker thread, compresses it (gzip level 9, or brotli),
sends it through urllib3 and makes ``flush()`` wait for the thread: ~1 ms an event in a Lambda invocation,
most of it thread hand-offs. This transport keeps what ``capture_envelope`` gets in a bounded buffer and
sends it when the client flushes (the ``sentry`` middleware at the end of each invocation that captured
something or has something queued, the AWS Lambda integration after each invocation, ``sentry_sdk.flush()``,
``close()`` at exit): no thread, one kept-alive HTTP/1.1 connection (``_http_connection``), each envelope
as the SDK serialises it, uncompressed up to 16 KiB (gzip level 1 above: ~0.03 ms saved an event; Sentry
reads either), with the SDK's ``User-Agent`` and ``X-Sentry-Auth`` headers. ``https`` DSNs go over TLS with
``ssl.create_default_context`` and the CA bundle the SDK picks (``ca_certs``, ``SSL_CERT_FILE``,
``REQUESTS_CA_BUNDLE``, certifi).

Every wait is bounded by the flush's timeout. A refused connection, failed handshake, timeout or 5xx answer
drops that envelope and the rest of that flush, untried (``on_dropped_event("network")`` or
``("status_5xx")`` and ``record_lost_event("network_error")`` per envelope, which opens the middleware's
breaker); another error status drops that envelope, as the SDK does.
Rate limits (``X-Sentry-Rate-Limits``, or ``429`` with ``Retry-After``, 60 s without) are honoured as the
SDK honours them: envelopes of a limited category are dropped until the limit ends and counted
(``ratelimit_backoff``), never retried. Counts of lost events go out as a client report with the next
envelope sent. ``kill()`` drops what is still queued (counted); ``close()`` flushes before it kills.

What it does not reproduce, it leaves to the SDK: built with options that need a proxy (``http_proxy`` /
``https_proxy`` or the proxy environment variables, unless ``NO_PROXY`` covers the DSN's host),
``socket_options``, ``keep_alive``, a client certificate (``cert_file`` / ``key_file`` /
``CLIENT_CERT_FILE`` / ``CLIENT_KEY_FILE``), a transport experiment (``_experiments["transport_*"]``) or a
DSN scheme other than http(s), ``LeanSentryTransport(options)`` returns the SDK's ``HttpTransport``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import getproxies

from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.transport import HttpTransport, Transport

from ._http_connection import KeptAliveConnection, Response, retry_after
from ._sentry_compat import ca_bundle, envelope_endpoint

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator

__all__ = ["LeanSentryTransport", "unsupported"]

#: The SDK's transport logs there (shown with ``debug=True``).
sdk_logger = logging.getLogger("sentry_sdk.errors")
logger = logging.getLogger("observed_batch")

#: Envelopes larger than this are gzipped (level 1): below, compressing costs more than the bytes it saves.
COMPRESS_FROM_BYTES = 16 * 1024
#: As the SDK's worker queue (``transport_queue_size``'s default).
_DEFAULT_QUEUE_SIZE = 100
#: Without a ``Retry-After``, a 429 limits every category for this long (as the SDK).
_DEFAULT_RETRY_AFTER_S = 60.0
#: A flush that has not finished after this long tells its callback how many are left (as the SDK's worker).
_CALLBACK_AFTER_S = 0.1
#: Categories whose rate-limited drop the SDK reports to ``on_dropped_event`` (``self_rate_limits``).
_EVENT_CATEGORIES = ("transaction", "error", "default", "statsd")


def unsupported(options: dict[str, Any]) -> str | None:
    """What in ``options`` (or the environment) the SDK's ``HttpTransport`` would do that this one does not."""
    parts = urlsplit(str(options.get("dsn") or ""))
    if parts.scheme not in ("http", "https"):
        return f"the DSN scheme {parts.scheme!r}"
    if options.get("socket_options") is not None:
        return "socket_options"
    if options.get("keep_alive"):
        return "keep_alive"
    if any(options.get(name) or os.environ.get(f"CLIENT_{name.upper()}") for name in ("cert_file", "key_file")):
        return "a client certificate"
    if _proxy(options, parts.scheme, parts.hostname or "", parts.netloc):
        return "a proxy"
    experiments = [name for name in options.get("_experiments") or {} if str(name).startswith("transport_")]
    if experiments:
        return f"_experiments[{experiments[0]!r}]"
    return None


def _proxy(options: dict[str, Any], scheme: str, host: str, netloc: str) -> bool:
    """Whether the SDK would send through a proxy (``HttpTransport._make_pool``'s choice)."""
    proxies = getproxies()
    no_proxy = any(
        entry.strip() and (host.endswith(entry.strip()) or netloc.endswith(entry.strip()))
        for entry in (proxies.get("no") or "").split(",")
    )
    proxy: Any = None
    if scheme == "https" and options.get("https_proxy") != "":
        proxy = options.get("https_proxy") or (not no_proxy and proxies.get("https"))
    if not proxy and options.get("http_proxy") != "":
        proxy = options.get("http_proxy") or (not no_proxy and proxies.get("http"))
    return bool(proxy)


class LeanSentryTransport(Transport):
    """Sends the client's envelopes when it flushes, on the flushing thread (see the module docstring).

    Pass the class: ``sentry_sdk.init(dsn=..., transport=LeanSentryTransport)``.
    """

    def __new__(cls, options: dict[str, Any] | None = None) -> Any:
        reason = unsupported(options) if options else None
        if options is not None and reason is not None:
            logger.info("observed_batch: LeanSentryTransport does not reproduce %s; the SDK's transport sends", reason)
            return HttpTransport(options)
        return super().__new__(cls)

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        Transport.__init__(self, options)
        if self.parsed_dsn is None or options is None:
            raise ValueError("LeanSentryTransport needs the client's options, with a DSN (pass the class to init)")
        self.options: dict[str, Any] = options
        self._url, self._headers = envelope_endpoint(self.parsed_dsn)
        self._headers["Content-Type"] = "application/x-sentry-envelope"
        self._queue_size = int(options.get("transport_queue_size") or _DEFAULT_QUEUE_SIZE)
        self._queue: list[Envelope] = []
        self._lock = threading.Lock()  # the queue and the counts (the SDK's batchers capture from threads)
        self._sending = threading.Lock()  # one flush at a time on the connection
        self._connection: KeptAliveConnection | None = None  # built at the first flush (TLS: the CA bundle)
        self._disabled_until: dict[str | None, datetime] = {}
        self._discarded: defaultdict[tuple[str, str], int] = defaultdict(int)

    # -- the SDK's Transport API ------------------------------------------------------------------------
    def capture_envelope(self, envelope: Envelope) -> None:
        with self._lock:
            if len(self._queue) < self._queue_size:
                self._queue.append(envelope)
                return
        self.on_dropped_event("full_queue")
        for item in envelope.items:
            self.record_lost_event("queue_overflow", item=item)

    @property
    def pending(self) -> int:
        """Envelopes waiting for the next flush."""
        return len(self._queue)

    def flush(self, timeout: float, callback: Callable[[int, float], None] | None = None) -> None:
        """Send what is queued, within ``timeout`` seconds; nothing queued (or no time): nothing done."""
        if timeout <= 0 or not self._queue:
            return
        deadline = time.monotonic() + timeout
        # Another thread's flush holds the connection: wait for it no longer than this flush may take.
        if not self._sending.acquire(timeout=timeout):
            return
        try:
            with self._lock:
                batch, self._queue = self._queue, []
            started = time.monotonic()
            for index, envelope in enumerate(batch):
                if callback is not None and time.monotonic() - started > _CALLBACK_AFTER_S:
                    callback(len(batch) - index, timeout)
                    callback = None
                failure = self._send(envelope, deadline)
                if failure is not None:
                    # Sentry is unreachable or failing: the rest of this flush is dropped, not tried (the breaker
                    # takes over from here).
                    for rest in batch[index + 1 :]:
                        self._lose(rest.items, failure, "network_error")
                    return
        finally:
            self._sending.release()

    def kill(self) -> None:
        with self._lock:
            dropped, self._queue = self._queue, []
        for envelope in dropped:
            for item in envelope.items:
                self.record_lost_event("queue_overflow", item=item)
        if self._connection is not None:
            self._connection.close()

    def record_lost_event(
        self,
        reason: str,
        data_category: Any = None,
        item: Item | None = None,
        *,
        quantity: int = 1,
    ) -> None:
        if not self.options.get("send_client_reports", True):
            return
        if item is not None:
            data_category, quantity = item.data_category, 1
            count = item.headers.get("item_count")
            if data_category == "attachment":
                quantity = len(item.get_bytes()) or 1
            elif isinstance(count, int) and count > 0:
                quantity = count  # a batch of spans, logs or metrics
        elif data_category is None:
            raise TypeError("data category not provided")
        with self._lock:
            self._discarded[data_category, reason] += quantity

    def is_healthy(self) -> bool:
        return len(self._queue) < self._queue_size and not any(
            until > datetime.now(timezone.utc) for until in self._disabled_until.values()
        )

    def on_dropped_event(self, reason: str) -> None:
        """Called for each envelope not delivered (the SDK's hook, which the middleware's breaker watches)."""
        return None

    # -- sending ----------------------------------------------------------------------------------------
    def _send(self, envelope: Envelope, deadline: float) -> str | None:
        """One envelope, what rate limits leave of it; the drop reason when Sentry could not take it
        (unreachable, timed out, 5xx), which ends the flush."""
        items = list(self._allowed(envelope.items))
        if not items:
            return None
        report = self._client_report()
        if report is not None:
            items.append(report)
        envelope = Envelope(headers=envelope.headers, items=items)
        try:
            body = envelope.serialize()
        except Exception as error:  # as the SDK's worker, which sends inside capture_internal_exceptions
            sdk_logger.error("Internal error in sentry_sdk: envelope not serialisable: %r", error)
            return None
        headers = self._headers
        if len(body) > COMPRESS_FROM_BYTES:
            import gzip

            body, headers = gzip.compress(body, compresslevel=1), {**headers, "Content-Encoding": "gzip"}
        try:
            connection = self._connection
            if connection is None:
                connection = self._connection = KeptAliveConnection(self._ssl_context())
            answer = connection.request(
                "POST", self._url, headers=headers, timeout=max(deadline - time.monotonic(), 0.0), data=body
            )
        except Exception as error:  # EndpointUnreachable above all; a CA bundle that does not load
            sdk_logger.warning("Sentry unreachable, envelope dropped: %s", error)
            self._lose(envelope.items, "network", "network_error")
            return "network"
        self._handle(answer, envelope.items)
        return f"status_{answer.status}" if answer.status >= 500 else None

    def _allowed(self, items: list[Item]) -> Iterator[Item]:
        now = datetime.now(timezone.utc)
        for item in items:
            category = item.data_category
            until = max(self._disabled_until.get(category) or now, self._disabled_until.get(None) or now)
            if until <= now:
                yield item
                continue
            if category in _EVENT_CATEGORIES:
                self.on_dropped_event("self_rate_limits")
            self.record_lost_event("ratelimit_backoff", item=item)

    def _handle(self, answer: Response, items: list[Item]) -> None:
        """The SDK's handling of an answer (``HttpTransport._handle_response``)."""
        limits = answer.headers.get("x-sentry-rate-limits")
        if limits:
            sdk_logger.warning("Rate-limited via x-sentry-rate-limits")
            self._disabled_until.update(_parse_rate_limits(limits))
        elif answer.status == 429:
            sdk_logger.warning("Rate-limited via 429")
            seconds = retry_after(answer.headers) or _DEFAULT_RETRY_AFTER_S
            self._disabled_until[None] = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        if answer.status == 413:
            sdk_logger.error("HTTP 413: Event dropped due to exceeded envelope size limit (body: %r)", answer.body)
            self._lose(items, "status_413", "send_error")
        elif answer.status == 429:
            self.on_dropped_event("status_429")  # Sentry counted it already: not a lost event of ours
        elif not 200 <= answer.status < 300:
            sdk_logger.error("Unexpected status code: %s (body: %r)", answer.status, answer.body)
            self._lose(items, f"status_{answer.status}", "network_error")

    def _lose(self, items: list[Item], reason: str, record_reason: str) -> None:
        self.on_dropped_event(reason)
        for item in items:
            self.record_lost_event(record_reason, item=item)

    def _client_report(self) -> Item | None:
        """The counts of lost events since the last report, as the SDK sends them (``client_report``)."""
        if not self._discarded or not self.options.get("send_client_reports", True):
            return None
        with self._lock:
            discarded, self._discarded = self._discarded, defaultdict(int)
        counts = [
            {"reason": reason, "category": category, "quantity": quantity}
            for (category, reason), quantity in discarded.items()
        ]
        return Item(PayloadRef(json={"timestamp": time.time(), "discarded_events": counts}), type="client_report")

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self.parsed_dsn is None or self.parsed_dsn.scheme != "https":
            return None
        import ssl

        return ssl.create_default_context(cafile=ca_bundle(self.options))


def _parse_rate_limits(header: str) -> Iterator[tuple[str | None, datetime]]:
    """``X-Sentry-Rate-Limits: <seconds>:<category;category...>:<scope>...`` entries (no category: all)."""
    now = datetime.now(timezone.utc)
    for limit in header.split(","):
        seconds, colon, rest = limit.strip().partition(":")
        if not colon:
            continue
        try:
            until = now + timedelta(seconds=int(seconds))
        except ValueError:
            continue
        categories = rest.split(":", 1)[0]
        for category in categories.split(";") if categories else [None]:
            yield category, until
