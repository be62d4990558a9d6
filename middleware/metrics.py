"""``metrics``: CloudWatch metrics through EMF, one aggregated document per invocation.

Counts come from the batch summary (exact) and processing times from ``batch.durations_ns``, which the
chain keeps because this middleware sets ``needs_durations``: it has no per-record hook at all. At batch
end, also when the batch raises, one EMF line goes to the sink (stdout by default, which Lambda ships to
CloudWatch Logs, where the metrics are extracted). The document is our own, not Powertools' ``Metrics``
singleton, so a function using both never mixes or double counts them.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, TypeGuard

from aws_lambda_powertools.utilities.batch import EventType

from observed_batch import emf, sources
from observed_batch.config import parse_bool
from observed_batch.errors import ConfigError
from observed_batch.metric_schema import (
    BACKEND_DIMENSION,
    DEFAULT_DIMENSION_SETS,
    DEFAULT_NAMESPACE,
    DEFAULT_SERVICE,
    METRICS,
    SERVICE_DIMENSION,
    TELEMETRY_DIMENSION_SETS,
    TELEMETRY_METRICS,
)
from observed_batch.options import Option, Options, validated
from observed_batch.typing import BatchContext, BatchSummary, Middleware

__all__ = ["MetricsMiddleware"]


_DESTINATION_TOKENS = frozenset({"destination", "queue", "stream", "table", "topic"})
_FUNCTION_NAME = "function_name"
_RESERVED = frozenset(
    {
        "_aws",
        SERVICE_DIMENSION,
        BACKEND_DIMENSION,
        _FUNCTION_NAME,
        *_DESTINATION_TOKENS,
        *(m.name for m in (*METRICS, *TELEMETRY_METRICS)),
    }
)
_NAMESPACE = re.compile(r"^[A-Za-z0-9.\-_/#: ]{1,255}$")
_PRINTABLE_ASCII = re.compile(r"^[\x20-\x7e]+$")


#: ``json.dumps(..., separators=(",", ":"), allow_nan=False)``, without building an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_MAX_DIRECTIVES = 16


def _write_stdout(line: str) -> None:
    # Looked up per call: the Lambda runtime (and pytest) may swap sys.stdout.
    stream = sys.stdout
    stream.write(line + "\n")
    stream.flush()


@validated
class MetricsMiddleware(Middleware):
    """Emits ``METRICS`` for each invocation as one CloudWatch EMF document.

    Options (env ``OBSERVED_BATCH_METRICS_<OPTION>``):
      ``namespace``: CloudWatch namespace; default ``POWERTOOLS_METRICS_NAMESPACE``, else ``ObservedBatch``.
      ``service``: value of the ``service`` dimension; default ``POWERTOOLS_SERVICE_NAME``, else
      ``service_undefined``.
      ``dimensions``: extra dimensions, comma-separated: ``destination`` (or ``queue``/``stream``/
      ``table``/``topic``: adds ``<kind>=<name>`` of the batch's source), ``function_name``, or static
      ``name=value``. They form a second dimension set; the ``[service]`` set is always emitted.
    Code only: ``sink`` receives each document as one JSON line (``str``, no newline); default stdout.
    ``POWERTOOLS_METRICS_DISABLED=true`` suppresses output, as it does for Powertools ``Metrics``.
    """

    name = "metrics"
    #: Every option, declared once: validation (env, pyproject, code) and the docs come from here.
    OPTIONS: ClassVar[Options] = Options(
        Option(
            "namespace",
            str,
            None,
            "CloudWatch namespace.",
            default_doc="`POWERTOOLS_METRICS_NAMESPACE`, then `ObservedBatch`",
        ),
        Option(
            "service",
            str,
            None,
            "Value of the `service` dimension.",
            default_doc="`POWERTOOLS_SERVICE_NAME`, then `service_undefined`",
        ),
        Option(
            "dimensions",
            str,
            "",
            "Extra dimensions, comma-separated: `destination` (alias `queue`, `stream`, `table`, `topic`)"
            " adds `queue=<name>` (`stream`, `table`, `topic` for other sources; left out for a Kafka "
            "batch spanning topics), `function_name` adds the Lambda function name, `name=value` adds a "
            "fixed one. At most 29. Never per-message values.",
            default_doc="none",
        ),
        Option(
            "sink",
            None,
            None,
            "Callable receiving each document as one JSON line (`str`, no newline); use it to collect "
            "documents in tests.",
            default_doc="stdout",
            accepts=callable,
            expects="a callable receiving one str",
        ),
    )
    needs_durations = True

    def __init__(
        self,
        *,
        namespace: str | None = None,
        service: str | None = None,
        dimensions: str = "",
        sink: Callable[[str], object] | None = None,
    ) -> None:
        self.namespace = _namespace(namespace)
        self.service = _dimension_value(
            SERVICE_DIMENSION,
            service if service is not None else os.environ.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE,
            "service" if service is not None else "POWERTOOLS_SERVICE_NAME",
        )
        self._static, self._destination, self._function_name = _extra_dimensions(dimensions)
        self._sink: Callable[[str], object] = sink if sink is not None else _write_stdout
        #: Encoded metric directives by (dimension sets, metric names): a handful per function at most.
        self._directives: dict[tuple[Any, ...], str] = {}
        self._disabled = parse_bool(os.environ.get("POWERTOOLS_METRICS_DISABLED", ""), "POWERTOOLS_METRICS_DISABLED")

    def on_batch_end(self, batch: BatchContext, summary: BatchSummary) -> None:
        durations = batch.durations_ns if batch.durations_ns is not None else ()
        if self._disabled:
            return
        self._sink(self._line(batch, summary, durations))
        for backend, dropped in summary.telemetry_dropped.items():
            self._sink(json.dumps(self.dropped_document(batch, backend, dropped), separators=(",", ":")))

    def dropped_document(self, batch: BatchContext, backend: str, dropped: int) -> dict[str, Any]:
        """The ``TelemetryDropped`` document of one backend for one batch."""
        (metric,) = TELEMETRY_METRICS
        return emf.document(
            namespace=self.namespace,
            dimension_sets=TELEMETRY_DIMENSION_SETS,
            dimensions={SERVICE_DIMENSION: self.service, BACKEND_DIMENSION: backend},
            metrics=[(metric.name, metric.unit, dropped)],
            timestamp_ms=int(batch.started_at * 1000),
        )

    def document(self, batch: BatchContext, summary: BatchSummary, durations_ns: Iterable[int] = ()) -> dict[str, Any]:
        """The EMF document for one finished batch (public so tools and tests can build one)."""
        dimension_sets, dimensions, metrics = self._contents(batch, summary, durations_ns)
        return emf.document(
            namespace=self.namespace,
            dimension_sets=dimension_sets,
            dimensions=dimensions,
            metrics=metrics,
            timestamp_ms=int(batch.started_at * 1000),
        )

    def _line(self, batch: BatchContext, summary: BatchSummary, durations_ns: Iterable[int]) -> str:
        """``document()`` as the JSON line written, character for character, with its metric directive
        (namespace, dimension sets, metric definitions: the same for every invocation of a function)
        encoded once and reused: encoding it was a third of this middleware's cost per invocation."""
        dimension_sets, dimensions, metrics = self._contents(batch, summary, durations_ns)
        key = (self.namespace, tuple(dimension_sets), tuple(name for name, _, _ in metrics))
        directive = self._directives.get(key)
        if directive is None:
            aws = emf.document(
                namespace=self.namespace, dimension_sets=dimension_sets, dimensions={}, metrics=metrics, timestamp_ms=0
            )["_aws"]
            directive = _ENCODER.encode(aws["CloudWatchMetrics"])
            if len(self._directives) < _MAX_DIRECTIVES:
                self._directives[key] = directive
        values: dict[str, Any] = dict(dimensions)
        for name, _, value in metrics:
            values[name] = value
        timestamp = int(batch.started_at * 1000)
        return f'{{"_aws":{{"Timestamp":{timestamp},"CloudWatchMetrics":{directive}}},{_ENCODER.encode(values)[1:]}'

    def _contents(
        self, batch: BatchContext, summary: BatchSummary, durations_ns: Iterable[int]
    ) -> tuple[list[tuple[str, ...]], dict[str, str], list[tuple[str, str, Any]]]:
        """Dimension sets, dimension values and ``(name, unit, value)`` of the metrics of one batch."""
        dimensions = {SERVICE_DIMENSION: self.service}
        dimensions.update(self._batch_dimensions(batch))
        dimension_sets: list[tuple[str, ...]] = list(DEFAULT_DIMENSION_SETS)
        if len(dimensions) > 1:
            dimension_sets.append(tuple(dimensions))
        values: dict[str, Any] = {
            "BatchRecordSuccesses": summary.successes,
            "BatchRecordFailures": summary.failures,
            "BatchRecordsSkipped": summary.skipped,
            "BatchRecordsDeadLettered": summary.dead_lettered,
            "BatchRecordsDropped": summary.dropped,
            "BatchSize": batch.size,
            "RecordProcessingTime": emf.distribution(durations_ns, divisor=1e6),
            "RecordAge": emf.distribution(_ages_ms(batch)),
        }
        if not (batch.has_policy or summary.dead_lettered or summary.dropped):
            # Only a policy middleware resolves records: without one both counts are always 0, and leaving
            # them out keeps a 10,000-record document under 1 KB.
            values["BatchRecordsDeadLettered"] = values["BatchRecordsDropped"] = None
        # A distribution without samples (every record skipped, no timestamps) is left out, not zero.
        metrics = [(m.name, m.unit, values[m.name]) for m in METRICS if values[m.name] is not None]
        return dimension_sets, dimensions, metrics

    def _batch_dimensions(self, batch: BatchContext) -> dict[str, str]:
        extra: dict[str, str] = {}
        # Names CloudWatch would reject (and with them the whole document) are left out instead.
        if self._destination:
            name = _destination(batch)
            if _usable(name):
                extra[batch.destination_kind] = name
        if self._function_name:
            function = getattr(batch.lambda_context, "function_name", None)
            if _usable(function):
                extra[_FUNCTION_NAME] = function
        extra.update(self._static)
        return extra


def _usable(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) <= 1024 and bool(_PRINTABLE_ASCII.match(value)) and bool(value.strip())


def _ages_ms(batch: BatchContext) -> list[int]:
    """Whole milliseconds from the record's timestamp to the batch start, never negative.

    Per record, so SQS (the common case, integer millisecond strings) takes a fast path.
    """
    started_ms = int(batch.started_at * 1000)
    ages: list[int] = []
    if batch.event_type is EventType.SQS:
        for raw in batch.records:
            try:
                age = started_ms - int(raw["attributes"]["SentTimestamp"])
            except (KeyError, TypeError, ValueError):
                continue
            # A producer clock ahead of Lambda's would give negative ages; they are zero.
            ages.append(age if age > 0 else 0)
        return ages
    event_type = batch.event_type
    for raw in batch.records:
        sent = sources.sent_timestamp_ms(event_type, raw)
        if sent is not None and math.isfinite(sent):
            age = round(started_ms - sent)
            ages.append(age if age > 0 else 0)
    return ages


def _destination(batch: BatchContext) -> str | None:
    if batch.destination_kind != "topic":
        return batch.destination
    # A Kafka batch may span topics; one topic dimension would misattribute the others.
    topics = {raw.get("topic") for raw in batch.records if isinstance(raw, dict)}
    topic = topics.pop() if len(topics) == 1 else None
    return topic if isinstance(topic, str) else None


def _namespace(option: str | None) -> str:
    source = "namespace" if option is not None else "POWERTOOLS_METRICS_NAMESPACE"
    value = option if option is not None else os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
    if not _NAMESPACE.match(value) or not value.strip() or value.startswith("AWS/"):
        raise ConfigError(
            f"metrics {source}={value!r} is not a valid CloudWatch namespace: 1-255 characters of letters, digits,"
            " '.-_/#: ' and space, not starting with 'AWS/'"
        )
    return value


def _dimension_value(name: str, value: str, source: str) -> str:
    if len(value) > 1024 or not _PRINTABLE_ASCII.match(value) or not value.strip():
        raise ConfigError(
            f"metrics {source}={value!r} is not a valid value for dimension {name!r}: 1-1024 printable ASCII"
            " characters, not only spaces"
        )
    return value


def _extra_dimensions(option: str) -> tuple[dict[str, str], bool, bool]:
    static: dict[str, str] = {}
    destination = function_name = False
    seen: set[str] = set()
    for token in (t.strip() for t in option.split(",")):
        if not token:
            continue
        key = "destination" if token in _DESTINATION_TOKENS else token.partition("=")[0].strip()
        if key in seen:
            raise ConfigError(f"metrics option dimensions={option!r} lists {key!r} twice")
        seen.add(key)
        if key == "destination" and token in _DESTINATION_TOKENS:
            destination = True
        elif token == _FUNCTION_NAME:
            function_name = True
        elif "=" in token:
            value = token.partition("=")[2].strip()
            if key in _RESERVED or len(key) > 255 or not _PRINTABLE_ASCII.match(key) or key.startswith(":"):
                raise ConfigError(
                    f"metrics option dimensions: {key!r} cannot be a dimension name (reserved, not printable ASCII,"
                    " longer than 255 characters or starting with ':')"
                )
            static[key] = _dimension_value(key, value, "option dimensions")
        else:
            raise ConfigError(
                f"metrics option dimensions: unknown dimension {token!r}; valid: destination (or queue, stream,"
                " table, topic), function_name, or name=value"
            )
    if len(seen) + 1 > emf.MAX_DIMENSIONS_PER_SET:
        raise ConfigError(
            f"metrics option dimensions: {len(seen)} extra dimensions plus 'service' exceed the EMF limit of"
            f" {emf.MAX_DIMENSIONS_PER_SET} per dimension set"
        )
    return static, destination, function_name
