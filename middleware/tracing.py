"""``tracing``: a trace entity per record (or one per batch), with response-capture limits.

Two backends, chosen by the ``backend`` option (``OBSERVED_BATCH_TRACING_BACKEND``):

- ``otel`` (default): OpenTelemetry CONSUMER spans following the messaging semantic conventions,
  linked to their producers (``_otel_spans``, ``_otel_links``, ``_otel_export``);
- ``xray``: aws-xray-sdk subsegments under the current (Lambda facade) segment, as Powertools'
  ``Tracer`` records them (``_xray``).

Captured text (handler responses, exception messages and stack traces, bodies) is capped per item by
``max_response_bytes`` and per invocation by ``max_batch_capture_bytes`` (``_capture``), so a batch of
large responses cannot produce trace documents beyond X-Ray's 64 KB limit. This module imports neither
backend: the constructor imports the one it selects.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from observed_batch.config import require_backend
from observed_batch.errors import ConfigError
from observed_batch.options import Option, Options, validated
from observed_batch.typing import BatchContext, BatchSummary, Middleware, RecordContext

from ._capture import MIN_CAPTURE_BYTES, TRUNCATION_MARKER

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

__all__ = ["TRUNCATION_MARKER", "TracingMiddleware"]


def _is_tracer_provider(value: Any) -> bool:
    return callable(getattr(value, "get_tracer", None))


@validated
class TracingMiddleware(Middleware):
    """Per-record trace entities (OTel spans or X-Ray subsegments); see docs/middleware/tracing.md.

    ``tracer_provider`` (``otel``) defaults to the global provider if one is set, else to a provider built
    once per process from the ``OTEL_*`` environment. ``xray_recorder`` (``xray``) defaults to
    ``aws_xray_sdk.core.xray_recorder``, the recorder Powertools' ``Tracer`` uses; a ``Tracer`` is
    accepted too (its ``provider``).
    """

    name = "tracing"
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option(
            "backend",
            ("otel", "xray"),
            "otel",
            "`otel`: OpenTelemetry spans (this page). `xray`: an aws-xray-sdk subsegment per record, for "
            "Powertools `Tracer` users ([X-Ray backend](#x-ray-backend); `pip install "
            '"observed-batch[xray]"`).',
        ),
        Option(
            "mode",
            ("per_record", "batch"),
            "per_record",
            "`per_record`: a span per record. `batch`: one span per invocation ([batch mode](#batch-mode)).",
        ),
        Option(
            "capture_response",
            bool,
            False,
            "Attach the handler's return value (`observed_batch.response`, JSON / text) and its size in "
            "bytes (`observed_batch.response.size`).",
        ),
        Option(
            "capture_body",
            bool,
            False,
            "Attach the record body (`observed_batch.body`; Kinesis / Kafka payloads base64-decoded, "
            "DynamoDB `NewImage`) and `messaging.message.body.size`.",
        ),
        Option(
            "max_response_bytes",
            int,
            1024,
            "Cap per captured item (response, body, exception message, stack trace), UTF-8 bytes; longer "
            "text is cut and ends with `...[truncated]` (stack traces keep their tail and start with it).",
            min=MIN_CAPTURE_BYTES,
        ),
        Option(
            "max_batch_capture_bytes",
            int,
            49152,
            "Budget of captured text per invocation, all spans together. Once an item does not fit, "
            "nothing more is captured in that invocation; dropped items are counted in "
            "`observed_batch.capture.dropped`. `0` captures nothing.",
        ),
        Option(
            "flush_timeout_ms",
            int,
            2000,
            "Longest wait for the provider's flush at the end of an invocation. `0`: do not flush.",
        ),
        Option(
            "include_input_values",
            bool,
            False,
            "Keep the input values a pydantic `ValidationError` quotes in `exception.message` / "
            "`exception.stacktrace` (left out by default; see [privacy](../privacy.md)).",
        ),
        Option(
            "tracer_provider",
            None,
            None,
            "The `TracerProvider` to use ([which tracer provider](#enable)).",
            default_doc="the global provider, else one built from `OTEL_*`",
            accepts=_is_tracer_provider,
            expects="a TracerProvider",
        ),
        Option(
            "xray_recorder",
            None,
            None,
            "Backend `xray`: the recorder to use, or a Powertools `Tracer` (its `provider`).",
            default_doc="`aws_xray_sdk.core.xray_recorder` (the recorder of Powertools' `Tracer`)",
        ),
    )

    def __init__(
        self,
        *,
        backend: Literal["otel", "xray"] = "otel",
        mode: Literal["per_record", "batch"] = "per_record",
        capture_response: bool = False,
        capture_body: bool = False,
        max_response_bytes: int = 1024,
        max_batch_capture_bytes: int = 49152,
        flush_timeout_ms: int = 2000,
        include_input_values: bool = False,
        tracer_provider: TracerProvider | None = None,
        xray_recorder: Any = None,
    ) -> None:
        # Each value was checked against OPTIONS (@validated); what is left are rules between options.
        self.backend = backend
        self.mode = mode
        self.capture_response = capture_response
        self.capture_body = capture_body
        self.max_response_bytes = max_response_bytes
        self.max_batch_capture_bytes = max_batch_capture_bytes
        self.flush_timeout_ms = flush_timeout_ms
        self.include_input_values = include_input_values
        require_backend(self.name, backend)
        self._backend: Any
        if backend == "xray":
            if tracer_provider is not None:
                raise ConfigError("tracing option tracer_provider is for backend 'otel'; use xray_recorder")
            if mode != "per_record":
                raise ConfigError("tracing option mode='batch' is for backend 'otel'; xray records per_record")
            from ._xray import XrayTracing

            self._backend = XrayTracing(self, xray_recorder)
        else:
            if xray_recorder is not None:
                raise ConfigError("tracing option xray_recorder needs backend='xray'")
            from ._otel_spans import OtelTracing

            self._backend = OtelTracing(self, tracer_provider)
        # The per-record hook is the backend's own: no extra call per record. So is the flush budget
        # (timeout_guard asks for it before each record) unless a subclass has its own.
        self.wrap_record = self._backend.wrap_record  # type: ignore[method-assign]
        if type(self).flush_budget_ms is TracingMiddleware.flush_budget_ms:
            self.flush_budget_ms = self._backend.flush_budget_ms  # type: ignore[method-assign]

    def on_batch_start(self, batch: BatchContext) -> None:
        self._backend.on_batch_start(batch)

    def wrap_record(self, record: RecordContext) -> Iterator[None]:
        """Replaced per instance by the backend's hook (see ``__init__``)."""
        return self._backend.wrap_record(record)  # type: ignore[no-any-return]  # pragma: no cover

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        self._backend.on_batch_end(batch, summary)

    def flush_budget_ms(self, batch: BatchContext) -> int:
        """Replaced per instance by the backend's (see ``__init__``), unless a subclass overrides it."""
        return int(self._backend.flush_budget_ms(batch))
