"""The breaker's states and lines, and the deadline budget a batch hands its middlewares."""

from __future__ import annotations

import logging

import pytest

from observed_batch import BatchContext, EventType
from observed_batch.breaker import Breaker
from observed_batch.testing import FakeLambdaContext
from observed_batch.typing import DEADLINE_RESERVE_MS


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "observed_batch" and r.levelno >= logging.WARNING]


def test_a_failure_opens_the_breaker_for_the_base_backoff_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a closed breaker
    clock = Clock()
    breaker = Breaker("otel", base_s=30, max_s=300, clock=clock)
    assert not breaker.is_open

    # WHEN its backend fails twice in one flush
    breaker.failed("connection refused")
    breaker.failed("connection refused")

    # THEN it is open for 30 s, and said so once
    assert breaker.is_open
    assert breaker.backoff_s == 30
    clock.now = 29.9
    assert breaker.is_open
    clock.now = 30.0
    assert not breaker.is_open
    (line,) = warnings(caplog)
    assert "otel backend unavailable (connection refused)" in line


def test_each_failed_trial_doubles_the_backoff_up_to_the_maximum(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an open breaker
    clock = Clock()
    breaker = Breaker("sentry", base_s=30, max_s=100, clock=clock)
    breaker.failed("timeout")

    # WHEN each trial after the backoff fails again
    backoffs = []
    for _ in range(3):
        clock.now += breaker.backoff_s
        assert not breaker.is_open
        breaker.failed("timeout")
        backoffs.append(breaker.backoff_s)

    # THEN the backoff doubles up to the maximum, without further warnings
    assert backoffs == [60, 100, 100]
    assert len(warnings(caplog)) == 1
    assert breaker.failures == 4


def test_a_successful_trial_closes_the_breaker_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an open breaker whose backoff has passed
    clock = Clock()
    breaker = Breaker("otel", base_s=30, clock=clock)
    breaker.failed("timeout")
    clock.now = 31

    # WHEN the trial succeeds (and later exports succeed too)
    breaker.succeeded()
    breaker.succeeded()

    # THEN it is closed, said so once, and the next failure starts from the base backoff again
    assert not breaker.is_open
    assert breaker.backoff_s == 0
    assert "otel backend reachable again" in warnings(caplog)[-1]
    assert len(warnings(caplog)) == 2
    breaker.failed("timeout")
    assert breaker.backoff_s == 30


def test_drops_are_counted() -> None:
    breaker = Breaker("otel")
    breaker.drop(3)
    breaker.drop(2)
    assert breaker.dropped == 5


# -- the budget ------------------------------------------------------------------------------------------
def batch_with(remaining_ms: int | None) -> BatchContext:
    context = None if remaining_ms is None else FakeLambdaContext(remaining=lambda: remaining_ms)
    return BatchContext(EventType.SQS, [], context)


def test_without_a_lambda_context_a_wait_gets_its_configured_timeout() -> None:
    batch = batch_with(None)
    assert batch.time_left_ms() is None
    assert batch.wait_budget_s(2000) == 2.0


def test_a_wait_never_reaches_into_the_reserve_before_the_deadline() -> None:
    # GIVEN 1.2 s left on the Lambda context
    batch = batch_with(1200)

    # THEN a 2 s flush may wait what is left minus the reserve, a short one its own timeout
    assert DEADLINE_RESERVE_MS == 500
    assert batch.time_left_ms() == 700
    assert batch.wait_budget_s(2000) == 0.7
    assert batch.wait_budget_s(300) == 0.3


def test_with_less_than_the_reserve_left_nothing_waits() -> None:
    batch = batch_with(300)
    assert batch.time_left_ms() == 0
    assert batch.wait_budget_s(2000) == 0.0
