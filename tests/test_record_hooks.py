"""The plain record hooks ``before_record`` / ``after_record``: where they run in the chain, next to generator
middlewares, and how they are contained (a raising hook, ``FailRecord``, a ``BaseException`` unwinding)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt

import observed_batch as ob
from observed_batch import BatchContext, ConfigError, Middleware, RecordContext
from observed_batch.errors import FailRecord
from observed_batch.testing import sqs_event


class Hooks(Middleware):
    """Logs both plain hooks; optionally raises from one of them for chosen records."""

    def __init__(self, name: str, log: list[str], raise_in: str = "", error: BaseException | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.log = log
        self.raise_in = raise_in
        self.error = error

    def before_record(self, record: RecordContext) -> None:
        self.log.append(f"{self.name}:before:{record.index}")
        if self.raise_in == "before" and self.error is not None:
            raise self.error

    def after_record(self, record: RecordContext) -> None:
        self.log.append(f"{self.name}:after:{record.index}:{record.outcome}")
        if self.raise_in == "after" and self.error is not None:
            raise self.error


class Wrapper(Middleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name  # type: ignore[misc]
        self.log = log

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        self.log.append(f"{self.name}:before:{record.index}")
        try:
            yield
        finally:
            self.log.append(f"{self.name}:after:{record.index}:{record.outcome}")


class AfterOnly(Middleware):
    name = "after_only"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def after_record(self, record: RecordContext) -> None:
        self.log.append(f"after:{record.index}:{record.outcome}:{record.duration_ns > 0}")


def handler(record: Any) -> str:
    if record.body.endswith("fail"):
        raise ValueError(record.body)
    return record.body


async def async_handler(record: Any) -> str:
    return handler(record)


def event(*bodies: str) -> dict[str, Any]:
    return sqs_event(len(bodies), body=lambda i: bodies[i])


def run(chain: list[Any], bodies: tuple[str, ...], asynchronous: bool = False) -> dict[str, Any]:
    if asynchronous:
        processor: Any = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=chain)
        return ob.async_process_partial_response(event(*bodies), async_handler, processor)
    return ob.process_partial_response(event(*bodies), handler, ob.BatchProcessor(ob.EventType.SQS, middleware=chain))


def bare(bodies: tuple[str, ...]) -> dict[str, Any]:
    return pt.process_partial_response(event(*bodies), handler, pt.BatchProcessor(pt.EventType.SQS))


@pytest.mark.parametrize("asynchronous", [False, True])
def test_plain_hooks_run_where_a_generator_runs_before_and_after_its_yield(asynchronous: bool) -> None:
    # GIVEN plain hooks outside and inside a generator middleware
    log: list[str] = []
    chain = [Hooks("outer", log), Wrapper("wrap", log), Hooks("inner", log)]

    # WHEN a record succeeds and one fails
    response = run(chain, ("a", "b-fail"), asynchronous)

    # THEN before runs outermost first, after innermost first, with the outcome set; the response is Powertools'
    per_record = [[line for line in log if f":{index}" in line] for index in (0, 1)]
    assert per_record[0] == [
        "outer:before:0",
        "wrap:before:0",
        "inner:before:0",
        "inner:after:0:success",
        "wrap:after:0:success",
        "outer:after:0:success",
    ]
    assert per_record[1][-1] == "outer:after:1:failure"
    assert response == bare(("a", "b-fail"))


def test_after_record_alone_sees_every_record_with_its_duration() -> None:
    # GIVEN a middleware with only after_record
    log: list[str] = []

    # WHEN a batch with a failure runs
    run([AfterOnly(log)], ("a", "b-fail", "c"))

    # THEN it saw every record once, after the core, outcome and duration set
    assert log == ["after:0:success:True", "after:1:failure:True", "after:2:success:True"]


def test_before_record_alone_runs_before_the_handler() -> None:
    # GIVEN a middleware with only before_record, which records what the handler has done so far
    seen: list[str] = []
    handled: list[str] = []

    class Before(Middleware):
        name = "before"

        def before_record(self, record: RecordContext) -> None:
            seen.append(f"{record.index}:{len(handled)}:{record.outcome}")

    def counting_handler(record: Any) -> str:
        handled.append(record.body)
        return str(record.body)

    # WHEN two records run
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Before()])
    ob.process_partial_response(event("a", "b"), counting_handler, processor)

    # THEN each before_record ran before its record's handler, with no outcome yet
    assert seen == ["0:0:None", "1:1:None"]


def test_a_middleware_with_wrap_record_and_plain_hooks_is_refused_at_build_time() -> None:
    # GIVEN a middleware defining both styles
    class Both(Middleware):
        name = "both"

        def wrap_record(self, record: RecordContext) -> Iterator[None]:
            yield

        def after_record(self, record: RecordContext) -> None:
            pass

    # WHEN a processor is built with it
    # THEN a ConfigError names the middleware and the fix
    with pytest.raises(ConfigError, match=r"'both'.*wrap_record and before_record/after_record.*remove wrap_record"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=[Both()])


def test_a_raising_before_record_is_contained_and_its_after_record_skipped(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a middleware whose before_record raises, between two well-behaved ones
    log: list[str] = []
    chain = [Hooks("outer", log), Hooks("broken", log, "before", RuntimeError("boom")), Hooks("inner", log)]

    # WHEN two records run
    response = run(chain, ("a", "b-fail"))

    # THEN the handler and the other middlewares ran, the broken one's after_record did not (it is out of the
    # record, as a generator that raised before its yield), the error is logged once, outcomes are Powertools'
    assert "broken:after:0:success" not in log
    assert "inner:after:0:success" in log
    assert "outer:after:1:failure" in log
    assert response == bare(("a", "b-fail"))
    assert sum("'broken' failed in before_record" in r.getMessage() for r in caplog.records) == 1


def test_a_raising_after_record_is_contained_and_outer_ones_still_run(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN an inner middleware whose after_record raises
    log: list[str] = []
    chain = [Hooks("outer", log), Hooks("broken", log, "after", RuntimeError("boom"))]

    # WHEN a record runs
    response = run(chain, ("a",))

    # THEN the outer after_record still ran; the error is logged, the outcome unchanged
    assert log[-1] == "outer:after:0:success"
    assert response == {"batchItemFailures": []}
    assert any("'broken' failed in after_record" in r.getMessage() for r in caplog.records)


def test_fail_record_from_before_record_is_seen_by_outer_middlewares_only() -> None:
    # GIVEN a guard failing every record from before_record, between two logging middlewares
    log: list[str] = []
    chain = [Hooks("outer", log), Hooks("guard", log, "before", FailRecord("guarded")), Hooks("inner", log)]
    handled: list[str] = []

    def counting_handler(record: Any) -> str:
        handled.append(record.body)
        return str(record.body)

    # WHEN a record runs (the batch's only one: no raise_on_entire_batch_failure)
    processor = ob.BatchProcessor(ob.EventType.SQS, raise_on_entire_batch_failure=False, middleware=chain)
    response = ob.process_partial_response(event("a"), counting_handler, processor)

    # THEN the handler did not run, the record is reported failed; the outer middleware saw it skipped, the guard's
    # own after_record and the inner middleware did not run (as with a generator raising FailRecord)
    assert handled == []
    assert response == {"batchItemFailures": [{"itemIdentifier": event("a")["Records"][0]["messageId"]}]}
    assert log == ["outer:before:0", "guard:before:0", "outer:after:0:skipped"]


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_base_exception_in_an_inner_hook_runs_the_outer_after_records_then_propagates(where: str) -> None:
    # GIVEN an inner middleware raising KeyboardInterrupt from one of its hooks, outer plain and generator ones
    log: list[str] = []
    chain = [Hooks("outer", log), Wrapper("wrap", log), Hooks("inner", log, where, KeyboardInterrupt())]

    # WHEN a record runs
    # THEN the exception propagates after the outer middlewares restored what they bound (after_record, finally)
    with pytest.raises(KeyboardInterrupt):
        run(chain, ("a",))
    assert log[-2:] == [f"wrap:after:0:{'None' if where == 'before' else 'success'}", log[-1]]
    assert log[-1].startswith("outer:after:0:")


def test_a_base_exception_from_the_handler_reaches_after_record_as_a_failure() -> None:
    # GIVEN a handler raising a BaseException that Powertools does not catch
    log: list[str] = []

    def crashing(record: Any) -> None:
        raise SystemExit(3)

    # WHEN it runs under a plain-hook middleware
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[Hooks("outer", log)])
    with pytest.raises(SystemExit):
        ob.process_partial_response(event("a"), crashing, processor)

    # THEN after_record saw the record fail before the exception propagated
    assert log == ["outer:before:0", "outer:after:0:failure"]


def test_skip_record_hooks_leaves_plain_hooks_out_of_the_batch() -> None:
    # GIVEN a plain-hook middleware that opts out of the batch's records
    log: list[str] = []

    class Skips(Hooks):
        def on_batch_start(self, batch: BatchContext) -> None:
            batch.skip_record_hooks(self)

    # WHEN a batch runs
    response = run([Skips("skips", log)], ("a", "b-fail"))

    # THEN neither hook ran; the response is Powertools'
    assert log == []
    assert response == bare(("a", "b-fail"))


def test_before_record_with_on_record_failed_gets_the_failures() -> None:
    # GIVEN a middleware with before_record and on_record_failed (no after_record)
    log: list[str] = []

    class BeforeAndFailed(Middleware):
        name = "before_and_failed"

        def before_record(self, record: RecordContext) -> None:
            log.append(f"before:{record.index}")

        def on_record_failed(self, record: RecordContext) -> None:
            log.append(f"failed:{record.index}")

    # WHEN a batch with a failure runs
    run([BeforeAndFailed()], ("a", "b-fail"))

    # THEN on_record_failed ran for the failure only, after the core
    assert log == ["before:0", "before:1", "failed:1"]


def test_async_records_overlap_with_plain_hooks_and_keep_their_own_context() -> None:
    # GIVEN async records that interleave, under a plain-hook middleware keeping state in the record's scratch
    seen: list[tuple[int, int]] = []

    class Keeps(Middleware):
        name = "keeps"

        def before_record(self, record: RecordContext) -> None:
            record.scratch["mine"] = record.index

        def after_record(self, record: RecordContext) -> None:
            seen.append((record.index, record.scratch["mine"]))

    async def sleepy(record: Any) -> str:
        await asyncio.sleep(0)
        return str(record.body)

    # WHEN they run concurrently
    processor = ob.AsyncBatchProcessor(ob.EventType.SQS, middleware=[Keeps()])
    ob.async_process_partial_response(event("a", "b", "c"), sleepy, processor)

    # THEN each record saw its own state
    assert sorted(seen) == [(0, 0), (1, 1), (2, 2)]


def test_a_subclass_may_wrap_an_inherited_plain_hook_middleware_with_a_generator() -> None:
    # GIVEN a subclass of a plain-hook middleware that overrides wrap_record and delegates to super()
    log: list[str] = []

    class Wrapped(Hooks):
        def wrap_record(self, record: RecordContext) -> Iterator[None]:
            log.append("around:before")
            yield from super().wrap_record(record)
            log.append("around:after")

    # WHEN a record runs
    run([Wrapped("plain", log)], ("a",))

    # THEN the generator is the hook, and the base's wrap_record ran the plain hooks inside it
    assert log == ["around:before", "plain:before:0", "plain:after:0:success", "around:after"]


def test_a_plain_hook_added_under_an_inherited_wrap_record_is_refused() -> None:
    # GIVEN a subclass adding after_record to a generator middleware (it would never run)
    class Late(Wrapper):
        def after_record(self, record: RecordContext) -> None:
            pass

    # WHEN a processor is built with it
    # THEN a ConfigError names it
    with pytest.raises(ConfigError, match="'late'"):
        ob.BatchProcessor(ob.EventType.SQS, middleware=[Late("late", [])])
