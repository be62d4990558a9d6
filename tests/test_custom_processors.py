"""Custom partial processors written the documented Powertools way, on observed_batch's bases."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import pytest
from aws_lambda_powertools.utilities import batch as pt

import observed_batch as ob
from observed_batch.testing import FakeLambdaContext, RecordingMiddleware, kafka_event, kinesis_event, sqs_event


class Guard(ob.Middleware):
    """Fails every record from ``fail_from`` on without running it (as timeout_guard does)."""

    name = "guard"

    def __init__(self, fail_from: int) -> None:
        self.fail_from = fail_from

    def wrap_record(self, record: ob.RecordContext) -> Any:
        if record.index >= self.fail_from:
            raise ob.FailRecord("guard")
        yield


class Reporting(ob.BasePartialBatchProcessor):
    """Converts each record, calls the handler, reports through success_handler / failure_handler and
    builds the partial response with Powertools' own bookkeeping."""

    def __init__(self, **options: Any) -> None:
        self.log: list[str] = []
        super().__init__(ob.EventType.SQS, **options)

    def _prepare(self) -> None:
        self.log.append("prepare")
        super()._prepare()

    def _clean(self) -> None:
        self.log.append("clean")
        super()._clean()

    def _process_record(self, record: dict[str, Any]) -> Any:
        data = self._to_batch_type(record, self.event_type)
        try:
            return self.success_handler(data, self.handler(data))
        except Exception:
            return self.failure_handler(data, sys.exc_info())

    async def _async_process_record(self, record: dict[str, Any]) -> Any:
        data = self._to_batch_type(record, self.event_type)
        try:
            return self.success_handler(data, await self.handler(data))
        except Exception:
            return self.failure_handler(data, sys.exc_info())


class RawRecords(ob.BasePartialProcessor):
    """On the base without event type: raw dicts in, its own response out."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)

    def _prepare(self) -> None:
        self.success_messages.clear()
        self.fail_messages.clear()

    def _clean(self) -> None:
        pass

    def _process_record(self, record: dict[str, Any]) -> Any:
        try:
            return self.success_handler(record, self.handler(record))
        except Exception:
            return self.failure_handler(record, sys.exc_info())

    async def _async_process_record(self, record: dict[str, Any]) -> Any:
        raise NotImplementedError

    def response(self) -> dict[str, int]:
        return {"succeeded": len(self.success_messages), "failed": len(self.fail_messages)}


def fail_on(*indexes: int) -> Any:
    return lambda i: {"order_id": f"o{i}", "fail": i in indexes}


def handler(record: Any) -> str:
    payload = record.json_body
    if payload.get("fail"):
        raise ValueError(f"poison {payload['order_id']}")
    return str(payload["order_id"])


async def async_handler(record: Any) -> str:
    await asyncio.sleep(0)
    return handler(record)


def raw_handler(record: dict[str, Any]) -> str:
    payload = json.loads(record["body"])
    if payload.get("fail"):
        raise ValueError(f"poison {payload['order_id']}")
    return str(payload["order_id"])


# -- the chain around the user's methods ----------------------------------------------------------
def test_records_of_a_custom_processor_go_through_the_chain() -> None:
    # GIVEN a custom processor on our base with a recording middleware
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])
    event = sqs_event(3, body=fail_on(1))

    # WHEN processed
    response = ob.process_partial_response(event, handler, processor)

    # THEN each record's outcome is what the processor reported, and the response is Powertools'
    assert [(r.outcome, r.result) for r in recorder.records()] == [
        (ob.Outcome.SUCCESS, "o0"),
        (ob.Outcome.FAILURE, None),
        (ob.Outcome.SUCCESS, "o2"),
    ]
    failed = recorder.records()[1]
    assert failed.exc_info is not None
    assert str(failed.exc_info[1]) == "poison o1"
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}


def test_batch_hooks_run_around_the_users_prepare_and_clean() -> None:
    # GIVEN a middleware logging its batch hooks into the processor's own log
    processor = Reporting()

    class Hooks(ob.Middleware):
        def on_batch_start(self, batch: ob.BatchContext) -> None:
            processor.log.append("start")

        def on_batch_end(self, batch: ob.BatchContext, summary: ob.BatchSummary) -> None:
            processor.log.append(f"end {summary.successes}/{summary.failures}")

    processor = Reporting(middleware=[Hooks()])

    # WHEN two invocations run
    ob.process_partial_response(sqs_event(2, body=fail_on(0)), handler, processor)
    ob.process_partial_response(sqs_event(1, body=fail_on()), handler, processor)

    # THEN each batch starts after the user's _prepare and ends after the user's _clean, once
    assert processor.log == ["prepare", "start", "clean", "end 1/1", "prepare", "start", "clean", "end 1/0"]


def test_async_records_of_a_custom_processor_go_through_the_chain() -> None:
    # GIVEN a custom processor's async path
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])
    event = sqs_event(3, body=fail_on(2))

    # WHEN processed asynchronously
    response = ob.async_process_partial_response(event, async_handler, processor)

    # THEN outcomes and response are as reported, and the batch knows it ran async
    assert sorted((r.index, r.outcome) for r in recorder.records()) == [
        (0, ob.Outcome.SUCCESS),
        (1, ob.Outcome.SUCCESS),
        (2, ob.Outcome.FAILURE),
    ]
    assert recorder.events[-1][1].is_async
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][2]["messageId"]}]}


def test_batch_end_sees_the_error_when_the_users_clean_raises() -> None:
    # GIVEN every record failing, so Powertools' _clean (called by the user's) raises
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])

    # WHEN processed
    with pytest.raises(ob.BatchProcessingError):
        ob.process_partial_response(sqs_event(2, body=fail_on(0, 1)), handler, processor)

    # THEN the batch ended once, with the counts and the error
    summary = recorder.events[-1][2]
    assert (summary.failures, type(summary.error)) == (2, ob.BatchProcessingError)


def test_batch_end_sees_the_error_raised_inside_the_with_block() -> None:
    # GIVEN user code crashing after processing, inside the context manager
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])

    def crash() -> None:
        with processor(sqs_event(1)["Records"], handler):
            processor.process()
            raise KeyError("boom")

    # WHEN it raises THEN the batch still ended once and knows why
    with pytest.raises(KeyError):
        crash()
    assert [e[0] for e in recorder.events].count("end") == 1
    assert isinstance(recorder.events[-1][2].error, KeyError)


def test_base_exception_from_the_users_process_record_propagates_after_middlewares_resume() -> None:
    # GIVEN a handler raising what the custom processor does not catch
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])

    def interrupting(record: Any) -> None:
        raise KeyboardInterrupt

    # WHEN processed THEN it propagates, and the middleware saw a failure
    with pytest.raises(KeyboardInterrupt):
        ob.process_partial_response(sqs_event(1), interrupting, processor)
    assert recorder.records()[0].outcome is ob.Outcome.FAILURE


def test_async_base_exception_propagates_after_middlewares_resume() -> None:
    # GIVEN an async handler raising what the custom processor does not catch
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])

    async def interrupting(record: Any) -> None:
        raise SystemExit(3)

    # WHEN processed THEN it propagates, and the middleware saw a failure
    with pytest.raises(SystemExit):
        ob.async_process_partial_response(sqs_event(1), interrupting, processor)
    assert recorder.records()[0].outcome is ob.Outcome.FAILURE


def test_users_handler_overrides_run_once_per_record() -> None:
    # GIVEN a custom processor that also overrides success_handler / failure_handler
    seen: list[str] = []

    class Counting(Reporting):
        def success_handler(self, record: Any, result: Any) -> Any:
            seen.append("success")
            return super().success_handler(record, result)

        def failure_handler(self, record: Any, exception: Any) -> Any:
            seen.append("failure")
            return super().failure_handler(record, exception)

    recorder = RecordingMiddleware()

    # WHEN processed
    ob.process_partial_response(sqs_event(2, body=fail_on(1)), handler, Counting(middleware=[recorder]))

    # THEN the overrides ran once per record and the middleware saw the same outcomes
    assert seen == ["success", "failure"]
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.SUCCESS, ob.Outcome.FAILURE]


def test_outcomes_reported_with_keyword_arguments_are_seen() -> None:
    # GIVEN a custom processor reporting as Powertools' own processors do, with keyword arguments
    class Keywords(Reporting):
        def _process_record(self, record: dict[str, Any]) -> Any:
            data = self._to_batch_type(record, self.event_type)
            try:
                return self.success_handler(record=data, result=self.handler(data))
            except Exception:
                return self.failure_handler(record=data, exception=sys.exc_info())

    recorder = RecordingMiddleware()

    # WHEN processed
    ob.process_partial_response(sqs_event(2, body=fail_on(1)), handler, Keywords(middleware=[recorder]))

    # THEN the middleware saw the result and the exception
    ok, failed = recorder.records()
    assert (ok.outcome, ok.result) == (ob.Outcome.SUCCESS, "o0")
    assert failed.exc_info is not None
    assert str(failed.exc_info[1]) == "poison o1"


def test_without_middleware_the_users_methods_are_not_wrapped() -> None:
    # GIVEN a custom processor with no middleware configured
    processor = Reporting()

    # THEN its methods are the class's own: exactly Powertools' code path
    assert processor._process_record.__func__ is Reporting._process_record  # type: ignore[attr-defined]
    assert processor.failure_handler.__func__ is pt.BasePartialProcessor.failure_handler  # type: ignore[attr-defined]


def test_process_outside_a_context_manager_bypasses_the_chain() -> None:
    # GIVEN a processor called but not entered
    recorder = RecordingMiddleware()
    processor = Reporting(middleware=[recorder])
    processor(sqs_event(1)["Records"], handler)

    # WHEN process() / async_process() run outside `with` THEN the user's code runs, unobserved
    assert processor.process()[0][0] == "success"
    processor(sqs_event(1)["Records"], async_handler)
    assert processor.async_process()[0][0] == "success"
    assert recorder.events == []


def test_middleware_from_the_environment_applies_to_a_custom_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN OBSERVED_BATCH_MIDDLEWARE and a custom processor whose __init__ passes no middleware
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", "metrics")

    # WHEN it is built THEN the configured middleware is in its chain
    assert [m.name for m in Reporting().middlewares] == ["metrics"]


# -- what the middlewares learn about the records -------------------------------------------------
@pytest.mark.parametrize(
    ("event", "records", "event_type", "identifier"),
    [
        (sqs_event(1), "Records", ob.EventType.SQS, lambda r: r["messageId"]),
        (kinesis_event(1), "Records", ob.EventType.KinesisDataStreams, lambda r: r["kinesis"]["sequenceNumber"]),
        (kafka_event(1), "records", ob.EventType.Kafka, lambda r: {"partition": "orders-0", "offset": r["offset"]}),
    ],
    ids=["sqs", "kinesis", "kafka"],
)
def test_base_without_event_type_reads_it_from_the_records(
    event: dict[str, Any], records: str, event_type: ob.EventType, identifier: Any
) -> None:
    # GIVEN a custom processor on the base that has no event type
    recorder = RecordingMiddleware()
    processor = RawRecords(middleware=[recorder])
    raw = event[records] if records == "Records" else next(iter(event[records].values()))

    # WHEN its records are processed
    with processor(raw, lambda record: "ok"):
        processor.process()

    # THEN the middlewares know the source and each record's identifier, and get the raw record
    (record,) = recorder.records()
    assert record.event_type is event_type
    assert record.identifier == identifier(raw[0])
    assert record.record is raw[0]


def test_explicit_event_type_names_records_without_an_event_source() -> None:
    # GIVEN records without eventSource, and the event type given to the base
    recorder = RecordingMiddleware()
    processor = RawRecords(event_type=ob.EventType.SQS, middleware=[recorder])
    records = [{"messageId": "m-1", "body": '{"order_id": "o1", "fail": false}'}]

    # WHEN processed THEN the middleware names the record
    with processor(records, raw_handler):
        processor.process()
    assert recorder.records()[0].identifier == "m-1"


def test_records_of_unknown_source_raise_a_config_error_naming_the_fix() -> None:
    # GIVEN records that name no event source, a base without event type, and middleware on
    processor = RawRecords(middleware=[RecordingMiddleware()])

    # WHEN a batch starts THEN ConfigError says how to name the source
    with pytest.raises(ob.ConfigError, match=r"event_type=EventType\.<source>"), processor([{"id": 1}], raw_handler):
        pass  # pragma: no cover - never entered


def test_records_of_unknown_source_are_fine_without_middleware() -> None:
    # GIVEN the same records with no middleware
    processor = RawRecords()

    # WHEN processed THEN it behaves as on Powertools' base
    with processor([{"body": '{"order_id": "o", "fail": true}'}], raw_handler):
        processor.process()
    assert processor.response() == {"succeeded": 0, "failed": 1}


def test_an_empty_batch_of_unknown_source_is_not_observed() -> None:
    # GIVEN an empty batch and a base without event type
    recorder = RecordingMiddleware()
    processor = RawRecords(middleware=[recorder])

    # WHEN processed THEN nothing is observed and nothing raises
    with processor([], raw_handler):
        processor.process()
    assert recorder.events == []


# -- records a middleware fails ---------------------------------------------------------------------
def test_a_guarded_record_is_reported_by_the_users_code_without_running_the_handler() -> None:
    # GIVEN a guard failing records from index 1, and a processor whose except block inspects sys.exc_info()
    handled: list[Any] = []
    calls: list[str] = []

    class Inspecting(Reporting):
        def failure_handler(self, record: Any, exception: Any) -> Any:
            handled.append(sys.exc_info()[1])
            return super().failure_handler(record, exception)

    def counting(record: Any) -> str:
        calls.append(record.message_id)
        return handler(record)

    recorder = RecordingMiddleware()
    processor = Inspecting(middleware=[recorder, Guard(fail_from=1)])
    event = sqs_event(3, body=fail_on())
    ids = [r["messageId"] for r in event["Records"]]

    # WHEN processed
    response = ob.process_partial_response(event, counting, processor)

    # THEN guarded records skip the handler, are failed by the user's code, and are marked skipped
    assert calls == ids[:1]
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}, {"itemIdentifier": ids[2]}]}
    assert [type(exc) for exc in handled] == [ob.FailRecord, ob.FailRecord]
    assert [(r.outcome, r.skip_reason) for r in recorder.records()] == [
        (ob.Outcome.SUCCESS, None),
        (ob.Outcome.SKIPPED, "guard"),
        (ob.Outcome.SKIPPED, "guard"),
    ]
    # AND the record handler is the user's again after the batch
    assert processor.handler is counting


def test_records_after_a_guarded_one_run_their_handler() -> None:
    # GIVEN a guard failing only the middle record
    class GuardOne(ob.Middleware):
        def wrap_record(self, record: ob.RecordContext) -> Any:
            if record.index == 1:
                raise ob.FailRecord("guard")
            yield

    calls: list[str] = []

    def counting(record: Any) -> str:
        calls.append(record.message_id)
        return handler(record)

    recorder = RecordingMiddleware()
    event = sqs_event(3)
    ids = [r["messageId"] for r in event["Records"]]

    # WHEN processed
    response = ob.process_partial_response(event, counting, Reporting(middleware=[recorder, GuardOne()]))

    # THEN the records around it ran their handler and succeeded
    assert calls == [ids[0], ids[2]]
    assert response == {"batchItemFailures": [{"itemIdentifier": ids[1]}]}
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.SUCCESS, ob.Outcome.SKIPPED, ob.Outcome.SUCCESS]


def test_async_guarded_records_skip_the_handler() -> None:
    # GIVEN an async custom processor and a guard failing every record
    calls: list[Any] = []

    async def counting(record: Any) -> str:
        calls.append(record)
        return "ok"

    recorder = RecordingMiddleware()
    processor = Reporting(raise_on_entire_batch_failure=False, middleware=[recorder, Guard(fail_from=0)])

    # WHEN processed
    response = ob.async_process_partial_response(sqs_event(2), counting, processor)

    # THEN no handler ran and both records were reported failed and marked skipped
    assert calls == []
    assert len(response["batchItemFailures"]) == 2
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.SKIPPED, ob.Outcome.SKIPPED]


def test_guard_is_not_honoured_by_code_that_never_calls_self_handler(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a custom processor that processes records itself, never through self.handler
    class Inline(RawRecords):
        def _process_record(self, record: dict[str, Any]) -> Any:
            return self.success_handler(record, "done inline")

    recorder = RecordingMiddleware()
    processor = Inline(middleware=[recorder, Guard(fail_from=0)])

    # WHEN the guard fails its records
    with caplog.at_level(logging.WARNING, logger="observed_batch"), processor(sqs_event(2)["Records"], raw_handler):
        processor.process()

    # THEN the records were processed as the user's code reported, with one warning naming the hook
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.SUCCESS, ob.Outcome.SUCCESS]
    warnings = [r.getMessage() for r in caplog.records if "self.handler" in r.getMessage()]
    assert len(warnings) == 1
    assert "Inline" in warnings[0]


def test_a_guarded_record_the_users_code_swallows_counts_as_it_reported() -> None:
    # GIVEN a custom processor that reports success even when the handler raises
    class Lenient(RawRecords):
        def _process_record(self, record: dict[str, Any]) -> Any:
            try:
                return self.success_handler(record, self.handler(record))
            except Exception:
                return self.success_handler(record, None)

    recorder = RecordingMiddleware()
    processor = Lenient(middleware=[recorder, Guard(fail_from=0)])

    # WHEN the guard fails its record
    with processor(sqs_event(1)["Records"], raw_handler):
        processor.process()

    # THEN the outcome is the success it reported
    assert [(r.outcome, r.skip_reason) for r in recorder.records()] == [(ob.Outcome.SUCCESS, None)]


def test_a_record_reported_through_neither_handler_is_counted_successful(caplog: pytest.LogCaptureFixture) -> None:
    # GIVEN a custom processor that returns without reporting
    class Silent(RawRecords):
        def _process_record(self, record: dict[str, Any]) -> Any:
            return self.handler(record)

    recorder = RecordingMiddleware()
    processor = Silent(middleware=[recorder])

    # WHEN processed
    with caplog.at_level(logging.WARNING, logger="observed_batch"), processor(sqs_event(2)["Records"], lambda r: 1):
        processor.process()

    # THEN it counts as successful (it is not reported for retry), with one warning naming the hooks
    assert [r.outcome for r in recorder.records()] == [ob.Outcome.SUCCESS, ob.Outcome.SUCCESS]
    warnings = [r.getMessage() for r in caplog.records if "success_handler or failure_handler" in r.getMessage()]
    assert len(warnings) == 1


def test_timeout_guard_with_a_custom_processor_fails_records_near_the_deadline() -> None:
    # GIVEN the built-in timeout guard and a Lambda context with too little time left
    recorder = RecordingMiddleware()
    processor = Reporting(raise_on_entire_batch_failure=False, middleware=[recorder, "timeout_guard"])
    event = sqs_event(2)

    # WHEN processed
    response = ob.process_partial_response(event, handler, processor, FakeLambdaContext(remaining_ms=100))

    # THEN every record is reported for retry and marked skipped by timeout_guard
    assert len(response["batchItemFailures"]) == 2
    assert {r.skip_reason for r in recorder.records()} == {"timeout_guard"}
