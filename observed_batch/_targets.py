"""What an alarm pack or a dashboard watches: one function, its metrics and its sources. ``alarms`` and
``dashboards`` take these as the same keyword arguments (``Targets``) and check them in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self, TypedDict

from observed_batch._names import checked
from observed_batch.errors import ConfigError
from observed_batch.metric_schema import DEFAULT_NAMESPACE, DEFAULT_SERVICE, TELEMETRY_BACKENDS

__all__ = ["Targets", "Watched"]


class Targets(TypedDict, total=False):
    """The keyword arguments ``render_alarms``, ``alarm_names`` and ``dashboards.render`` share."""

    namespace: str
    service: str
    queue: str | None
    dlq: str | None
    stream: str | None
    table: str | None
    kafka_topic: str | None
    timeout_s: int | None
    telemetry_backends: Sequence[str]


@dataclass(frozen=True)
class Watched:
    """``Targets`` with their defaults, checked (names AWS accepts, a whole timeout, known backends)."""

    function: str
    namespace: str = DEFAULT_NAMESPACE
    service: str = DEFAULT_SERVICE
    queue: str | None = None
    dlq: str | None = None
    stream: str | None = None
    table: str | None = None
    kafka_topic: str | None = None
    timeout_s: int | None = None
    telemetry_backends: Sequence[str] = TELEMETRY_BACKENDS

    @classmethod
    def of(cls, what: str, function: str, targets: Targets) -> Self:
        """Raises ``ConfigError`` naming ``what`` (``alarms`` / ``dashboard``) for a value AWS would refuse."""
        watched = cls(function, **targets)
        checked(what, **watched.names())
        timeout_s = watched.timeout_s
        if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1):
            raise ConfigError(f"{what} timeout_s={timeout_s!r} is not valid: a whole number of seconds >= 1")
        unknown = sorted(set(watched.telemetry_backends) - set(TELEMETRY_BACKENDS))
        if unknown:
            raise ConfigError(
                f"{what} telemetry backend {unknown[0]!r} is not valid; valid: {', '.join(TELEMETRY_BACKENDS)}"
            )
        return watched

    def names(self) -> dict[str, str | None]:
        """The named resources (the dashboard's placeholders)."""
        return {
            "function": self.function,
            "namespace": self.namespace,
            "service": self.service,
            "queue": self.queue,
            "dlq": self.dlq,
            "stream": self.stream,
            "table": self.table,
            "kafka_topic": self.kafka_topic,
        }

    @property
    def stream_name(self) -> str | None:
        """The Kinesis stream, or the DynamoDB table whose stream is read."""
        return self.stream if self.stream is not None else self.table

    @property
    def sources(self) -> dict[str, object]:
        """What each alarm ``requires`` (``AlarmSpec.requires``) -> its value, ``None`` when not watched."""
        return {
            "queue": self.queue,
            "dlq": self.dlq,
            "stream": self.stream_name,
            "kafka": self.kafka_topic,
            "timeout": self.timeout_s,
        }
