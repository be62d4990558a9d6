"""One kept-alive HTTP/1.1 connection (plain, or TLS with the caller's ``ssl.SSLContext``) over ``socket``,
failing fast when the other end is dead.

A refused connection, a failed TLS handshake or a timeout raises ``EndpointUnreachable`` at once: a dead
collector or Sentry costs an invocation milliseconds and opens the breaker, instead of a client's retries
with backoff. A kept-alive connection the server closed meanwhile (stale) is tried once more on a new one,
as ``requests``' pool does. Used by the lean OTLP exporter (``_otlp_lean``) and, under OTel's
``OTLPSpanExporter``, by the transport of ``_otel_compat`` (plain HTTP), and by the lean Sentry transport
(``_sentry_transport``, plain HTTP or HTTPS).

Why not ``http.client``: importing it loads the ``email`` package and ``ssl`` (~9 ms of a cold start, even
with ``ssl`` already loaded by Powertools' ``asyncio``). This module never imports ``ssl``: a caller that
speaks HTTPS passes the context it built. It sends what ``http.client`` sent (request line, ``Host``,
``Accept-Encoding: identity``, ``Content-Length``, the caller's headers, the body) and reads an answer
framed by ``Content-Length``, chunked transfer-encoding or the end of the connection. Every wait is
bounded: the whole request (connection, TLS handshake included) by its timeout (not each ``recv``: a
trickling server cannot stretch it), the status line and headers to 64 KiB, the body to 64 MiB (the lean
exporter's request limit). An answer that breaks those bounds or HTTP's grammar fails the request
(``EndpointUnreachable``), not retried.
"""

from __future__ import annotations

import math
import re
import socket
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import ssl

__all__ = ["EndpointUnreachable", "KeptAliveConnection", "Response", "retry_after"]

#: The status line and headers of one answer, together (``http.client``: 64 KiB a line, 100 lines).
MAX_HEAD_BYTES = 64 * 1024
#: An answer's body (a collector's is a few bytes: an OTLP partial-success message at most).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Without a timeout from the caller (OTel's exporter always gives one): OTel's default.
DEFAULT_TIMEOUT_S = 10.0
_RECV_BYTES = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: As ``http.client`` refuses them: control characters and spaces in the target, line breaks in headers.
_BAD_TARGET = re.compile("[\x00-\x20\x7f]")
_BAD_HEADER_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])")
_LEGAL_HEADER_NAME = re.compile(r"[^:\s][^:\r\n]*")


class EndpointUnreachable(Exception):
    """The server refused the connection, failed the TLS handshake or did not answer in time: not worth
    a client's retries."""


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


#: (scheme, host, port) of a request: the kept-alive connection serves one origin.
_Origin = tuple[str, "str | None", "int | None"]


class KeptAliveConnection:
    """HTTP over one kept-alive connection, one request at a time (a sender sends from one thread).

    ``https://`` URLs need ``ssl_context`` (the caller's: CA bundle, verification), used with the URL's
    host name for SNI and certificate checks; without one they are refused (``ValueError``).
    """

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._lock = threading.Lock()
        self._ssl_context = ssl_context
        self._socket: socket.socket | None = None
        self._origin: _Origin | None = None

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str], timeout: float | None, data: bytes | None
    ) -> Response:
        """The collector's answer, whatever its status; ``EndpointUnreachable`` when there is none."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        scheme = parts.scheme.lower()
        if scheme == "https" and self._ssl_context is None:
            raise ValueError(f"{url}: an https URL needs the connection's ssl_context")
        origin: _Origin = (scheme, parts.hostname, parts.port)
        head = _request_head(method, target, origin, headers, data)
        deadline = time.monotonic() + (DEFAULT_TIMEOUT_S if timeout is None else timeout)
        with self._lock:
            reused = self._socket is not None and self._origin == origin
            for attempt in (1, 2):
                try:
                    return self._exchange(origin, head, data, deadline)
                except TimeoutError as exc:
                    self.close()
                    raise EndpointUnreachable(f"no answer from {url} ({type(exc).__name__})") from None
                except _BadAnswer as exc:
                    self.close()
                    raise EndpointUnreachable(f"bad answer from {url} ({exc})") from None
                except OSError as exc:
                    self.close()
                    # A kept-alive connection the collector closed: one more try on a new one.
                    if not reused or attempt == 2:
                        raise EndpointUnreachable(f"cannot connect to {url} ({type(exc).__name__})") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, origin: _Origin, head: bytes, data: bytes | None, deadline: float) -> Response:
        sock = self._socket
        if sock is None or self._origin != origin:
            self.close()
            scheme, host = origin[0], origin[1] or "localhost"
            sock = self._socket = socket.create_connection(
                (host, origin[2] or _DEFAULT_PORTS.get(scheme, 80)), timeout=_remaining(deadline)
            )
            self._origin = origin
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client does
            if scheme == "https" and self._ssl_context is not None:
                # The handshake waits within the request's deadline (the socket's timeout).
                sock.settimeout(_remaining(deadline))
                sock = self._socket = self._ssl_context.wrap_socket(sock, server_hostname=host)
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
    origin: _Origin,
    headers: Mapping[str, str],
    data: bytes | None,
) -> bytes:
    """The request line and headers, as ``http.client`` writes them (``ValueError`` where it raises)."""
    if _BAD_TARGET.search(target) or _BAD_TARGET.search(method):
        raise ValueError(f"URL can't contain control characters: {target!r}")
    given = {name.lower() for name in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        host = origin[1] or "localhost"
        host = f"[{host}]" if ":" in host else host
        default = (None, _DEFAULT_PORTS.get(origin[0], 80))
        lines.append(f"Host: {host}" if origin[2] in default else f"Host: {host}:{origin[2]}")
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


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds (a number, or an HTTP date, as urllib3 and OTel read it)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    from datetime import timezone
    from email.utils import parsedate_to_datetime

    try:
        retry_at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if retry_at.tzinfo is None:
        retry_at = retry_at.replace(tzinfo=timezone.utc)
    return max(retry_at.timestamp() - time.time(), 0.0)
