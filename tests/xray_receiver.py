"""An X-Ray daemon stand-in on 127.0.0.1 for tests: the real aws-xray-sdk emitter sends, this decodes.

    with XrayReceiver() as receiver:
        recorder.configure(daemon_address=receiver.address)
        ...
        documents = receiver.wait_for(3)

Each UDP datagram of the daemon protocol is a JSON header line, ``{"format":"json","version":1}``,
then one segment or subsegment document. The receiver keeps every document with its size in bytes
(the size X-Ray's 64 KB limit applies to).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Document", "XrayReceiver"]

_HEADER = {"format": "json", "version": 1}


@dataclass(frozen=True)
class Document:
    size: int  # bytes of the document (the datagram without its header line)
    body: dict[str, Any]

    @property
    def is_subsegment(self) -> bool:
        return self.body.get("type") == "subsegment"


class XrayReceiver:
    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.05)
        self.address = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._datagrams: list[bytes] = []
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="xray-receiver", daemon=True)

    def __enter__(self) -> XrayReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running = False
        self._thread.join(timeout=2)
        self._socket.close()

    def _serve(self) -> None:
        while self._running:
            try:
                datagram = self._socket.recv(65536)
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._datagrams.append(datagram)

    @property
    def documents(self) -> list[Document]:
        with self._lock:
            datagrams = list(self._datagrams)
        documents = []
        for datagram in datagrams:
            header, _, body = datagram.partition(b"\n")
            assert json.loads(header) == _HEADER, header
            documents.append(Document(len(body), json.loads(body)))
        return documents

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[Document]:
        """At least ``count`` documents, then whatever else arrives within a short quiet period."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                received = len(self._datagrams)
            if received >= count:
                break
            time.sleep(0.01)
        time.sleep(0.05)
        return self.documents
