"""The plain-HTTP/1.1 client under our OTLP exporters (``middleware/_http_connection.py``), against raw
sockets on 127.0.0.1: what it sends, how it frames an answer (Content-Length, chunked, until close), when it
keeps the connection, and that a misbehaving collector (silent, trickling, closing, malformed, oversized)
fails a request cleanly (``EndpointUnreachable``) instead of hanging it or filling memory.

Each test scripts a ``RawCollector``: for each connection it accepts, it reads requests and writes the
scripted raw bytes. The exporters over this client meet a real OTLP receiver in tests/test_otlp_lean.py
and tests/test_tracing_transport.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from observed_batch.middleware._http_connection import (
    MAX_BODY_BYTES,
    MAX_HEAD_BYTES,
    EndpointUnreachable,
    KeptAliveConnection,
    Response,
)

#: What a scripted connection does with one request: the bytes to answer, or None to close without a word.
Script = Callable[[int, int], bytes | None]
_HOLD_S = 5.0  # how long a silent collector holds a connection (the client gives up long before)


class RawCollector:
    """A TCP server on 127.0.0.1 answering request ``n`` on connection ``c`` with ``script(c, n)`` (raw
    bytes, sent as they are), ``keep`` requests per connection at most, then closing it."""

    def __init__(self, script: Script, *, keep: int = 10, hold: bool = False) -> None:
        self.script, self.keep, self.hold = script, keep, hold
        self.requests: list[bytes] = []
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="raw-collector", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def __enter__(self) -> RawCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._listener.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.05)
                self._talk(conn, self.connections)

    def _talk(self, conn: socket.socket, number: int) -> None:
        pending = b""
        for n in range(1, self.keep + 1):
            request, pending = _read_request(conn, pending, self._stop)
            if request is None:
                return
            self.requests.append(request)
            answer = self.script(number, n)
            if answer is None:
                return
            if self.hold:  # a trickling collector: a byte at a time, until the client hangs up or we stop
                for byte in answer:
                    if self._stop.wait(0.05) or not _send(conn, bytes([byte])):
                        return
                self._stop.wait(_HOLD_S)
                return
            if not _send(conn, answer):
                return


def _send(conn: socket.socket, data: bytes) -> bool:
    try:
        conn.sendall(data)
    except OSError:
        return False
    return True


def _read_request(conn: socket.socket, pending: bytes, stop: threading.Event) -> tuple[bytes | None, bytes]:
    """One request (head and Content-Length body), or None when the client closed the connection, or did
    not send one within ``_HOLD_S``, or the collector stops."""
    data = pending
    for _ in range(int(_HOLD_S / 0.05)):
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(rest) >= length:
                return head + sep + rest[:length], rest[length:]
        if stop.is_set():
            return None, b""
        try:
            chunk = conn.recv(65536)
        except TimeoutError:  # socket timeout 0.05 s: look at ``stop`` again
            continue
        except OSError:
            return None, b""
        if not chunk:
            return None, b""
        data += chunk
    return None, b""


def ok(body: bytes = b"", *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


def send(collector: RawCollector, connection: KeptAliveConnection, timeout: float = 5.0) -> Response:
    return connection.request(
        "POST", collector.url, headers={"content-type": "application/x-protobuf"}, timeout=timeout, data=b"spans"
    )


@pytest.fixture
def connection() -> Iterator[KeptAliveConnection]:
    kept = KeptAliveConnection()
    yield kept
    kept.close()


def test_the_request_carries_what_http_client_sent(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that answers 200
    with RawCollector(lambda c, n: ok()) as collector:
        # WHEN a request with a query, a header and a body is sent
        answer = connection.request(
            "POST", collector.url + "?tenant=a", headers={"x-team": "orders"}, timeout=5, data=b"spans"
        )

    # THEN the request line, Host, Accept-Encoding, Content-Length, the header and the body went out
    assert answer.status == 200
    assert answer.reason == "OK"
    assert collector.requests == [
        b"POST /v1/traces?tenant=a HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
        b"Accept-Encoding: identity\r\nContent-Length: 5\r\nx-team: orders\r\n\r\nspans" % collector.port
    ]


def test_header_names_are_looked_up_in_any_case(connection: KeptAliveConnection) -> None:
    # GIVEN a collector whose answer spells its headers in capitals, one of them twice
    answer_bytes = ok(b"{}", extra=b"RETRY-AFTER: 3\r\nX-Seen: a\r\nx-seen: b\r\n")
    with RawCollector(lambda c, n: answer_bytes) as collector:
        # WHEN a request is answered
        answer = send(collector, connection)

    # THEN the headers are found in any case, repeated ones joined, and the body read by its length
    assert answer.headers.get("retry-after") == "3"
    assert answer.headers["Retry-After"] == "3"
    assert "x-SEEN" in answer.headers
    assert answer.headers.get("x-seen") == "a, b"
    assert answer.body == b"{}"


def test_a_chunked_answer_is_read_whole_and_the_connection_kept(connection: KeptAliveConnection) -> None:
    # GIVEN a collector answering in chunks (with a chunk extension and a trailer)
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;note=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    with RawCollector(lambda c, n: chunked) as collector:
        # WHEN two requests follow each other
        answers = [send(collector, connection), send(collector, connection)]

    # THEN both bodies are put together from their chunks, on one connection
    assert [a.body for a in answers] == [b"hello world"] * 2
    assert collector.connections == 1


def test_an_interim_100_continue_is_skipped(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that sends a 100 Continue before its answer
    with RawCollector(lambda c, n: b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done")) as collector:
        # WHEN a request is answered
        answer = send(collector, connection)

    # THEN the final answer is the one returned
    assert (answer.status, answer.body) == (200, b"done")


@pytest.mark.parametrize(
    "answer_bytes",
    [
        ok(b"bye", extra=b"Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
        b"HTTP/1.1 200 OK\r\n\r\nbye",  # no length: the body runs to the end of the connection
    ],
    ids=["connection-close", "http-1.0", "until-close"],
)
def test_a_collector_that_closes_gets_a_new_connection_each_time(
    connection: KeptAliveConnection, answer_bytes: bytes
) -> None:
    # GIVEN a collector that closes the connection after each answer, and says so (or means it)
    with RawCollector(lambda c, n: answer_bytes, keep=1) as collector:
        # WHEN two requests follow each other
        answers = [send(collector, connection), send(collector, connection)]

    # THEN both succeed, each on its own connection, none retried
    assert [(a.status, a.body) for a in answers] == [(200, b"bye")] * 2
    assert collector.connections == 2
    assert len(collector.requests) == 2


def test_a_kept_alive_connection_the_collector_closed_is_tried_once_more(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that answers once per connection and then drops it without saying so
    with RawCollector(lambda c, n: ok(b"fine"), keep=1) as collector:
        # WHEN a first request is answered and a second goes out on the (stale) kept-alive connection
        first = send(collector, connection)
        second = send(collector, connection)

    # THEN the second is sent again on a new connection, and succeeds
    assert (first.body, second.body) == (b"fine", b"fine")
    assert collector.connections == 2


def test_a_stale_connection_is_retried_only_once(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that answers the first request of its first connection, then closes every
    # connection without a word
    with RawCollector(lambda c, n: ok() if c == 1 else None, keep=1) as collector:
        send(collector, connection)

        # WHEN a second request goes out on the stale connection
        with pytest.raises(EndpointUnreachable, match="cannot connect"):
            send(collector, connection)

    # THEN it was tried on one new connection only, then failed
    assert collector.connections == 2
    assert len(collector.requests) == 2


def test_a_collector_that_never_answers_fails_the_request_at_its_timeout(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that reads the request and holds the connection, silent
    # WHEN a request with a short timeout is sent
    # THEN it fails as unreachable (no answer), not retried
    with RawCollector(lambda c, n: b"", hold=True) as collector, pytest.raises(EndpointUnreachable, match="no answer"):
        send(collector, connection, timeout=0.3)
    assert collector.connections == 1


def test_a_trickling_collector_cannot_stretch_the_timeout(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that sends its answer a byte at a time, slower than the timeout allows in total
    # (each byte well within it)
    # WHEN a request with a short timeout is sent
    # THEN the whole request is bounded by it: it fails as unreachable
    with (
        RawCollector(lambda c, n: ok(b"x" * 1000), hold=True) as collector,
        pytest.raises(EndpointUnreachable, match="no answer"),
    ):
        send(collector, connection, timeout=0.5)


def test_a_refused_connection_fails_at_once() -> None:
    # GIVEN a port where nothing listens
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        url = f"http://127.0.0.1:{placeholder.getsockname()[1]}/v1/traces"
    connection = KeptAliveConnection()

    # WHEN a request is sent there
    # THEN it fails as unreachable
    with pytest.raises(EndpointUnreachable, match="cannot connect"):
        connection.request("POST", url, headers={}, timeout=5, data=b"")


@pytest.mark.parametrize(
    "answer_bytes",
    [
        b"HTTP/1.1 200 " + b"O" * (MAX_HEAD_BYTES + 10),  # a status line without end
        b"HTTP/1.1 200 OK\r\n"
        + b"".join(b"X-Filler-%d: %b\r\n" % (i, b"f" * 100) for i in range(MAX_HEAD_BYTES // 100)),  # no end
        b"HTCPCP/1.0 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: twelve\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % (MAX_BODY_BYTES + 1),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
    ],
    ids=[
        "endless-status-line",
        "endless-headers",
        "not-http",
        "bad-status-code",
        "header-without-colon",
        "bad-length",
        "conflicting-lengths",
        "body-over-64MiB",
        "bad-chunk-size",
        "chunk-over-64MiB",
        "chunk-without-crlf",
    ],
)
def test_a_malformed_or_oversized_answer_fails_cleanly(connection: KeptAliveConnection, answer_bytes: bytes) -> None:
    # GIVEN a collector whose answer breaks HTTP's grammar or our bounds, then holds the connection open
    # WHEN a request is sent
    # THEN it fails as a bad answer, without waiting for the timeout or reading further, and is not retried
    with RawCollector(lambda c, n: answer_bytes) as collector, pytest.raises(EndpointUnreachable, match="bad answer"):
        send(collector, connection, timeout=30)
    assert collector.connections == 1


def test_a_collector_closing_mid_answer_fails_the_request(connection: KeptAliveConnection) -> None:
    # GIVEN a collector that announces 10 bytes, sends 3 and closes
    # WHEN a request is sent
    # THEN it fails as a bad answer
    with (
        RawCollector(lambda c, n: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", keep=1) as collector,
        pytest.raises(EndpointUnreachable, match="bad answer"),
    ):
        send(collector, connection)


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("http://127.0.0.1:9/v1/traces", {"x-team": "orders\r\nX-Injected: yes"}),
        ("http://127.0.0.1:9/v1/traces", {"bad:name": "x"}),
        ("http://127.0.0.1:9/v1/tra ces", {}),
    ],
    ids=["header-value", "header-name", "target"],
)
def test_a_request_that_would_inject_lines_is_refused_as_http_client_refuses_it(
    url: str, headers: dict[str, str]
) -> None:
    # GIVEN a header value, header name or target that would break the request into other lines
    # WHEN it is sent
    # THEN it is refused before any connection (ValueError, as http.client raises)
    with pytest.raises(ValueError, match=r"Invalid header|control characters"):
        KeptAliveConnection().request("POST", url, headers=headers, timeout=5, data=b"")


def test_an_https_url_needs_the_callers_tls_context() -> None:
    # GIVEN a connection built without an ssl_context (this module never imports ssl itself)
    connection = KeptAliveConnection()

    # WHEN it is asked for an https URL
    # THEN it refuses before connecting, instead of speaking plain HTTP to a TLS port
    with pytest.raises(ValueError, match="ssl_context"):
        connection.request("POST", "https://127.0.0.1:9/v1/traces", headers={}, timeout=1.0, data=b"")
