"""doctor: where a deployed function's telemetry goes, read from its configuration.

``sentry`` without ``SENTRY_DSN`` sends nothing (the SDK is a no-op without a DSN); ``metrics`` without
``POWERTOOLS_METRICS_NAMESPACE`` / ``POWERTOOLS_SERVICE_NAME`` emits to the defaults, which the dashboard
and the alarm pack only find if they were generated with the same defaults.

The checks ``tracing`` needs to be useful in Lambda: spans need a destination. With no tracer provider
of the user's, no ``OTEL_EXPORTER_OTLP_*`` / ``OTEL_TRACES_EXPORTER`` and no collector layer, the OTLP
exporter sends to ``http://localhost:4318`` where nothing listens: the breaker then drops every span
(``TelemetryDropped{backend=otel}``). Same reading as the tracing middleware's cold-start warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observed_batch import config
from observed_batch.metric_schema import DEFAULT_NAMESPACE, DEFAULT_SERVICE

from .model import Finding, _environ, _middleware_names

__all__ = ["check_telemetry", "collector_layers"]

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER")
#: Words in the ARNs of the layers that run an OTLP collector next to the function (ADOT, the OTel
#: community's collector layer).
_COLLECTOR_LAYER_WORDS = ("otel", "opentelemetry", "adot")
_COLLECTOR_CONVENTION = "http://localhost:4318"
_SENTRY_DSN = "SENTRY_DSN"
_NAMESPACE, _SERVICE = "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_SERVICE_NAME"


def collector_layers(function: Mapping[str, Any]) -> list[str]:
    """ARNs of the function's layers that look like an OpenTelemetry collector."""
    layers = function.get("Layers") or []
    arns = [str(layer.get("Arn") or "") for layer in layers if isinstance(layer, Mapping)]
    return [arn for arn in arns if any(word in arn.split(":")[-2].lower() for word in _COLLECTOR_LAYER_WORDS)]


def check_telemetry(function: Mapping[str, Any]) -> list[Finding]:
    environ = _environ(function)
    names = _middleware_names(function)
    name = str(function.get("FunctionName") or "function")
    findings = _check_metrics(name, environ) if "metrics" in names else []
    if "sentry" in names and not environ.get(_SENTRY_DSN):
        findings.append(
            Finding(
                "sentry-no-dsn",
                f"function {name}",
                f"the sentry middleware is enabled but {_SENTRY_DSN} is not set on {name}",
                f"set {_SENTRY_DSN} on {name} (or remove sentry from {config.ENV_MIDDLEWARE})",
                severity="warning",
                why="without a DSN the Sentry SDK sends nothing: failed records reach no one",
            )
        )
    if "tracing" not in names or any(environ.get(v) for v in _ENDPOINT_VARIABLES) or collector_layers(function):
        return findings
    findings.append(
        Finding(
            "tracing-no-destination",
            f"function {name}",
            "tracing is enabled but neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_TRACES_EXPORTER is set and no"
            f" collector layer is attached: spans go to {_COLLECTOR_CONVENTION}, where nothing listens, and are"
            " dropped (TelemetryDropped, backend otel)",
            f"attach an OpenTelemetry collector layer (ADOT) to {name}, or set OTEL_EXPORTER_OTLP_ENDPOINT to your"
            " collector, or OTEL_TRACES_EXPORTER=none if a tracer provider of your own is set in code",
            severity="warning",
            why="every span is dropped: traces are empty while the function pays for building them",
        )
    )
    return findings


def _check_metrics(name: str, environ: Mapping[str, str]) -> list[Finding]:
    findings = []
    for variable, default in ((_NAMESPACE, DEFAULT_NAMESPACE), (_SERVICE, DEFAULT_SERVICE)):
        if not environ.get(variable):
            findings.append(
                Finding(
                    "metrics-" + ("namespace" if variable == _NAMESPACE else "service") + "-unset",
                    f"function {name}",
                    f"the metrics middleware is enabled but {variable} is not set: metrics go to {default!r}",
                    f"set {variable} on {name} and pass the same value to observed-batch dashboard and alarms",
                    severity="warning",
                    why="every function without it shares one default series, and dashboards and alarms read the"
                    " wrong one",
                )
            )
    return findings
