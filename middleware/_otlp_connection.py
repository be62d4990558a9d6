"""One kept-alive plain-HTTP/1.1 connection to an OTLP collector, over ``socket``, failing fast when it is dead.

A refused connection or a timeout raises ``CollectorUnreachable`` at once: a dead collector costs an
invocation milliseconds and opens the breaker, instead of an exporter's retries with backoff. A
kept-alive connection the collector closed meanwhile (stale) is tried once more on a new one, as
``requests``' pool does. Used by the lean exporter (``_otlp_lean``) and, under OTel's ``OTLPSpanExporter``,
by the transport of ``_otel_compat``.

Why not ``http.client``: importing it loads the ``email`` package and ``ssl`` (~9 ms of a cold start, even
with ``ssl`` already loaded by Powertools' ``asyncio``), for a client that only ever speaks plain HTTP to a
collector. This one sends what ``http.client`` sent (request line, ``Host``, ``Accept-Encoding: identity``,
``Content-Length``, the caller's headers, the body) and reads an answer framed by ``Content-Length``,
chunked transfer-encoding or the end of the connection. Every read is bounded: the whole request by its
timeout (not each ``recv``: a trickling collector cannot stretch it), the status line and headers to
64 KiB, the body to 64 MiB (the lean exporter's request limit). An answer that breaks those bounds or
HTTP's grammar fails the request (``CollectorUnreachable``), not retried.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["CollectorUnreachable", "KeptAliveConnection", "Response"]

#: The status line and headers of one answer, together (``http.client``: 64 KiB a line, 100 lines).
MAX_HEAD_BYTES = 64 * 1024
#: An answer's body (a collector's is a few bytes: an OTLP partial-success message at most).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Without a timeout from the caller (OTel's exporter always gives one): OTel's default.
DEFAULT_TIMEOUT_S = 10.0
_RECV_BYTES = 64 * 1024
#: As ``http.client`` refuses them: control characters and spaces in the target, line breaks in headers.
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")
_BAD_HEADER_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])")
_LEGAL_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")


class CollectorUnreachable(Exception):
    """The collector refused the connection or did not answer in time: not worth an exporter's retries."""


class _BadAnswer(Exception):
    """The collector's answer breaks HTTP's grammar or our bounds: the request fails, not retried."""


class Response:
    """The collector's answer. (A plain class: a dataclass would cost a cold start more than this module.)"""

    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, body: bytes, headers: Mapping[str, str]) -> None:
        self.status, self.reason, self.body, self.headers = status, reason, body, headers


class Headers(dict[str, str]):
    """Response headers, looked up case-insensitively (keys are stored lower-cased; repeated headers
    are joined with ``", "``)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)


class KeptAliveConnection:
    """Plain HTTP over one kept-alive connection, one request at a time (an exporter sends from one thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._origin: tuple[str | None, int | None] | None = None

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float | None, data: bytes | None
    ) -> Response:
        """The collector's answer, whatever its status; ``CollectorUnreachable`` when there is none."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        origin = (parts.hostname, parts.port)
        head = _request_head(method, target, origin, headers, data)
        deadline = time.monotonic() + (DEFAULT_TIMEOUT_S if timeout is None else timeout)
        with self._lock:
            reused = self._socket is not None and self._origin == origin
            for attempt in (1, 2):
                try:
                    return self._exchange(origin, head, data, deadline)
                except TimeoutError as exc:
                    self.close()
                    raise CollectorUnreachable(f"no answer from {url} ({type(exc).__name__})") from None
                except _BadAnswer as exc:
                    self.close()
                    raise CollectorUnreachable(f"bad answer from {url} ({exc})") from None
                except OSError as exc:
                    self.close()
                    # A kept-alive connection the collector closed: one more try on a new one.
                    if not reused or attempt == 2:
                        raise CollectorUnreachable(f"cannot connect to {url} ({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(
        self, origin: tuple[str | None, int | None], head: bytes, data: bytes | None, deadline: float
    ) -> Response:
        sock = self._socket
        if sock is None or self._origin != origin:
            self.close()
            sock = self._socket = socket.create_connection(
                (origin[0] or "localhost", origin[1] or 80), timeout=_remaining(deadline)
            )
            self._origin = origin
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client does
        sock.settimeout(_remaining(deadline))
        if data and len(data) > _RECV_BYTES:
            sock.sendall(head)
            sock.settimeout(_remaining(deadline))
            sock.sendall(data)
        else:
            sock.sendall(head + data if data else head)
        reader = _Reader(sock, deadline)
        response, keep_alive = reader.response()
        if not keep_alive or reader.buffer:  # closing, or sent more than it framed: not reusable
            self.close()
        return response

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = self._origin = None


def _request_head(
    method: str,
    target: str,
    origin: tuple[str | None, int | None],
    headers: Mapping[str, str],
    data: bytes | None,
) -> bytes:
    """The request line and headers, as ``http.client`` writes them (``ValueError`` where it raises)."""
    if _BAD_TARGET.search(target) or _BAD_TARGET.search(method):
        raise ValueError(f"URL can't contain control characters: {target!r}")
    given = {name.lower() for name in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        host = origin[0] or "localhost"
        host = f"[{host}]" if ":" in host else host
        lines.append(f"Host: {host}" if origin[1] in (None, 80) else f"Host: {host}:{origin[1]}")
    if "accept-encoding" not in given:
        lines.append("Accept-Encoding: identity")
    framed = "content-length" in given or "transfer-encoding" in given
    if not framed and (data is not None or method.upper() in ("POST", "PUT", "PATCH")):
        lines.append(f"Content-Length: {len(data or b'')}")
    for name, value in headers.items():
        if not _LEGAL_HEADER_NAME.fullmatch(name):
            raise ValueError(f"Invalid header name {name!r}")
        if _BAD_HEADER_VALUE.search(value):
            raise ValueError(f"Invalid header value {value!r}")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline``; ``TimeoutError`` when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class _Reader:
    """One answer from a socket, every ``recv`` within the request's deadline."""

    __slots__ = ("buffer", "deadline", "head_left", "sock")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline, self.buffer, self.head_left = sock, deadline, bytearray(), MAX_HEAD_BYTES

    def response(self) -> tuple[Response, bool]:
        """The answer, and whether the connection stays open after it."""
        status_line = self._line(first=True)
        while True:
            version, status, reason = _status(status_line)
            headers = self._headers()
            if not 100 <= status < 200 or status == 101:
                break
            status_line = self._line()  # an interim answer (100 Continue): the real one follows
        connection = {token.strip().lower() for token in (headers.get("connection") or "").split(",")}
        keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
        if status in (204, 304) or 100 <= status < 200:
            return Response(status, reason, b"", headers), keep_alive
        codings = headers.get("transfer-encoding")
        if codings is not None:
            if codings.rsplit(",", 1)[-1].strip().lower() != "chunked":
                return Response(status, reason, self._until_close(), headers), False
            return Response(status, reason, self._chunked(), headers), keep_alive
        length = headers.get("content-length")
        if length is None:
            return Response(status, reason, self._until_close(), headers), False
        return Response(status, reason, self._exactly(_content_length(length)), headers), keep_alive

    def _fill(self) -> bool:
        """More bytes into the buffer; False when the collector closed the connection."""
        self.sock.settimeout(_remaining(self.deadline))
        chunk = self.sock.recv(_RECV_BYTES)
        self.buffer += chunk
        return bool(chunk)

    def _line(self, *, first: bool = False) -> bytes:
        """One line of the head (status line, header, chunk size, trailer), within the head's budget."""
        while True:
            end = self.buffer.find(b"\n", 0, self.head_left)
            if end >= 0:
                line = bytes(self.buffer[: end + 1])
                del self.buffer[: end + 1]
                self.head_left -= end + 1
                return line
            if len(self.buffer) >= self.head_left:
                raise _BadAnswer("head too long")
            if not self._fill():
                if first and not self.buffer:  # nothing at all: a stale kept-alive connection
                    raise ConnectionResetError("closed before answering")
                raise _BadAnswer("closed mid-answer")

    def _headers(self) -> Headers:
        headers = Headers()
        last = ""
        while True:
            line = self._line().decode("latin-1").rstrip("\r\n")
            if not line:
                return headers
            if line[0] in " \t" and last:  # an obsolete folded continuation
                headers[last] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadAnswer(f"malformed header {line[:40]!r}")
            last = name.lower()
            value = value.strip()
            headers[last] = f"{headers[last]}, {value}" if last in headers else value

    def _exactly(self, size: int) -> bytes:
        if size > MAX_BODY_BYTES:
            raise _BadAnswer(f"body of {size} bytes")
        while len(self.buffer) < size:
            if not self._fill():
                raise _BadAnswer("closed mid-body")
        body = bytes(self.buffer[:size])
        del self.buffer[:size]
        return body

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_field = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_field, 16)
            except ValueError:
                raise _BadAnswer(f"malformed chunk size {size_field[:20]!r}") from None
            if size < 0 or len(body) + size > MAX_BODY_BYTES:
                raise _BadAnswer("chunked body too large" if size >= 0 else "negative chunk size")
            if size == 0:
                while self._line().strip():  # trailers, up to the empty line
                    pass
                return bytes(body)
            body += self._exactly(size)
            if self._line().strip():
                raise _BadAnswer("chunk not followed by CRLF")

    def _until_close(self) -> bytes:
        while self._fill():
            if len(self.buffer) > MAX_BODY_BYTES:
                raise _BadAnswer("body too large")
        body = bytes(self.buffer)
        self.buffer.clear()
        return body


def _status(line: bytes) -> tuple[str, int, str]:
    """Version, status and reason of a status line (``HTTP/1.1 200 OK``)."""
    version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
    code, _, reason = rest.partition(" ")
    if version not in ("HTTP/1.0", "HTTP/1.1") or len(code) != 3 or not code.isdigit():
        raise _BadAnswer(f"malformed status line {line[:40]!r}")
    return version, int(code), reason.strip()


def _content_length(value: str) -> int:
    # Repeated Content-Length headers were joined: they must agree.
    values = {part.strip() for part in value.split(",")}
    if len(values) != 1 or not (only := values.pop()).isdigit():
        raise _BadAnswer(f"malformed Content-Length {value[:40]!r}")
    return int(only)
