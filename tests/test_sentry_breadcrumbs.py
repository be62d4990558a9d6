"""Which breadcrumbs a failed record's event carries when a sync batch isolates records without a per-record
hook (``middleware/_sentry_compat.RecordBreadcrumbs``): exactly those recorded while that record ran, never
another record's or another invocation's, also when other middlewares record some between records or user
code replaces the scope's buffer. Real sentry_sdk, events read back from the local receiver."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from record_hook import counting_record_hooks
from sentry_receiver import SentryReceiver

import observed_batch as ob
from observed_batch import BatchContext, Middleware, RecordContext, driver
from observed_batch.middleware import SentryMiddleware
from observed_batch.testing import FakeLambdaContext, sqs_event


@pytest.fixture(autouse=True)
def _sentry_state(clean_sentry: None) -> None:
    """Every test here starts and ends without a Sentry client (see conftest.clean_sentry)."""


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver() as running:
        sentry_sdk.init(dsn=running.dsn, default_integrations=False, max_breadcrumbs=3)
        yield running


def crumb(message: str) -> None:
    sentry_sdk.add_breadcrumb(message=message, category="test")


def handler(record: Any) -> str:
    """Body ``"name:n[:fail]"``: records ``n`` breadcrumbs ``name.0`` ... before it returns or raises."""
    name, count, *fail = record.body.split(":")
    for i in range(int(count)):
        crumb(f"{name}.{i}")
    if fail:
        raise ValueError(name)
    return str(name)


def run(bodies: list[str], middleware: list[Middleware] | None = None, on_record: Any = handler) -> Any:
    processor = ob.BatchProcessor(
        ob.EventType.SQS, middleware=middleware or [SentryMiddleware()], raise_on_entire_batch_failure=False
    )
    event = sqs_event(len(bodies), body=lambda i: bodies[i])
    return ob.process_partial_response(event, on_record, processor, FakeLambdaContext())


def crumbs_by_failure(receiver: SentryReceiver, count: int) -> dict[str, list[str]]:
    sentry_sdk.flush(timeout=5.0)
    events = receiver.wait_for_events(count)
    assert len(receiver.events()) == count
    return {
        e["exception"]["values"][-1]["value"]: [c["message"] for c in e.get("breadcrumbs", {}).get("values", [])]
        for e in events
    }


class Between(Middleware):
    """Records a breadcrumb at batch start and after each record (outside ``sentry``: after its capture)."""

    name = "between"

    def on_batch_start(self, batch: BatchContext) -> None:
        crumb("batch start")

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        crumb(f"before {record.index}")
        yield
        crumb(f"after {record.index}")


def test_a_failed_records_event_carries_exactly_the_breadcrumbs_of_its_own_run(receiver: SentryReceiver) -> None:
    # GIVEN the application's Sentry (max_breadcrumbs=3), a breadcrumb of an earlier invocation and one recorded
    # between invocations
    run(["old:2:fail"])
    crumb("between invocations")

    # WHEN a batch runs: successes and failures with and without breadcrumbs of their own
    run(["a:2", "b:1:fail", "c:0:fail", "d:2", "e:0", "f:3:fail"])

    # THEN each failed record's event has the breadcrumbs its handler recorded before raising, and nothing else
    crumbs = crumbs_by_failure(receiver, 4)
    assert crumbs["b"] == ["b.0"]
    assert crumbs["c"] == []
    assert crumbs["f"] == ["f.0", "f.1", "f.2"]


def test_breadcrumbs_recorded_between_records_reach_no_later_records_event(receiver: SentryReceiver) -> None:
    # GIVEN a middleware outside sentry that records breadcrumbs at batch start and before and after each record
    middleware: list[Middleware] = [Between(), SentryMiddleware()]

    # WHEN records fail right after records that succeeded or failed
    run(["a:1", "b:0:fail", "c:1:fail", "d:0:fail"], middleware)

    # THEN each event has the breadcrumbs recorded while its record ran (the outer middleware's before-phase
    # included), never what was recorded at batch start or after an earlier record
    crumbs = crumbs_by_failure(receiver, 3)
    assert crumbs == {"b": ["before 1"], "c": ["before 2", "c.0"], "d": ["before 3"]}


def test_an_event_the_handler_captures_itself_carries_no_earlier_records_breadcrumbs(
    receiver: SentryReceiver,
) -> None:
    # GIVEN a handler that captures a message of its own (its record has recorded no breadcrumb yet)
    def capturing(record: Any) -> str:
        if record.body == "report":
            sentry_sdk.capture_message("report")
            return "reported"
        return handler(record)

    # WHEN it runs after a record that left breadcrumbs
    run(["a:2", "report"], on_record=capturing)
    sentry_sdk.flush(timeout=5.0)

    # THEN that event carries none of them
    (event,) = receiver.wait_for_events(1)
    assert event["message"] == "report" or event.get("logentry", {}).get("message") == "report"
    assert event.get("breadcrumbs", {}).get("values", []) == []


def test_the_truncated_breadcrumb_count_is_the_failed_records_own(receiver: SentryReceiver) -> None:
    # GIVEN max_breadcrumbs=3 WHEN a record past the limit succeeds, then one within it fails, then one past it
    run(["a:5", "b:1:fail", "c:5:fail"])

    # THEN b's event reports no truncation (a's does not carry over); c's reports its own original count
    sentry_sdk.flush(timeout=5.0)
    events = {e["exception"]["values"][-1]["value"]: e for e in receiver.wait_for_events(2)}
    assert [c["message"] for c in events["b"]["breadcrumbs"]["values"]] == ["b.0"]
    assert "breadcrumbs" not in events["b"].get("_meta", {})
    assert [c["message"] for c in events["c"]["breadcrumbs"]["values"]] == ["c.2", "c.3", "c.4"]
    if hasattr(sentry_sdk.Scope(), "_n_breadcrumbs_truncated"):  # the SDKs that count them (not 2.0.0)
        assert events["c"]["_meta"]["breadcrumbs"][""]["len"] == 5


def test_a_handler_that_clears_the_scopes_breadcrumbs_makes_the_next_event_carry_none(
    receiver: SentryReceiver,
) -> None:
    # GIVEN a handler that clears the isolation scope's breadcrumbs (the buffer becomes a plain one)
    def clearing(record: Any) -> str:
        if record.body == "clear":
            crumb("before clear")
            sentry_sdk.Scope.get_isolation_scope().clear_breadcrumbs()
            crumb("after clear")
            return "cleared"
        return handler(record)

    # WHEN records run after it: a success, a failure, then another failure
    run(["clear", "a:1", "b:1:fail", "c:1:fail"], on_record=clearing)

    # THEN the first failure's event carries no breadcrumbs (the buffer may hold other records'), and the next
    # one is exact again
    crumbs = crumbs_by_failure(receiver, 2)
    assert crumbs == {"b": [], "c": ["c.0"]}


def test_an_isolation_scope_the_handler_forks_keeps_its_breadcrumbs(receiver: SentryReceiver) -> None:
    # GIVEN a handler that records breadcrumbs inside an isolation scope of its own, and outside it
    def forking(record: Any) -> str:
        crumb("outside before")
        with sentry_sdk.isolation_scope():
            crumb("inside")
        crumb("outside after")
        raise ValueError(record.body)

    # WHEN two records fail
    run(["a", "b"], on_record=forking)

    # THEN each event has the breadcrumbs recorded in the batch's scope while it ran
    crumbs = crumbs_by_failure(receiver, 2)
    assert crumbs == {"a": ["outside before", "outside after"], "b": ["outside before", "outside after"]}


def test_an_isolation_scope_the_handler_leaves_entered_makes_events_carry_none(receiver: SentryReceiver) -> None:
    # GIVEN a handler that enters an isolation scope and never leaves it (later records record into it)
    left_open: list[Any] = []

    def leaking(record: Any) -> str:
        if record.body == "leak":
            left_open.append(sentry_sdk.isolation_scope())
            left_open[0].__enter__()
            crumb("leaked")
            return "left open"
        return handler(record)

    # WHEN records run after it: a success, then a failure (in a context of their own, which the test then
    # leaves the way it found it)
    context = contextvars.copy_context()
    context.run(run, ["leak", "a:1", "b:1:fail"], None, leaking)
    context.run(left_open[0].__exit__, None, None, None)

    # THEN the failure's event carries no breadcrumbs rather than the other records'
    assert crumbs_by_failure(receiver, 1) == {"b": []}


def test_successful_records_take_no_per_record_hook(receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an active client, a sync processor with only sentry, and the driver counting the RecordContexts it
    # builds
    built: list[int] = []

    class CountedContext(RecordContext):
        def __init__(self, batch: BatchContext, raw: Any, index: int) -> None:
            built.append(index)
            super().__init__(batch, raw, index)

    monkeypatch.setattr(driver, "RecordContext", CountedContext)
    middleware = counting_record_hooks(SentryMiddleware)()

    # WHEN a batch of four with one failure runs
    run(["a:1", "b:1:fail", "c:1", "d:1"], [middleware])

    # THEN no record was wrapped, a RecordContext was built for the failure only, and it was captured
    assert middleware.entered == 0
    assert built == [1]
    assert crumbs_by_failure(receiver, 1) == {"b": ["b.0"]}


def test_two_sentry_middlewares_in_one_chain_each_send_the_records_own_breadcrumbs(
    receiver: SentryReceiver,
) -> None:
    # GIVEN two sentry middlewares in one chain (each forks the batch's isolation scope of its own)
    middleware: list[Middleware] = [SentryMiddleware(), SentryMiddleware()]

    # WHEN records fail after records that left breadcrumbs
    run(["a:2", "b:1:fail", "c:2", "d:0:fail"], middleware)

    # THEN each failure is sent twice, every event with exactly its own record's breadcrumbs
    sentry_sdk.flush(timeout=5.0)
    events = receiver.wait_for_events(4)
    crumbs = sorted(
        (e["exception"]["values"][-1]["value"], [c["message"] for c in e.get("breadcrumbs", {}).get("values", [])])
        for e in events
    )
    assert crumbs == [("b", ["b.0"]), ("b", ["b.0"]), ("d", []), ("d", [])]


def test_copies_of_the_buffer_are_plain_and_hold_the_running_records_breadcrumbs(receiver: SentryReceiver) -> None:
    import copy

    from observed_batch.middleware._sentry_compat import install_breadcrumbs

    # GIVEN a batch scope's buffer holding a breadcrumb of the first record, while the second one runs
    batch = BatchContext(ob.EventType.SQS, sqs_event(2)["Records"])
    with sentry_sdk.isolation_scope() as scope:
        crumbs = install_breadcrumbs(scope, batch)
        batch._next_index = 1
        crumb("first")
        batch._next_index = 2
        crumb("second")

        # WHEN it is copied (a fork of the scope) or deep-copied
        copies = [copy.copy(crumbs), copy.deepcopy(crumbs)]

    # THEN each copy is a plain deque with the second record's breadcrumb only
    assert [type(c).__name__ for c in copies] == ["deque", "deque"]
    assert [[c["message"] for c in copied] for copied in copies] == [["second"], ["second"]]
