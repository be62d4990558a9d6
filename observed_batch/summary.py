"""``BatchSummary``: what ``on_batch_end`` gets, the exact counts of one invocation's record outcomes."""

from __future__ import annotations

from typing import Any

__all__ = ["BatchSummary"]


class BatchSummary:
    """What ``on_batch_end`` gets: exact counts of the invocation's record outcomes."""

    __slots__ = (
        "dead_lettered",
        "dropped",
        "duration_ms",
        "error",
        "failed_ids",
        "failures",
        "middleware_errors",
        "skipped",
        "successes",
        "telemetry_dropped",
    )

    def __init__(self) -> None:
        self.successes = 0
        self.failures = 0
        self.skipped = 0
        #: Failed records policies resolved (not in ``batchItemFailures``), counted in ``failures`` too.
        self.dead_lettered = 0
        self.dropped = 0
        #: Identifiers of records reported as failed because the handler raised (skips excluded).
        self.failed_ids: list[Any] = []
        self.duration_ms = 0.0
        #: Exception leaving the batch (``BatchProcessingError`` or the user's code), if any.
        self.error: BaseException | None = None
        #: Contained middleware errors by middleware name.
        self.middleware_errors: dict[str, int] = {}
        #: Telemetry items (spans, events) not sent because their backend is down, by backend name.
        #: Hooks that run later in ``on_batch_end`` (``metrics``, outermost) see more of it than earlier ones.
        self.telemetry_dropped: dict[str, int] = {}

    def add_dropped(self, backend: str, count: int) -> None:
        if count > 0:
            self.telemetry_dropped[backend] = self.telemetry_dropped.get(backend, 0) + count

    @property
    def total(self) -> int:
        return self.successes + self.failures + self.skipped

    @property
    def reported(self) -> int:
        """Records in ``batchItemFailures``: failures and skips, minus what policies resolved."""
        return self.failures + self.skipped - self.dead_lettered - self.dropped

    def __repr__(self) -> str:
        return (
            f"BatchSummary(successes={self.successes}, failures={self.failures}, skipped={self.skipped},"
            f" duration_ms={self.duration_ms:.3f}, error={self.error!r})"
        )
