"""A moto server on 127.0.0.1 for tests that need real AWS API round trips.

    from moto_server import FAKE_CREDENTIALS, moto_server

    with moto_server() as endpoint_url:
        boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1", **FAKE_CREDENTIALS)

The server binds a free port chosen by the OS. moto keeps its state in process-wide backends shared
by every server in the process, so give resources unique names (``unique_name``) instead of relying
on a fresh server being empty.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer

__all__ = ["FAKE_CREDENTIALS", "FAKE_CREDENTIALS_ENV", "REGION", "moto_server", "unique_name"]

REGION = "us-east-1"
#: Keyword arguments for ``boto3.client(...)``.
FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
#: The same as environment variables (for code that builds its own clients, e.g. the CLI).
FAKE_CREDENTIALS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
_START_TIMEOUT_S = 30.0


@contextmanager
def moto_server(start_timeout_s: float = _START_TIMEOUT_S) -> Iterator[str]:
    """Start moto's ThreadedMotoServer on 127.0.0.1 (free port), yield its endpoint URL, stop it."""
    werkzeug_logger = logging.getLogger("werkzeug")
    previous_level = werkzeug_logger.level
    werkzeug_logger.setLevel(logging.ERROR)  # no access log line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    # ThreadedMotoServer.start() waits without a timeout; bound it.
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(start_timeout_s)
    if starter.is_alive():
        werkzeug_logger.setLevel(previous_level)
        raise RuntimeError(f"moto server did not start within {start_timeout_s} s")
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        werkzeug_logger.setLevel(previous_level)


def unique_name(prefix: str) -> str:
    """A resource name no other test in this process uses (moto state is process-wide)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
