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
handler spec, unreadable event or env file, ``ConfigError``). The handler is ``module:function`` or,
as in a SAM template's ``Handler:``, ``module.function``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import click

from observed_batch.cli._common import (
    HandlerFailed,
    Ticker,
    UsageProblem,
    capture_stdout,
    config_problem,
    read_json,
    split_telemetry,
)
from observed_batch.cli._exceptions import describe, exception_report
from observed_batch.cli._render import render
from observed_batch.cli._spans import deployed_destination, span_collector, span_dict
from observed_batch.config import is_disabled
from observed_batch.errors import ConfigError
from observed_batch.testing import FakeLambdaContext

__all__ = ["command", "render", "run"]

_SPEC_EXAMPLE = "examples.sqs_orders.app:handler or examples.sqs_orders.app.handler"


# -- inputs ---------------------------------------------------------------------------------------
def _parse_spec(spec: str) -> tuple[str, str]:
    """``module:function`` (attribute paths allowed after the colon) or ``module.function``, the form of
    Lambda's and SAM's ``Handler:`` (the last dot splits)."""
    if ":" in spec:
        module_name, _, attribute = spec.partition(":")
    else:
        module_name, _, attribute = spec.rpartition(".")
    parts = [*module_name.split("."), *attribute.split(".")]
    if not module_name or not attribute or not all(part.isidentifier() for part in parts):
        raise UsageProblem(f"expected MODULE:HANDLER or MODULE.HANDLER such as {_SPEC_EXAMPLE}, got {spec!r}")
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
        _set_environ(changes)
        yield
    finally:
        _set_environ(previous)


def _set_environ(values: Mapping[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
                " (run from the directory that contains it, or check the handler spec)"
            ) from None
        raise HandlerFailed(f"importing {module_name} raised {describe(exc)}") from None
    except ConfigError as exc:
        raise config_problem(exc, f"while importing {module_name}") from None
    except (Exception, SystemExit) as exc:
        raise HandlerFailed(f"importing {module_name} raised {describe(exc)}") from None
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


@contextmanager
def _watch_processors() -> Iterator[list[list[str]]]:
    """Yield a list that receives the middleware names of every observed_batch processor built meanwhile
    (at import or during the call), so the report can tell "no middleware enabled" from "enabled but
    silent". Processors resolve their chain through ``processors.build_middlewares`` (a module global)."""
    from observed_batch import processors

    chains: list[list[str]] = []
    namespace = vars(processors)
    original = namespace["build_middlewares"]

    def recording(*args: Any, **kwargs: Any) -> Any:
        chain = original(*args, **kwargs)
        chains.append([str(getattr(middleware, "name", type(middleware).__name__)) for middleware in chain])
        return chain

    namespace["build_middlewares"] = recording
    try:
        yield chains
    finally:
        namespace["build_middlewares"] = original


def _disabled() -> bool:
    try:
        return is_disabled()
    except ConfigError:  # a bad value fails the processor's construction, which the report shows
        return False


def run(
    spec: str,
    event: Any,
    *,
    environment: Mapping[str, str | None] | None = None,
    remaining_ms: int = 30_000,
    function_name: str = "observed-batch-local",
    directory: str | None = None,
) -> dict[str, Any]:
    """Invoke ``spec`` (``module:handler`` or ``module.handler``) once; returns the report ``--json`` prints.

    Raises ``UsageProblem`` (bad spec, ``ConfigError``) or ``HandlerFailed`` (the module raised at
    import); an exception from the handler call is reported in ``report["error"]``.
    """
    module_name, attribute = _parse_spec(spec)
    if not isinstance(event, dict):
        raise UsageProblem(f"the event must be a JSON object (a Lambda event), got {type(event).__name__}")
    records = _record_count(event)
    with _patched_environ(environment or {}), _on_sys_path(directory or os.getcwd()):
        collector = span_collector()
        destination = deployed_destination(os.environ)
        disabled = _disabled()
        with (
            capture_stdout() as captured,
            Ticker(f"still running {spec} on {records} records"),
            _watch_processors() as chains,
        ):
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
                raise config_problem(exc) from None
            except BaseException as exc:
                error = exception_report(exc)
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
        "disabled": disabled,
        "middleware": chains,
        "metrics": telemetry.emf,
        "logs": telemetry.logs,
        "spans": [span_dict(span) for span in collector.spans] if collector is not None else None,
        "spans_deployed_to": destination,
        "stdout": telemetry.other,
    }


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
    """Run MODULE:HANDLER (or MODULE.HANDLER, as in a SAM template) on an event with a fake Lambda
    context; print its partial batch response and the telemetry it emitted (EMF metrics, logs, spans).

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
