"""Backends load only with the middleware that needs them (cold start cost, optional extras).

Each check runs in a fresh interpreter: this test process has long imported every backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from otlp_receiver import OtlpReceiver

from observed_batch.config import BUILTINS, builtin_class
from observed_batch.errors import ConfigError

BACKENDS = ("aws_xray_sdk", "opentelemetry", "sentry_sdk", "structlog")

_REPORT = f"""
import json, sys
print(json.dumps(sorted({{name.split(".")[0] for name in sys.modules}} & set({BACKENDS!r}))))
"""


def _backends_loaded_by(code: str, cwd: Path) -> list[str]:
    """The backend packages in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVED_BATCH_")}
    return _loaded_in_fresh_interpreter(code + _REPORT, cwd, environment)


def _loaded_in_fresh_interpreter(code: str, cwd: Path, environment: dict[str, str]) -> list[str]:
    """Runs ``code`` (which prints a JSON list last) in a fresh interpreter and returns that list."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def _require(name: str) -> None:
    try:
        builtin_class(name)
    except ConfigError as exc:
        pytest.skip(f"built-in {name!r} not available: {exc}")


@pytest.mark.parametrize("module", ["observed_batch", "observed_batch.middleware", "observed_batch.testing"])
def test_importing_the_package_loads_no_backend(module: str, tmp_path: Path) -> None:
    # GIVEN a fresh interpreter
    # WHEN it imports the package (the built-ins' package exposes its classes lazily)
    loaded = _backends_loaded_by(f"import {module}", tmp_path)

    # THEN none of opentelemetry, sentry_sdk, structlog is imported
    assert loaded == []


def test_backend_free_middlewares_load_no_backend(tmp_path: Path) -> None:
    # GIVEN the two built-ins that need no third-party backend
    for name in ("metrics", "timeout_guard"):
        _require(name)

    # WHEN a processor enables them
    loaded = _backends_loaded_by(
        "from observed_batch import BatchProcessor, EventType\n"
        "BatchProcessor(EventType.SQS, middleware=['metrics', 'timeout_guard'])\n",
        tmp_path,
    )

    # THEN still no backend is imported
    assert loaded == []


@pytest.mark.parametrize(("name", "backends"), [("tracing", ["opentelemetry"]), ("logging", [])])
def test_a_middleware_loads_only_its_own_backend(name: str, backends: list[str], tmp_path: Path) -> None:
    # GIVEN a built-in with a backend
    assert BUILTINS[name].backend is not None
    _require(name)

    # WHEN a processor enables it alone
    loaded = _backends_loaded_by(
        f"from observed_batch import BatchProcessor, EventType\nBatchProcessor(EventType.SQS, middleware=[{name!r}])\n",
        tmp_path,
    )

    # THEN exactly its backend is imported, not the others' (logging: none while the application has not
    # imported structlog, see test_logging_writes_its_lines_without_importing_structlog)
    assert loaded == backends


_LOGGING_BATCHES = """
import contextlib, io, json, sys
from observed_batch import BatchProcessor, EventType, process_partial_response
from observed_batch.testing import sqs_event
user_lines = []
def handler(record):
    if {import_in_handler!r}:
        import structlog
    if "structlog" in sys.modules:
        import structlog
        capture = lambda _logger, _method, line: user_lines.append(line) or ""
        structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
        structlog.get_logger().info("handled")
    if record["body"] == "fail":
        raise ValueError("declined")
processor = BatchProcessor(EventType.SQS, middleware=["logging"], raise_on_entire_batch_failure=False)
event = sqs_event(2)
event["Records"][1]["body"] = "fail"
loaded = []
out = io.StringIO()
with contextlib.redirect_stdout(out):
    for _ in range(2):
        process_partial_response(event, handler, processor)
        loaded.append("structlog" in sys.modules)
ours = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
print(json.dumps([
    loaded,
    [line.get("index") for line in user_lines if line["event"] == "handled"],
    [[line["event"], line.get("index")] for line in ours],
]))
"""


#: One batch's lines of ours (a failure, the summary), as [event, index].
_OUR_LINES = [["record_failed", 1], ["batch_summary", None]]


@pytest.mark.parametrize(
    ("prelude", "import_in_handler", "loaded", "user_lines", "our_lines"),
    [
        ("", False, [False, False], [], _OUR_LINES * 2),
        ("import structlog\n", False, [True, True], [0, 1, 0, 1], _OUR_LINES),
        ("", True, [True, True], [None, None, 0, 1], _OUR_LINES),
    ],
    ids=["never imported", "imported first", "imported by the first batch's handler"],
)
def test_logging_writes_its_lines_without_importing_structlog(
    tmp_path: Path,
    prelude: str,
    import_in_handler: bool,
    loaded: list[bool],
    user_lines: list[int | None],
    our_lines: list[list[Any]],
) -> None:
    # GIVEN the default logging middleware, and an application that imports structlog never, first, or only
    # in its handler during the first batch (it then configures structlog to capture its lines, context merged)
    code = prelude + _LOGGING_BATCHES.format(import_in_handler=import_in_handler)

    # WHEN two batches with a failing record are processed in a fresh interpreter
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OBSERVED_BATCH_")}
    found = _loaded_in_fresh_interpreter(code, tmp_path, environment)

    # THEN structlog is loaded only by the application; the record context reaches the application's
    # structlog lines from the first batch that starts with structlog imported; until then our own lines
    # go to stdout (after it, through the structlog configuration the handler made)
    assert found == [loaded, user_lines, our_lines]


@pytest.mark.parametrize("option", ["stdlib_interop=True", "configure_structlog=True"])
def test_logging_options_that_work_through_structlog_import_it(option: str, tmp_path: Path) -> None:
    # GIVEN the logging middleware with an option that needs structlog, the application not importing it
    # WHEN a processor is built with it
    loaded = _backends_loaded_by(
        "from observed_batch import BatchProcessor, EventType\n"
        "from observed_batch.middleware import LoggingMiddleware\n"
        f"BatchProcessor(EventType.SQS, middleware=[LoggingMiddleware({option})])\n",
        tmp_path,
    )

    # THEN structlog is imported by the middleware
    assert loaded == ["structlog"]


@pytest.mark.parametrize(("failing", "loaded"), [(False, []), (True, ["sentry_sdk"])])
def test_sentry_is_imported_only_when_a_record_fails(tmp_path: Path, failing: bool, loaded: list[str]) -> None:
    # GIVEN the sentry built-in with a SENTRY_DSN (nothing listens there), nobody else using Sentry
    _require("sentry")
    code = (
        "import os\n"
        "os.environ['SENTRY_DSN'] = 'http://key@127.0.0.1:9/1'\n"
        "from observed_batch import BatchProcessor, EventType, process_partial_response\n"
        "from observed_batch.testing import sqs_event\n"
        "def handler(record):\n"
        f"    if {failing!r}:\n"
        "        raise ValueError('declined')\n"
        "processor = BatchProcessor(EventType.SQS, middleware=['sentry'], raise_on_entire_batch_failure=False)\n"
        "process_partial_response(sqs_event(3), handler, processor)\n"
    )

    # WHEN a batch is processed, with or without a failure
    # THEN sentry_sdk was imported (and initialised) only by a failure
    assert _backends_loaded_by(code, tmp_path) == loaded


def test_options_of_builtins_that_are_not_enabled_are_checked_without_their_backends(tmp_path: Path) -> None:
    # GIVEN options of tracing, sentry and logging in the environment, one of them misspelt, none enabled
    loaded = _backends_loaded_by(
        "import os\n"
        "from observed_batch import BatchProcessor, ConfigError, EventType\n"
        "os.environ['OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTES'] = '100'\n"
        "os.environ['OBSERVED_BATCH_SENTRY_INCLUDE_BODY'] = 'true'\n"
        "os.environ['OBSERVED_BATCH_LOGGING_LEVEL'] = 'debug'\n"
        "BatchProcessor(EventType.SQS, middleware=['metrics'])\n"
        "os.environ['OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTE'] = '100'\n"
        "try:\n"
        "    BatchProcessor(EventType.SQS, middleware=['metrics'])\n"
        "    raise SystemExit('the misspelt option was accepted')\n"
        "except ConfigError as exc:\n"
        "    assert 'did you mean OBSERVED_BATCH_TRACING_MAX_RESPONSE_BYTES' in str(exc), exc\n",
        tmp_path,
    )

    # THEN the valid ones pass, the misspelt one fails, and no backend was imported to tell
    assert loaded == []


@pytest.mark.parametrize(
    ("name", "backend", "loads"),
    [("tracing", "xray", ["aws_xray_sdk"]), ("logging", "powertools", [])],
)
def test_the_other_backend_loads_only_its_own_package(
    name: str, backend: str, loads: list[str], tmp_path: Path
) -> None:
    # GIVEN a built-in with its non-default backend chosen by environment variable
    # WHEN a processor enables it alone
    loaded = _backends_loaded_by(
        f"import os\nos.environ['OBSERVED_BATCH_{name.upper()}_BACKEND'] = {backend!r}\n"
        f"from observed_batch import BatchProcessor, EventType\nBatchProcessor(EventType.SQS, middleware=[{name!r}])\n",
        tmp_path,
    )

    # THEN the default backend's package (opentelemetry, structlog) is not imported
    assert loaded == loads


#: What tracing loads on first use only: the OTLP exporter, protobuf (its encoder), HTTP clients, the
#: X-Ray propagator (for the first record with an ``AWSTraceHeader``); ``importlib.metadata`` stands for
#: entry-point scans (OTel's context, resource detectors, samplers), which the default set-up needs none of;
#: ``email`` comes with ``http.client`` and ``importlib.metadata``. (Not ``ssl``: Powertools' batch module
#: loads it through ``asyncio``; that our connection loads none of them is checked on its own, below.)
_EXPORT_MODULES = (
    "importlib.metadata",
    "opentelemetry.exporter",
    "google.protobuf",
    "requests",
    "urllib3",
    "http.client",
    "email",
    "opentelemetry.propagators.aws",
)

_EXPORT_REPORT = f"""
import json, sys
print(json.dumps(sorted(m for m in {_EXPORT_MODULES!r} if m in sys.modules)))
"""


def _export_modules_loaded_by(code: str, cwd: Path, endpoint: str, **variables: str) -> list[str]:
    """The export-related modules in ``sys.modules`` after ``code`` ran in a fresh interpreter whose
    tracing provider is built from ``OTEL_*`` with ``endpoint``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OBSERVED_BATCH_", "OTEL_"))}
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "https_proxy", "HTTPS_PROXY"):
        environment.pop(proxy, None)
    environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = endpoint
    environment["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] = "1"
    environment.update(variables)
    return _loaded_in_fresh_interpreter(code + _EXPORT_REPORT, cwd, environment)


def _lean_release() -> bool:
    try:
        from observed_batch.middleware import _otel_compat

        return _otel_compat.lean_reproduces(_otel_compat.exporter_user_agent() or "")
    except ImportError:  # pragma: no cover - without the tracing extra, _require skips
        return True


#: Cold starts without OTel's exporter need an exporter release the lean one stands in for (1.45 on); with an
#: older one, OTel's own exporter sends (through requests before it took a transport).
needs_lean_release = pytest.mark.skipif(
    not _lean_release(), reason="the lean exporter stands in for opentelemetry-exporter-otlp-proto-http 1.45 and newer"
)


def _traced_batch(flush_timeout_ms: int) -> str:
    return (
        "from observed_batch import BatchProcessor, EventType, process_partial_response\n"
        "from observed_batch.middleware import TracingMiddleware\n"
        "from observed_batch.testing import sqs_event\n"
        f"tracing = TracingMiddleware(flush_timeout_ms={flush_timeout_ms})\n"
        "processor = BatchProcessor(EventType.SQS, middleware=[tracing])\n"
        "process_partial_response(sqs_event(3), lambda record: None, processor)\n"
    )


def test_tracing_builds_its_provider_without_the_exporter_until_spans_are_exported(tmp_path: Path) -> None:
    # GIVEN tracing through the provider it builds from OTEL_*, and no flush at batch end
    _require("tracing")

    # WHEN a batch without X-Ray headers is traced (its spans wait in the batch span processor)
    loaded = _export_modules_loaded_by(_traced_batch(0), tmp_path, "http://127.0.0.1:9/v1/traces")

    # THEN neither the OTLP exporter, protobuf, any HTTP client nor the X-Ray propagator was imported,
    # and no entry point was looked up: nothing beyond what importing the OTel SDK loads by itself (1.26 reads
    # its own version through importlib.metadata and brings email with its importlib_metadata backport)
    sdk_alone = _export_modules_loaded_by("import opentelemetry.sdk.trace, opentelemetry.sdk.resources\n", tmp_path, "")
    assert loaded == sdk_alone


@needs_lean_release
def test_the_first_export_to_a_plain_http_collector_imports_neither_protobuf_nor_otels_exporter(tmp_path: Path) -> None:
    # GIVEN tracing with its default flush at batch end, to a plain-HTTP collector (the collector layer's
    # convention; nothing listens at this port, the export fails at once)
    _require("tracing")

    # WHEN a batch is traced and its spans exported
    loaded = _export_modules_loaded_by(_traced_batch(2000), tmp_path, "http://127.0.0.1:9/v1/traces")

    # THEN our lean exporter encoded and sent them over a socket: no protobuf, no OTel exporter package
    # (nor its importlib.metadata), no requests or urllib3, not even http.client (nor its email package)
    assert loaded == []


@needs_lean_release
def test_a_setting_only_otels_exporter_honours_keeps_otels_exporter(tmp_path: Path) -> None:
    # GIVEN tracing to a plain-HTTP collector, with a client certificate for OTel's exporter
    _require("tracing")

    # WHEN a batch is traced and its spans exported
    loaded = _export_modules_loaded_by(
        _traced_batch(2000),
        tmp_path,
        "http://127.0.0.1:9/v1/traces",
        OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE="/nonexistent/client.pem",
    )

    # THEN OTel's exporter and its protobuf encoder sent them, over our connection (plain HTTP)
    assert {"google.protobuf", "opentelemetry.exporter"} <= set(loaded)
    assert "requests" not in loaded
    assert "http.client" not in loaded


def test_the_plain_http_connection_imports_no_http_client_ssl_or_email(tmp_path: Path) -> None:
    # GIVEN our connection module alone, loaded from its file in a fresh interpreter (the package would
    # bring Powertools, whose asyncio loads ssl), and a collector answering on 127.0.0.1
    from observed_batch.middleware import _http_connection

    with OtlpReceiver() as receiver:
        code = (
            "import importlib.util, json, sys\n"
            f"spec = importlib.util.spec_from_file_location('connection', {_http_connection.__file__!r})\n"
            "connection = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(connection)\n"
            "answer = connection.KeptAliveConnection().request(\n"
            f"    'POST', {receiver.endpoint!r}, headers={{'content-type': 'application/x-protobuf'}},\n"
            "    timeout=5, data=b'')\n"
            "assert answer.status == 200, answer.status\n"
            "print(json.dumps(sorted(m for m in ('http.client', 'ssl', 'email') if m in sys.modules)))\n"
        )

        # WHEN it sends a request and reads the answer
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
        )

    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])

    # THEN neither http.client, ssl nor the email package was imported
    assert loaded == []


def test_an_https_collector_is_still_reached_through_requests(tmp_path: Path) -> None:
    # GIVEN tracing to an HTTPS collector (requests' CA bundle and the OTEL_* certificate settings apply)
    _require("tracing")

    # WHEN a batch is traced and its spans exported
    loaded = _export_modules_loaded_by(_traced_batch(2000), tmp_path, "https://127.0.0.1:9/v1/traces")

    # THEN the exporter sent through requests, as it always did
    assert {"requests", "urllib3", "opentelemetry.exporter"} <= set(loaded)
