"""A Sentry ingestion endpoint on 127.0.0.1 for tests: the real sentry-sdk sends, this keeps what arrived.

    with SentryReceiver() as receiver:
        sentry_sdk.init(dsn=receiver.dsn)
        ...
        events = receiver.wait_for_events(3)

Accepts envelopes at ``/api/<project>/envelope/`` (gzip, brotli when the ``brotli`` package is
installed, or uncompressed). ``mode="hang"`` accepts connections and never answers, to test what an
unreachable Sentry costs; ``refused_dsn()`` names a port where nothing listens. ``headers`` are sent with
every answer (rate limits: ``X-Sentry-Rate-Limits``, ``Retry-After``); ``request_headers`` keeps each
request's. With ``ssl_context`` (a server context: ``tls_context()``) it speaks HTTPS and its DSN is https.

``python tests/sentry_receiver.py`` runs one in its own process (benchmarks: the server must not
compete with the measured code for the GIL): it prints its DSN, serves ``GET /stats`` (counts) and
stops when its stdin closes.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
import threading
from typing import Any, Literal

from loopback_http import LoopbackServer, QuietHandler, unused_port

__all__ = [
    "Envelope",
    "SentryReceiver",
    "refused_dsn",
    "reset_sentry",
]

_ENVELOPE_PATH = re.compile(r"^/api/(?P<project>[^/]+)/envelope/?$")
#: How long a hanging request is held at most, so a forgotten receiver cannot block a test run.
_HANG_LIMIT_S = 60.0


class Envelope:
    """One parsed envelope: its header and ``(item_header, payload)`` items (JSON payloads decoded)."""

    def __init__(self, project: str, raw: bytes) -> None:
        self.project = project
        self.raw = raw
        self.header: dict[str, Any] = {}
        self.items: list[tuple[dict[str, Any], Any]] = []
        self._parse(raw)

    def _parse(self, raw: bytes) -> None:
        header_line, _, rest = raw.partition(b"\n")
        self.header = json.loads(header_line) if header_line.strip() else {}
        position = 0
        while position < len(rest):
            end = rest.find(b"\n", position)
            if end < 0:
                end = len(rest)
            line = rest[position:end]
            position = end + 1
            if not line.strip():
                continue
            item_header = json.loads(line)
            length = item_header.get("length")
            if length is None:
                stop = rest.find(b"\n", position)
                stop = len(rest) if stop < 0 else stop
                payload, position = rest[position:stop], stop + 1
            else:
                payload, position = rest[position : position + length], position + length + 1
            content_type = item_header.get("content_type", "application/json")
            if item_header.get("type") in ("event", "transaction", "client_report", "session") or (
                content_type == "application/json"
            ):
                self.items.append((item_header, json.loads(payload)))
            else:
                self.items.append((item_header, payload))

    def payloads(self, item_type: str) -> list[Any]:
        return [payload for header, payload in self.items if header.get("type") == item_type]


def _decompress(body: bytes, encoding: str) -> bytes | None:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        try:
            import brotli
        except ImportError:
            return None
        result: bytes = brotli.decompress(body)
        return result
    return None


class SentryReceiver(LoopbackServer):
    """A threaded HTTP server on 127.0.0.1 (random port) that stores the envelopes it receives."""

    def __init__(
        self,
        mode: Literal["ok", "hang"] = "ok",
        status: int = 200,
        port: int = 0,
        headers: dict[str, str] | None = None,
        ssl_context: Any = None,
    ) -> None:
        self.mode = mode
        self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.tls = ssl_context is not None
        self.request_headers: list[dict[str, str]] = []
        self.envelopes: list[Envelope] = []
        self.requests = 0
        self._condition = threading.Condition()
        self._stopping = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            content_type = "application/json"
            default_payload = b"{}"
            # Headers and body go out in separate writes: without this, delayed ACKs stall each reply ~40 ms.
            disable_nagle_algorithm = True

            def reply_headers(self) -> dict[str, str]:
                return receiver.headers

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._condition:
                    receiver.request_headers.append(dict(self.headers.items()))
                    receiver.requests += 1
                    receiver._condition.notify_all()
                if receiver.mode == "hang":
                    receiver._stopping.wait(_HANG_LIMIT_S)
                    self.close_connection = True
                    return
                match = _ENVELOPE_PATH.match(self.path.split("?", 1)[0])
                if match is None:
                    self._reply(404)
                    return
                data = _decompress(body, self.headers.get("Content-Encoding", ""))
                if data is None:
                    self._reply(415)
                    return
                envelope = Envelope(match.group("project"), data)
                with receiver._condition:
                    receiver.envelopes.append(envelope)
                    receiver._condition.notify_all()
                self._reply(receiver.status)

            def do_GET(self) -> None:
                if self.path != "/stats":
                    self._reply(404)
                    return
                with receiver._condition:
                    stats = {"requests": receiver.requests, "events": len(receiver._event_payloads())}
                self._reply(200, json.dumps(stats).encode())

        super().__init__(Handler, name="sentry-receiver", port=port, ssl_context=ssl_context)

    @property
    def dsn(self) -> str:
        return f"{'https' if self.tls else 'http'}://key@127.0.0.1:{self.port}/1"

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    # -- reading what arrived -------------------------------------------------------------------
    def events(self) -> list[dict[str, Any]]:
        """Error/message events received so far (transactions, sessions and client reports excluded)."""
        with self._condition:
            return self._event_payloads()

    def raw_bodies(self) -> list[bytes]:
        """Every decompressed envelope as received, for "this string never left" assertions."""
        with self._condition:
            return [envelope.raw for envelope in self.envelopes]

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events arrived (or ``timeout`` seconds passed); return all."""
        with self._condition:
            self._condition.wait_for(lambda: len(self._event_payloads()) >= count, timeout)
            return self._event_payloads()

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> int:
        with self._condition:
            self._condition.wait_for(lambda: self.requests >= count, timeout)
            return self.requests

    def _event_payloads(self) -> list[dict[str, Any]]:
        return [payload for envelope in self.envelopes for payload in envelope.payloads("event")]


def reset_sentry() -> None:
    """sentry_sdk keeps its client and scopes in process globals: no client, empty scopes."""
    import sentry_sdk

    sentry_sdk.get_client().close(timeout=0)
    # Through Scope: sentry-sdk before 2.11 (the floor is 2.0) has no module-level scope getters.
    sentry_sdk.Scope.get_global_scope().set_client(None)
    for scope in (
        sentry_sdk.Scope.get_global_scope(),
        sentry_sdk.Scope.get_isolation_scope(),
        sentry_sdk.Scope.get_current_scope(),
    ):
        scope.clear()


def refused_dsn() -> str:
    """A DSN whose port has no listener (bound then closed), so connections are refused at once."""
    return f"http://key@127.0.0.1:{unused_port()}/1"


if __name__ == "__main__":
    with SentryReceiver() as standalone:
        print(standalone.dsn, flush=True)
        sys.stdin.read()
