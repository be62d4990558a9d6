"""``LeanSentryTransport`` (``middleware/_sentry_transport.py``) with the real sentry-sdk and the local receiver
(tests/sentry_receiver.py): what arrives equals what the SDK's transport sends, over plain HTTP and TLS; rate
limits, dead endpoints and deadlines cost one bounded attempt; what it does not reproduce stays the SDK's.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any

import pytest
import sentry_sdk
import trustme
from sentry_receiver import SentryReceiver, refused_dsn, reset_sentry
from sentry_sdk.transport import HttpTransport

import observed_batch as ob
from observed_batch.middleware import LeanSentryTransport, SentryMiddleware
from observed_batch.middleware._sentry_client import breaker_for, init_options
from observed_batch.testing import FakeLambdaContext, sqs_event

SECRET = "card-4111-1111"


#: Every test here starts and ends without a Sentry client (conftest.clean_sentry).
pytestmark = pytest.mark.usefixtures("clean_sentry")


@pytest.fixture
def receiver(sentry_receiver: SentryReceiver) -> SentryReceiver:
    return sentry_receiver


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A server context holding a certificate for 127.0.0.1, and the file of the CA that issued it."""
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    return server, str(ca_file)


def handler(record: Any) -> str:
    order = json.loads(record.body)
    sentry_sdk.add_breadcrumb(category="orders", message=f"checking {order['order_id']}")
    if order["fail"]:
        raise ValueError(f"order {order['order_id']} rejected ({SECRET})")
    return str(order["order_id"])


def run(middleware: list[Any], failing: int = 2, size: int = 4, context: Any = None) -> Any:
    event = sqs_event(size, body=lambda i: {"order_id": f"order-{i}", "fail": i < failing, "note": SECRET})
    config = ob.Config(redact=lambda text: text.replace(SECRET, "[card]"))
    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=middleware, config=config)
    return ob.process_partial_response(event, handler, processor, context or FakeLambdaContext())


def lean_from_environment(monkeypatch: pytest.MonkeyPatch, dsn: str) -> None:
    monkeypatch.setenv("SENTRY_DSN", dsn)


def comparable(event: dict[str, Any]) -> dict[str, Any]:
    """An event without what differs between two runs (ids, times, the record's age, the scope's random trace)."""
    event = dict(event)
    for key in ("event_id", "timestamp"):
        event.pop(key, None)
    event["contexts"] = {k: v for k, v in event.get("contexts", {}).items() if k != "trace"}
    event["contexts"]["observed_batch"] = {
        k: v for k, v in event["contexts"]["observed_batch"].items() if k != "age_ms"
    }
    event["breadcrumbs"] = {
        "values": [{k: v for k, v in crumb.items() if k != "timestamp"} for crumb in event["breadcrumbs"]["values"]]
    }
    return event


def sdk_threads() -> set[threading.Thread]:
    """The SDK's threads (its transport's ``sentry-sdk.BackgroundWorker`` above all)."""
    return {thread for thread in threading.enumerate() if thread.name.startswith("sentry-sdk")}


# -- what arrives ----------------------------------------------------------------------------------------------
def test_events_arrive_equal_to_what_the_sdks_transport_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the same failing batch (breadcrumbs, a redacted secret, the body), once through the client the
    # middleware initialises from SENTRY_DSN (lean transport), once through the same options on the SDK's transport
    received: dict[str, list[dict[str, Any]]] = {}
    headers: dict[str, dict[str, str]] = {}
    for lean in (True, False):
        reset_sentry()
        with SentryReceiver() as receiver:
            sentry_sdk.init(**init_options(receiver.dsn, lean_transport=lean))
            # WHEN two records fail
            run([SentryMiddleware(include_body=True)])
            received[str(lean)] = [comparable(event) for event in receiver.wait_for_events(2)]
            headers[str(lean)] = receiver.request_headers[0]

    # THEN the events are equal, breadcrumbs and redaction included, and authenticated alike
    assert received["True"] == received["False"]
    assert [len(event["breadcrumbs"]["values"]) for event in received["True"]] == [1, 1]
    assert SECRET not in json.dumps(received["True"])
    for name in ("User-Agent", "X-Sentry-Auth", "Content-Type"):
        assert headers["True"][name] == headers["False"][name]
    # AND the lean transport sent them uncompressed (no Content-Encoding), the SDK's compressed
    assert "Content-Encoding" not in headers["True"]


def test_the_middlewares_own_client_sends_at_its_flush_without_a_worker_thread(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN Sentry initialised by the middleware from SENTRY_DSN
    lean_from_environment(monkeypatch, receiver.dsn)
    threads_before = sdk_threads()

    # WHEN two invocations have two failed records each
    run([SentryMiddleware()])
    run([SentryMiddleware()])

    # THEN the client's transport is the lean one, every event had arrived when the invocation returned, over
    # one kept-alive connection, and no SDK worker thread was started
    assert isinstance(sentry_sdk.get_client().transport, LeanSentryTransport)
    assert len(receiver.events()) == 4
    assert sdk_threads() <= threads_before


def test_the_applications_events_queued_in_a_batch_without_failures_are_flushed(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the middleware's own client, initialised by an earlier failure
    lean_from_environment(monkeypatch, receiver.dsn)
    run([SentryMiddleware()], failing=1)

    # WHEN the handler of a batch without failures captures a message of its own
    def capturing(record: Any) -> str:
        sentry_sdk.capture_message("seen")
        return "ok"

    processor = ob.BatchProcessor(ob.EventType.SQS, middleware=[SentryMiddleware()])
    ob.process_partial_response(sqs_event(1), capturing, processor, FakeLambdaContext())

    # THEN it was sent at the end of that invocation
    assert [event.get("message") for event in receiver.events()][-1] == "seen"


def test_an_instance_built_with_a_dsn_is_accepted_too(receiver: SentryReceiver) -> None:
    # GIVEN the transport passed as an instance built with the DSN (the SDK uses an instance as it is)
    transport = LeanSentryTransport({"dsn": receiver.dsn})

    # WHEN the application captures a message and flushes
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=transport)
    sentry_sdk.capture_message("by instance")
    sentry_sdk.flush(timeout=2.0)

    # THEN that instance sent it
    assert sentry_sdk.get_client().transport is transport
    assert [event["message"] for event in receiver.events()] == ["by instance"]


def test_a_large_envelope_is_sent_gzipped(receiver: SentryReceiver) -> None:
    # GIVEN an event carrying 100 breadcrumbs of 900 characters (about 90 KB)
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=LeanSentryTransport)
    for index in range(100):
        sentry_sdk.add_breadcrumb(message=f"{index:03d}" + "x" * 897)

    # WHEN it is captured and flushed
    sentry_sdk.capture_message("large")
    sentry_sdk.flush(timeout=2.0)

    # THEN it arrived whole, compressed
    (event,) = receiver.events()
    assert len(event["breadcrumbs"]["values"]) == 100
    assert receiver.request_headers[0]["Content-Encoding"] == "gzip"


def test_a_flush_with_nothing_queued_does_nothing(receiver: SentryReceiver) -> None:
    # GIVEN the lean transport with nothing captured
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=LeanSentryTransport)

    # WHEN the client flushes
    sentry_sdk.flush(timeout=2.0)

    # THEN nothing was sent (no connection either)
    assert receiver.requests == 0


def test_a_middleware_that_never_flushes_keeps_the_sdks_transport(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SENTRY_DSN and flush_timeout_ms=0 (the application flushes when it wants)
    lean_from_environment(monkeypatch, receiver.dsn)

    # WHEN a record fails
    run([SentryMiddleware(flush_timeout_ms=0)], failing=1)

    # THEN the SDK's transport was chosen, which sends in the background
    assert type(sentry_sdk.get_client().transport) is HttpTransport
    assert len(receiver.wait_for_events(1)) == 1


# -- what the transport does not reproduce ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "environment"),
    [
        ({"http_proxy": "http://127.0.0.1:9"}, {}),
        ({}, {"http_proxy": "http://127.0.0.1:9"}),
        ({"socket_options": []}, {}),
        ({"keep_alive": True}, {}),
        ({"cert_file": "/nonexistent/client.pem"}, {}),
        ({}, {"CLIENT_CERT_FILE": "/nonexistent/client.pem"}),
        ({"_experiments": {"transport_num_pools": 3}}, {}),
    ],
)
def test_what_it_does_not_reproduce_is_left_to_the_sdks_transport(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], environment: dict[str, str]
) -> None:
    # GIVEN an option or variable the SDK's transport honours and the lean one does not
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    # WHEN an application asks for the lean transport with it
    try:
        sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=LeanSentryTransport, **options)
    except TypeError as error:  # cert_file / key_file: sentry-sdk 2.0 has no such option yet
        pytest.skip(str(error))

    # THEN the SDK's transport sends
    assert type(sentry_sdk.get_client().transport) is HttpTransport


def test_a_proxy_that_no_proxy_excludes_keeps_the_lean_transport(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a proxy variable, and NO_PROXY naming Sentry's host
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("no_proxy", "127.0.0.1")

    # WHEN the lean transport is asked for and an event captured
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=LeanSentryTransport)
    sentry_sdk.capture_message("direct")
    sentry_sdk.flush(timeout=2.0)

    # THEN it sends, directly
    assert isinstance(sentry_sdk.get_client().transport, LeanSentryTransport)
    assert [event["message"] for event in receiver.events()] == ["direct"]


# -- TLS ----------------------------------------------------------------------------------------------------------
def test_an_https_dsn_is_sent_over_tls_with_the_ca_certs_option(tls: tuple[ssl.SSLContext, str]) -> None:
    # GIVEN Sentry over HTTPS with a certificate of our own CA, named by ca_certs
    server, ca_file = tls
    with SentryReceiver(ssl_context=server) as receiver:
        sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=LeanSentryTransport, ca_certs=ca_file)

        # WHEN two messages are captured and flushed
        sentry_sdk.capture_message("one")
        sentry_sdk.capture_message("two")
        sentry_sdk.flush(timeout=5.0)

        # THEN both arrived
        assert [event["message"] for event in receiver.events()] == ["one", "two"]


def test_sentry_dsn_over_https_uses_ssl_cert_file(
    tls: tuple[ssl.SSLContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SENTRY_DSN over HTTPS, the CA in SSL_CERT_FILE (as the SDK reads it)
    server, ca_file = tls
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    with SentryReceiver(ssl_context=server) as receiver:
        lean_from_environment(monkeypatch, receiver.dsn)

        # WHEN a record fails
        run([SentryMiddleware()], failing=1)

        # THEN its event arrived over TLS through the lean transport
        assert isinstance(sentry_sdk.get_client().transport, LeanSentryTransport)
        assert len(receiver.events()) == 1


def test_a_certificate_of_an_unknown_ca_is_refused_and_opens_the_breaker(
    tls: tuple[ssl.SSLContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SENTRY_DSN over HTTPS whose certificate no CA of certifi's bundle signed
    server, _ = tls
    with SentryReceiver(ssl_context=server) as receiver:
        lean_from_environment(monkeypatch, receiver.dsn)

        # WHEN a record fails
        response = run([SentryMiddleware()], failing=1)

        # THEN the outcome is Powertools', nothing was delivered, and Sentry's breaker is open
        assert len(response["batchItemFailures"]) == 1
        assert receiver.events() == []
        assert breaker_for(sentry_sdk.get_client()).is_open


# -- rate limits ------------------------------------------------------------------------------------------------
class CountingTransport(LeanSentryTransport):
    """The lean transport, with the losses it records kept for the test."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.lost: list[tuple[str, str]] = []

    def record_lost_event(self, reason: str, data_category: Any = None, item: Any = None, **kwargs: Any) -> None:
        self.lost.append((reason, item.data_category if item is not None else data_category))
        super().record_lost_event(reason, data_category, item, **kwargs)


def test_a_rate_limit_drops_its_category_until_it_ends_then_reports_the_drops(receiver: SentryReceiver) -> None:
    # GIVEN Sentry answering with a 1 s rate limit on errors
    receiver.headers = {"X-Sentry-Rate-Limits": "1:error:organization"}
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=CountingTransport)
    transport = sentry_sdk.get_client().transport
    assert isinstance(transport, CountingTransport)
    sentry_sdk.capture_message("first")
    sentry_sdk.flush(timeout=2.0)
    receiver.headers = {}

    # WHEN two more are flushed while the limit holds, and one after it ended
    sentry_sdk.capture_message("limited")
    sentry_sdk.capture_message("limited too")
    sentry_sdk.flush(timeout=2.0)
    requests_while_limited = receiver.requests
    time.sleep(1.1)
    sentry_sdk.capture_message("after")
    sentry_sdk.flush(timeout=2.0)

    # THEN the limited ones were dropped without a request and counted, and the report came with the next one
    assert requests_while_limited == 1
    assert transport.lost == [("ratelimit_backoff", "error")] * 2
    assert [event["message"] for event in receiver.events()] == ["first", "after"]
    reports = [payload for envelope in receiver.envelopes for payload in envelope.payloads("client_report")]
    assert reports[0]["discarded_events"] == [{"reason": "ratelimit_backoff", "category": "error", "quantity": 2}]


def test_a_429_with_retry_after_stops_sending_without_retrying(receiver: SentryReceiver) -> None:
    # GIVEN Sentry answering 429 with Retry-After: 60
    receiver.status, receiver.headers = 429, {"Retry-After": "60"}
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=LeanSentryTransport)

    # WHEN three events are flushed, then two more
    for name in ("a", "b", "c"):
        sentry_sdk.capture_message(name)
    sentry_sdk.flush(timeout=2.0)
    sentry_sdk.capture_message("d")
    sentry_sdk.flush(timeout=2.0)

    # THEN only the first was tried: the rest were dropped while limited, and the transport says it is limited
    assert receiver.requests == 1
    transport = sentry_sdk.get_client().transport
    assert transport is not None
    assert not transport.is_healthy()


# -- dead endpoints, deadlines, shutdown -----------------------------------------------------------------------
@pytest.mark.parametrize("flavour", ["refuses-connections", "answers-503", "never-answers"])
def test_a_dead_sentry_costs_one_bounded_attempt_then_is_circuit_broken(
    flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the middleware's own client, at a Sentry that refuses connections, fails or never answers
    with SentryReceiver(mode="hang" if flavour == "never-answers" else "ok", status=503) as server:
        lean_from_environment(monkeypatch, refused_dsn() if flavour == "refuses-connections" else server.dsn)

        # WHEN two invocations have failed records
        started = time.monotonic()
        first = run([SentryMiddleware(flush_timeout_ms=300)])
        elapsed = time.monotonic() - started
        requests = server.requests
        second = run([SentryMiddleware(flush_timeout_ms=300)])

        # THEN the outcomes are Powertools', the first invocation gave up within about its flush timeout,
        # and the second did not try at all (the breaker is open)
        assert len(first["batchItemFailures"]) == len(second["batchItemFailures"]) == 2
        assert elapsed < 0.3 + 1.0
        assert breaker_for(sentry_sdk.get_client()).is_open
        assert server.requests == requests <= 1


def test_the_flush_waits_no_longer_than_the_invocations_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a Sentry that never answers, a long flush timeout, and an invocation with little time left
    with SentryReceiver(mode="hang") as hanging:
        lean_from_environment(monkeypatch, hanging.dsn)
        context = FakeLambdaContext(remaining_ms=1_000)

        # WHEN a record fails
        started = time.monotonic()
        run([SentryMiddleware(flush_timeout_ms=30_000)], failing=1, context=context)

        # THEN the flush gave up within the invocation's telemetry budget (0.5 s), far before its own timeout
        assert time.monotonic() - started < 0.5 + 1.0


def test_close_sends_what_is_queued_and_kill_drops_and_counts_it(receiver: SentryReceiver) -> None:
    # GIVEN the lean transport with one event queued
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=CountingTransport)
    client = sentry_sdk.get_client()
    transport = client.transport
    assert isinstance(transport, CountingTransport)
    sentry_sdk.capture_message("at exit")

    # WHEN the transport is killed with one more queued, then the client closed with another
    transport.capture_envelope(transport_envelope("killed"))
    client.flush(timeout=2.0)
    transport.capture_envelope(transport_envelope("dropped by kill"))
    transport.kill()
    sentry_sdk.capture_message("closed")
    client.close(timeout=2.0)

    # THEN what was flushed or closed arrived; what kill dropped was counted, not sent
    assert [event["message"] for event in receiver.events()] == ["at exit", "killed", "closed"]
    assert transport.lost == [("queue_overflow", "error")]


def test_a_full_queue_drops_and_counts_what_does_not_fit(receiver: SentryReceiver) -> None:
    # GIVEN the lean transport with room for two envelopes
    sentry_sdk.init(dsn=receiver.dsn, default_integrations=False, transport=CountingTransport, transport_queue_size=2)
    transport = sentry_sdk.get_client().transport
    assert isinstance(transport, CountingTransport)

    # WHEN three are captured before a flush
    for name in ("a", "b", "c"):
        sentry_sdk.capture_message(name)
    sentry_sdk.flush(timeout=2.0)

    # THEN two were sent and the third counted as a queue overflow
    assert [event["message"] for event in receiver.events()] == ["a", "b"]
    assert transport.lost == [("queue_overflow", "error")]


def transport_envelope(message: str) -> Any:
    from sentry_sdk.envelope import Envelope

    envelope = Envelope()
    envelope.add_event({"message": message, "level": "error", "platform": "python"})
    return envelope


def test_the_envelope_endpoint_and_auth_come_from_the_dsn() -> None:
    # GIVEN a DSN with a path prefix, a port and a project
    options = {"dsn": "https://public@sentry.example.com:8443/prefix/42", "transport_queue_size": 100}

    # WHEN the lean transport is built for it (no connection is made)
    transport = LeanSentryTransport(options)

    # THEN it posts to that project's envelope endpoint with the SDK's auth header
    assert isinstance(transport, LeanSentryTransport)
    assert transport._url == "https://sentry.example.com:8443/prefix/api/42/envelope/"
    assert "sentry_key=public" in transport._headers["X-Sentry-Auth"]
    assert transport._headers["User-Agent"].startswith("sentry.python/")
