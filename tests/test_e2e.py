"""End to end against a moto server: real boto3 calls, an ESM-like poller, the examples' handlers.

Each scenario sends messages with boto3, lets ``e2e_poller`` deliver them to a handler the way
Lambda's event source mapping does (partial batch responses, visibility timeouts, moto's own DLQ
redrive), then reconciles what the queue saw with what the handler and the telemetry reported:
sent = deleted after success + dead-lettered, nothing lost. Every built-in middleware available in
this build is enabled by environment, as in the examples' templates (Sentry sends to a local
receiver, spans go to an in-memory exporter); assertions about one middleware's output are skipped,
with the reason, only when that middleware is missing.
"""

from __future__ import annotations

import base64
import importlib
import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from e2e_poller import Invocation, KinesisEventSourceMapping, SqsEventSourceMapping
from moto_server import unique_name
from sentry_receiver import SentryReceiver, reset_sentry

from observed_batch import BatchProcessor, EventType, SqsFifoPartialProcessor, process_partial_response
from observed_batch.cli._common import Telemetry
from observed_batch.cli.sample_event import build_event
from observed_batch.config import available_builtins

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
MAX_RECEIVE_COUNT = 3
#: Bounds for every drain loop: a regression fails the test, it does not hang it.
DRAIN_TIMEOUT_S = 60.0
DRAIN_MAX_POLLS = 2000


AVAILABLE = available_builtins(policies=False)


def needs(name: str) -> None:
    if name not in AVAILABLE:
        pytest.skip(f"middleware {name!r} is not available in this build")


# -- observability around a scenario ----------------------------------------------------------------
@dataclass
class Observed:
    """What the middlewares sent outside stdout during a scenario."""

    exporter: Any = None
    sentry: SentryReceiver | None = None
    sentry_events: list[dict[str, Any]] = field(default_factory=list)

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans()) if self.exporter is not None else []


@contextmanager
def _global_tracer_provider(observed: Observed) -> Iterator[None]:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # The global provider can be set once per process: save and restore it around the scenario, so
    # other test modules find the process as they expect.
    saved = (trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done)
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = None, False
    provider = TracerProvider()
    observed.exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(observed.exporter))
    trace.set_tracer_provider(provider)
    try:
        yield
    finally:
        provider.shutdown()
        trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE._done = saved


@contextmanager
def observed_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Observed]:
    """Every available middleware enabled the way the examples' templates do it: by environment."""
    observed = Observed()
    monkeypatch.setenv("OBSERVED_BATCH_MIDDLEWARE", ",".join(AVAILABLE))
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "e2e")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ObservedBatchE2E")
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    monkeypatch.syspath_prepend(str(REPO))
    with ExitStack() as stack:
        if "tracing" in AVAILABLE:
            stack.enter_context(_global_tracer_provider(observed))
        if "sentry" in AVAILABLE:
            # sentry_sdk keeps its client in process globals: start and end without one, so that the
            # middleware initializes it from SENTRY_DSN at cold start, as in Lambda.
            reset_sentry()
            stack.callback(reset_sentry)
            observed.sentry = stack.enter_context(SentryReceiver())
            monkeypatch.setenv("SENTRY_DSN", observed.sentry.dsn)
        yield observed


def fresh_example(name: str) -> ModuleType:
    """Import an example's ``app`` as a Lambda cold start would: its module code (the processor) runs now."""
    module_name = f"examples.{name}.app"
    sys.modules.pop(module_name, None)
    return importlib.import_module(module_name)


# -- AWS resources ----------------------------------------------------------------------------------
def make_queue(sqs: Any, *, fifo: bool = False, visibility_timeout_s: int = 30) -> tuple[str, str]:
    """A queue with a DLQ (redrive after ``MAX_RECEIVE_COUNT`` receives); returns (queue URL, DLQ URL)."""
    suffix = ".fifo" if fifo else ""
    fifo_attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"} if fifo else {}
    dlq_url = sqs.create_queue(QueueName=unique_name("e2e-dlq") + suffix, Attributes=fifo_attributes)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
    queue_url = sqs.create_queue(
        QueueName=unique_name("e2e-orders") + suffix,
        Attributes={"VisibilityTimeout": str(visibility_timeout_s), "RedrivePolicy": redrive, **fifo_attributes},
    )["QueueUrl"]
    return queue_url, dlq_url


def send(sqs: Any, queue_url: str, bodies: list[str], *, groups: list[str] | None = None) -> list[str]:
    """Send in batches of 10; returns the message ids in send order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        entries = []
        for offset, body in enumerate(bodies[start : start + 10]):
            entry: dict[str, Any] = {"Id": str(offset), "MessageBody": body}
            if groups is not None:
                entry["MessageGroupId"] = groups[start + offset]
            entries.append(entry)
        result = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert not result.get("Failed"), result.get("Failed")
        by_entry = {item["Id"]: item["MessageId"] for item in result["Successful"]}
        ids.extend(by_entry[str(offset)] for offset in range(len(entries)))
    return ids


def read_all(sqs: Any, queue_url: str, *, limit: int) -> list[dict[str, Any]]:
    """Every message of a queue, each once (kept invisible while reading)."""
    messages: list[dict[str, Any]] = []
    for _ in range(limit // 10 + 2):
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            break
        messages.extend(batch)
    return messages


# -- telemetry --------------------------------------------------------------------------------------
def telemetry_of(invocations: list[Invocation]) -> Telemetry:
    merged = Telemetry()
    for invocation in invocations:
        telemetry = invocation.telemetry
        merged.emf.extend(telemetry.emf)
        merged.logs.extend(telemetry.logs)
        merged.other.extend(telemetry.other)
    return merged


def deliveries(invocations: list[Invocation]) -> Counter[str]:
    """How many times each record (message id / sequence number) reached the handler."""
    counts: Counter[str] = Counter()
    for invocation in invocations:
        for record in invocation.records:
            counts[record["messageId"] if "messageId" in record else record["kinesis"]["sequenceNumber"]] += 1
    return counts


def metric_figures(invocations: list[Invocation]) -> dict[str, float]:
    telemetry = telemetry_of(invocations)
    # One aggregated EMF document per invocation, crashed ones included.
    assert len(telemetry.emf) == len(invocations)
    assert {document["service"] for document in telemetry.emf} == {"e2e"}
    return telemetry.metric_totals()


def reported_failures(invocations: list[Invocation]) -> int:
    """Records the handlers reported in batchItemFailures (crashed invocations report none)."""
    return sum(len(i.failed_ids) for i in invocations if not i.whole_batch_failed)


# -- scenario 1: 1,000 orders, 20 % poison, SQS standard queue ------------------------------------
@dataclass
class StandardRun:
    sent: list[str]
    poison: set[str]
    mapping: SqsEventSourceMapping
    dead_lettered: list[str]
    observed: Observed
    seconds: float

    @property
    def good(self) -> set[str]:
        return set(self.sent) - self.poison

    def figures(self) -> dict[str, int]:
        lost = set(self.sent) - set(self.mapping.deleted) - set(self.dead_lettered)
        return {
            "sent": len(self.sent),
            "processed": len(self.mapping.deleted),
            "dlq": len(self.dead_lettered),
            "lost": len(lost),
            "invocations": len(self.mapping.invocations),
        }


STANDARD_COUNT = 1000
STANDARD_FAIL_EVERY = 5
#: Messages the producer sends before the consumer catches up. moto's ReceiveMessage costs time
#: proportional to (messages returned x messages queued), so a short queue keeps the run fast; the
#: consumer still sees full batches of 10, and the DLQ is emptied into a list after each wave.
STANDARD_WAVE = 20


@pytest.fixture(scope="module")
def standard_run(sqs: Any) -> Iterator[StandardRun]:
    # Module-scoped: the 1,000-message run happens once; each test below checks one property of it.
    with pytest.MonkeyPatch.context() as monkeypatch, observed_environment(monkeypatch) as observed:
        queue_url, dlq_url = make_queue(sqs)
        app = fresh_example("sqs_orders")
        mapping = SqsEventSourceMapping(sqs, queue_url, app.handler, retry_visibility_timeout_s=0)
        bodies = [r["body"] for r in build_event("sqs", STANDARD_COUNT, fail_every=STANDARD_FAIL_EVERY)["Records"]]
        sent: list[str] = []
        dead_lettered: list[str] = []
        started = time.monotonic()
        for start in range(0, STANDARD_COUNT, STANDARD_WAVE):
            sent += send(sqs, queue_url, bodies[start : start + STANDARD_WAVE])
            mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)
            dead_lettered += [m["MessageId"] for m in read_all(sqs, dlq_url, limit=STANDARD_WAVE)]
        seconds = time.monotonic() - started
        poison = {mid for mid, body in zip(sent, bodies, strict=True) if json.loads(body).get("fail")}
        if observed.sentry is not None:
            observed.sentry_events = observed.sentry.wait_for_events(len(poison) * MAX_RECEIVE_COUNT, timeout=10)
        run = StandardRun(sent, poison, mapping, dead_lettered, observed, seconds)
        print(f"\nreconciliation (1,000 orders, 20 % poison): {run.figures()} in {seconds:.1f} s")
        yield run


def test_every_good_message_is_deleted_exactly_once(standard_run: StandardRun) -> None:
    # GIVEN 1,000 orders, 800 good, consumed by the sqs_orders example through the ESM-like poller
    # WHEN the queue is drained
    deleted = standard_run.mapping.deleted
    # THEN each good message was deleted once, and only good messages were
    assert len(deleted) == len(set(deleted))
    assert set(deleted) == standard_run.good


def test_every_poison_message_ends_in_the_dlq_after_max_receive_count(standard_run: StandardRun) -> None:
    # GIVEN 200 poison orders (the handler raises on them) and a redrive policy of 3 receives
    # WHEN the queue is drained
    counts = deliveries(standard_run.mapping.invocations)
    # THEN each was handled exactly 3 times, then moved to the DLQ by SQS (moto), once
    assert sorted(standard_run.dead_lettered) == sorted(standard_run.poison)
    assert {counts[message_id] for message_id in standard_run.poison} == {MAX_RECEIVE_COUNT}
    assert {counts[message_id] for message_id in standard_run.good} == {1}


def test_no_message_is_lost(standard_run: StandardRun) -> None:
    # GIVEN the drained queue WHEN reconciling THEN sent = processed + dead-lettered, lost = 0
    figures = standard_run.figures()
    assert figures["lost"] == 0
    assert figures["sent"] == figures["processed"] + figures["dlq"] == STANDARD_COUNT


def test_emf_counts_reconcile_with_the_queue(standard_run: StandardRun) -> None:
    needs("metrics")
    # GIVEN the run's EMF documents (one per invocation, from stdout as CloudWatch would read them)
    invocations = standard_run.mapping.invocations
    figures = metric_figures(invocations)
    # THEN successes = deleted messages, failures = poison deliveries, sizes = all deliveries
    assert figures["BatchRecordSuccesses"] == len(standard_run.mapping.deleted)
    assert figures["BatchRecordFailures"] == len(standard_run.poison) * MAX_RECEIVE_COUNT
    assert figures["BatchSize"] == sum(deliveries(invocations).values())
    assert figures["BatchRecordsSkipped"] == 0


def test_log_lines_reconcile_with_the_queue(standard_run: StandardRun) -> None:
    needs("logging")
    # GIVEN the run's JSON log lines
    logs = telemetry_of(standard_run.mapping.invocations).logs
    failed = [line for line in logs if line["event"] == "record_failed"]
    summaries = [line for line in logs if line["event"] == "batch_summary"]
    # THEN one failure line per poison delivery, one summary per invocation with matching counts
    assert len(failed) == len(standard_run.poison) * MAX_RECEIVE_COUNT
    assert {line["message_id"] for line in failed} == standard_run.poison
    assert len(summaries) == len(standard_run.mapping.invocations)
    assert sum(line["successes"] for line in summaries) == len(standard_run.mapping.deleted)


def test_spans_reconcile_with_the_queue(standard_run: StandardRun) -> None:
    needs("tracing")
    # GIVEN the spans the tracing middleware ended during the run
    spans = [span for span in standard_run.observed.spans() if span.name.startswith("process ")]
    errors = [span for span in spans if span.status.status_code.name == "ERROR"]
    # THEN one per delivery, an error span per poison delivery
    assert len(spans) == sum(deliveries(standard_run.mapping.invocations).values())
    assert len(errors) == len(standard_run.poison) * MAX_RECEIVE_COUNT


def test_sentry_events_reconcile_with_the_queue(standard_run: StandardRun) -> None:
    needs("sentry")
    # GIVEN the events the local Sentry receiver got (at most 10 failures per batch: none capped)
    events = standard_run.observed.sentry_events
    # THEN one per poison delivery, none for good messages
    assert len(events) == len(standard_run.poison) * MAX_RECEIVE_COUNT
    tagged = Counter(event["tags"]["message_id"] for event in events)
    assert set(tagged) == standard_run.poison


# -- scenario 2: the function crashes mid-batch ----------------------------------------------------
class RuntimeKilled(BaseException):
    """Stands for the runtime dying mid-batch (timeout, out of memory): not an ``Exception``, so
    neither Powertools nor the handler catches it and the invocation fails as a whole."""


CRASH_COUNT = 30
#: The crashed batch comes back when this expires (the poller waits for it, as Lambda does).
CRASH_VISIBILITY_TIMEOUT_S = 2


def test_crash_mid_batch_retries_the_whole_batch_and_loses_nothing(sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with observed_environment(monkeypatch):
        # GIVEN the sqs_orders example whose 2nd invocation dies at its 5th record
        app = fresh_example("sqs_orders")
        calls = {"invocations": 0, "records": 0}
        original = app.record_handler

        def dying_record_handler(record: Any) -> Any:
            calls["records"] += 1
            if calls["invocations"] == 2 and calls["records"] == 5:
                raise RuntimeKilled("Task timed out")
            return original(record)

        def handler(event: dict[str, Any], context: Any) -> Any:
            calls["invocations"] += 1
            calls["records"] = 0
            return app.handler(event, context)

        monkeypatch.setattr(app, "record_handler", dying_record_handler)
        queue_url, _ = make_queue(sqs, visibility_timeout_s=CRASH_VISIBILITY_TIMEOUT_S)
        # Failed messages keep Lambda's behaviour here: invisible until the visibility timeout.
        mapping = SqsEventSourceMapping(sqs, queue_url, handler, retry_visibility_timeout_s=None)
        bodies = [r["body"] for r in build_event("sqs", CRASH_COUNT, seed=3)["Records"]]
        sent = send(sqs, queue_url, bodies)

        # WHEN the queue is drained
        mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)

    # THEN the crashed batch came back whole (records done before the crash too: at-least-once) and
    # every message was deleted exactly once
    crashed = [i for i in mapping.invocations if i.error is not None]
    assert len(crashed) == 1
    assert isinstance(crashed[0].error, RuntimeKilled)
    counts = deliveries(mapping.invocations)
    assert {counts[record["messageId"]] for record in crashed[0].records} == {2}
    assert sorted(mapping.deleted) == sorted(sent)


def test_crash_mid_batch_still_flushes_metrics(sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    needs("metrics")
    with observed_environment(monkeypatch):
        # GIVEN the sqs_orders example whose first invocation dies at its 3rd record
        app = fresh_example("sqs_orders")
        original, seen = app.record_handler, Counter[str]()

        def dying_record_handler(record: Any) -> Any:
            seen["records"] += 1
            if seen["records"] == 3:
                raise RuntimeKilled("Runtime exited with error: signal: killed")
            return original(record)

        monkeypatch.setattr(app, "record_handler", dying_record_handler)
        queue_url, _ = make_queue(sqs)
        mapping = SqsEventSourceMapping(sqs, queue_url, app.handler, retry_visibility_timeout_s=0)
        send(sqs, queue_url, [r["body"] for r in build_event("sqs", 10, seed=5)["Records"]])

        # WHEN the queue is drained (the batch fails once, then succeeds)
        mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)

    # THEN the crashed invocation flushed its EMF document too: 2 records succeeded, 1 failed there
    crashed = mapping.invocations[0]
    assert crashed.error is not None
    document = crashed.telemetry.emf
    assert len(document) == 1
    figures = telemetry_of([crashed]).metric_totals()
    assert (figures["BatchSize"], figures["BatchRecordSuccesses"], figures["BatchRecordFailures"]) == (10, 2, 1)
    assert len(mapping.deleted) == 10


def test_function_error_after_the_batch_retries_the_whole_batch(sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with observed_environment(monkeypatch):
        # GIVEN a function that processes its batch, then fails (e.g. a final commit) on its 1st call
        app = fresh_example("sqs_orders")
        calls = Counter[str]()

        def handler(event: dict[str, Any], context: Any) -> Any:
            response = app.handler(event, context)
            calls["invocations"] += 1
            if calls["invocations"] == 1:
                raise ConnectionError("commit to the orders database failed")
            return response

        queue_url, _ = make_queue(sqs)
        mapping = SqsEventSourceMapping(sqs, queue_url, handler, retry_visibility_timeout_s=0)
        sent = send(sqs, queue_url, [r["body"] for r in build_event("sqs", 10, seed=8)["Records"]])

        # WHEN the queue is drained
        mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)

    # THEN nothing was deleted after the failed invocation; the retry deleted everything once
    assert [i.whole_batch_failed for i in mapping.invocations] == [True, False]
    assert sorted(mapping.deleted) == sorted(sent)


# -- scenario 3: FIFO queue with message groups ----------------------------------------------------
FIFO_GROUPS = ("customer-001", "customer-002", "customer-003", "customer-004")
FIFO_PER_GROUP = 6


class FifoConsumer:
    """A FIFO consumer (``skip_group_on_error=True``) that records what it processed, in order."""

    def __init__(self, *, transient: bool) -> None:
        self.processor = SqsFifoPartialProcessor(skip_group_on_error=True)
        self.transient = transient
        self.calls: list[tuple[str, int, int]] = []  # (group, sequence, invocation)
        self.done: list[tuple[str, int]] = []
        self.invocation = 0

    def record_handler(self, record: SQSRecord) -> None:
        order = json.loads(record.body)
        group = record.attributes.message_group_id or ""
        self.calls.append((group, order["sequence"], self.invocation))
        attempts = int(record.attributes.approximate_receive_count)
        if order.get("fail") and (not self.transient or attempts < 2):
            raise RuntimeError(f"order {order['sequence']} of {group} failed")
        self.done.append((group, order["sequence"]))

    def handler(self, event: dict[str, Any], context: Any) -> Any:
        self.invocation += 1
        return process_partial_response(event, self.record_handler, self.processor, context)


def fifo_messages(failing: tuple[str, int]) -> tuple[list[str], list[str]]:
    """Bodies and groups, sent round-robin over the groups; ``failing`` marks one (group, sequence)."""
    bodies, groups = [], []
    for sequence in range(1, FIFO_PER_GROUP + 1):
        for group in FIFO_GROUPS:
            order = {"order_id": f"{group}-{sequence}", "sequence": sequence}
            if (group, sequence) == failing:
                order["fail"] = True
            bodies.append(json.dumps(order))
            groups.append(group)
    return bodies, groups


def test_fifo_failure_blocks_only_its_group_and_order_is_kept(sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with observed_environment(monkeypatch):
        # GIVEN a FIFO queue with 4 customers x 6 orders; customer-002's 2nd order fails once
        consumer = FifoConsumer(transient=True)
        queue_url, _ = make_queue(sqs, fifo=True)
        mapping = SqsEventSourceMapping(sqs, queue_url, consumer.handler, retry_visibility_timeout_s=0)
        bodies, groups = fifo_messages(failing=("customer-002", 2))
        sent = send(sqs, queue_url, bodies, groups=groups)

        # WHEN the queue is drained
        mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)

    # THEN every group was processed in order, each order once
    for group in FIFO_GROUPS:
        assert [sequence for g, sequence in consumer.done if g == group] == list(range(1, FIFO_PER_GROUP + 1))
    # AND the failure held back only customer-002: in that invocation its later orders never ran,
    # while other customers' orders after it in the batch did
    ran = {(group, sequence) for group, sequence, invocation in consumer.calls if invocation == 1}
    batch = [json.loads(record["body"]) for record in mapping.invocations[0].records]
    keys = [(order["order_id"].rsplit("-", 1)[0], order["sequence"]) for order in batch]
    after = keys[keys.index(("customer-002", 2)) + 1 :]
    held_back = [key for key in after if key[0] == "customer-002"]
    others = [key for key in after if key[0] != "customer-002"]
    assert held_back
    assert others
    assert not set(held_back) & ran
    assert set(others) <= ran
    assert sorted(mapping.deleted) == sorted(sent)
    if "metrics" in AVAILABLE:
        figures = metric_figures(mapping.invocations)
        # Reported failures = the one handler failure + the group's orders held back behind it.
        assert figures["BatchRecordFailures"] == 1
        assert figures["BatchRecordsSkipped"] == reported_failures(mapping.invocations) - 1 == len(held_back)


def test_fifo_poison_message_is_dead_lettered_and_nothing_is_lost(sqs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with observed_environment(monkeypatch):
        # GIVEN customer-003's 3rd order always fails
        consumer = FifoConsumer(transient=False)
        queue_url, dlq_url = make_queue(sqs, fifo=True)
        mapping = SqsEventSourceMapping(sqs, queue_url, consumer.handler, retry_visibility_timeout_s=0)
        bodies, groups = fifo_messages(failing=("customer-003", 3))
        sent = send(sqs, queue_url, bodies, groups=groups)

        # WHEN the queue is drained
        mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)

    dead = read_all(sqs, dlq_url, limit=len(sent))
    dead_ids = {message["MessageId"] for message in dead}
    # THEN sent = processed + dead-lettered, nothing lost; the poison order is in the DLQ; orders that
    # were processed kept their order within each group
    assert set(mapping.deleted) | dead_ids == set(sent)
    assert not set(mapping.deleted) & dead_ids
    poison_id = sent[bodies.index(next(b for b in bodies if json.loads(b).get("fail")))]
    assert poison_id in dead_ids
    # AND only the poison's group lost messages to the DLQ: the poison and orders held back behind it
    dead_orders = {(groups[sent.index(mid)], json.loads(bodies[sent.index(mid)])["sequence"]) for mid in dead_ids}
    assert all(group == "customer-003" and sequence >= 3 for group, sequence in dead_orders)
    for group in FIFO_GROUPS:
        done = [sequence for g, sequence in consumer.done if g == group]
        assert done == sorted(done)
    print(
        f"\nFIFO reconciliation: sent {len(sent)}, processed {len(mapping.deleted)}, DLQ {len(dead_ids)}"
        f" (poison + {len(dead_ids) - 1} of its group received with it), lost 0"
    )


# -- scenario 4: Kinesis stream -----------------------------------------------------------------------
KINESIS_COUNT = 300
KINESIS_FAIL_EVERY = 37
KINESIS_BATCH = 100


def test_kinesis_rereads_from_the_first_failed_record_and_skips_nothing(
    kinesis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with observed_environment(monkeypatch):
        # GIVEN a one-shard stream of 300 click events; every 37th fails the first time it is handled
        stream = unique_name("e2e-clicks")
        kinesis.create_stream(StreamName=stream, ShardCount=1)
        payloads = [
            json.loads(base64.b64decode(r["kinesis"]["data"]))
            for r in build_event("kinesis", KINESIS_COUNT, fail_every=KINESIS_FAIL_EVERY, seed=4)["Records"]
        ]
        for start in range(0, KINESIS_COUNT, 100):
            chunk = payloads[start : start + 100]
            result = kinesis.put_records(
                StreamName=stream,
                Records=[{"Data": json.dumps(p).encode(), "PartitionKey": p["user_id"]} for p in chunk],
            )
            assert result["FailedRecordCount"] == 0
        processor = BatchProcessor(event_type=EventType.KinesisDataStreams)
        failed_once: set[str] = set()
        succeeded: list[str] = []

        def record_handler(record: KinesisStreamRecord) -> None:
            click = record.kinesis.data_as_json()
            if click.get("fail") and click["event_id"] not in failed_once:
                failed_once.add(click["event_id"])
                raise RuntimeError(f"click {click['event_id']} failed")
            succeeded.append(record.kinesis.sequence_number)

        def handler(event: dict[str, Any], context: Any) -> Any:
            return process_partial_response(event, record_handler, processor, context)

        mapping = KinesisEventSourceMapping(kinesis, stream, handler, batch_size=KINESIS_BATCH)

        # WHEN the shard is read to its end
        mapping.drain(max_polls=DRAIN_MAX_POLLS, timeout_s=DRAIN_TIMEOUT_S)

    # THEN every batch after a partial failure starts exactly at the lowest failed sequence number
    invocations = mapping.invocations
    for previous, next_start in zip(invocations, mapping.batch_starts[1:], strict=False):
        if previous.failed_ids:
            assert next_start == min(previous.failed_ids, key=int)
    # AND records before the failure were not delivered again, and no record was skipped
    all_sequences = [r["kinesis"]["sequenceNumber"] for r in invocations[0].records]
    first_failure = all_sequences.index(min(invocations[0].failed_ids, key=int))
    counts = deliveries(invocations)
    assert {counts[sequence] for sequence in all_sequences[:first_failure]} == {1}
    described = kinesis.describe_stream(StreamName=stream)["StreamDescription"]["Shards"][0]
    shard_records = kinesis.get_records(
        ShardIterator=kinesis.get_shard_iterator(
            StreamName=stream, ShardId=described["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"],
        Limit=10_000,
    )["Records"]
    assert len(shard_records) == KINESIS_COUNT
    assert set(succeeded) == {r["SequenceNumber"] for r in shard_records}
    assert len(failed_once) == KINESIS_COUNT // KINESIS_FAIL_EVERY
    if "metrics" in AVAILABLE:
        figures = metric_figures(invocations)
        assert figures["BatchRecordFailures"] == len(failed_once) == reported_failures(invocations)
        assert figures["BatchRecordSuccesses"] == len(succeeded)
