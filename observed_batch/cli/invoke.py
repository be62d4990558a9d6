"""``observed-batch invoke``: run a Lambda batch handler locally and show what it would emit.

    observed-batch invoke examples.sqs_orders.app:handler --event examples/sqs_orders/events/sample.json \\
        --env-vars examples/sqs_orders/env.json

Each invoke is a cold start: the handler module is imported afresh (with the current directory on
``sys.path``) after the environment from ``--env-vars``/``--env`` is applied, and called once with the
event and a ``FakeLambdaContext``. What the handler prints to stdout is captured and sorted: EMF
documents (the ``metrics`` middleware), JSON log lines (``logging``), other output. When the
OpenTelemetry SDK is installed, an SDK ``TracerProvider`` is made the global provider before the
import (unless one already is) and the spans that end during the call are collected in memory and
summarised; nothing is exported. Sentry sends only if the environment names a DSN.

Exit codes: 0 when the handler returned (whatever its batchItemFailures: partial failure is a normal
outcome), 1 when it raised (at import or during the call), 2 for usage and configuration errors (bad
MODULE:HANDLER, unreadable event or env file, ``ConfigError``).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import time
import traceback
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import click

from observed_batch.cli._common import (
    HandlerFailed,
    Ticker,
    UsageProblem,
    capture_stdout,
    emf_metrics,
    read_json,
    split_telemetry,
)
from observed_batch.errors import ConfigError
from observed_batch.testing import FakeLambdaContext

__all__ = ["command", "render", "run"]

_MAX_ERROR_CHARS = 300
_MAX_FIELD_CHARS = 160
#: Log fields every line has, shown in the line's prefix rather than as key=value.
_LOG_PREFIX_FIELDS = ("event", "message", "level", "timestamp", "exception", "logger")
#: Milliseconds shown in larger units from 1 s up: record ages of old events read better as "3.2 d".
_DURATIONS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s"))
#: Fields shown first (the rest keep their order): what a reader scans for.
_LOG_FIRST_FIELDS = ("message_id", "exc_type", "exc_message", "successes", "failures", "skipped", "duration_ms")

# One span collector per SDK TracerProvider, so repeated invokes in one process (tests) do not stack
# span processors on the same provider.
_COLLECTORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


# -- inputs ---------------------------------------------------------------------------------------
def _parse_spec(spec: str) -> tuple[str, str]:
    module_name, _, attribute = spec.partition(":")
    parts = [*module_name.split("."), *attribute.split(".")]
    if not module_name or not attribute or not all(part.isidentifier() for part in parts):
        raise UsageProblem(f"expected MODULE:HANDLER such as examples.sqs_orders.app:handler, got {spec!r}")
    return module_name, attribute


def _env_value(key: str, value: Any, source: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise UsageProblem(f"{source}: value of {key} must be a string, number or boolean, got {type(value).__name__}")


def _environment(env_file: str | None, pairs: tuple[str, ...]) -> dict[str, str | None]:
    """Variables to set (``None``: unset) from a SAM-style env file and ``--env KEY=VALUE`` pairs.

    The file is either flat (``{"KEY": "value"}``) or SAM's ``sam local invoke --env-vars`` shape
    (``{"Parameters": {...}}`` for every function plus ``{"LogicalId": {...}}`` for one function).
    """
    environment: dict[str, str | None] = {}
    if env_file is not None:
        data = read_json(env_file, "env-vars file")
        if not isinstance(data, dict):
            raise UsageProblem(f"env-vars file {env_file} must hold a JSON object")
        sections = {key: value for key, value in data.items() if isinstance(value, dict)}
        functions = sorted(key for key in sections if key != "Parameters")
        if len(functions) > 1:
            raise UsageProblem(
                f"env-vars file {env_file} has sections for several functions ({', '.join(functions)}); keep one"
            )
        flat = {key: value for key, value in data.items() if not isinstance(value, dict)}
        for section in (flat, sections.get("Parameters", {}), *(sections[name] for name in functions)):
            for key, value in section.items():
                environment[key] = None if value is None else _env_value(key, value, f"env-vars file {env_file}")
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise UsageProblem(f"--env expects KEY=VALUE, got {pair!r}")
        environment[key.strip()] = value
    return environment


@contextmanager
def _patched_environ(changes: Mapping[str, str | None]) -> Iterator[None]:
    previous = {key: os.environ.get(key) for key in changes}
    try:
        for key, value in changes.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in previous.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@contextmanager
def _on_sys_path(directory: str) -> Iterator[None]:
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)


def _record_count(event: Mapping[str, Any]) -> int:
    records = event.get("Records")
    if isinstance(records, list):
        return len(records)
    kafka = event.get("records")
    if isinstance(kafka, dict):
        return sum(len(batch) for batch in kafka.values() if isinstance(batch, list))
    return 0


# -- spans ----------------------------------------------------------------------------------------
def _span_collector() -> Any:
    """Attach (once per provider) a span processor keeping ended spans while ``active``, or ``None``
    without the OpenTelemetry SDK."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    except ImportError:
        return None

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # pragma: no cover - set refused by a foreign provider
            return None
    collector = _COLLECTORS.get(provider)
    if collector is None:

        class _Collector(SpanProcessor):
            def __init__(self) -> None:
                self.active = False
                self.spans: list[ReadableSpan] = []

            def on_end(self, span: ReadableSpan) -> None:
                if self.active:
                    self.spans.append(span)

        collector = _Collector()
        provider.add_span_processor(collector)
        _COLLECTORS[provider] = collector
    collector.spans = []
    return collector


def _hex(value: int, width: int) -> str:
    return format(value, f"0{width}x")


def _span_dict(span: Any) -> dict[str, Any]:
    context = span.context
    duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e6  # collected spans have ended
    return {
        "name": span.name,
        "kind": span.kind.name,
        "status": span.status.status_code.name,
        "duration_ms": duration,
        "trace_id": _hex(context.trace_id, 32),
        "span_id": _hex(context.span_id, 16),
        "parent_span_id": _hex(span.parent.span_id, 16) if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "links": [
            {
                "trace_id": _hex(link.context.trace_id, 32),
                "span_id": _hex(link.context.span_id, 16),
                "attributes": dict(link.attributes or {}),
            }
            for link in span.links
        ],
        "events": [event.name for event in span.events],
    }


# -- running --------------------------------------------------------------------------------------
def _load(module_name: str, attribute: str) -> Callable[..., Any]:
    sys.modules.pop(module_name, None)  # every invoke is a cold start
    importlib.invalidate_caches()  # a module written a moment ago must be found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise UsageProblem(
                f"cannot import {module_name!r}: no module named {missing!r}"
                " (run from the directory that contains it, or check MODULE:HANDLER)"
            ) from None
        raise HandlerFailed(f"importing {module_name} raised {_describe(exc)}") from None
    except ConfigError as exc:
        raise UsageProblem(f"configuration error while importing {module_name}: {exc}") from None
    except (Exception, SystemExit) as exc:
        raise HandlerFailed(f"importing {module_name} raised {_describe(exc)}") from None
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise UsageProblem(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise UsageProblem(f"{module_name}:{attribute} is not callable")
    handler: Callable[..., Any] = target
    return handler


async def _wait(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _call(handler: Callable[..., Any], event: Any, context: Any) -> Any:
    result = handler(event, context)
    if inspect.isawaitable(result):
        result = asyncio.run(_wait(result))
    return result


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


def run(
    spec: str,
    event: Any,
    *,
    environment: Mapping[str, str | None] | None = None,
    remaining_ms: int = 30_000,
    function_name: str = "observed-batch-local",
    directory: str | None = None,
) -> dict[str, Any]:
    """Invoke ``spec`` (``module:handler``) once; returns the report ``--json`` prints.

    Raises ``UsageProblem`` (bad spec, ``ConfigError``) or ``HandlerFailed`` (the module raised at
    import); an exception from the handler call is reported in ``report["error"]``.
    """
    module_name, attribute = _parse_spec(spec)
    if not isinstance(event, dict):
        raise UsageProblem(f"the event must be a JSON object (a Lambda event), got {type(event).__name__}")
    records = _record_count(event)
    with _patched_environ(environment or {}), _on_sys_path(directory or os.getcwd()):
        collector = _span_collector()
        with capture_stdout() as captured, Ticker(f"still running {spec} on {records} records"):
            handler = _load(module_name, attribute)
            context = FakeLambdaContext(remaining_ms, function_name=function_name)
            if collector is not None:
                collector.active = True
            started = time.perf_counter()
            response: Any = None
            error: dict[str, Any] | None = None
            try:
                response = _call(handler, event, context)
            except KeyboardInterrupt:
                raise
            except ConfigError as exc:
                raise UsageProblem(f"configuration error: {exc}") from None
            except BaseException as exc:
                error = {
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "summary": _describe(exc),
                    "traceback": traceback.format_exc(),
                }
            finally:
                if collector is not None:
                    collector.active = False
            duration_ms = (time.perf_counter() - started) * 1000.0
        lines = captured()
    telemetry = split_telemetry(lines)
    failures = response.get("batchItemFailures") if isinstance(response, dict) else None
    return {
        "handler": spec,
        "records": records,
        "duration_ms": round(duration_ms, 3),
        "response": response,
        "failed_records": len(failures) if isinstance(failures, list) else None,
        "error": error,
        "metrics": telemetry.emf,
        "logs": telemetry.logs,
        "spans": [_span_dict(span) for span in collector.spans] if collector is not None else None,
        "stdout": telemetry.other,
    }


# -- rendering ------------------------------------------------------------------------------------
def _capped(lines: list[str], limit: int) -> list[str]:
    if len(lines) <= limit:
        return lines
    return [*lines[:limit], f"  ... {len(lines) - limit} more (--json shows all)"]


def _clip(text: str, limit: int = _MAX_FIELD_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))


def _number(value: float, unit: str = "") -> str:
    if unit == "Milliseconds" and abs(value) >= 1000:
        size, suffix = next((size, suffix) for size, suffix in _DURATIONS if abs(value) >= size)
        return f"{value / size:.3g} {suffix}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _render_response(report: dict[str, Any]) -> list[str]:
    records, error = report["records"], report["error"]
    if error is not None:
        lines = [f"Response: none, the handler raised {error['summary']}"]
        lines += ["  " + line for line in error["traceback"].rstrip().splitlines()[-12:]]
        return lines
    failed = report["failed_records"]
    if failed is None:
        head = "Response (no batchItemFailures: not a partial batch response)"
    elif failed == 0:
        head = f"Response: all {records} records succeeded"
    else:
        head = f"Response: {failed} of {records} records failed"
    return [head, "  " + _clip(json.dumps(report["response"], default=str), 2000)]


def _render_metrics(documents: list[dict[str, Any]], limit: int) -> list[str]:
    lines = [f"Metrics ({len(documents)} EMF document{'s' if len(documents) != 1 else ''})"]
    for document in documents[:limit]:
        directives = document.get("_aws", {}).get("CloudWatchMetrics") or [{}]
        directive = directives[0] if isinstance(directives[0], dict) else {}
        names = sorted({name for group in directive.get("Dimensions") or [] for name in group})
        dimensions = " ".join(f"{name}={document.get(name)}" for name in names)
        lines.append(f"  namespace {directive.get('Namespace')}  dimensions {dimensions or '(none)'}")
        for stat in emf_metrics(document):
            if stat.is_count:
                lines.append(f"    {stat.name:<22} {_number(stat.total):>8}  {stat.unit}")
            else:
                low, median, high = (_number(v, stat.unit) for v in (stat.minimum, stat.median, stat.maximum))
                spread = f"min {low}  p50 {median}  max {high}"
                lines.append(f"    {stat.name:<22} {stat.samples:>8}  samples  {spread}  ({stat.unit})")
    return lines


def _render_logs(logs: list[dict[str, Any]], limit: int) -> list[str]:
    lines = [f"Logs ({len(logs)} line{'s' if len(logs) != 1 else ''})"]
    for log in logs:
        event = log.get("event", log.get("message", ""))
        keys = sorted(
            (key for key in log if key not in _LOG_PREFIX_FIELDS),
            key=lambda key: _LOG_FIRST_FIELDS.index(key) if key in _LOG_FIRST_FIELDS else len(_LOG_FIRST_FIELDS),
        )
        fields = " ".join(f"{key}={_scalar(log[key])}" for key in keys)
        lines.append(_clip(f"  {str(log.get('level', '')).upper():<7} {_scalar(event):<16} {fields}".rstrip(), 240))
    return _capped(lines, limit + 1)


def _render_spans(spans: list[dict[str, Any]], limit: int) -> list[str]:
    lines = [f"Spans ({len(spans)})"]
    for span in spans:
        details = [
            f"{key}={_scalar(value)}"
            for key, value in span["attributes"].items()
            if key.endswith("message.id") or key == "error.type" or key.endswith("message_count")
        ]
        if span["links"]:
            details.append(f"links={len(span['links'])}")
        head = f"  {span['name']}  {span['kind']}  {span['status']}  {span['duration_ms']:.2f} ms"
        lines.append(_clip(f"{head}  {' '.join(details)}".rstrip(), 240))
    return _capped(lines, limit + 1)


def render(report: dict[str, Any], limit: int = 20) -> str:
    """The human-readable report."""
    sections = [
        [f"{report['handler']}: {report['records']} records in {report['duration_ms']:.1f} ms"],
        _render_response(report),
    ]
    if report["metrics"]:
        sections.append(_render_metrics(report["metrics"], limit))
    if report["logs"]:
        sections.append(_render_logs(report["logs"], limit))
    if report["spans"]:
        sections.append(_render_spans(report["spans"], limit))
    if report["stdout"]:
        output = [f"Handler output ({len(report['stdout'])} lines)", *("  " + line for line in report["stdout"])]
        sections.append(_capped(output, limit + 1))
    if not (report["metrics"] or report["logs"] or report["spans"]):
        sections.append(["No telemetry captured: is OBSERVED_BATCH_MIDDLEWARE set (see --env-vars)?"])
    return "\n\n".join("\n".join(section) for section in sections)


@click.command("invoke")
@click.argument("handler_spec", metavar="MODULE:HANDLER")
@click.option("--event", "-e", "event_path", required=True, metavar="FILE", help="Event JSON file, '-' for stdin.")
@click.option(
    "--env-vars",
    "-n",
    "env_file",
    metavar="FILE",
    default=None,
    help='JSON file of environment variables: flat, or SAM\'s {"Parameters": {...}} shape.',
)
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Set one variable (repeatable).")
@click.option(
    "--remaining-ms",
    type=click.IntRange(0),
    default=30_000,
    show_default=True,
    help="Time budget of the fake Lambda context.",
)
@click.option("--function-name", default="observed-batch-local", show_default=True, help="Fake context's name.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--max-lines", type=click.IntRange(1), default=20, show_default=True, help="Lines per section (human output)."
)
def command(
    handler_spec: str,
    event_path: str,
    env_file: str | None,
    env_pairs: tuple[str, ...],
    remaining_ms: int,
    function_name: str,
    as_json: bool,
    max_lines: int,
) -> None:
    """Run MODULE:HANDLER on an event with a fake Lambda context; print its partial batch response and
    the telemetry it emitted (EMF metrics, log lines, spans).

    Exit code 1 when the handler raised, 2 for usage or configuration errors, 0 otherwise (failed
    records in batchItemFailures are a normal outcome).
    """
    _parse_spec(handler_spec)
    environment = _environment(env_file, env_pairs)
    event = read_json(event_path, "event file")
    report = run(
        handler_spec,
        event,
        environment=environment,
        remaining_ms=remaining_ms,
        function_name=function_name,
    )
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        click.echo(render(report, max_lines))
    if report["error"] is not None:
        raise HandlerFailed(f"handler raised {report['error']['summary']}")
