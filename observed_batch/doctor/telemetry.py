"""doctor: where a deployed function's telemetry goes, read from its configuration.

The checks ``tracing`` needs to be useful in Lambda: spans need a destination. With no tracer provider
of the user's, no ``OTEL_EXPORTER_OTLP_*`` / ``OTEL_TRACES_EXPORTER`` and no collector layer, the OTLP
exporter sends to ``http://localhost:4318`` where nothing listens: the breaker then drops every span
(``TelemetryDropped{backend=otel}``). Same reading as the tracing middleware's cold-start warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from observed_batch import config

from .model import Finding

__all__ = ["check_telemetry", "collector_layers"]

_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_EXPORTER")
#: Words in the ARNs of the layers that run an OTLP collector next to the function (ADOT, the OTel
#: community's collector layer).
_COLLECTOR_LAYER_WORDS = ("otel", "opentelemetry", "adot")
_COLLECTOR_CONVENTION = "http://localhost:4318"


def collector_layers(function: Mapping[str, Any]) -> list[str]:
    """ARNs of the function's layers that look like an OpenTelemetry collector."""
    layers = function.get("Layers") or []
    arns = [str(layer.get("Arn") or "") for layer in layers if isinstance(layer, Mapping)]
    return [arn for arn in arns if any(word in arn.split(":")[-2].lower() for word in _COLLECTOR_LAYER_WORDS)]


def check_telemetry(function: Mapping[str, Any]) -> list[Finding]:
    environ: Mapping[str, str] = (function.get("Environment") or {}).get("Variables") or {}
    names = [n.strip() for n in environ.get(config.ENV_MIDDLEWARE, "").split(",") if n.strip()]
    if "tracing" not in names or any(environ.get(v) for v in _ENDPOINT_VARIABLES) or collector_layers(function):
        return []
    name = str(function.get("FunctionName") or "function")
    return [
        Finding(
            "tracing-no-destination",
            f"function {name}",
            "tracing is enabled but neither OTEL_EXPORTER_OTLP_ENDPOINT nor OTEL_TRACES_EXPORTER is set and no"
            f" collector layer is attached: spans go to {_COLLECTOR_CONVENTION}, where nothing listens, and are"
            " dropped (TelemetryDropped, backend otel)",
            f"attach an OpenTelemetry collector layer (ADOT) to {name}, or set OTEL_EXPORTER_OTLP_ENDPOINT to your"
            " collector, or OTEL_TRACES_EXPORTER=none if a tracer provider of your own is set in code",
        )
    ]
