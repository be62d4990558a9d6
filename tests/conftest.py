"""Shared fixtures. Every test starts from a clean observed_batch / Powertools environment."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# Tests never assert timing (benchmarks do): no hypothesis deadline, which fails examples on a loaded machine.
settings.register_profile("observed_batch", deadline=None)
settings.load_profile("observed_batch")

_PREFIXES = ("OBSERVED_BATCH_", "POWERTOOLS_", "SENTRY_", "OTEL_", "LOG_LEVEL", "AWS_LAMBDA_", "LAMBDA_TASK_ROOT")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for variable in list(os.environ):
        if variable.startswith(_PREFIXES):
            monkeypatch.delenv(variable)
    yield
    # stdlib_interop installs a JSON handler on the root logger (once per process, as in Lambda): not across tests.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if type(h).__name__ == "_JsonStdoutHandler"]:
        root.removeHandler(handler)
    # Examples and tests may configure structlog globally (as users do); never leak it to the next test.
    if "structlog" in sys.modules:
        import structlog

        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()


@pytest.fixture
def clean_sentry() -> Iterator[None]:
    """For tests that initialise Sentry: every one starts and ends without a client or scope data."""
    from sentry_receiver import reset_sentry

    reset_sentry()
    yield
    reset_sentry()


@pytest.fixture
def sentry_receiver(clean_sentry: None) -> Iterator[Any]:
    """A Sentry receiver on 127.0.0.1 (``tests/sentry_receiver.py``), in a test that starts and ends without a
    Sentry client."""
    from sentry_receiver import SentryReceiver

    with SentryReceiver() as running:
        yield running


# -- moto (one server per test module that asks for it; moto is imported only then) ------------------
@pytest.fixture(scope="module")
def endpoint_url() -> Iterator[str]:
    from moto_server import moto_server

    with moto_server() as url:
        yield url


def _client(service: str, endpoint_url: str) -> Any:
    import boto3
    from moto_server import FAKE_CREDENTIALS, REGION

    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION, **FAKE_CREDENTIALS)


@pytest.fixture(scope="module")
def sqs(endpoint_url: str) -> Any:
    return _client("sqs", endpoint_url)


@pytest.fixture(scope="module")
def kinesis(endpoint_url: str) -> Any:
    return _client("kinesis", endpoint_url)
